"""The Binance Spot market-data wire protocol, server side, as pure functions.

Stream names, connection paths, control messages (SUBSCRIBE & co.) and their replies, kline
events, REST ``/api/v3/klines`` parameters and rows (docs/exchange-protocol.md). No sockets
here: ``server`` feeds text in and sends the returned text out.

Unknown symbols. Binance validates a stream name's *syntax* only: a well-formed name for a
symbol that does not trade (``maticusdt@kline_5m`` since MATIC became POL) is accepted, acked
with ``{"result":null}`` and then silent; REST answers ``-1121 Invalid symbol.``. A malformed
name (``btcusdt@kline_5m.b10``) is refused: HTTP 400 on connect, error code 2 ``Invalid
request: invalid stream`` to a SUBSCRIBE (after which the server closes the connection).
The simulator does the same by default; ``strict_symbols`` treats unknown symbols as malformed
so that a test can make the mistake loud.
"""

from __future__ import annotations

import enum
import json
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from baton.exchange_sim.core.candles import Kline, is_interval

MAX_STREAMS_PER_CONNECTION = 1024
DEFAULT_KLINES_LIMIT = 500
MAX_KLINES_LIMIT = 1000
_INT64 = (-(2**63), 2**63 - 1)

# Syntax only, as Binance checks it: "<symbol>@<type>[@<option>...]" or "!<name>[@<option>]".
_STREAM_RE = re.compile(
    r"^(?:[A-Za-z0-9]{1,32}@[A-Za-z0-9_]{1,48}(?:@[A-Za-z0-9_+:]{1,16}){0,2}"
    r"|![A-Za-z0-9_]{1,48}(?:@[A-Za-z0-9_]{1,16}){0,2})$"
)
_KLINE_RE = re.compile(r"^([a-z0-9]+)@kline_([0-9]{1,2}[smhdwM])$")
_ID_STRING_RE = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
_SYMBOL_RE = re.compile(r"^[A-Z0-9-_.]{1,20}$")
_DIGITS_RE = re.compile(r"^[0-9]{1,20}$")


def encode(obj: object) -> str:
    """Compact JSON, as Binance sends it."""
    return json.dumps(obj, separators=(",", ":"))


# -- stream names --------------------------------------------------------------------------


class StreamKind(enum.Enum):
    KLINE = "kline"  # a kline stream of a listed symbol: data flows
    SILENT = "silent"  # well-formed, but nothing the simulator publishes: accepted, no data
    INVALID = "invalid"  # malformed: refused


@dataclass(frozen=True, slots=True)
class StreamRef:
    name: str
    kind: StreamKind
    symbol: str = ""  # upper case, for KLINE
    interval: str = ""  # for KLINE


def classify_stream(name: object, symbols: frozenset[str], *, strict: bool = False) -> StreamRef:
    """What a stream name means here.

    >>> s = frozenset({"BTCUSDT"})
    >>> classify_stream("btcusdt@kline_5m", s).kind.value
    'kline'
    >>> classify_stream("maticusdt@kline_5m", s).kind.value  # delisted: Binance stays silent
    'silent'
    >>> classify_stream("maticusdt@kline_5m", s, strict=True).kind.value
    'invalid'
    >>> classify_stream("btcusdt@kline_5m.b10", s).kind.value
    'invalid'
    """
    if not isinstance(name, str) or not _STREAM_RE.match(name):
        return StreamRef(str(name), StreamKind.INVALID)
    m = _KLINE_RE.match(name)
    if m and m.group(1).upper() in symbols and is_interval(m.group(2)):
        return StreamRef(name, StreamKind.KLINE, m.group(1).upper(), m.group(2))
    return StreamRef(name, StreamKind.INVALID if strict else StreamKind.SILENT)


@dataclass(frozen=True, slots=True)
class WsTarget:
    """What a WebSocket connection asked for in its URL."""

    combined: bool  # /stream (wrapped payloads) or /ws (raw)
    streams: tuple[StreamRef, ...]


@dataclass(frozen=True, slots=True)
class HttpRejection:
    status: int
    text: str


def parse_ws_target(
    path: str,
    query: str,
    symbols: frozenset[str],
    *,
    strict: bool = False,
    max_streams: int = MAX_STREAMS_PER_CONNECTION,
) -> WsTarget | HttpRejection | None:
    """The target of a WebSocket URL; None when the path is not a stream endpoint.

    >>> t = parse_ws_target("/stream", "streams=btcusdt@kline_1m/btcusdt@kline_5m",
    ...                     frozenset({"BTCUSDT"}))
    >>> t.combined, [s.name for s in t.streams]
    (True, ['btcusdt@kline_1m', 'btcusdt@kline_5m'])
    >>> parse_ws_target("/ws/bad stream", "", frozenset())
    HttpRejection(status=400, text='Invalid request: invalid stream bad stream')
    """
    if path in ("/ws", "/ws/"):
        return WsTarget(combined=False, streams=())
    if path.startswith("/ws/"):
        names = [n for n in path[len("/ws/") :].split("/") if n]
        combined = False
    elif path in ("/stream", "/stream/"):
        raw = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == "streams"]
        names = [n for v in raw for n in v.split("/") if n]
        combined = True
    else:
        return None
    refs: dict[str, StreamRef] = {}
    for name in names:
        ref = classify_stream(name, symbols, strict=strict)
        if ref.kind is StreamKind.INVALID:
            return HttpRejection(400, f"Invalid request: invalid stream {name}")
        refs.setdefault(name, ref)
    if len(refs) > max_streams:
        return HttpRejection(400, f"Invalid request: more than {max_streams} streams")
    return WsTarget(combined=combined, streams=tuple(refs.values()))


# -- control messages ----------------------------------------------------------------------


class Method(enum.Enum):
    SUBSCRIBE = "SUBSCRIBE"
    UNSUBSCRIBE = "UNSUBSCRIBE"
    LIST_SUBSCRIPTIONS = "LIST_SUBSCRIPTIONS"
    SET_PROPERTY = "SET_PROPERTY"
    GET_PROPERTY = "GET_PROPERTY"


class ErrorCode(enum.IntEnum):
    """Error codes of the stream API's control replies."""

    UNKNOWN_PROPERTY = 0
    INVALID_VALUE_TYPE = 1
    INVALID_REQUEST = 2
    INVALID_JSON = 3
    TOO_MANY_SUBSCRIPTIONS = 4


RequestId = int | str | None


@dataclass(frozen=True, slots=True)
class ControlRequest:
    """A well-formed control message. ``params`` hold stream names or a property and value."""

    method: Method
    id: RequestId
    params: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class ControlFailure:
    """A control message that must be answered with an error reply."""

    id: RequestId
    code: ErrorCode
    msg: str


_METHODS_TEXT = ", ".join(f"`{m.value}`" for m in Method)
_PROPERTIES = frozenset({"combined"})


def _valid_id(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return _INT64[0] <= value <= _INT64[1]
    return isinstance(value, str) and bool(_ID_STRING_RE.match(value))


def parse_control(message: str | bytes) -> ControlRequest | ControlFailure:
    """Parse one client message. Never raises: anything wrong becomes a ControlFailure.

    The ``id`` is echoed only when the request itself could be parsed (Binance answers with
    ``"id": null`` otherwise).

    >>> parse_control('{"method":"SUBSCRIBE","params":["btcusdt@kline_1m"],"id":1}')
    ControlRequest(method=<Method.SUBSCRIBE: 'SUBSCRIBE'>, id=1, params=('btcusdt@kline_1m',))
    >>> parse_control('{"method":"SUBSCRIBE"').code
    <ErrorCode.INVALID_JSON: 3>
    """
    if isinstance(message, bytes):
        try:
            message = message.decode("utf-8")
        except UnicodeDecodeError:
            return ControlFailure(None, ErrorCode.INVALID_JSON, "Invalid JSON: invalid UTF-8")
    try:
        obj = json.loads(message)
    except json.JSONDecodeError as exc:
        msg = exc.msg[:1].lower() + exc.msg[1:]
        return ControlFailure(
            None,
            ErrorCode.INVALID_JSON,
            f"Invalid JSON: {msg} at line {exc.lineno} column {exc.colno}",
        )
    if not isinstance(obj, dict):
        return ControlFailure(
            None, ErrorCode.INVALID_REQUEST, "Invalid request: expected a JSON object"
        )
    if "method" not in obj:
        return ControlFailure(
            None, ErrorCode.INVALID_REQUEST, "Invalid request: missing field `method`"
        )
    method_raw = obj["method"]
    try:
        method = Method(method_raw)
    except (ValueError, TypeError):
        return ControlFailure(
            None,
            ErrorCode.INVALID_REQUEST,
            f"Invalid request: unknown variant `{method_raw}`, expected one of {_METHODS_TEXT}",
        )
    if "id" not in obj or not _valid_id(obj["id"]):
        return ControlFailure(
            None,
            ErrorCode.INVALID_REQUEST,
            "Invalid request: request ID must be an integer (int64), a string of at most 36"
            " alphanumeric characters, or null",
        )
    rid: RequestId = obj["id"]
    params = obj.get("params")
    if params is None:
        params = []
    if not isinstance(params, list):
        return ControlFailure(
            None, ErrorCode.INVALID_REQUEST, "Invalid request: `params` must be an array"
        )
    if method in (Method.SUBSCRIBE, Method.UNSUBSCRIBE):
        if not all(isinstance(p, str) for p in params):
            return ControlFailure(
                None, ErrorCode.INVALID_REQUEST, "Invalid request: stream names must be strings"
            )
        return ControlRequest(method, rid, tuple(params))
    if method is Method.LIST_SUBSCRIPTIONS:
        if params:
            return ControlFailure(
                rid, ErrorCode.INVALID_REQUEST, "Invalid request: too many parameters"
            )
        return ControlRequest(method, rid)
    expected = 2 if method is Method.SET_PROPERTY else 1
    if len(params) > expected:
        return ControlFailure(
            rid, ErrorCode.INVALID_REQUEST, "Invalid request: too many parameters"
        )
    if not params or not isinstance(params[0], str):
        return ControlFailure(
            rid, ErrorCode.INVALID_REQUEST, "Invalid request: property name must be a string"
        )
    if params[0] not in _PROPERTIES:
        return ControlFailure(rid, ErrorCode.UNKNOWN_PROPERTY, "Unknown property")
    if method is Method.SET_PROPERTY and (len(params) < 2 or not isinstance(params[1], bool)):
        return ControlFailure(
            rid, ErrorCode.INVALID_VALUE_TYPE, "Invalid value type: expected Boolean"
        )
    return ControlRequest(method, rid, tuple(params))


def result_reply(rid: RequestId, result: object = None) -> str:
    return encode({"result": result, "id": rid})


def error_reply(rid: RequestId, code: ErrorCode, msg: str) -> str:
    return encode({"error": {"code": int(code), "msg": msg}, "id": rid})


# -- events --------------------------------------------------------------------------------


def format_decimal(value: int, decimals: int, digits: int = 8) -> str:
    """``value * 10**-decimals`` with exactly ``digits`` decimals (half-up), as Binance prints.

    >>> format_decimal(1650010, 2)
    '16500.10000000'
    >>> format_decimal(123456789012, 11)
    '1.23456789'
    """
    if decimals <= digits:
        scaled = value * 10 ** (digits - decimals)
    else:
        drop = 10 ** (decimals - digits)
        scaled = (value + drop // 2) // drop
    whole, frac = divmod(scaled, 10**digits)
    return f"{whole}.{frac:0{digits}d}"


def kline_payload(k: Kline, event_ms: int) -> dict[str, Any]:
    """The raw ``kline`` event, fields in Binance's order."""
    b, p, q = k.bar, k.price_decimals, k.qty_decimals
    return {
        "e": "kline",
        "E": event_ms,
        "s": k.symbol,
        "k": {
            "t": k.open_time_ms,
            "T": k.close_time_ms,
            "s": k.symbol,
            "i": k.interval,
            "f": b.first_trade_id,
            "L": b.last_trade_id,
            "o": format_decimal(b.open, p),
            "c": format_decimal(b.close, p),
            "h": format_decimal(b.high, p),
            "l": format_decimal(b.low, p),
            "v": format_decimal(b.volume, q),
            "n": b.trades,
            "x": k.closed,
            "q": format_decimal(b.quote_volume, p + q),
            "V": format_decimal(b.taker_volume, q),
            "Q": format_decimal(b.taker_quote_volume, p + q),
            "B": "0",
        },
    }


SERVER_SHUTDOWN_STREAM = "!serverShutdown"


def server_shutdown_payload(event_ms: int) -> dict[str, Any]:
    return {"e": "serverShutdown", "E": event_ms}


def wrap(stream: str, payload: Mapping[str, Any], combined: bool) -> dict[str, Any]:
    """The payload as sent: wrapped ``{"stream","data"}`` on combined connections."""
    return {"stream": stream, "data": dict(payload)} if combined else dict(payload)


def rest_row(k: Kline) -> list[Any]:
    """One row of ``/api/v3/klines``: 12 fields, numbers as strings, times as integers."""
    b, p, q = k.bar, k.price_decimals, k.qty_decimals
    return [
        k.open_time_ms,
        format_decimal(b.open, p),
        format_decimal(b.high, p),
        format_decimal(b.low, p),
        format_decimal(b.close, p),
        format_decimal(b.volume, q),
        k.close_time_ms,
        format_decimal(b.quote_volume, p + q),
        b.trades,
        format_decimal(b.taker_volume, q),
        format_decimal(b.taker_quote_volume, p + q),
        "0",
    ]


# -- REST ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KlinesQuery:
    symbol: str
    interval: str
    start_ms: int | None
    end_ms: int | None
    limit: int


@dataclass(frozen=True, slots=True)
class RestFailure:
    """A Binance REST error: HTTP status plus ``{"code","msg"}`` body."""

    status: int
    code: int
    msg: str

    def body(self) -> str:
        return encode({"code": self.code, "msg": self.msg})


_KLINES_PARAMS = ("symbol", "interval", "startTime", "endTime", "limit")


def _mandatory(name: str) -> RestFailure:
    return RestFailure(
        400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def parse_klines_query(query: str, symbols: frozenset[str]) -> KlinesQuery | RestFailure:
    """Validate ``/api/v3/klines`` parameters the way Binance does.

    >>> parse_klines_query("symbol=BTCUSDT&interval=5m", frozenset({"BTCUSDT"}))
    KlinesQuery(symbol='BTCUSDT', interval='5m', start_ms=None, end_ms=None, limit=500)
    >>> parse_klines_query("symbol=MATICUSDT&interval=5m", frozenset({"BTCUSDT"}))
    RestFailure(status=400, code=-1121, msg='Invalid symbol.')
    """
    pairs = parse_qsl(query, keep_blank_values=True)
    seen: dict[str, str] = {}
    for key, value in pairs:
        if key in seen:
            return RestFailure(400, -1101, "Duplicate values for a parameter detected.")
        seen[key] = value
    unread = [k for k in seen if k not in _KLINES_PARAMS]
    if unread:
        read = len(seen) - len(unread)
        return RestFailure(
            400,
            -1104,
            f"Not all sent parameters were read; read '{read}' parameter(s) but was sent"
            f" '{len(seen)}'.",
        )
    symbol = seen.get("symbol", "")
    if not symbol:
        return _mandatory("symbol")
    if not _SYMBOL_RE.match(symbol):
        return RestFailure(
            400,
            -1100,
            "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'.",
        )
    interval = seen.get("interval", "")
    if not interval:
        return _mandatory("interval")
    numbers: dict[str, int] = {}
    for name in ("startTime", "endTime", "limit"):
        if name in seen:
            if not _DIGITS_RE.match(seen[name]):
                return RestFailure(
                    400,
                    -1100,
                    f"Illegal characters found in parameter '{name}'; legal range is"
                    " '^[0-9]{1,20}$'.",
                )
            numbers[name] = int(seen[name])
    if not is_interval(interval):
        return RestFailure(400, -1120, "Invalid interval.")
    if symbol not in symbols:
        return RestFailure(400, -1121, "Invalid symbol.")
    limit = numbers.get("limit", DEFAULT_KLINES_LIMIT)
    if limit < 1:
        return RestFailure(400, -1130, "Data sent for parameter 'limit' is not valid.")
    start, end = numbers.get("startTime"), numbers.get("endTime")
    if start is not None and end is not None and start > end:
        return RestFailure(
            400, -1102, "'startTime' contains unexpected value. Cannot be greater than 'endTime'."
        )
    # Binance caps an oversized limit rather than refusing it.
    return KlinesQuery(symbol, interval, start, end, min(limit, MAX_KLINES_LIMIT))


# -- limits --------------------------------------------------------------------------------


class RateLimiter:
    """At most ``limit`` events in any ``window_s``. Sans-I/O: the caller passes the time.

    >>> r = RateLimiter(2, 1.0)
    >>> [r.hit(0.0), r.hit(0.5), r.hit(0.9), r.hit(1.6)]
    [True, True, False, True]
    """

    def __init__(self, limit: int, window_s: float = 1.0) -> None:
        self._limit = limit
        self._window = window_s
        self._times: deque[float] = deque()

    def hit(self, now: float) -> bool:
        """Record one event at ``now``; False when it goes over the limit."""
        while self._times and now - self._times[0] >= self._window:
            self._times.popleft()
        self._times.append(now)
        return len(self._times) <= self._limit
