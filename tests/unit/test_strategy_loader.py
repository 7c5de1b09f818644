"""Loading strategy code by entrypoint, and its config: every failure says what to fix."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.strategy import EntrypointError, StrategyConfigError
from baton.strategy.examples.momentum_v1 import MomentumV1
from baton.strategy.examples.momentum_v2 import MomentumV2
from baton.strategy.loader import build_strategy, load_strategy_class, parse_config

# Modules written to a temporary folder on sys.path, one per failure mode.
MODULES = {
    "bst_ok": """
        from baton.model import Action
        from baton.strategy import Strategy

        class Fine(Strategy[dict]):
            name = "fine"
            version = "v1"
            state_schema = 1
            def initial_state(self): return {}
            def evaluate(self, request, state): return Action.HOLD
            def export_state(self, state): return state
            def import_state(self, data): return data

        class Abstract(Strategy[dict]):
            name = "abstract"
            version = "v1"
            state_schema = 1

        class NoName(Fine):
            name = None

        class ZeroSchema(Fine):
            state_schema = 0

        class NotAStrategy:
            pass

        not_a_class = 42
    """,
    "bst_needs_dep": "import bst_missing_dependency_xyz\n",
    "bst_raises": "raise RuntimeError('cannot start here')\n",
    "bst_syntax": "def broken(:\n",
}


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name, source in MODULES.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in MODULES:
        sys.modules.pop(name, None)


def test_loads_the_examples() -> None:
    assert load_strategy_class("baton.strategy.examples.momentum_v1:MomentumV1") is MomentumV1
    assert load_strategy_class("baton.strategy.examples.momentum_v2:MomentumV2") is MomentumV2


@pytest.mark.usefixtures("modules")
def test_loads_a_user_module() -> None:
    cls = load_strategy_class("bst_ok:Fine")
    assert (cls.name, cls.version, cls.state_schema) == ("fine", "v1", 1)


@pytest.mark.usefixtures("modules")
@pytest.mark.parametrize(
    ("entrypoint", "message"),
    [
        ("bst_ok", "expected 'package.module:Class'"),
        ("bst_ok:", "expected 'package.module:Class'"),
        (":Fine", "expected 'package.module:Class'"),
        ("bst ok:Fine", "expected 'package.module:Class'"),
        ("bst_ok:Fine:Extra", "expected 'package.module:Class'"),
        ("bst_nowhere:Fine", "module 'bst_nowhere' not found"),
        ("bst_nowhere.sub:Fine", "module 'bst_nowhere.sub' not found"),
        ("bst_needs_dep:X", "importing 'bst_needs_dep' failed: No module named"),
        ("bst_raises:X", "importing 'bst_raises' failed: RuntimeError: cannot start here"),
        ("bst_syntax:X", "importing 'bst_syntax' failed: SyntaxError"),
        ("bst_ok:Missing", "module 'bst_ok' has no attribute 'Missing'"),
        ("bst_ok:not_a_class", "is not a subclass of baton.strategy.Strategy"),
        ("bst_ok:NotAStrategy", "is not a subclass of baton.strategy.Strategy"),
        ("bst_ok:Abstract", "is abstract: it does not implement evaluate, export_state"),
        ("bst_ok:NoName", "must set the class attribute name (str)"),
        ("bst_ok:ZeroSchema", "state_schema must be >= 1"),
    ],
    ids=[
        "no-colon",
        "empty-class",
        "empty-module",
        "space-in-module",
        "two-colons",
        "module-not-found",
        "package-not-found",
        "dependency-missing",
        "module-raises-on-import",
        "module-syntax-error",
        "attribute-missing",
        "attribute-not-a-class",
        "class-not-a-strategy",
        "abstract-class",
        "name-not-set",
        "schema-below-one",
    ],
)
def test_entrypoint_errors(entrypoint: str, message: str) -> None:
    with pytest.raises(EntrypointError) as info:
        load_strategy_class(entrypoint)
    assert message in str(info.value)


def test_config_inline_and_from_file(tmp_path: Path) -> None:
    assert parse_config('{"threshold": 0.5}') == {"threshold": 0.5}
    path = tmp_path / "c.json"
    path.write_text('{"window": 30}')
    assert parse_config(f"@{path}") == {"window": 30}
    assert parse_config(None) == {} == parse_config("  ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{nope", "--config: not valid JSON"),
        ("[1]", "--config: must be a JSON object, got list"),
        ("@/nonexistent/baton.json", "--config file /nonexistent/baton.json: cannot read"),
    ],
    ids=["invalid-json", "not-an-object", "missing-file"],
)
def test_config_errors(text: str, message: str) -> None:
    with pytest.raises(StrategyConfigError) as info:
        parse_config(text)
    assert message in str(info.value)


def test_strategy_rejecting_its_config_becomes_a_config_error() -> None:
    with pytest.raises(StrategyConfigError, match="'momentum' v1: invalid setting threshold"):
        build_strategy(MomentumV1, {"threshold": 0})
    assert isinstance(build_strategy(MomentumV1, {"threshold": 1}), MomentumV1)
