"""The gateway's Binance parsing: frames to typed events (never an exception), REST klines,
URLs and how streams are spread over connections."""

from __future__ import annotations

import copy
import doctest
import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.gateway.core import binance
from baton.gateway.core.binance import (
    ControlError,
    ControlReply,
    KlineEvent,
    Malformed,
    RestError,
    ServerShutdown,
    combined_stream_url,
    klines_url,
    parse_frame,
    parse_klines_response,
    plan_connection,
    shard_streams,
    subscribe_message,
)
from baton.model import Candle

KLINE: dict[str, Any] = {
    "e": "kline",
    "E": 1672515782136,
    "s": "BTCUSDT",
    "k": {
        "t": 1672515600000,
        "T": 1672515899999,
        "s": "BTCUSDT",
        "i": "5m",
        "f": 100,
        "L": 200,
        "o": "16500.10",
        "c": "16510.00",
        "h": "16512.00",
        "l": "16498.00",
        "v": "12.5",
        "n": 101,
        "x": False,
        "q": "206300.1",
        "V": "6.1",
        "Q": "100700.2",
        "B": "0",
    },
}
CANDLE = Candle(
    "BTCUSDT", "5m", 1672515600000, 1672515899999, 16500.10, 16512.0, 16498.0, 16510.0, 12.5, 101
)


def test_docstring_examples_hold() -> None:
    assert doctest.testmod(binance).failed == 0


def combined(data: Any, stream: str = "btcusdt@kline_5m") -> str:
    return json.dumps({"stream": stream, "data": data})


def kline_with(**changes: Any) -> dict[str, Any]:
    ev = copy.deepcopy(KLINE)
    for key, value in changes.items():
        if value is _DELETE:
            ev["k"].pop(key)
        else:
            ev["k"][key] = value
    return ev


_DELETE = object()


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (combined(KLINE), KlineEvent("btcusdt@kline_5m", 1672515782136, CANDLE)),
        (json.dumps(KLINE), KlineEvent("btcusdt@kline_5m", 1672515782136, CANDLE)),
        (
            combined(kline_with(x=True)),
            KlineEvent("btcusdt@kline_5m", 1672515782136, replace(CANDLE, closed=True)),
        ),
        ('{"result":null,"id":1}', ControlReply(1, None)),
        ('{"result":["btcusdt@kline_5m"],"id":"x"}', ControlReply("x", ["btcusdt@kline_5m"])),
        (
            '{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":null}',
            ControlError(None, 2, "Invalid request: invalid stream"),
        ),
        ('{"code":3,"msg":"Invalid JSON"}', ControlError(None, 3, "Invalid JSON")),
        ('{"e":"serverShutdown","E":1700000000000}', ServerShutdown(1700000000000)),
        (
            '{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":5}}',
            ServerShutdown(5),
        ),
    ],
    ids=[
        "combined kline",
        "raw kline",
        "closing frame",
        "subscribe acknowledged",
        "subscription list",
        "error reply",
        "unwrapped error reply",
        "server shutdown (raw)",
        "server shutdown (combined)",
    ],
)
def test_frames_become_typed_events(frame: str, expected: object) -> None:
    assert parse_frame(frame) == expected


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ('{"stream":"btcusdt@kline_5m","da', "invalid JSON"),
        ("<html>502 Bad Gateway</html>", "invalid JSON"),
        (b"\xff\xfe\x00", "not UTF-8"),
        ("[1,2,3]", "expected a JSON object"),
        ("null", "expected a JSON object"),
        ('{"stream":"btcusdt@kline_5m"}', "combined frame needs"),
        ('{"hello":"world"}', "neither an event"),
        (combined({"e": "kline", "E": 1, "s": "BTCUSDT"}), "without a 'k'"),
        (combined(kline_with(c=_DELETE)), "field 'c'"),
        (combined(kline_with(o=16500.1)), "field 'o' must be a decimal string"),
        (combined(kline_with(h="not-a-price")), "field 'h' is not a number"),
        (combined(kline_with(l="NaN")), "finite"),
        (combined(kline_with(v="-1")), ">= 0"),
        (combined(kline_with(t="1672515600000")), "field 't' must be an integer"),
        (combined(kline_with(n=True)), "field 'n' must be an integer"),
        (combined(kline_with(x="false")), "field 'x' must be a boolean"),
        (combined(kline_with(T=1672515899998)), "do not fit interval"),
        (combined(kline_with(t=1672515600001, T=1672515900000)), "do not fit interval"),
        (combined(kline_with(i="1w")), "unsupported interval"),
        (combined(kline_with(s="ETHUSDT")), "differs from event symbol"),
        (combined(kline_with(h="16505.00")), "prices out of order"),
        (combined(KLINE, stream="ethusdt@kline_5m"), "carries a kline of"),
        (combined({"e": "24hrTicker", "E": 1}), "unexpected event type"),
        ('{"e":"serverShutdown"}', "field 'E'"),
        ('{"result":null,"id":1.5}', "reply id"),
        ('{"error":"boom","id":1}', "'error' must be an object"),
    ],
    ids=[
        "truncated JSON",
        "an HTML error page",
        "binary garbage",
        "an array",
        "null",
        "combined frame without data",
        "an unknown object",
        "kline without k",
        "missing close price",
        "price as a number",
        "price that is not a number",
        "NaN price",
        "negative volume",
        "open time as a string",
        "trade count as a boolean",
        "closed flag as a string",
        "close time not open + interval - 1",
        "open time off the interval grid",
        "an interval the gateway does not track",
        "kline symbol differs from the event's",
        "high below close",
        "stream name does not match the kline",
        "another event type",
        "server shutdown without a time",
        "reply with a float id",
        "error that is not an object",
    ],
)
def test_malformed_frames_are_reported_not_raised(frame: str | bytes, reason: str) -> None:
    got = parse_frame(frame)
    assert isinstance(got, Malformed)
    assert reason in got.reason
    assert got.raw


@settings(deadline=None)  # a loaded CI machine must not fail a property for being slow
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_parse_frame_never_raises(frame: str | bytes) -> None:
    parse_frame(frame)


@settings(deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from([*list("eEskxtTio"), "stream", "data"]), children, max_size=6
            )
        ),
        max_leaves=20,
    )
)
def test_parse_frame_never_raises_on_arbitrary_json(obj: object) -> None:
    parse_frame(json.dumps(obj))


ROW = [
    1672515600000,
    "16500.10",
    "16512.00",
    "16498.00",
    "16510.00",
    "12.5",
    1672515899999,
    "206300.1",
    101,
    "6.1",
    "100700.2",
    "0",
]


def test_rest_rows_become_candles() -> None:
    body = json.dumps([ROW]).encode()
    assert parse_klines_response(200, body, {}, "BTCUSDT", "5m") == [CANDLE]


@pytest.mark.parametrize(
    ("status", "body", "headers", "retryable", "code", "retry_after"),
    [
        (400, b'{"code":-1121,"msg":"Invalid symbol."}', {}, False, -1121, None),
        (400, b'{"code":-1120,"msg":"Invalid interval."}', {}, False, -1120, None),
        (
            429,
            b'{"code":-1003,"msg":"Too much request weight used"}',
            {"Retry-After": "7"},
            True,
            -1003,
            7.0,
        ),
        (418, b'{"code":-1003,"msg":"banned"}', {"retry-after": "60"}, True, -1003, 60.0),
        (500, b'{"code":-1000,"msg":"An unknown error occurred"}', {}, True, -1000, None),
        (503, b"<html>Service Unavailable</html>", {}, True, None, None),
        (200, b"{not json", {}, True, None, None),
        (200, b'{"code":0}', {}, True, None, None),
        (200, json.dumps([ROW[:5]]).encode(), {}, True, None, None),
        (200, json.dumps([[*ROW[:6], 1672515899998, *ROW[7:]]]).encode(), {}, True, None, None),
        (200, json.dumps([[ROW[0], 1.5, *ROW[2:]]]).encode(), {}, True, None, None),
    ],
    ids=[
        "unknown symbol: permanent",
        "unknown interval: permanent",
        "rate limited: retry after the hint",
        "banned: retry after the hint",
        "server error: retry",
        "a proxy's error page: retry",
        "a body that is not JSON: retry",
        "not an array: retry",
        "a short row: retry",
        "a row whose times do not fit the interval: retry",
        "a price as a number: retry",
    ],
)
def test_rest_errors(
    status: int,
    body: bytes,
    headers: dict[str, str],
    retryable: bool,
    code: int | None,
    retry_after: float | None,
) -> None:
    with pytest.raises(RestError) as info:
        parse_klines_response(status, body, headers, "BTCUSDT", "5m")
    err = info.value
    assert (err.retryable, err.code, err.retry_after_s) == (retryable, code, retry_after)
    assert "BTCUSDT 5m" in str(err)


def test_urls() -> None:
    assert (
        combined_stream_url("wss://stream.binance.com:9443/", ["a@kline_1m", "b@kline_1m"])
        == "wss://stream.binance.com:9443/stream?streams=a@kline_1m/b@kline_1m"
    )
    assert (
        klines_url("http://h:1/", "POLUSDT", "15m", end_ms=9)
        == "http://h:1/api/v3/klines?symbol=POLUSDT&interval=15m&endTime=9"
    )
    assert json.loads(subscribe_message(["a", "b"], 3)) == {
        "method": "SUBSCRIBE",
        "params": ["a", "b"],
        "id": 3,
    }


@pytest.mark.parametrize(
    ("count", "per_connection", "sizes"),
    [
        (16, 1024, [16]),
        (1024, 1024, [1024]),
        (1025, 1024, [1024, 1]),
        (5, 2, [2, 2, 1]),
        (0, 1024, []),
    ],
    ids=[
        "the reference 16 streams on one connection",
        "exactly the limit",
        "one over the limit opens a second connection",
        "a small limit",
        "no streams, no connection",
    ],
)
def test_streams_are_sharded_under_the_limit(
    count: int, per_connection: int, sizes: list[int]
) -> None:
    names = [f"s{i}@kline_1m" for i in range(count)]
    shards = shard_streams(names, per_connection)
    assert [len(s) for s in shards] == sizes
    assert [n for s in shards for n in s] == names


def test_long_stream_lists_go_partly_by_subscribe() -> None:
    names = [f"sym{i:04d}usdt@kline_15m" for i in range(1024)]
    plan = plan_connection(names)
    url_len = len(combined_stream_url("wss://stream.binance.com:9443", plan.url_streams))
    assert url_len < 2_100
    assert list(plan.url_streams) + [n for b in plan.subscribe_batches for n in b] == names
    assert all(len(subscribe_message(b, 2**31)) < 4_096 for b in plan.subscribe_batches)


def test_short_stream_lists_fit_in_the_url() -> None:
    names = [
        f"{s}usdt@kline_{i}"
        for s in ("btc", "eth", "sol", "xrp", "doge", "avax", "link", "pol")
        for i in ("5m", "15m")
    ]
    plan = plan_connection(names)
    assert plan.url_streams == tuple(names)
    assert plan.subscribe_batches == ()
