"""The state contract: how a strategy's state becomes bytes, a digest, and back.

Encoding: canonical JSON (keys sorted, no whitespace, UTF-8, no NaN/Infinity) of an envelope::

    {"applied_seq": {"BTC/5m": 41, ...}, "format": "baton.state/1",
     "state": <export_state(state)>, "state_schema": 1, "strategy": "momentum"}

The digest is ``"sha256:" + hex`` of exactly those bytes. The envelope carries what the state
means (which strategy, which layout, which evaluations it has seen) but not the code version that
wrote it: two versions sharing a ``state_schema`` produce byte-identical exports of the same state,
so after a handoff without migration, green re-exporting what it imported reproduces blue's digest.

Everything here is pure: no clock, no I/O, no threads.

Speed matters: blue exports on the thread that evaluates, so its ticks wait for the export. The
encoder therefore lets the C JSON encoder do the checking it can (NaN/Infinity, non-JSON types,
cycles) and adds one fast walk for what it cannot (non-string dict keys, which it would silently
stringify); the slow, precise ``check_json_value`` runs only to name the place of an error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any, Generic, NoReturn

from baton.strategy.core.errors import (
    StateDecodeError,
    StateEncodeError,
    StateError,
    StateImportError,
    StateMigrationError,
    StateMismatchError,
    StateSchemaError,
    StateTooLargeError,
)
from baton.strategy.core.strategy import S, Strategy

STATE_FORMAT = "baton.state/1"
#: Default ceiling on an encoded state, enforced on export and on import. The gRPC channel's
#: message limits must allow it (the host sizes its channel from this).
DEFAULT_MAX_STATE_BYTES = 64 * 1024 * 1024

_ENVELOPE_KEYS = frozenset({"applied_seq", "format", "state", "state_schema", "strategy"})


def canonical_json(value: Any) -> bytes:
    """Canonical JSON bytes of an already-checked JSON value.

    >>> canonical_json({"b": [1, 2.5, None], "a": "é"})
    b'{"a":"\\xc3\\xa9","b":[1,2.5,null]}'
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def state_digest(data: bytes) -> str:
    """``"sha256:<hex>"`` of ``data``.

    >>> state_digest(b"{}")
    'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a'
    """
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _where(path: list[str]) -> str:
    return "state" + "".join(path)


def check_json_value(value: Any, path: list[str] | None = None) -> None:
    """Raise ``StateEncodeError`` naming the first place ``value`` is not canonical JSON.

    Non-string dict keys are refused rather than silently stringified: ``{1: x}`` would come
    back as ``{"1": x}`` and the round trip would not be the identity.
    """
    path = [] if path is None else path
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise StateEncodeError(f"{_where(path)}: {value!r} is not allowed in JSON state")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise StateEncodeError(
                    f"{_where(path)}: dict key {key!r} is a {type(key).__name__}; "
                    "state dict keys must be strings"
                )
            path.append(f"[{key!r}]")
            check_json_value(item, path)
            path.pop()
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            path.append(f"[{i}]")
            check_json_value(item, path)
            path.pop()
        return
    raise StateEncodeError(
        f"{_where(path)}: {type(value).__name__} is not JSON "
        "(use dict, list, str, int, float, bool or None)"
    )


def _too_large(what: str, size: int, max_bytes: int) -> NoReturn:
    raise StateTooLargeError(
        f"{what} is {size} bytes, over the limit of {max_bytes} bytes (max_state_bytes)"
    )


_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})
_SEQUENCE_TYPES = frozenset({list, tuple})
#: Below this many items a plain loop beats building a set of the items' types.
_BULK_ITEMS = 16


def _encode(value: Any) -> bytes:
    """``canonical_json`` without the encoder's cycle bookkeeping: a cycle (or nesting too deep)
    raises ``RecursionError`` instead of ``ValueError``, for a fifth less time on large states."""
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        check_circular=False,
    ).encode("utf-8")


def _keys_are_strings(value: Any) -> bool:
    """Whether every dict key in ``value`` (already accepted by the JSON encoder) is a ``str``.

    The JSON encoder turns ``int``/``float``/``bool``/``None`` keys into strings without a word;
    this walk catches them. Iterative (no recursion limit) and mostly in C: a list whose items are
    all scalars, or all short sequences of scalars (a window of ``[time, price]`` pairs), is
    cleared with one pass over its items' types. Must only see acyclic values (the encoder ran
    first and refuses cycles).

    >>> _keys_are_strings({"a": [[1, 2.5], [3, None]], "b": {"c": (True, "x")}})
    True
    >>> _keys_are_strings({"a": [{"b": {1: "x"}}]})
    False
    """
    stack = [value]
    pop, push = stack.pop, stack.append
    scalars = _SCALAR_TYPES
    while stack:
        current = pop()
        items: Iterable[Any]
        if isinstance(current, dict):
            for key in current:
                if type(key) is not str and not isinstance(key, str):
                    return False
            items = current.values()
        elif isinstance(current, list | tuple):
            items = current
        else:
            continue  # a scalar of a subclassed type (IntEnum, ...): the encoder accepted it
        if len(current) > _BULK_ITEMS:
            types = set(map(type, items))
            if types <= scalars:
                continue
            if types <= _SEQUENCE_TYPES and scalars.issuperset(
                map(type, chain.from_iterable(items))
            ):
                continue
        for item in items:
            if type(item) not in scalars:
                push(item)
    return True


def _encode_error(exported: dict[str, Any], cause: str) -> StateEncodeError:
    """The error for an export the fast path refused, naming the place when it can be found."""
    try:
        check_json_value(exported)
    except StateEncodeError as exc:
        return exc
    except RecursionError:
        pass  # a cycle: the precise walk cannot find its place either
    return StateEncodeError(f"state is not canonical JSON: {cause}")


def encode_state(
    strategy: Strategy[S],
    state: S,
    applied_seq: Mapping[str, int],
    *,
    max_bytes: int = DEFAULT_MAX_STATE_BYTES,
) -> bytes:
    """The canonical bytes of ``state`` (via ``strategy.export_state``) and ``applied_seq``.

    Raises ``StateEncodeError`` when the export is not JSON (or ``export_state`` raised) and
    ``StateTooLargeError`` over ``max_bytes``.
    """
    try:
        exported = strategy.export_state(state)
    except Exception as exc:
        raise StateEncodeError(f"export_state raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(exported, dict):
        raise StateEncodeError(
            f"export_state returned a {type(exported).__name__}; it must return a dict"
        )
    envelope = {
        "applied_seq": dict(applied_seq),
        "format": STATE_FORMAT,
        "state": exported,
        "state_schema": strategy.state_schema,
        "strategy": strategy.name,
    }
    try:
        data = _encode(envelope)
    except RecursionError as exc:
        raise StateEncodeError("state is nested too deeply (or is circular) to encode") from exc
    except (TypeError, ValueError) as exc:
        raise _encode_error(exported, str(exc)) from exc
    if not _keys_are_strings(exported):
        raise _encode_error(exported, "a dict key is not a string")
    if len(data) > max_bytes:
        _too_large("encoded state", len(data), max_bytes)
    return data


@dataclass(frozen=True, slots=True)
class DecodedState(Generic[S]):
    """A state imported from bytes: the strategy's object, what it has seen, where it came from."""

    state: S
    applied_seq: dict[str, int]
    from_schema: int
    to_schema: int

    @property
    def migrated(self) -> bool:
        return self.from_schema != self.to_schema


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not allowed in state")


def _parse_envelope(data: bytes, max_bytes: int) -> dict[str, Any]:
    if len(data) > max_bytes:
        _too_large("received state", len(data), max_bytes)
    try:
        envelope = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise StateDecodeError(f"state bytes are not canonical JSON: {exc}") from exc
    if not isinstance(envelope, dict):
        raise StateDecodeError("state bytes are not a state envelope (expected a JSON object)")
    if envelope.get("format") != STATE_FORMAT:
        raise StateDecodeError(
            f"unsupported state format {envelope.get('format')!r} (expected {STATE_FORMAT!r})"
        )
    missing = sorted(_ENVELOPE_KEYS - envelope.keys())
    if missing:
        raise StateDecodeError(f"state envelope is missing {', '.join(missing)}")
    return envelope


def _applied_seq(raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in raw.items()
    ):
        raise StateDecodeError(
            "state envelope applied_seq must map slot ids to non-negative integers"
        )
    return dict(raw)


def _migrate(strategy: Strategy[Any], payload: dict[str, Any], schema: int) -> dict[str, Any]:
    """``strategy.migrate(payload, schema)`` with every failure turned into a ``StateError``."""
    try:
        migrated = strategy.migrate(payload, schema)
    except StateError:
        raise  # the default's StateSchemaError ("no migration"), or the author's own choice
    except NotImplementedError as exc:
        detail = f": {exc}" if str(exc) else ""
        raise StateSchemaError(
            f"no migration from schema {schema} to {strategy.state_schema} in strategy "
            f"{strategy.name!r} {strategy.version}{detail}"
        ) from exc
    except Exception as exc:
        raise StateMigrationError(
            f"migration of {strategy.name!r} state from state_schema {schema} to "
            f"{strategy.state_schema} failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(migrated, dict):
        raise StateMigrationError(
            f"migrate returned a {type(migrated).__name__}; it must return a dict"
        )
    return migrated


def decode_state(
    strategy: Strategy[S], data: bytes, *, max_bytes: int = DEFAULT_MAX_STATE_BYTES
) -> DecodedState[S]:
    """The strategy's state object from canonical bytes, migrating another schema first.

    ``strategy.migrate(data, from_schema)`` runs whenever the snapshot's ``state_schema`` is
    not this code's, older or newer.

    Raises a ``StateError`` subclass with a message saying what is wrong; never returns a
    half-imported state (the caller keeps its previous one).
    """
    envelope = _parse_envelope(data, max_bytes)
    if envelope["strategy"] != strategy.name:
        raise StateMismatchError(
            f"snapshot is state of strategy {envelope['strategy']!r}; "
            f"this host runs {strategy.name!r}"
        )
    schema = envelope["state_schema"]
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise StateDecodeError(f"state envelope state_schema must be an integer >= 1: {schema!r}")
    applied = _applied_seq(envelope["applied_seq"])
    payload = envelope["state"]
    if not isinstance(payload, dict):
        raise StateDecodeError("state envelope state must be a JSON object")
    if schema != strategy.state_schema:
        payload = _migrate(strategy, payload, schema)
    try:
        state = strategy.import_state(payload)
    except Exception as exc:
        raise StateImportError(
            f"import_state of {strategy.name!r} {strategy.version} raised "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return DecodedState(
        state=state, applied_seq=applied, from_schema=schema, to_schema=strategy.state_schema
    )
