"""Configuration plumbing: a TOML file, environment overrides, errors that name the setting.

Each component builds its own frozen config dataclass once at start from a flat mapping of
dotted keys (``gateway.cadence_s``). Environment variables override the file:
``BATON_GATEWAY__CADENCE_S=1`` sets ``gateway.cadence_s`` (sections joined by ``__``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENV_PREFIX = "BATON_"


class ConfigError(ValueError):
    """A setting is wrong. ``setting`` is its dotted name, as written in the file."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"invalid setting {setting}: {problem}")
        self.setting = setting
        self.problem = problem


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def load_settings(
    path: str | Path | None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Flat ``{dotted.key: value}`` from the TOML file at ``path`` (if any) then the env.

    Values from the environment stay strings; the typed readers below parse them.
    """
    flat: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError("config", f"file not found: {p}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("config", f"{p} is not valid TOML: {exc}") from exc
        _flatten("", data, flat)
    env = os.environ if environ is None else environ
    for key, value in env.items():
        if key.startswith(ENV_PREFIX) and "__" in key:
            dotted = key[len(ENV_PREFIX) :].lower().replace("__", ".")
            flat[dotted] = value
    return flat


class Settings:
    """Typed, validating reads over a flat settings mapping; remembers which keys were used."""

    def __init__(self, flat: Mapping[str, Any]) -> None:
        self._flat = dict(flat)
        self._used: set[str] = set()

    def _raw(self, key: str, default: Any) -> Any:
        self._used.add(key)
        return self._flat.get(key, default)

    def text(self, key: str, default: str) -> str:
        value = self._raw(key, default)
        if not isinstance(value, str) or not value:
            raise ConfigError(key, f"expected a non-empty string, got {value!r}")
        return value

    def number(
        self,
        key: str,
        default: float,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        exclusive_minimum: bool = False,
    ) -> float:
        value = self._raw(key, default)
        if isinstance(value, bool):
            raise ConfigError(key, f"expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(key, f"expected a number, got {value!r}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ConfigError(key, f"expected a finite number, got {value!r}")
        if minimum is not None:
            if exclusive_minimum and number <= minimum:
                raise ConfigError(key, f"must be > {minimum:g}, got {number:g}")
            if number < minimum:
                raise ConfigError(key, f"must be >= {minimum:g}, got {number:g}")
        if maximum is not None and number > maximum:
            raise ConfigError(key, f"must be <= {maximum:g}, got {number:g}")
        return number

    def integer(
        self, key: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        value = self._raw(key, default)
        if isinstance(value, bool):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(key, f"expected an integer, got {value!r}") from None
        if isinstance(value, float) and value != number:
            raise ConfigError(key, f"expected an integer, got {value!r}")
        if minimum is not None and number < minimum:
            raise ConfigError(key, f"must be >= {minimum}, got {number}")
        if maximum is not None and number > maximum:
            raise ConfigError(key, f"must be <= {maximum}, got {number}")
        return number

    def boolean(self, key: str, default: bool) -> bool:
        value = self._raw(key, default)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in (
            "1",
            "true",
            "yes",
            "on",
            "0",
            "false",
            "no",
            "off",
        ):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(key, f"expected true or false, got {value!r}")

    def string_list(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """A TOML array of strings, or a comma-separated string (from the environment)."""
        value = self._raw(key, default)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, f"expected a list of strings, got {value!r}")
        if not value:
            raise ConfigError(key, "must not be empty")
        return tuple(value)

    def raw(self, key: str, default: Any) -> Any:
        return self._raw(key, default)

    def check_unknown(self, known_prefixes: tuple[str, ...]) -> None:
        """Reject keys nobody read, so a typo fails instead of being silently ignored."""
        for key in sorted(self._flat):
            if key not in self._used and not key.startswith(known_prefixes):
                raise ConfigError(key, "unknown setting")
