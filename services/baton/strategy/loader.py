"""Loading user strategy code: ``package.module:Class`` and its JSON config.

Every failure is an ``EntrypointError`` / ``StrategyConfigError`` whose message says what to fix;
``baton strategy`` prints it and exits 2 instead of dumping a traceback.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from baton.strategy.core.errors import EntrypointError, StrategyConfigError
from baton.strategy.core.strategy import Strategy, check_strategy_class

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def parse_entrypoint(entrypoint: str) -> tuple[str, str]:
    """``(module, attribute)`` of ``"package.module:Class"``.

    >>> parse_entrypoint("baton.strategy.examples.momentum_v1:MomentumV1")
    ('baton.strategy.examples.momentum_v1', 'MomentumV1')
    """
    module, sep, attr = entrypoint.partition(":")
    if not sep or not _DOTTED.match(module) or not _DOTTED.match(attr):
        raise EntrypointError(f"invalid entrypoint {entrypoint!r}: expected 'package.module:Class'")
    return module, attr


def _is_missing_module(exc: ModuleNotFoundError, module: str) -> bool:
    """True when the entrypoint's module (or a parent package) is what is missing.

    A module that exists but imports a missing dependency also raises ModuleNotFoundError; that
    is a different fix ("install X"), so it gets a different message.
    """
    parts = module.split(".")
    return exc.name in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def load_strategy_class(entrypoint: str) -> type[Strategy[Any]]:
    """The concrete Strategy subclass named by ``entrypoint``, or ``EntrypointError``."""
    module_name, attr = parse_entrypoint(entrypoint)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if _is_missing_module(exc, module_name):
            raise EntrypointError(
                f"entrypoint {entrypoint!r}: module {module_name!r} not found"
            ) from exc
        raise EntrypointError(
            f"entrypoint {entrypoint!r}: importing {module_name!r} failed: {exc}"
        ) from exc
    except Exception as exc:
        raise EntrypointError(
            f"entrypoint {entrypoint!r}: importing {module_name!r} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise EntrypointError(
                f"entrypoint {entrypoint!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    try:
        return check_strategy_class(obj, f"entrypoint {entrypoint!r}")
    except TypeError as exc:
        raise EntrypointError(str(exc)) from exc


def parse_config(text: str | None) -> dict[str, Any]:
    """The strategy config from ``--config``: inline JSON, or ``@path`` to a JSON file.

    >>> parse_config('{"threshold": 0.5}')
    {'threshold': 0.5}
    >>> parse_config(None)
    {}
    """
    if text is None or not text.strip():
        return {}
    source = "--config"
    if text.startswith("@"):
        path = Path(text[1:])
        source = f"--config file {path}"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise StrategyConfigError(f"{source}: cannot read: {exc.strerror or exc}") from exc
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise StrategyConfigError(f"{source}: not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise StrategyConfigError(f"{source}: must be a JSON object, got {type(config).__name__}")
    return config


def build_strategy(cls: type[Strategy[Any]], config: Mapping[str, Any]) -> Strategy[Any]:
    """``cls(config)``; a ``ValueError`` or ``TypeError`` becomes ``StrategyConfigError``."""
    try:
        return cls(config)
    except (ValueError, TypeError) as exc:
        raise StrategyConfigError(
            f"invalid config for strategy {cls.name!r} {cls.version}: {exc}"
        ) from exc
