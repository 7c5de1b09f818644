"""The simulator's wire protocol as pure functions: stream names, URLs, control messages,
replies, events and REST parameters, as Binance defines them."""

from __future__ import annotations

import doctest
import json
from typing import Any

import pytest

from baton.exchange_sim.core import candles, clock, faults, prices, protocol
from baton.exchange_sim.core.candles import Kline
from baton.exchange_sim.core.prices import Bar
from baton.exchange_sim.core.protocol import (
    ControlFailure,
    ControlRequest,
    ErrorCode,
    HttpRejection,
    KlinesQuery,
    Method,
    RateLimiter,
    RestFailure,
    StreamKind,
    WsTarget,
    classify_stream,
    error_reply,
    format_decimal,
    kline_payload,
    parse_control,
    parse_klines_query,
    parse_ws_target,
    rest_row,
    result_reply,
    wrap,
)

SYMBOLS = frozenset({"BTCUSDT", "ETHUSDT", "POLUSDT"})


@pytest.mark.parametrize(
    "module", [protocol, candles, clock, prices, faults], ids=lambda m: m.__name__
)
def test_docstring_examples_hold(module: Any) -> None:
    result = doctest.testmod(module)
    assert result.failed == 0


@pytest.mark.parametrize(
    ("name", "strict", "kind"),
    [
        ("btcusdt@kline_5m", False, StreamKind.KLINE),
        ("polusdt@kline_1M", False, StreamKind.KLINE),
        ("maticusdt@kline_5m", False, StreamKind.SILENT),
        ("maticusdt@kline_5m", True, StreamKind.INVALID),
        ("BTCUSDT@kline_5m", False, StreamKind.SILENT),
        ("btcusdt@kline_7m", False, StreamKind.SILENT),
        ("btcusdt@trade", False, StreamKind.SILENT),
        ("btcusdt@kline_1m@+08:00", False, StreamKind.SILENT),
        ("!miniTicker@arr", False, StreamKind.SILENT),
        ("btcusdt@kline_5m.b10", False, StreamKind.INVALID),
        ("btc usdt@kline_5m", False, StreamKind.INVALID),
        ("btcusdt", False, StreamKind.INVALID),
        ("", False, StreamKind.INVALID),
        (42, False, StreamKind.INVALID),
    ],
    ids=[
        "a listed symbol's kline stream carries data",
        "monthly klines are a kline stream too",
        "a delisted symbol is accepted and silent, as on Binance",
        "strict mode refuses a delisted symbol",
        "upper-case symbols are well-formed but never carry data",
        "an interval Binance does not have is silent",
        "other stream types are accepted, the simulator publishes none",
        "a timezone-shifted kline stream is accepted and silent",
        "all-market streams are well-formed",
        "a dotted suffix is malformed",
        "a space is malformed",
        "a name without @type is malformed",
        "an empty name is malformed",
        "a number is not a stream name",
    ],
)
def test_stream_names_are_classified_like_binance(
    name: object, strict: bool, kind: StreamKind
) -> None:
    assert classify_stream(name, SYMBOLS, strict=strict).kind is kind


def test_a_kline_stream_knows_its_symbol_and_interval() -> None:
    ref = classify_stream("ethusdt@kline_15m", SYMBOLS)
    assert (ref.symbol, ref.interval) == ("ETHUSDT", "15m")


@pytest.mark.parametrize(
    ("path", "query", "expected"),
    [
        ("/ws", "", (False, [])),
        ("/ws/", "", (False, [])),
        ("/ws/btcusdt@kline_1m", "", (False, ["btcusdt@kline_1m"])),
        (
            "/ws/btcusdt@kline_1m/ethusdt@kline_1m",
            "",
            (False, ["btcusdt@kline_1m", "ethusdt@kline_1m"]),
        ),
        (
            "/stream",
            "streams=btcusdt@kline_1m/ethusdt@kline_5m",
            (True, ["btcusdt@kline_1m", "ethusdt@kline_5m"]),
        ),
        ("/stream", "", (True, [])),
        ("/stream", "streams=btcusdt@kline_1m/btcusdt@kline_1m", (True, ["btcusdt@kline_1m"])),
        ("/stream", "streams=maticusdt@kline_5m", (True, ["maticusdt@kline_5m"])),
        ("/stream", "streams=btcusdt@kline_1m/bad!name", 400),
        ("/ws/btcusdt@kline_5m.b10", "", 400),
        ("/stream", "streams=a@b/c@d/e@f", 400),
        ("/", "", None),
        ("/api/v3/klines", "", None),
    ],
    ids=[
        "raw endpoint without streams (SUBSCRIBE later)",
        "raw endpoint with a trailing slash",
        "raw endpoint with one stream",
        "raw endpoint with several streams",
        "combined endpoint",
        "combined endpoint without streams",
        "repeated streams count once",
        "a delisted symbol connects (and stays silent)",
        "a malformed stream fails the handshake with HTTP 400",
        "a malformed raw stream fails the handshake with HTTP 400",
        "more streams than the connection limit fail with HTTP 400",
        "the root is not a stream endpoint",
        "REST paths are not stream endpoints",
    ],
)
def test_connection_paths(path: str, query: str, expected: object) -> None:
    target = parse_ws_target(path, query, SYMBOLS, max_streams=2)
    if expected is None:
        assert target is None
    elif expected == 400:
        assert isinstance(target, HttpRejection)
        assert target.status == 400
    else:
        assert isinstance(target, WsTarget)
        assert (target.combined, [s.name for s in target.streams]) == expected


def test_strict_mode_refuses_an_unknown_symbol_at_connect() -> None:
    target = parse_ws_target("/stream", "streams=maticusdt@kline_5m", SYMBOLS, strict=True)
    assert isinstance(target, HttpRejection)
    assert target.status == 400


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            '{"method":"SUBSCRIBE","params":["btcusdt@kline_1m","x@y"],"id":1}',
            ControlRequest(Method.SUBSCRIBE, 1, ("btcusdt@kline_1m", "x@y")),
        ),
        (
            '{"method":"UNSUBSCRIBE","params":["btcusdt@kline_1m"],"id":"a-b_C9"}',
            ControlRequest(Method.UNSUBSCRIBE, "a-b_C9", ("btcusdt@kline_1m",)),
        ),
        ('{"method":"LIST_SUBSCRIPTIONS","id":3}', ControlRequest(Method.LIST_SUBSCRIPTIONS, 3)),
        (
            '{"method":"LIST_SUBSCRIPTIONS","id":null}',
            ControlRequest(Method.LIST_SUBSCRIPTIONS, None),
        ),
        (
            '{"method":"SET_PROPERTY","params":["combined",true],"id":5}',
            ControlRequest(Method.SET_PROPERTY, 5, ("combined", True)),
        ),
        (
            '{"method":"GET_PROPERTY","params":["combined"],"id":2}',
            ControlRequest(Method.GET_PROPERTY, 2, ("combined",)),
        ),
        (
            '{"method":"LIST_SUBSCRIPTIONS","id":9223372036854775807}',
            ControlRequest(Method.LIST_SUBSCRIPTIONS, 2**63 - 1),
        ),
        (
            '{"method":"LIST_SUBSCRIPTIONS","id":-5}',
            ControlRequest(Method.LIST_SUBSCRIPTIONS, -5),
        ),
        (
            '{"method":"LIST_SUBSCRIPTIONS","id":"123456789012345678901234567890123456"}',
            ControlRequest(Method.LIST_SUBSCRIPTIONS, "123456789012345678901234567890123456"),
        ),
        ('{"method":"SUBSCRIBE","params":', (None, ErrorCode.INVALID_JSON)),
        (b"\xff\xfe", (None, ErrorCode.INVALID_JSON)),
        ('["SUBSCRIBE"]', (None, ErrorCode.INVALID_REQUEST)),
        ('{"params":[],"id":1}', (None, ErrorCode.INVALID_REQUEST)),
        ('{"method":"PING","id":1}', (None, ErrorCode.INVALID_REQUEST)),
        ('{"method":"LIST_SUBSCRIPTIONS"}', (None, ErrorCode.INVALID_REQUEST)),
        ('{"method":"LIST_SUBSCRIPTIONS","id":1.5}', (None, ErrorCode.INVALID_REQUEST)),
        ('{"method":"LIST_SUBSCRIPTIONS","id":true}', (None, ErrorCode.INVALID_REQUEST)),
        (
            '{"method":"LIST_SUBSCRIPTIONS","id":9223372036854775808}',
            (None, ErrorCode.INVALID_REQUEST),
        ),
        (
            '{"method":"LIST_SUBSCRIPTIONS","id":"1234567890123456789012345678901234567"}',
            (None, ErrorCode.INVALID_REQUEST),
        ),
        ('{"method":"LIST_SUBSCRIPTIONS","id":"a b"}', (None, ErrorCode.INVALID_REQUEST)),
        (
            '{"method":"SUBSCRIBE","params":"btcusdt@kline_1m","id":1}',
            (None, ErrorCode.INVALID_REQUEST),
        ),
        ('{"method":"SUBSCRIBE","params":[1],"id":1}', (None, ErrorCode.INVALID_REQUEST)),
        ('{"method":"LIST_SUBSCRIPTIONS","params":["x"],"id":4}', (4, ErrorCode.INVALID_REQUEST)),
        (
            '{"method":"SET_PROPERTY","params":["speed",true],"id":6}',
            (6, ErrorCode.UNKNOWN_PROPERTY),
        ),
        (
            '{"method":"SET_PROPERTY","params":["combined","yes"],"id":7}',
            (7, ErrorCode.INVALID_VALUE_TYPE),
        ),
        ('{"method":"SET_PROPERTY","params":[1,true],"id":8}', (8, ErrorCode.INVALID_REQUEST)),
        (
            '{"method":"GET_PROPERTY","params":["combined","x"],"id":9}',
            (9, ErrorCode.INVALID_REQUEST),
        ),
        ('{"method":"GET_PROPERTY","params":[],"id":10}', (10, ErrorCode.INVALID_REQUEST)),
    ],
    ids=[
        "subscribe",
        "unsubscribe with a string id",
        "list subscriptions",
        "a null id is allowed",
        "set the combined property",
        "get the combined property",
        "the largest int64 id",
        "negative ids are int64 too",
        "a 36-character string id",
        "invalid JSON: code 3, id null",
        "bytes that are not UTF-8: code 3",
        "not an object: code 2, id null",
        "missing method: code 2, id null",
        "unknown method: code 2, id null",
        "missing id: code 2, id null",
        "a float id is refused",
        "a boolean id is refused",
        "an id beyond int64 is refused",
        "a 37-character string id is refused",
        "a string id with a space is refused",
        "params must be an array",
        "stream names must be strings",
        "list takes no params: code 2, id echoed",
        "unknown property: code 0",
        "a non-boolean property value: code 1",
        "a property name must be a string",
        "get property with too many params",
        "get property without a name",
    ],
)
def test_control_messages(message: str | bytes, expected: object) -> None:
    got = parse_control(message)
    if isinstance(expected, ControlRequest):
        assert got == expected
    else:
        assert isinstance(got, ControlFailure)
        assert (got.id, got.code) == expected


def test_replies_are_compact_json_like_binance() -> None:
    assert result_reply(1) == '{"result":null,"id":1}'
    assert result_reply("x", ["btcusdt@kline_1m"]) == '{"result":["btcusdt@kline_1m"],"id":"x"}'
    assert (
        error_reply(None, ErrorCode.INVALID_JSON, "Invalid JSON: x")
        == '{"error":{"code":3,"msg":"Invalid JSON: x"},"id":null}'
    )


@pytest.mark.parametrize(
    ("value", "decimals", "text"),
    [
        (1650010, 2, "16500.10000000"),
        (0, 2, "0.00000000"),
        (7, 8, "0.00000007"),
        (5, 0, "5.00000000"),
        (123456789012, 11, "1.23456789"),
        (123456789500, 11, "1.23456790"),
    ],
    ids=["cents", "zero", "satoshis", "whole units", "extra decimals round down", "half rounds up"],
)
def test_decimals_are_printed_with_eight_places(value: int, decimals: int, text: str) -> None:
    assert format_decimal(value, decimals) == text


KLINE = Kline(
    symbol="BTCUSDT",
    interval="5m",
    open_time_ms=1_672_515_600_000,
    close_time_ms=1_672_515_899_999,
    bar=Bar(
        1650010,
        1651200,
        1649800,
        1651000,
        1250000,
        2063001234567,
        610000,
        1007002345678,
        100,
        100,
        199,
    ),
    price_decimals=2,
    qty_decimals=5,
    closed=True,
)


def test_a_kline_event_has_every_binance_field_in_order() -> None:
    ev = kline_payload(KLINE, event_ms=1_672_515_900_001)
    assert list(ev) == ["e", "E", "s", "k"]
    assert list(ev["k"]) == list("tTsifLochlvnxqVQB")
    k = ev["k"]
    assert (ev["e"], ev["E"], ev["s"]) == ("kline", 1_672_515_900_001, "BTCUSDT")
    assert (k["t"], k["T"], k["i"], k["f"], k["L"], k["n"], k["x"]) == (
        1_672_515_600_000,
        1_672_515_899_999,
        "5m",
        100,
        199,
        100,
        True,
    )
    assert (k["o"], k["h"], k["l"], k["c"], k["v"]) == (
        "16500.10000000",
        "16512.00000000",
        "16498.00000000",
        "16510.00000000",
        "12.50000000",
    )
    assert k["q"] == "206300.12345670"
    assert k["B"] == "0"
    assert all(isinstance(k[f], str) for f in "ochlvqVQB")


def test_combined_connections_wrap_the_event() -> None:
    ev = kline_payload(KLINE, 1)
    assert wrap("btcusdt@kline_5m", ev, combined=True) == {"stream": "btcusdt@kline_5m", "data": ev}
    assert wrap("btcusdt@kline_5m", ev, combined=False) == ev


def test_a_rest_row_has_twelve_fields_numbers_as_strings() -> None:
    row = rest_row(KLINE)
    assert row == [
        1_672_515_600_000,
        "16500.10000000",
        "16512.00000000",
        "16498.00000000",
        "16510.00000000",
        "12.50000000",
        1_672_515_899_999,
        "206300.12345670",
        100,
        "6.10000000",
        "100700.23456780",
        "0",
    ]
    json.dumps(row)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("symbol=BTCUSDT&interval=5m", KlinesQuery("BTCUSDT", "5m", None, None, 500)),
        (
            "symbol=BTCUSDT&interval=1M&startTime=5&endTime=9&limit=7",
            KlinesQuery("BTCUSDT", "1M", 5, 9, 7),
        ),
        ("symbol=BTCUSDT&interval=5m&limit=5000", KlinesQuery("BTCUSDT", "5m", None, None, 1000)),
        ("symbol=MATICUSDT&interval=5m", (-1121, "Invalid symbol.")),
        ("symbol=BTCUSDT&interval=7m", (-1120, "Invalid interval.")),
        (
            "interval=5m",
            (-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."),
        ),
        ("symbol=&interval=5m", (-1102, None)),
        (
            "symbol=BTCUSDT",
            (-1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed."),
        ),
        ("symbol=btcusdt&interval=5m", (-1100, None)),
        ("symbol=BTCUSDT&interval=5m&limit=ten", (-1100, None)),
        ("symbol=BTCUSDT&interval=5m&startTime=-1", (-1100, None)),
        (
            "symbol=BTCUSDT&interval=5m&limit=0",
            (-1130, "Data sent for parameter 'limit' is not valid."),
        ),
        ("symbol=BTCUSDT&interval=5m&startTime=10&endTime=9", (-1102, None)),
        ("symbol=BTCUSDT&interval=5m&symbol=ETHUSDT", (-1101, None)),
        ("symbol=BTCUSDT&interval=5m&timeZone=8", (-1104, None)),
    ],
    ids=[
        "defaults: the 500 most recent",
        "all parameters",
        "an oversized limit is capped at 1000",
        "unknown symbol (MATIC is POL now): -1121",
        "unknown interval: -1120",
        "missing symbol: -1102",
        "empty symbol: -1102",
        "missing interval: -1102",
        "lower-case symbol: illegal characters",
        "non-numeric limit: illegal characters",
        "negative start: illegal characters",
        "limit 0 is not valid",
        "start after end",
        "a repeated parameter",
        "a parameter the endpoint does not read",
    ],
)
def test_rest_klines_parameters(query: str, expected: object) -> None:
    got = parse_klines_query(query, SYMBOLS)
    if isinstance(expected, KlinesQuery):
        assert got == expected
    else:
        assert isinstance(got, RestFailure)
        assert got.status == 400
        assert isinstance(expected, tuple)
        code, msg = expected
        assert got.code == code
        if msg is not None:
            assert got.msg == msg
        assert json.loads(got.body()) == {"code": got.code, "msg": got.msg}


@pytest.mark.parametrize(
    ("times", "allowed"),
    [
        ([0.0, 0.1, 0.2, 0.3, 0.4], [True] * 5),
        ([0.0, 0.1, 0.2, 0.3, 0.4, 0.5], [True] * 5 + [False]),
        ([0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2], [True] * 7),
        ([0.0, 0.0, 0.0, 0.0, 0.0, 1.0], [True] * 5 + [True]),
    ],
    ids=[
        "five messages in a second are fine",
        "the sixth within a second is over the limit",
        "a steady five per second is fine",
        "a burst ages out after a second",
    ],
)
def test_incoming_message_rate_limit(times: list[float], allowed: list[bool]) -> None:
    limiter = RateLimiter(5, 1.0)
    assert [limiter.hit(t) for t in times] == allowed
