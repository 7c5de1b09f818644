"""docs/strategy-sdk.md's reference tables against the code they describe: every field of every
type a strategy reads, in order, with its type; the state functions' return types; every
``Settings`` method. A field added, renamed or retyped fails here until the docs say so."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
from pathlib import Path

import pytest

from baton.common import Settings
from baton.model import Action, Candle, EvaluationRequest, Fill, Role, Settlement, Slot
from baton.strategy import DecodedState, decode_state, encode_state, state_digest

DOC = Path(__file__).resolve().parents[2] / "docs" / "strategy-sdk.md"


def _cells(line: str) -> list[str]:
    """A markdown table row's cells; ``\\|`` is a pipe inside a cell."""
    parts = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [p.strip().replace("\\|", "|") for p in parts]


def _code(cell: str) -> str:
    match = re.fullmatch(r"`([^`]*)`", cell)
    assert match, f"expected one `code` span, got {cell!r}"
    return match.group(1)


def table_after(heading: str, *, first_col: str = "field") -> list[list[str]]:
    """The rows (header and separator left out) of the first table after ``heading``."""
    lines = DOC.read_text().splitlines()
    assert heading in lines, f"{DOC.name} has no heading {heading!r}"
    i = lines.index(heading) + 1
    while not lines[i].startswith("|"):
        assert not lines[i].startswith("#"), f"no table under {heading!r}"
        i += 1
    header = _cells(lines[i])
    assert header[0] == first_col, header
    rows = []
    for line in lines[i + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(_cells(line))
    return rows


def documented_members(cls: type) -> list[tuple[str, str]]:
    """(name, type) of the dataclass's fields in order, then its public properties."""
    members = [(f.name, str(f.type)) for f in dataclasses.fields(cls)]
    for name, value in vars(cls).items():
        if isinstance(value, property) and value.fget is not None and not name.startswith("_"):
            members.append((name, str(inspect.signature(value.fget).return_annotation)))
    return members


@pytest.mark.parametrize(
    ("heading", "cls"),
    [
        ("### `EvaluationRequest`", EvaluationRequest),
        ("### `Slot`", Slot),
        ("### `Candle`", Candle),
        ("### `Fill`", Fill),
        ("### `Settlement`", Settlement),
        ("`DecodedState`:", DecodedState),
    ],
    ids=["EvaluationRequest", "Slot", "Candle", "Fill", "Settlement", "DecodedState"],
)
def test_every_field_is_documented_with_its_type(heading: str, cls: type) -> None:
    rows = table_after(heading)
    documented = [(_code(name), _code(type_)) for name, type_, _ in rows]
    assert documented == documented_members(cls)
    for name, _, meaning in rows:
        assert meaning, f"{cls.__name__}.{name} has no meaning in the docs"
        if _code(name) in {n for n, v in vars(cls).items() if isinstance(v, property)}:
            assert meaning.startswith("property"), f"{cls.__name__}.{name}: say it is a property"


def test_every_enum_member_is_documented_with_its_value() -> None:
    rows = table_after("### `Action` and `Role`", first_col="member")
    documented = [(_code(member), _code(value)) for member, value, _ in rows]
    enums: tuple[type[enum.Enum], ...] = (Action, Role)
    assert documented == [(f"{e.__name__}.{m.name}", f'"{m.value}"') for e in enums for m in e]
    assert all(meaning for *_, meaning in rows)


def test_the_state_functions_and_their_return_types() -> None:
    lines = DOC.read_text().splitlines()
    start = lines.index("| function | returns |")
    table = [_cells(line) for line in lines[start + 2 :] if line.startswith("|")]
    table = table[: next((i for i, r in enumerate(table) if len(r) != 2), len(table))]
    documented = {_code(call).split("(")[0]: (_code(call), returns) for call, returns in table}
    functions = {f.__name__: f for f in (encode_state, decode_state, state_digest)}
    assert set(documented) == set(functions)
    for name, fn in functions.items():
        call, returns = documented[name]
        sig = inspect.signature(fn)
        # The documented call lists the parameters, in order, keyword-only ones after `*`.
        params = re.findall(r"(\*|\w+)(?:=[^,)]*)?", call[len(name) + 1 : -1])
        expected: list[str] = []
        for p in sig.parameters.values():
            if p.kind is p.KEYWORD_ONLY and "*" not in expected:
                expected.append("*")
            expected.append(p.name)
        assert params == expected, f"{name}: documented {params}, code has {expected}"
        annotation = str(sig.return_annotation)
        assert returns.startswith(f"`{annotation}`"), f"{name} returns {annotation}: {returns}"


def test_every_settings_method_is_documented() -> None:
    rows = table_after("### Validating the config with `Settings`", first_col="method")
    documented = [_code(call).split("(")[0] for call, *_ in rows]
    public = [n for n, v in vars(Settings).items() if callable(v) and not n.startswith("_")]
    assert documented == public
    for call, returns, _ in rows:
        name = _code(call).split("(")[0]
        annotation = str(inspect.signature(getattr(Settings, name)).return_annotation)
        assert _code(returns) == annotation, f"Settings.{name} returns {annotation}"
