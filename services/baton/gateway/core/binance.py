"""Binance Spot market data, client side, as pure functions and values (sans-I/O).

* stream names, combined-stream URLs and how streams are spread over connections;
* :func:`parse_frame`: one received WebSocket message -> one typed event, never an exception
  (anything unusable is :class:`Malformed`);
* REST ``/api/v3/klines``: the request URL and :func:`parse_klines_response`;
* :class:`StreamState` and the functions over it: the per-stream bookkeeping that turns a live
  stream plus REST backfills into a gap-free, duplicate-free sequence of closed candles.

No sockets, no clock: time arrives as event times (``E``) carried by the exchange's frames.
The protocol itself, as the gateway and the simulator rely on it: docs/exchange-protocol.md.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from baton.model import Candle, timeframe_ms

MAX_STREAMS_PER_CONNECTION = 1024
MAX_KLINES_LIMIT = 1000
# Keep URLs and control messages well under what proxies and the exchange accept
# (Binance refuses long URLs and messages over ~4 KiB).
URL_STREAMS_BUDGET = 2_000
SUBSCRIBE_MESSAGE_BUDGET = 3_000


# -- streams and URLs ----------------------------------------------------------------------


def stream_name(symbol: str, interval: str) -> str:
    """The kline stream of ``symbol`` (any case) on ``interval``.

    >>> stream_name("BTCUSDT", "5m")
    'btcusdt@kline_5m'
    """
    return f"{symbol.lower()}@kline_{interval}"


def combined_stream_url(base_url: str, streams: Sequence[str]) -> str:
    """The combined-stream URL for ``streams`` on the exchange at ``base_url``.

    >>> combined_stream_url("wss://stream.binance.com:9443", ["btcusdt@kline_5m", "x@kline_1m"])
    'wss://stream.binance.com:9443/stream?streams=btcusdt@kline_5m/x@kline_1m'
    >>> combined_stream_url("ws://127.0.0.1:9000/", [])
    'ws://127.0.0.1:9000/stream'
    """
    base = base_url.rstrip("/")
    if not streams:
        return f"{base}/stream"
    return f"{base}/stream?streams={'/'.join(streams)}"


def shard_streams(
    streams: Sequence[str], max_per_connection: int = MAX_STREAMS_PER_CONNECTION
) -> list[tuple[str, ...]]:
    """Split streams over as few connections as the per-connection limit allows.

    >>> shard_streams(["a", "b", "c"], 2)
    [('a', 'b'), ('c',)]
    """
    if max_per_connection < 1:
        raise ValueError("max_per_connection must be >= 1")
    return [
        tuple(streams[i : i + max_per_connection])
        for i in range(0, len(streams), max_per_connection)
    ]


@dataclass(frozen=True, slots=True)
class ConnectionPlan:
    """How one connection gets its streams: some in the URL, the rest by SUBSCRIBE messages."""

    url_streams: tuple[str, ...]
    subscribe_batches: tuple[tuple[str, ...], ...]


def plan_connection(
    streams: Sequence[str],
    url_budget: int = URL_STREAMS_BUDGET,
    message_budget: int = SUBSCRIBE_MESSAGE_BUDGET,
) -> ConnectionPlan:
    """Put as many streams in the URL as its length budget allows; SUBSCRIBE the rest in
    messages of bounded size (a long URL is refused; so is an oversized message).

    >>> plan_connection(["aaaa", "bbbb", "cccc"], url_budget=10, message_budget=6)
    ConnectionPlan(url_streams=('aaaa', 'bbbb'), subscribe_batches=(('cccc',),))
    """
    url: list[str] = []
    used = 0
    i = 0
    while i < len(streams) and used + len(streams[i]) + 1 <= url_budget:
        url.append(streams[i])
        used += len(streams[i]) + 1
        i += 1
    batches: list[tuple[str, ...]] = []
    batch: list[str] = []
    size = 0
    for name in streams[i:]:
        if batch and size + len(name) + 3 > message_budget:
            batches.append(tuple(batch))
            batch, size = [], 0
        batch.append(name)
        size += len(name) + 3
    if batch:
        batches.append(tuple(batch))
    return ConnectionPlan(tuple(url), tuple(batches))


def subscribe_message(streams: Sequence[str], request_id: int) -> str:
    return json.dumps({"method": "SUBSCRIBE", "params": list(streams), "id": request_id})


# -- WebSocket frames ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KlineEvent:
    stream: str
    event_time_ms: int
    candle: Candle


@dataclass(frozen=True, slots=True)
class ControlReply:
    id: int | str | None
    result: Any


@dataclass(frozen=True, slots=True)
class ControlError:
    id: int | str | None
    code: int
    msg: str


@dataclass(frozen=True, slots=True)
class ServerShutdown:
    event_time_ms: int


@dataclass(frozen=True, slots=True)
class Malformed:
    reason: str
    raw: str


FeedEvent = KlineEvent | ControlReply | ControlError | ServerShutdown | Malformed

_KLINE_INT_FIELDS = ("t", "T", "f", "L", "n")
_KLINE_DECIMAL_FIELDS = ("o", "c", "h", "l", "v", "q", "V", "Q")


class _Bad(Exception):
    """A frame failed validation; the message says why."""


def _int(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"field {key!r} must be an integer, got {value!r}")
    return value


def _decimal(obj: Mapping[str, Any], key: str) -> float:
    value = obj.get(key)
    if not isinstance(value, str):
        raise _Bad(f"field {key!r} must be a decimal string, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise _Bad(f"field {key!r} is not a number: {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise _Bad(f"field {key!r} must be finite and >= 0, got {value!r}")
    return number


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise _Bad(f"field {key!r} must be a non-empty string, got {value!r}")
    return value


def _parse_kline(event: Mapping[str, Any]) -> tuple[int, Candle]:
    event_time = _int(event, "E")
    symbol = _str(event, "s")
    k = event.get("k")
    if not isinstance(k, dict):
        raise _Bad("kline event without a 'k' object")
    for key in _KLINE_INT_FIELDS:
        _int(k, key)
    prices = {key: _decimal(k, key) for key in _KLINE_DECIMAL_FIELDS}
    interval = _str(k, "i")
    if _str(k, "s") != symbol:
        raise _Bad(f"kline symbol {k['s']!r} differs from event symbol {symbol!r}")
    closed = k.get("x")
    if not isinstance(closed, bool):
        raise _Bad(f"field 'x' must be a boolean, got {closed!r}")
    try:
        size = timeframe_ms(interval)
    except ValueError:
        raise _Bad(f"unsupported interval {interval!r}") from None
    open_ms, close_ms = k["t"], k["T"]
    if close_ms != open_ms + size - 1 or open_ms % size:
        raise _Bad(f"times t={open_ms} T={close_ms} do not fit interval {interval}")
    o, h, lo, c = prices["o"], prices["h"], prices["l"], prices["c"]
    if not lo <= min(o, c) <= max(o, c) <= h:
        raise _Bad(f"prices out of order: o={o} h={h} l={lo} c={c}")
    return event_time, Candle(
        symbol=symbol,
        interval=interval,
        open_time_ms=open_ms,
        close_time_ms=close_ms,
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=prices["v"],
        trades=k["n"],
        closed=closed,
    )


def _short(raw: str, limit: int = 500) -> str:
    return raw if len(raw) <= limit else raw[:limit] + "..."


def parse_frame(raw: str | bytes) -> FeedEvent:
    """One WebSocket message from a combined (or raw) stream, as a typed event.

    Never raises: anything the feed cannot use is :class:`Malformed` with the reason.

    >>> parse_frame('{"result":null,"id":1}')
    ControlReply(id=1, result=None)
    >>> parse_frame('{"stream":"btcusdt@kline_1m"').reason
    "invalid JSON: Expecting ',' delimiter: line 1 column 29 (char 28)"
    """
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return Malformed("binary frame that is not UTF-8", repr(raw[:200]))
    else:
        text = raw
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        return Malformed(f"invalid JSON: {exc}", _short(text))
    if not isinstance(obj, dict):
        return Malformed(f"expected a JSON object, got {type(obj).__name__}", _short(text))
    try:
        return _classify(obj, text)
    except _Bad as exc:
        return Malformed(str(exc), _short(text))


def _classify(obj: dict[str, Any], text: str) -> FeedEvent:
    if "stream" in obj:
        stream = obj.get("stream")
        data = obj.get("data")
        if not isinstance(stream, str) or not isinstance(data, dict):
            raise _Bad("combined frame needs a string 'stream' and an object 'data'")
    elif "e" in obj:
        stream, data = "", obj
    elif "error" in obj:
        err = obj["error"]
        if not isinstance(err, dict):
            raise _Bad("'error' must be an object")
        return ControlError(_reply_id(obj), _int(err, "code"), str(err.get("msg", "")))
    elif "result" in obj:
        return ControlReply(_reply_id(obj), obj["result"])
    elif "code" in obj and "msg" in obj:  # some error replies come unwrapped
        return ControlError(_reply_id(obj), _int(obj, "code"), str(obj["msg"]))
    else:
        raise _Bad("neither an event, a combined frame nor a control reply")
    kind = data.get("e")
    if kind == "kline":
        event_time, candle = _parse_kline(data)
        expected = stream_name(candle.symbol, candle.interval)
        if stream and stream != expected:
            raise _Bad(f"stream {stream!r} carries a kline of {expected!r}")
        return KlineEvent(stream or expected, event_time, candle)
    if kind == "serverShutdown":
        return ServerShutdown(_int(data, "E"))
    raise _Bad(f"unexpected event type {kind!r}")


def _reply_id(obj: Mapping[str, Any]) -> int | str | None:
    rid = obj.get("id")
    if rid is None or isinstance(rid, str) or (isinstance(rid, int) and not isinstance(rid, bool)):
        return rid
    raise _Bad(f"reply id must be an integer, a string or null, got {rid!r}")


# -- REST klines ---------------------------------------------------------------------------


def klines_url(
    rest_url: str,
    symbol: str,
    interval: str,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    limit: int | None = None,
) -> str:
    """The REST klines request.

    >>> klines_url("https://api.binance.com", "BTCUSDT", "5m", start_ms=0, limit=2)
    'https://api.binance.com/api/v3/klines?symbol=BTCUSDT&interval=5m&startTime=0&limit=2'
    """
    params: dict[str, str | int] = {"symbol": symbol, "interval": interval}
    if start_ms is not None:
        params["startTime"] = start_ms
    if end_ms is not None:
        params["endTime"] = end_ms
    if limit is not None:
        params["limit"] = limit
    return f"{rest_url.rstrip('/')}/api/v3/klines?{urlencode(params)}"


class RestError(Exception):
    """A REST call failed. ``retryable`` says whether trying again later can help."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        retryable: bool,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retryable = retryable
        self.retry_after_s = retry_after_s


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for key, value in headers.items():
        if key.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None


def parse_klines_response(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    symbol: str,
    interval: str,
) -> list[Candle]:
    """Candles (``closed`` False: the caller decides which are over) from a klines response.

    Raises :class:`RestError`: retryable for 5xx, 429, 418 and unreadable bodies; not
    retryable for Binance's request errors (``-1121 Invalid symbol.``, ``-1120`` ...).
    """
    if status != 200:
        code: int | None = None
        msg = body[:200].decode("utf-8", "replace")
        try:
            err = json.loads(body)
            if isinstance(err, dict):
                code = err.get("code") if isinstance(err.get("code"), int) else None
                msg = str(err.get("msg", msg))
        except ValueError:
            pass
        retryable = status >= 500 or status in (418, 429)
        where = f"klines {symbol} {interval}"
        detail = f"HTTP {status}" + (f" code {code}" if code is not None else "") + f": {msg}"
        raise RestError(
            f"{where}: {detail}",
            status=status,
            code=code,
            retryable=retryable,
            retry_after_s=_retry_after(headers) if status in (418, 429) else None,
        )
    try:
        rows = json.loads(body)
    except ValueError as exc:
        raise RestError(f"klines {symbol} {interval}: invalid JSON: {exc}", retryable=True) from exc
    if not isinstance(rows, list):
        raise RestError(f"klines {symbol} {interval}: expected an array", retryable=True)
    size = timeframe_ms(interval)
    candles: list[Candle] = []
    for i, row in enumerate(rows):
        try:
            candles.append(_parse_row(row, symbol, interval, size))
        except _Bad as exc:
            raise RestError(f"klines {symbol} {interval} row {i}: {exc}", retryable=True) from None
    return candles


def _parse_row(row: object, symbol: str, interval: str, size: int) -> Candle:
    if not isinstance(row, list) or len(row) < 11:
        raise _Bad("expected an array of at least 11 fields")
    fields = dict(zip(("t", "o", "h", "l", "c", "v", "T", "q", "n", "V", "Q"), row, strict=False))
    for key in ("t", "T", "n"):
        _int(fields, key)
    o, h, lo, c, v = (_decimal(fields, key) for key in ("o", "h", "l", "c", "v"))
    if fields["T"] != fields["t"] + size - 1:
        raise _Bad(f"times t={fields['t']} T={fields['T']} do not fit interval {interval}")
    if not lo <= min(o, c) <= max(o, c) <= h:
        raise _Bad(f"prices out of order: o={o} h={h} l={lo} c={c}")
    return Candle(symbol, interval, fields["t"], fields["T"], o, h, lo, c, v, fields["n"], False)


# -- per-stream bookkeeping ----------------------------------------------------------------


class Phase(enum.Enum):
    BACKFILL = "backfill"  # holding stream frames until REST has filled the gap
    LIVE = "live"  # frames go straight to the sink


_MAX_HELD = 5_000


@dataclass(frozen=True, slots=True)
class StreamState:
    """Where one stream stands. Immutable: every input returns a new state.

    Invariant: the sink has seen every closed candle before ``next_open_ms`` exactly once, in
    order, and sees updates only for the candle opening at ``next_open_ms``, until it closes.
    """

    stream: str
    symbol: str
    interval: str
    interval_ms: int
    phase: Phase = Phase.BACKFILL
    next_open_ms: int | None = None  # None: nothing delivered yet
    seen_open_ms: int | None = None  # newest open time the stream has shown
    held: tuple[Candle, ...] = ()  # frames received while backfilling, oldest first
    # The newest stream frame taken (delivered or held): its candle's open time and its event
    # time E. A later frame of the same candle with an older E is an out-of-order update.
    ws_open_ms: int | None = None
    ws_event_ms: int | None = None

    @classmethod
    def new(cls, symbol: str, interval: str) -> StreamState:
        return cls(stream_name(symbol, interval), symbol, interval, timeframe_ms(interval))


@dataclass(frozen=True, slots=True)
class Delivery:
    candle: Candle
    source: str  # "ws" or "rest"


@dataclass(frozen=True, slots=True)
class Step:
    state: StreamState
    deliver: tuple[Delivery, ...] = ()
    dropped: int = 0  # repeats and stale frames, never delivered twice


@dataclass(frozen=True, slots=True)
class BackfillPlan:
    """The REST request(s) that fill a stream's gap.

    ``start_ms`` None: the ``keep`` most recent closed candles (nothing delivered yet).
    Otherwise every candle from ``start_ms`` on, page by page. ``closed_before_ms``: candles
    opening before it are known to be over (the stream or the exchange clock moved past them).
    """

    stream: str
    symbol: str
    interval: str
    start_ms: int | None
    keep: int
    closed_before_ms: int | None


def _max(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


def _hold(held: tuple[Candle, ...], candle: Candle) -> tuple[Candle, ...]:
    """Keep every closed candle once (the newest version) and only the newest live one."""
    closed = {c.open_time_ms: c for c in held if c.closed}
    live = next((c for c in held if not c.closed), None)
    if candle.closed:
        closed[candle.open_time_ms] = candle
        if live is not None and live.open_time_ms <= candle.open_time_ms:
            live = None
    elif all(t < candle.open_time_ms for t in closed) and (
        live is None or candle.open_time_ms >= live.open_time_ms
    ):
        live = candle
    ordered = [closed[t] for t in sorted(closed)][-_MAX_HELD:]
    return (*ordered, live) if live is not None else tuple(ordered)


def on_ws_candle(state: StreamState, candle: Candle, event_time_ms: int | None = None) -> Step:
    """A candle from the live stream, with its event time ``E`` when known.

    Delivered when it is the expected candle (the one after the last closed). Older ones are
    repeats and dropped, and so is an update of the newest candle taken whose event time is
    older than that candle's last update (a reordered frame must not overwrite a newer one). A
    newer one means closed candles were missed: it is held, and the stream goes back to
    BACKFILL until REST has supplied what is missing.

    >>> s = replace(StreamState.new("BTCUSDT", "1m"), phase=Phase.LIVE, next_open_ms=60_000)
    >>> c = Candle("BTCUSDT", "1m", 60_000, 119_999, 1, 1, 1, 1, closed=True)
    >>> step = on_ws_candle(s, c)
    >>> step.state.next_open_ms, [d.source for d in step.deliver]
    (120000, ['ws'])
    >>> on_ws_candle(step.state, c).dropped  # the same closing frame again
    1
    >>> on_ws_candle(step.state, replace(c, open_time_ms=240_000)).state.phase.value
    'backfill'
    """
    if event_time_ms is not None:
        if (
            candle.open_time_ms == state.ws_open_ms
            and state.ws_event_ms is not None
            and event_time_ms < state.ws_event_ms
        ):
            return Step(state, dropped=1)
        if state.ws_open_ms is None or candle.open_time_ms >= state.ws_open_ms:
            state = replace(state, ws_open_ms=candle.open_time_ms, ws_event_ms=event_time_ms)
    state = replace(state, seen_open_ms=_max(state.seen_open_ms, candle.open_time_ms))
    if state.phase is Phase.BACKFILL:
        return Step(replace(state, held=_hold(state.held, candle)))
    expected = state.next_open_ms
    if expected is None:
        expected = candle.open_time_ms  # no history: the stream starts the sequence
    if candle.open_time_ms < expected:
        return Step(state, dropped=1)
    if candle.open_time_ms == expected:
        nxt = expected + state.interval_ms if candle.closed else expected
        return Step(replace(state, next_open_ms=nxt), (Delivery(candle, "ws"),))
    return Step(
        replace(state, phase=Phase.BACKFILL, next_open_ms=expected, held=_hold(state.held, candle))
    )


def on_reconnect(state: StreamState) -> StreamState:
    """A new connection: backfill what closed meanwhile. Held live frames are stale now."""
    return replace(state, phase=Phase.BACKFILL, held=tuple(c for c in state.held if c.closed))


def plan_backfill(state: StreamState, keep: int, exchange_now_ms: int | None) -> BackfillPlan:
    """What to ask REST for, given what the stream and the exchange clock have shown."""
    closed_before = state.seen_open_ms
    if exchange_now_ms is not None:
        # The candle containing "now" may be open; every earlier one is over.
        closed_before = _max(closed_before, exchange_now_ms - exchange_now_ms % state.interval_ms)
    return BackfillPlan(
        state.stream, state.symbol, state.interval, state.next_open_ms, keep, closed_before
    )


def apply_backfill(
    state: StreamState, plan: BackfillPlan, rows: Sequence[Candle], exhausted: bool
) -> Step:
    """Deliver the REST rows that are closed and new, then replay the held stream frames.

    A row is closed when it opens before ``plan.closed_before_ms``, or when a later row exists
    (a later candle has started). ``exhausted``: REST returned all it has from the start (the
    last page was short); candles it did not return before the closed bound then do not exist
    (exchange downtime) and the sequence moves past them. Not exhausted: the stream stays in
    BACKFILL, with the progress made, for another round.

    >>> s = StreamState.new("BTCUSDT", "1m")
    >>> rows = [Candle("BTCUSDT", "1m", t, t + 59_999, 1, 1, 1, 1) for t in (0, 60_000, 120_000)]
    >>> plan = plan_backfill(s, keep=100, exchange_now_ms=None)
    >>> step = apply_backfill(s, plan, rows, exhausted=True)  # the newest row may still be open
    >>> [d.candle.open_time_ms for d in step.deliver], step.state.next_open_ms
    ([0, 60000], 120000)
    """
    ordered = sorted({r.open_time_ms: r for r in rows}.values(), key=lambda r: r.open_time_ms)
    bound = plan.closed_before_ms
    if ordered:
        bound = _max(bound, ordered[-1].open_time_ms)
    nxt = state.next_open_ms
    fresh = [
        r
        for r in ordered
        if bound is not None and r.open_time_ms < bound and (nxt is None or r.open_time_ms >= nxt)
    ]
    if plan.start_ms is None:
        fresh = fresh[-plan.keep :] if plan.keep > 0 else []
    deliveries = [Delivery(replace(r, closed=True), "rest") for r in fresh]
    if fresh:
        nxt = fresh[-1].open_time_ms + state.interval_ms
    if not exhausted:
        return Step(replace(state, next_open_ms=nxt), tuple(deliveries))
    if bound is not None:
        nxt = _max(nxt, bound)
    current = replace(state, phase=Phase.LIVE, next_open_ms=nxt, held=())
    out = list(deliveries)
    dropped = 0
    for candle in state.held:
        step = on_ws_candle(current, candle)
        current, dropped = step.state, dropped + step.dropped
        out.extend(step.deliver)
    return Step(current, tuple(out), dropped)
