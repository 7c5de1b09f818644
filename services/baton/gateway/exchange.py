"""The gateway's exchange client: Binance kline streams in, a gap-free candle sequence out.

One combined-stream connection per 1024 streams. On every (re)connect, and whenever the live
stream shows that closed candles were missed (a dropped closing frame, a stall), REST klines
fill the gap before the stream resumes: per stream, the sink sees every closed candle exactly
once, oldest first. Stalls (no message for ``stall_timeout_s``) and ``serverShutdown`` events
end the connection; reconnects back off with jitter. Malformed messages are reported and
skipped. The decisions live in :mod:`baton.gateway.core.binance`; this module only does I/O.
"""

from __future__ import annotations

import asyncio
import logging
import math
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from prometheus_client import CollectorRegistry
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from baton.common import Backoff, ConfigError
from baton.gateway.core.binance import (
    MAX_KLINES_LIMIT,
    MAX_STREAMS_PER_CONNECTION,
    URL_STREAMS_BUDGET,
    BackfillPlan,
    ControlError,
    ControlReply,
    KlineEvent,
    Malformed,
    Phase,
    RestError,
    ServerShutdown,
    Step,
    StreamState,
    apply_backfill,
    combined_stream_url,
    klines_url,
    on_reconnect,
    on_ws_candle,
    parse_frame,
    parse_klines_response,
    plan_backfill,
    plan_connection,
    shard_streams,
    subscribe_message,
)
from baton.gateway.metrics import FEED_PROBLEMS, FeedMetrics
from baton.model import Candle, timeframe_ms

log = logging.getLogger(__name__)

# A gap longer than this many pages is filled over several rounds (the stream stays held).
_MAX_PAGES_PER_ROUND = 20
# Binance counts every incoming message (pongs included) against 5 per second.
_SUBSCRIBE_SPACING_S = 0.25
_USER_AGENT = "baton-gateway"
_STALLED = "stalled"


@dataclass(frozen=True)  # no slots: the gateway reads the class attributes as defaults
class ExchangeConfig:
    ws_url: str = "wss://stream.binance.com:9443"
    rest_url: str = "https://api.binance.com"
    stall_timeout_s: float = 30.0  # no message for this long: reconnect
    backfill_limit: int = 100  # closed candles fetched per stream on first connect
    connect_timeout_s: float = 10.0
    rest_timeout_s: float = 10.0
    max_streams_per_connection: int = MAX_STREAMS_PER_CONNECTION
    rest_concurrency: int = 4  # REST requests in flight at once (weight limits)
    # Characters of stream names put in the connection URL; streams beyond go by SUBSCRIBE
    # (exchanges and proxies refuse very long URLs).
    url_budget: int = URL_STREAMS_BUDGET
    backoff: Backoff = field(default_factory=Backoff)

    def __post_init__(self) -> None:
        if not self.ws_url.startswith(("ws://", "wss://")):
            raise ConfigError("exchange.ws_url", f"expected ws:// or wss://, got {self.ws_url!r}")
        if not self.rest_url.startswith(("http://", "https://")):
            raise ConfigError(
                "exchange.rest_url", f"expected http:// or https://, got {self.rest_url!r}"
            )
        for name in ("stall_timeout_s", "connect_timeout_s", "rest_timeout_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"exchange.{name}", f"must be > 0, got {value!r}")
        if not 0 <= self.backfill_limit <= MAX_KLINES_LIMIT:
            raise ConfigError(
                "exchange.backfill_limit",
                f"must be 0..{MAX_KLINES_LIMIT}, got {self.backfill_limit}",
            )
        if not 1 <= self.max_streams_per_connection <= MAX_STREAMS_PER_CONNECTION:
            raise ConfigError(
                "exchange.max_streams_per_connection",
                f"must be 1..{MAX_STREAMS_PER_CONNECTION}, got {self.max_streams_per_connection}",
            )
        if self.rest_concurrency < 1:
            raise ConfigError("exchange.rest_concurrency", "must be >= 1")
        if self.url_budget < 0:
            raise ConfigError("exchange.url_budget", "must be >= 0")


class FeedSink(Protocol):
    def on_candle(self, candle: Candle, source: str) -> None:
        """Every update: live and closing frames (``"ws"``) and backfilled closed candles
        (``"rest"``, oldest first, before the stream resumes)."""

    def on_connection(self, event: str, detail: str) -> None:
        """``connecting``, ``connected``, ``disconnected``, ``backfilled``,
        ``backfill_failed``, ``stalled``, ``server_shutdown``."""

    def on_malformed(self, reason: str, raw: str) -> None: ...


@dataclass(frozen=True, slots=True)
class FeedStats:
    messages: int = 0  # WebSocket messages received
    malformed: int = 0  # of which unusable, skipped
    reconnects: int = 0  # connection attempts after the first, all shards
    backfilled: int = 0  # closed candles delivered from REST
    dropped: int = 0  # repeated or stale candles not delivered again
    gaps: int = 0  # times the live stream showed missed candles
    rest_failures: int = 0


def _http_get(url: str, timeout_s: float) -> tuple[int, bytes, dict[str, str]]:
    """Blocking GET (run in a thread). HTTP errors are returned; transport errors raise."""
    request = urllib.request.Request(
        url, headers={"User-Agent": _USER_AGENT, "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read(), dict(response.headers.items())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(), dict(exc.headers.items())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RestError(f"GET {url}: {exc}", retryable=True) from exc


class ExchangeFeed:
    """Streams ``(symbol, interval)`` klines into ``sink``. ``await run()`` until cancelled."""

    def __init__(
        self,
        config: ExchangeConfig,
        streams: Sequence[tuple[str, str]],
        sink: FeedSink,
        metrics: FeedMetrics | None = None,
    ) -> None:
        self._config = config
        self._sink = sink
        # Without a gateway's metrics (tests), a registry of its own that nobody scrapes.
        self._metrics = metrics if metrics is not None else FeedMetrics(CollectorRegistry())
        self._states: dict[str, StreamState] = {}
        for symbol, interval in streams:
            timeframe_ms(interval)  # raises ValueError on an interval the feed cannot track
            state = StreamState.new(symbol, interval)
            self._states.setdefault(state.stream, state)
        self._shards = shard_streams(list(self._states), config.max_streams_per_connection)
        self._shard_up = [False] * len(self._shards)
        self._shard_ready = [False] * len(self._shards)
        for index in range(len(self._shards)):
            self._metrics.connection(str(index), up=False)
        self._permanent_failures: set[str] = set()
        self._exchange_now_ms: int | None = None
        self._stats = FeedStats()
        self._connected = asyncio.Event()
        self._rest_slots: asyncio.Semaphore | None = None

    # -- public ---------------------------------------------------------------------------

    @property
    def stats(self) -> FeedStats:
        return self._stats

    @property
    def connected(self) -> asyncio.Event:
        """Set while every connection is up and has backfilled all its streams."""
        return self._connected

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(self._states)

    def backfill_pending(self) -> tuple[tuple[str, str], ...]:
        """(symbol, interval) of the streams whose backfill has not finished: not yet
        connected, or REST has not yet filled their gap (failures that may pass are retried)."""
        return tuple(
            (s.symbol, s.interval)
            for name, s in self._states.items()
            if s.phase is Phase.BACKFILL and name not in self._permanent_failures
        )

    def backfill_refused(self) -> tuple[tuple[str, str], ...]:
        """(symbol, interval) of the streams whose backfill the exchange refused for good (an
        unknown symbol, -1121): finished, without history. Tried again on a new connection."""
        return tuple(
            (s.symbol, s.interval)
            for name, s in self._states.items()
            if name in self._permanent_failures
        )

    async def run(self) -> None:
        """Connect, backfill, stream; reconnect forever. Returns only by cancellation."""
        self._rest_slots = asyncio.Semaphore(self._config.rest_concurrency)
        if not self._shards:
            self._connected.set()  # nothing to connect or backfill
            await asyncio.Event().wait()
        async with asyncio.TaskGroup() as group:
            for index, names in enumerate(self._shards):
                group.create_task(self._run_shard(index, names), name=f"exchange-feed-{index}")

    # -- connections ----------------------------------------------------------------------

    def _count(self, **deltas: int) -> None:
        self._stats = replace(
            self._stats, **{k: getattr(self._stats, k) + v for k, v in deltas.items()}
        )

    def _event(self, event: str, detail: str) -> None:
        if event in FEED_PROBLEMS:
            # An outage, a stall, an unknown symbol: the market data are at risk.
            log.warning("exchange feed problem", extra={"event": event, "detail": detail})
            self._metrics.problem(event)
        else:
            log.info("exchange feed event", extra={"event": event, "detail": detail})
        try:
            self._sink.on_connection(event, detail)
        except Exception:
            log.exception("feed sink failed on a connection event")

    async def _run_shard(self, index: int, names: tuple[str, ...]) -> None:
        delays = self._config.backoff.delays()
        first = True
        while True:
            if not first:
                self._count(reconnects=1)
                self._metrics.reconnect()
            first = False
            try:
                healthy = await self._session(index, names)
            except Exception:  # never let one bad session end the feed
                log.exception("exchange session failed", extra={"shard": index})
                healthy = False
            if healthy:
                delays = self._config.backoff.delays()
            await asyncio.sleep(next(delays))

    async def _session(self, index: int, names: tuple[str, ...]) -> bool:
        """One connection's life. True if it received anything (the backoff then resets)."""
        plan = plan_connection(names, url_budget=self._config.url_budget)
        url = combined_stream_url(self._config.ws_url, plan.url_streams)
        where = f"shard {index} ({len(names)} streams) {self._config.ws_url}"
        self._event("connecting", where)
        try:
            ws = await connect(
                url,
                open_timeout=self._config.connect_timeout_s,
                ping_interval=None,  # the server pings; we answer (automatically)
                close_timeout=1.0,
                max_size=2**22,
                user_agent_header=_USER_AGENT,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._event("disconnected", f"{where}: connect failed: {exc}")
            return False
        self._event("connected", where)
        for name in names:
            self._states[name] = on_reconnect(self._states[name])
            self._permanent_failures.discard(name)  # try once more on every connection
        self._shard_up[index] = True
        self._shard_ready[index] = False
        self._metrics.connection(str(index), up=True)
        wake = asyncio.Event()
        wake.set()
        helpers = [asyncio.create_task(self._backfill_loop(index, names, wake))]
        if plan.subscribe_batches:
            helpers.append(asyncio.create_task(self._subscribe(ws, plan.subscribe_batches)))
        reason = "feed stopped"
        received = False
        try:
            reason, received = await self._read(ws, names, wake)
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            self._shard_up[index] = False
            self._shard_ready[index] = False
            self._metrics.connection(str(index), up=False)
            self._connected.clear()
            if reason == _STALLED:
                ws.transport.abort()  # the peer may be gone: do not wait for a close handshake
            else:
                await ws.close()
            self._event("disconnected", f"{where}: {reason}")
        return received

    async def _subscribe(self, ws: ClientConnection, batches: Sequence[Sequence[str]]) -> None:
        """Streams that did not fit in the URL, a few per message, paced under the limit."""
        for n, batch in enumerate(batches, start=1):
            await asyncio.sleep(_SUBSCRIBE_SPACING_S)
            await ws.send(subscribe_message(batch, request_id=n))

    async def _read(
        self, ws: ClientConnection, names: tuple[str, ...], wake: asyncio.Event
    ) -> tuple[str, bool]:
        own = frozenset(names)
        received = False
        while True:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation racing with a message, and the feed would never stop.
                async with asyncio.timeout(self._config.stall_timeout_s):
                    raw = await ws.recv()
            except TimeoutError:
                self._event("stalled", f"no message for {self._config.stall_timeout_s:g}s")
                return _STALLED, received
            except ConnectionClosed as exc:
                return _describe_close(exc), received
            received = True
            self._count(messages=1)
            event = parse_frame(raw)
            self._metrics.message(event)
            if isinstance(event, KlineEvent):
                if event.stream not in own:
                    self._malformed(f"unexpected stream {event.stream!r}", str(raw)[:500])
                    continue
                if self._exchange_now_ms is None or event.event_time_ms > self._exchange_now_ms:
                    self._exchange_now_ms = event.event_time_ms
                if event.stream in self._permanent_failures:
                    self._permanent_failures.discard(event.stream)  # it exists after all
                    wake.set()
                before = self._states[event.stream].phase
                state = self._states[event.stream]
                self._apply(on_ws_candle(state, event.candle, event.event_time_ms))
                if before is Phase.LIVE and self._states[event.stream].phase is Phase.BACKFILL:
                    self._count(gaps=1)
                    wake.set()
            elif isinstance(event, Malformed):
                self._malformed(event.reason, event.raw)
            elif isinstance(event, ServerShutdown):
                self._event("server_shutdown", f"at {event.event_time_ms}")
                return "server shutdown announced", received
            elif isinstance(event, ControlError):
                log.error(
                    "exchange refused a request",
                    extra={"id": event.id, "code": event.code, "msg": event.msg},
                )
            elif isinstance(event, ControlReply):
                log.debug("exchange reply", extra={"id": event.id})

    def _malformed(self, reason: str, raw: str) -> None:
        self._count(malformed=1)
        self._metrics.malformed()
        log.warning("malformed exchange message", extra={"why": reason})
        try:
            self._sink.on_malformed(reason, raw)
        except Exception:
            log.exception("feed sink failed on a malformed message")

    def _apply(self, step: Step) -> None:
        self._states[step.state.stream] = step.state
        backfilled = sum(1 for d in step.deliver if d.source == "rest")
        if backfilled or step.dropped:
            self._count(backfilled=backfilled, dropped=step.dropped)
        for delivery in step.deliver:
            try:
                self._sink.on_candle(delivery.candle, delivery.source)
            except Exception:
                log.exception("feed sink failed on a candle")

    # -- backfill -------------------------------------------------------------------------

    async def _backfill_loop(self, index: int, names: tuple[str, ...], wake: asyncio.Event) -> None:
        """Fill every held stream's gap over REST; on failure retry with backoff."""
        delays = self._config.backoff.delays()

        def needs_backfill(name: str) -> bool:
            # A permanent refusal (unknown symbol) is not retried until the stream shows data
            # or the connection is renewed.
            state = self._states[name]
            return state.phase is Phase.BACKFILL and name not in self._permanent_failures

        while True:
            await wake.wait()
            wake.clear()
            pending = [n for n in names if needs_backfill(n)]
            if pending:
                failures = await self._backfill_round(pending)
                # A permanent refusal is not retried: no reason to wait before going on (the
                # clock's first tick may be waiting for this shard to be ready).
                retried = [e for e in failures if e.retryable]
                if retried:
                    hinted = [e.retry_after_s for e in retried if e.retry_after_s is not None]
                    await asyncio.sleep(max([next(delays), *hinted]))
                    wake.set()
                else:
                    delays = self._config.backoff.delays()
                    if any(needs_backfill(n) for n in names):
                        wake.set()  # a long gap needs more pages, or a new gap appeared
            if not any(needs_backfill(n) for n in names):
                self._shard_ready[index] = True
                if all(self._shard_ready) and all(self._shard_up):
                    self._connected.set()

    async def _backfill_round(self, pending: list[str]) -> list[RestError]:
        """Backfill ``pending`` streams concurrently; report the round; the failures."""
        results = await asyncio.gather(
            *(self._backfill(n) for n in pending), return_exceptions=True
        )
        failures: list[RestError] = []
        delivered = 0
        for name, result in zip(pending, results, strict=True):
            if isinstance(result, RestError):
                failures.append(result)
                if not result.retryable:
                    self._permanent_failures.add(name)
            elif isinstance(result, asyncio.CancelledError):
                raise result
            elif isinstance(result, BaseException):
                # A bug, not the exchange: keep the feed alive and retry like a REST failure.
                log.error("backfill failed unexpectedly", exc_info=result, extra={"stream": name})
                failures.append(RestError(f"{name}: unexpected {result!r}", retryable=True))
            else:
                delivered += result
                self._permanent_failures.discard(name)
        if len(failures) < len(pending):
            done = len(pending) - len(failures)
            self._event("backfilled", f"{done} streams, {delivered} candles from REST")
        if failures:
            self._count(rest_failures=len(failures))
            shown = "; ".join(str(err) for err in failures[:3])
            more = f" (+{len(failures) - 3} more)" if len(failures) > 3 else ""
            self._event("backfill_failed", f"{len(failures)} streams: {shown}{more}")
        return failures

    async def _backfill(self, name: str) -> int:
        """One round for one stream; the number of candles delivered from REST."""
        state = self._states[name]
        plan = plan_backfill(state, self._config.backfill_limit, self._exchange_now_ms)
        rows, exhausted = await self._fetch_plan(plan, state.interval_ms)
        # Re-read the state: frames that arrived during the fetch were held in it.
        step = apply_backfill(self._states[name], plan, rows, exhausted)
        self._apply(step)
        return sum(1 for d in step.deliver if d.source == "rest")

    async def _fetch_plan(self, plan: BackfillPlan, interval_ms: int) -> tuple[list[Candle], bool]:
        base = self._config.rest_url
        if plan.start_ms is None:
            if plan.keep == 0:
                return [], True
            # One more than wanted: the newest row is usually the candle still open.
            limit = min(plan.keep + 1, MAX_KLINES_LIMIT)
            url = klines_url(base, plan.symbol, plan.interval, limit=limit)
            return await self._fetch(url, plan.symbol, plan.interval), True
        rows: list[Candle] = []
        start = plan.start_ms
        for _ in range(_MAX_PAGES_PER_ROUND):
            url = klines_url(
                base, plan.symbol, plan.interval, start_ms=start, limit=MAX_KLINES_LIMIT
            )
            page = await self._fetch(url, plan.symbol, plan.interval)
            rows.extend(page)
            if len(page) < MAX_KLINES_LIMIT:
                return rows, True
            start = page[-1].open_time_ms + interval_ms
        return rows, False

    async def _fetch(self, url: str, symbol: str, interval: str) -> list[Candle]:
        assert self._rest_slots is not None
        async with self._rest_slots:
            status, body, headers = await asyncio.to_thread(
                _http_get, url, self._config.rest_timeout_s
            )
        return parse_klines_response(status, body, headers, symbol, interval)


def _describe_close(exc: ConnectionClosed) -> str:
    frame = exc.rcvd
    if frame is None:
        return "connection lost (no close frame)"
    return f"closed by the exchange: code {frame.code} {frame.reason}".rstrip()


__all__ = ["ExchangeConfig", "ExchangeFeed", "FeedSink", "FeedStats"]
