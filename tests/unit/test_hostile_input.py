"""Hostile input, property-based: every parser either returns a value or raises its own clear
error. Never another exception (a crash) and never silent acceptance of a broken value.

Parsers covered: exchange WebSocket frames, REST klines bodies, strategy state blobs
(truncated, wrong schema, huge, random), gRPC decisions/fills with out-of-range enum values, and
StrategyVersion specs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from baton.gateway.core.binance import (
    ControlError,
    ControlReply,
    KlineEvent,
    Malformed,
    RestError,
    ServerShutdown,
    parse_frame,
    parse_klines_response,
)
from baton.operator.core.spec import SpecError, StrategyVersionSpec, parse_spec
from baton.strategy import StateError, decode_state, encode_state
from baton.strategy.examples.momentum_v1 import MomentumV1
from baton.v1 import gateway_pb2 as gw
from baton.wire import WireError, decision_from_proto

# JSON values of any shape, small enough to generate quickly.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)

FEED_EVENTS = (KlineEvent, ControlReply, ControlError, ServerShutdown, Malformed)
T = TypeVar("T")


def attempt(call: Callable[[], T], error: type[Exception]) -> tuple[T | None, Exception | None]:
    """The value, or the parser's own error; any other exception propagates (a crash)."""
    try:
        return call(), None
    except error as exc:
        return None, exc


OPEN_MS = 1_700_000_040_000  # a minute boundary


def _kline(**overrides: Any) -> dict[str, Any]:
    k: dict[str, Any] = {
        "t": OPEN_MS,
        "T": OPEN_MS + 59_999,
        "s": "BTCUSDT",
        "i": "1m",
        "f": 100,
        "L": 200,
        "o": "100.0",
        "c": "101.0",
        "h": "102.0",
        "l": "99.0",
        "v": "5.5",
        "n": 12,
        "x": False,
        "q": "550.0",
        "V": "2.0",
        "Q": "200.0",
        "B": "0",
    }
    k.update(overrides)
    return {"e": "kline", "E": OPEN_MS + 500, "s": "BTCUSDT", "k": k}


def test_the_base_kline_is_valid() -> None:
    """Guards the property below against testing nothing: unchanged, the frame parses."""
    event = parse_frame(json.dumps({"stream": "btcusdt@kline_1m", "data": _kline()}))
    assert isinstance(event, KlineEvent)
    assert (event.candle.open, event.candle.close, event.candle.trades) == (100.0, 101.0, 12)


@given(st.binary(max_size=300) | st.text(max_size=300))
def test_frame_bytes_never_crash(raw: bytes | str) -> None:
    assert isinstance(parse_frame(raw), FEED_EVENTS)


@given(json_values)
def test_frame_json_never_crashes(value: Any) -> None:
    assert isinstance(parse_frame(json.dumps(value)), FEED_EVENTS)


@given(
    st.sampled_from(["t", "T", "s", "i", "f", "L", "o", "c", "h", "l", "v", "n", "x", "q"]),
    json_values,
)
def test_kline_with_one_field_replaced_is_parsed_right_or_rejected(key: str, value: Any) -> None:
    event = parse_frame(json.dumps({"stream": "btcusdt@kline_1m", "data": _kline(**{key: value})}))
    if isinstance(event, KlineEvent):
        # Accepted only if the candle is still coherent: ordered prices, times fit the interval.
        c = event.candle
        assert c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high
        assert c.close_time_ms - c.open_time_ms == 59_999
        assert c.open_time_ms % 60_000 == 0
    else:
        assert isinstance(event, Malformed)
        assert event.reason


@given(st.integers(min_value=0, max_value=600), st.binary(max_size=200))
def test_klines_body_never_crashes(status: int, body: bytes) -> None:
    candles, err = attempt(
        lambda: parse_klines_response(status, body, {}, "BTCUSDT", "1m"), RestError
    )
    if err is not None:
        assert str(err)
    else:
        assert status == 200
        assert isinstance(candles, list)


@given(st.lists(json_values, max_size=4))
def test_klines_rows_never_crash(rows: list[Any]) -> None:
    body = json.dumps(rows).encode()
    _, err = attempt(lambda: parse_klines_response(200, body, {}, "BTCUSDT", "1m"), RestError)
    assert err is None or (isinstance(err, RestError) and err.retryable)


def _valid_blob() -> bytes:
    strategy = MomentumV1({})
    return encode_state(strategy, strategy.initial_state(), {"BTC/5m": 3})


@given(st.data())
def test_truncated_state_is_refused(data: st.DataObject) -> None:
    blob = _valid_blob()
    cut = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
    with pytest.raises(StateError, match=r"."):
        decode_state(MomentumV1({}), blob[:cut])


@given(st.binary(max_size=400) | json_values.map(lambda v: json.dumps(v).encode()))
def test_random_state_bytes_are_refused(blob: bytes) -> None:
    with pytest.raises(StateError, match=r"."):
        decode_state(MomentumV1({}), blob)


@given(json_values, st.sampled_from(["strategy", "state_schema", "applied_seq", "state", "format"]))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_state_envelope_with_a_wrong_field_is_refused_or_still_valid(value: Any, key: str) -> None:
    envelope = json.loads(_valid_blob())
    assume(envelope[key] != value)
    envelope[key] = value
    blob = json.dumps(envelope).encode()
    decoded, err = attempt(lambda: decode_state(MomentumV1({}), blob), StateError)
    if decoded is not None:
        # Only a value that still means a valid state may pass.
        assert key in ("applied_seq", "state")
        assert all(isinstance(v, int) and v >= 0 for v in decoded.applied_seq.values())
    else:
        assert str(err)


def test_huge_state_is_refused_before_parsing() -> None:
    with pytest.raises(StateError, match="1024"):
        decode_state(MomentumV1({}), b"{" + b" " * 2048 + b"}", max_bytes=1024)


@given(
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
    st.text(max_size=10),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.integers(min_value=0, max_value=2**64 - 1),
)
def test_decision_enums_out_of_range_are_wire_errors(
    action: int, error: str, seq: int, epoch: int
) -> None:
    m = gw.Decision(slot_id="BTC/5m", seq=seq, epoch=epoch, error=error)
    m.action = action  # type: ignore[assignment]  # proto3 open enums keep unknown numbers
    d, err = attempt(lambda: decision_from_proto(m), WireError)
    if d is None:
        assert "decision.action" in str(err)
    else:
        assert (d.seq, d.epoch) == (seq, epoch)
        assert d.action is not None or d.error


spec_fields = st.fixed_dictionaries(
    {},
    optional={
        "strategy": json_values | st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
        "version": json_values,
        "image": json_values | st.just("baton:dev"),
        "entrypoint": json_values | st.just("a.b:C"),
        "config": json_values,
        "env": json_values,
        "resources": json_values,
        "handoff": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "mode": json_values | st.sampled_from(["StateTransfer", "Swap"]),
                "bakeSeconds": json_values,
                "shadowTicks": json_values,
                "stepTimeoutSeconds": json_values,
                "maxDivergence": json_values,
            },
        ),
        "startup": json_values,
        "deletionPolicy": json_values | st.sampled_from(["Protect", "Allow"]),
    },
)


@given(spec_fields)
def test_any_spec_parses_or_names_the_field(raw: dict[str, Any]) -> None:
    spec, err = attempt(lambda: parse_spec(raw), SpecError)
    if spec is None:
        assert str(err).startswith("spec.")
    else:
        assert isinstance(spec, StrategyVersionSpec)
        assert spec.handoff.bake_s >= 0
        assert spec.handoff.step_timeout_s > 0
        assert spec.handoff.shadow_ticks >= 1
        assert spec.startup.timeout_s > 0
        assert ":" in spec.entrypoint
