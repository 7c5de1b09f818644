"""The state contract: canonical encoding, digests, size limits and every way an import fails."""

from __future__ import annotations

import doctest
import enum
import importlib
import json
from collections import defaultdict
from typing import Any

import pytest

from baton.model import Action, EvaluationRequest
from baton.strategy import (
    STATE_FORMAT,
    StateDecodeError,
    StateEncodeError,
    StateError,
    StateImportError,
    StateMigrationError,
    StateMismatchError,
    StateSchemaError,
    StateTooLargeError,
    Strategy,
    canonical_json,
    decode_state,
    encode_state,
    normalize_outcome,
    state_digest,
)


class Box(Strategy[dict[str, Any]]):
    """A strategy whose state is whatever dict the test puts in it."""

    name = "box"
    version = "v1"
    state_schema = 1

    def initial_state(self) -> dict[str, Any]:
        return {}

    def evaluate(self, request: EvaluationRequest, state: dict[str, Any]) -> Action:
        return Action.HOLD

    def export_state(self, state: dict[str, Any]) -> dict[str, Any]:
        return state

    def import_state(self, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("explode"):
            raise KeyError("explode")
        return dict(data)


class BoxV2(Box):
    version = "v2"
    state_schema = 2

    def migrate(self, data: dict[str, Any], from_schema: int) -> dict[str, Any]:
        if data.get("bad_migration"):
            raise ValueError("cannot read field x")
        if data.get("migrate_to_list"):
            return ["not", "a", "dict"]  # type: ignore[return-value]
        return {"v2": True, **data}


class BoxV2NoMigration(Box):
    version = "v2"
    state_schema = 2


class Other(Box):
    name = "other"


STATE = {"slots": {"BTC/5m": {"closes": [[0, 1.5], [300000, 2.25]], "n": 3}}, "pnl": -0.1}


def envelope(**overrides: Any) -> bytes:
    env: dict[str, Any] = {
        "applied_seq": {"BTC/5m": 3},
        "format": STATE_FORMAT,
        "state": {"a": 1},
        "state_schema": 1,
        "strategy": "box",
    }
    env.update(overrides)
    return canonical_json(env)


def test_encoding_is_canonical_json_of_the_envelope() -> None:
    data = encode_state(Box(), {"b": 1, "a": [1.5, None, "é"]}, {"BTC/5m": 7})
    assert data == (
        b'{"applied_seq":{"BTC/5m":7},"format":"baton.state/1",'
        b'"state":{"a":[1.5,null,"\xc3\xa9"],"b":1},"state_schema":1,"strategy":"box"}'
    )
    assert state_digest(data).startswith("sha256:")
    assert len(state_digest(data)) == len("sha256:") + 64


def test_equal_states_have_equal_digests_whatever_the_insertion_order() -> None:
    one = {"x": 1, "y": {"b": 2, "a": 1}}
    two = {"y": {"a": 1, "b": 2}, "x": 1}
    d1 = state_digest(encode_state(Box(), one, {"s/5m": 1, "t/5m": 2}))
    d2 = state_digest(encode_state(Box(), two, {"t/5m": 2, "s/5m": 1}))
    assert d1 == d2


def test_digest_changes_with_state_and_with_applied_seq() -> None:
    base = state_digest(encode_state(Box(), {"x": 1}, {"s": 1}))
    assert state_digest(encode_state(Box(), {"x": 2}, {"s": 1})) != base
    assert state_digest(encode_state(Box(), {"x": 1}, {"s": 2})) != base


def test_round_trip_export_import_export_is_identical() -> None:
    data = encode_state(Box(), STATE, {"BTC/5m": 41})
    decoded = decode_state(Box(), data)
    assert decoded.state == STATE
    assert decoded.applied_seq == {"BTC/5m": 41}
    assert not decoded.migrated
    assert encode_state(Box(), decoded.state, decoded.applied_seq) == data


def test_version_is_not_part_of_the_bytes() -> None:
    """Two versions sharing a state_schema export the same state byte for byte."""

    class BoxV1b(Box):
        version = "v1b"

    assert encode_state(Box(), STATE, {}) == encode_state(BoxV1b(), STATE, {})


def test_older_schema_is_migrated_on_import() -> None:
    decoded = decode_state(BoxV2(), encode_state(Box(), {"a": 1}, {"s": 2}))
    assert decoded.state == {"v2": True, "a": 1}
    assert (decoded.from_schema, decoded.to_schema, decoded.migrated) == (1, 2, True)
    assert decoded.applied_seq == {"s": 2}


class BoxDowngrade(Box):
    """Schema 1 code that reads schema 2 back (a version that alternates with a newer one)."""

    def migrate(self, data: dict[str, Any], from_schema: int) -> dict[str, Any]:
        if from_schema != 2:
            return super().migrate(data, from_schema)
        return {k: v for k, v in data.items() if k != "v2"}


def test_newer_schema_is_migrated_on_import_when_the_strategy_reads_it() -> None:
    data = encode_state(BoxV2(), {"v2": True, "a": 1}, {"s": 5})
    decoded = decode_state(BoxDowngrade(), data)
    assert decoded.state == {"a": 1}
    assert (decoded.from_schema, decoded.to_schema, decoded.migrated) == (2, 1, True)
    assert decoded.applied_seq == {"s": 5}


def test_round_trip_up_and_down_gives_the_first_bytes_back() -> None:
    first = encode_state(BoxDowngrade(), {"a": [1, 2.5]}, {"s": 1})
    up = decode_state(BoxV2(), first)
    down = decode_state(BoxDowngrade(), encode_state(BoxV2(), up.state, up.applied_seq))
    assert encode_state(BoxDowngrade(), down.state, down.applied_seq) == first


def test_a_migration_that_reads_neither_schema_falls_back_to_no_migration() -> None:
    with pytest.raises(StateSchemaError, match="no migration from schema 3 to 1"):
        decode_state(BoxDowngrade(), envelope(state_schema=3))


class RaisesNotImplemented(Box):
    def migrate(self, data: dict[str, Any], from_schema: int) -> dict[str, Any]:
        raise NotImplementedError("v9 state is not readable yet")


class RaisesSchemaError(Box):
    def migrate(self, data: dict[str, Any], from_schema: int) -> dict[str, Any]:
        raise StateSchemaError("refusing schema 2: the layout was withdrawn")


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        (
            RaisesNotImplemented(),
            "no migration from schema 2 to 1 in strategy 'box' v1: v9 state is not readable yet",
        ),
        (RaisesSchemaError(), "refusing schema 2: the layout was withdrawn"),
    ],
    ids=["not-implemented-error", "own-schema-error"],
)
def test_a_migrate_override_can_say_no_migration(strategy: Strategy[Any], message: str) -> None:
    with pytest.raises(StateSchemaError) as info:
        decode_state(strategy, envelope(state_schema=2))
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("state", "where"),
    [
        ({"x": float("nan")}, "state['x']"),
        ({"x": [1, float("inf")]}, "state['x'][1]"),
        ({"x": {1: "a"}}, "state['x']: dict key 1"),
        ({"x": {1, 2}}, "state['x']: set is not JSON"),
        ({"x": b"bytes"}, "bytes is not JSON"),
        ({"x": {"a": 1, 2: "b"}}, "state['x']: dict key 2 is a int"),
        ({"x": {True: 1}}, "state['x']: dict key True is a bool"),
        ({"x": {None: 1}}, "state['x']: dict key None is a NoneType"),
        ({"x": {1.5: 1}}, "state['x']: dict key 1.5 is a float"),
        ({"x": defaultdict(int, {3: 1})}, "state['x']: dict key 3 is a int"),
        ({"w": [*range(20), {"k": {7: 0}}]}, "state['w'][20]['k']: dict key 7"),
        ({"w": [[i, 0.5] for i in range(20)] + [[1, {8: 0}]]}, "state['w'][20][1]: dict key 8"),
        ({"w": [(i, float("nan")) for i in range(20)]}, "state['w'][0][1]: nan"),
    ],
    ids=[
        "nan",
        "infinity-in-list",
        "int-dict-key",
        "set",
        "bytes",
        "int-key-among-string-keys",
        "bool-dict-key",
        "none-dict-key",
        "float-dict-key",
        "defaultdict-with-int-key",
        "int-key-after-many-scalars",
        "int-key-inside-a-long-list-of-pairs",
        "nan-in-a-long-list-of-tuples",
    ],
)
def test_export_of_non_json_state_names_the_place(state: dict[str, Any], where: str) -> None:
    with pytest.raises(StateEncodeError) as info:
        encode_state(Box(), state, {})
    assert where in str(info.value)


def test_circular_or_too_deep_state_is_an_encode_error() -> None:
    looped: dict[str, Any] = {"a": []}
    looped["a"].append(looped)
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    for state in ({"x": looped}, {"x": deep}):
        with pytest.raises(StateEncodeError, match="nested too deeply"):
            encode_state(Box(), state, {})


class Colour(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


def test_tuples_str_subclass_keys_and_int_subclass_values_encode_as_their_json() -> None:
    plain = {"red": [[1, 2.5]] * 20, "level": 3}
    fancy = {Colour.RED: [(1, 2.5)] * 20, "level": Level.HIGH}
    assert encode_state(Box(), fancy, {}) == encode_state(Box(), plain, {})


def test_a_value_json_cannot_write_is_reported_with_the_encoders_words() -> None:
    with pytest.raises(StateEncodeError, match="state is not canonical JSON: Exceeds the limit"):
        encode_state(Box(), {"x": 10**5000}, {})


def test_export_that_raises_or_returns_a_non_dict_is_an_encode_error() -> None:
    class Broken(Box):
        def export_state(self, state: dict[str, Any]) -> dict[str, Any]:
            raise RuntimeError("boom")

    class Listy(Box):
        def export_state(self, state: dict[str, Any]) -> dict[str, Any]:
            return [1, 2]  # type: ignore[return-value]

    with pytest.raises(StateEncodeError, match="export_state raised RuntimeError: boom"):
        encode_state(Broken(), {}, {})
    with pytest.raises(StateEncodeError, match="must return a dict"):
        encode_state(Listy(), {}, {})


def test_size_limit_on_export() -> None:
    big = {"blob": "x" * 2000}
    assert encode_state(Box(), big, {}, max_bytes=4096)
    with pytest.raises(
        StateTooLargeError, match=r"over the limit of 1000 bytes \(max_state_bytes\)"
    ):
        encode_state(Box(), big, {}, max_bytes=1000)


def test_size_limit_on_import_is_checked_before_parsing() -> None:
    data = encode_state(Box(), {"blob": "x" * 2000}, {})
    with pytest.raises(StateTooLargeError, match="received state is"):
        decode_state(Box(), data, max_bytes=1000)
    with pytest.raises(StateTooLargeError):
        decode_state(Box(), b"{" * 5000, max_bytes=1000)  # never parsed


IMPORT_ERRORS: list[tuple[Any, bytes, type[StateError], str]] = [
    (Box(), b"\xff\xfe not utf-8", StateDecodeError, "not canonical JSON"),
    (Box(), b"{not json", StateDecodeError, "not canonical JSON"),
    (Box(), b"[1,2]", StateDecodeError, "expected a JSON object"),
    (Box(), b'{"format":"other/9"}', StateDecodeError, "unsupported state format 'other/9'"),
    (Box(), envelope(state=None), StateDecodeError, "state must be a JSON object"),
    (
        Box(),
        json.dumps({"format": STATE_FORMAT, "state": {}}).encode(),
        StateDecodeError,
        "missing applied_seq, state_schema, strategy",
    ),
    (Box(), envelope(applied_seq={"s": -1}), StateDecodeError, "applied_seq"),
    (Box(), envelope(applied_seq={"s": "3"}), StateDecodeError, "applied_seq"),
    (Box(), envelope(state_schema="1"), StateDecodeError, "state_schema must be an integer"),
    (Box(), envelope(state_schema=0), StateDecodeError, "state_schema must be an integer"),
    (Box(), b'{"format":"baton.state/1","x":NaN}', StateDecodeError, "NaN is not allowed"),
    (Box(), envelope(strategy="other"), StateMismatchError, "strategy 'other'"),
    (
        Box(),
        envelope(state_schema=2),
        StateSchemaError,
        "no migration from schema 2 to 1 in strategy 'box' v1",
    ),
    (BoxV2NoMigration(), envelope(), StateSchemaError, "no migration from schema 1 to 2"),
    (BoxV2(), envelope(state={"bad_migration": 1}), StateMigrationError, "cannot read field x"),
    (BoxV2(), envelope(state={"migrate_to_list": 1}), StateMigrationError, "must return a dict"),
    (Box(), envelope(state={"explode": 1}), StateImportError, "import_state of 'box' v1 raised"),
]


@pytest.mark.parametrize(
    ("strategy", "data", "error", "message"),
    IMPORT_ERRORS,
    ids=[
        "not-utf8",
        "not-json",
        "not-an-object",
        "unknown-format",
        "state-not-an-object",
        "missing-envelope-keys",
        "negative-applied-seq",
        "string-applied-seq",
        "string-schema",
        "zero-schema",
        "nan-constant",
        "other-strategy",
        "newer-schema-without-migration",
        "older-schema-without-migration",
        "migration-raises",
        "migration-returns-non-dict",
        "import-state-raises",
    ],
)
def test_import_errors_are_typed_with_a_clear_message(
    strategy: Strategy[Any], data: bytes, error: type[StateError], message: str
) -> None:
    with pytest.raises(error) as info:
        decode_state(strategy, data)
    assert message in str(info.value)
    assert not info.value.retryable


def test_other_strategy_name_is_refused_even_with_equal_schema() -> None:
    with pytest.raises(StateMismatchError, match="this host runs 'other'"):
        decode_state(Other(), encode_state(Box(), {}, {}))


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (Action.UP, (Action.UP, "")),
        ((Action.DOWN, "why"), (Action.DOWN, "why")),
    ],
    ids=["bare-action", "action-with-reason"],
)
def test_normalize_outcome(outcome: object, expected: tuple[Action, str]) -> None:
    assert normalize_outcome(outcome) == expected


@pytest.mark.parametrize(
    "outcome",
    [None, "UP", (Action.UP,), (Action.UP, 3), ("UP", "x"), (Action.UP, "x", "y")],
    ids=["none", "string", "one-tuple", "non-string-reason", "string-action", "three-tuple"],
)
def test_normalize_outcome_rejects_anything_else(outcome: object) -> None:
    with pytest.raises(TypeError, match="expected an Action or an"):
        normalize_outcome(outcome)


@pytest.mark.parametrize(
    "module",
    [
        "baton.strategy.sdk",
        "baton.strategy.core.state",
        "baton.strategy.core.strategy",
        "baton.strategy.core.runtime",
        "baton.strategy.host",
        "baton.strategy.loader",
        "baton.strategy.cli",
        "baton.strategy.examples._momentum",
        "baton.strategy.examples.faulty",
        "baton.strategy.examples.reversion_v1",
    ],
)
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0
    assert result.attempted > 0
