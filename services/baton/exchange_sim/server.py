"""The simulator's I/O: one port for WebSocket streams, REST klines and the fault controls.

``websockets`` serves the WebSocket endpoints; its ``process_request`` hook answers plain HTTP
GETs (``/api/v3/*`` and ``/_sim/*``) on the same port before any upgrade. All protocol
decisions are made by the pure modules; this one only moves bytes and keeps per-connection
state.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import logging
import math
import time
from collections.abc import Coroutine, Iterable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Event

from baton.exchange_sim.core.candles import (
    Kline,
    build_kline,
    interval_next,
    interval_open,
    select_opens,
)
from baton.exchange_sim.core.clock import SimClock
from baton.exchange_sim.core.config import SimConfig
from baton.exchange_sim.core.faults import Disorder, FaultState, RestFault, corrupt
from baton.exchange_sim.core.prices import PricePath, symbol_spec
from baton.exchange_sim.core.protocol import (
    SERVER_SHUTDOWN_STREAM,
    ControlFailure,
    ErrorCode,
    HttpRejection,
    Method,
    RateLimiter,
    RestFailure,
    StreamKind,
    StreamRef,
    WsTarget,
    classify_stream,
    encode,
    error_reply,
    kline_payload,
    parse_control,
    parse_klines_query,
    parse_ws_target,
    rest_row,
    result_reply,
    server_shutdown_payload,
    wrap,
)

log = logging.getLogger(__name__)

# Binance counts pings, pongs and control messages against the 5 messages/s limit.
_COUNTED_OPCODES = frozenset({Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.PONG})
# When the loop fell far behind (a paused process), don't flood a client with closing frames.
_MAX_CATCH_UP = 1_000
_JSON = "application/json;charset=UTF-8"


class _SimConnection(ServerConnection):
    """A server connection that reports every incoming frame, control frames included."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.target: WsTarget | None = None
        self.session: _Session | None = None

    def process_event(self, event: Event) -> None:
        if (
            self.request is not None
            and self.session is not None
            and isinstance(event, Frame)
            and event.opcode in _COUNTED_OPCODES
        ):
            self.session.on_incoming_frame()
        super().process_event(event)


class _Sub:
    """One subscription: which candle it last reported, so each one closes exactly once."""

    __slots__ = ("last_open", "ref")

    def __init__(self, ref: StreamRef) -> None:
        self.ref = ref
        self.last_open: int | None = None  # None: send the live candle at the next wake-up


class _Session:
    def __init__(self, sim: ExchangeSim, conn: _SimConnection, target: WsTarget) -> None:
        self.sim = sim
        self.conn = conn
        self.combined = target.combined
        self.subs: dict[str, _Sub] = {ref.name: _Sub(ref) for ref in target.streams}
        self.wake = asyncio.Event()
        self.closing = False
        self.limiter = RateLimiter(sim.config.max_incoming_per_s)
        self.disorder = Disorder()

    def on_incoming_frame(self) -> None:
        if self.closing:
            return
        if not self.limiter.hit(asyncio.get_running_loop().time()):
            log.info("incoming message rate exceeded", extra={"remote": self.sim.remote(self)})
            self.close_soon(1008, "Too many requests")

    def close_soon(self, code: int, reason: str) -> None:
        if not self.closing:
            self.closing = True
            self.sim.spawn(self.conn.close(code, reason))


@dataclass(frozen=True, slots=True)
class SimStatus:
    connections: int
    subscriptions: int
    frames_sent: int
    rest_requests: int
    sim_now_ms: int
    stalled: bool
    malformed_pending: int
    rest_errors_pending: int
    rest_delay_s: float
    duplicates_pending: int
    reorders_pending: int
    time_scale: float
    seed: int


class SimFaults:
    """Runtime fault injection; the ``/_sim/faults/*`` endpoints call these too."""

    def __init__(self, sim: ExchangeSim) -> None:
        self._sim = sim

    def drop(self) -> int:
        """Abruptly close every WebSocket connection (TCP reset, no close frame)."""
        sessions = list(self._sim.sessions)
        for s in sessions:
            s.closing = True
            s.conn.transport.abort()
        log.info("fault: dropped connections", extra={"connections": len(sessions)})
        return len(sessions)

    def stall(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (connections stay open). Candles that close meanwhile
        are not re-sent: a client must backfill them over REST."""
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"seconds must be positive, got {seconds}")
        self._sim.fault_state.stall(asyncio.get_running_loop().time(), seconds)
        for s in self._sim.sessions:
            s.wake.set()
        log.info("fault: stall", extra={"seconds": seconds})

    def malformed(self, count: int) -> None:
        """Break the next ``count`` kline frames (invalid JSON, missing fields, wrong types)."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        self._sim.fault_state.add_malformed(count)
        log.info("fault: malformed frames", extra={"count": count})

    def duplicate(self, count: int) -> None:
        """Send the last ``count`` kline frames of every connection again, at its next push."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        self._sim.fault_state.add_duplicates(count)
        for s in self._sim.sessions:
            s.wake.set()
        log.info("fault: duplicate frames", extra={"count": count})

    def reorder(self, count: int) -> None:
        """Hold each of the next ``count`` kline frames back and send it after the next frame
        of its stream."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        self._sim.fault_state.add_reorders(count)
        log.info("fault: reordered frames", extra={"count": count})

    def rest_error(self, count: int, status: int = 500, retry_after_s: int = 1) -> None:
        """Fail the next ``count`` REST calls with ``status`` (5xx, or 429 with Retry-After)."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if status != 429 and not 500 <= status <= 599:
            raise ValueError(f"status must be 429 or 5xx, got {status}")
        if retry_after_s < 0:
            raise ValueError(f"retry_after_s must be >= 0, got {retry_after_s}")
        self._sim.fault_state.add_rest_errors(count, RestFault(status, retry_after_s))
        log.info("fault: REST errors", extra={"count": count, "status": status})

    def rest_delay(self, seconds: float) -> None:
        """Answer every REST call ``seconds`` late from now on (a slow exchange; 0: on time).
        Calls in flight are answered concurrently, each after its own delay."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        self._sim.fault_state.set_rest_delay(seconds)
        log.info("fault: REST delay", extra={"seconds": seconds})

    def server_shutdown(self, grace_s: float = 1.0) -> int:
        """Send ``serverShutdown`` to every connection, then close them after ``grace_s``."""
        sessions = list(self._sim.sessions)
        for s in sessions:
            self._sim.spawn(self._sim.shut_down(s, grace_s))
        return len(sessions)


class ExchangeSim:
    """The simulator, in-process. ``async with ExchangeSim(SimConfig(...)) as sim: ...``"""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.fault_state = FaultState()
        self.faults = SimFaults(self)
        self.sessions: set[_Session] = set()
        self._symbols = config.symbol_set
        self._paths = {s: PricePath(config.seed, symbol_spec(s)) for s in config.symbols}
        self._server: Server | None = None
        self._clock: SimClock | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._frames_sent = 0
        self._rest_requests = 0
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        start_ms = self.config.start_ms
        if start_ms is None:
            start_ms = int(time.time() * 1000)
        self._clock = SimClock(start_ms, loop.time(), self.config.time_scale)
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=self._process_request,
            create_connection=_SimConnection,
            ping_interval=self.config.ping_interval_s,
            ping_timeout=self.config.pong_timeout_s,
            close_timeout=2.0,
            server_header="baton-exchange-sim",
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info(
            "exchange simulator listening",
            extra={
                "port": self.port,
                "seed": self.config.seed,
                "time_scale": self.config.time_scale,
                "start_ms": start_ms,
            },
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> ExchangeSim:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    @property
    def ws_url(self) -> str:
        return f"ws://{self._host_for_url()}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self._host_for_url()}:{self.port}"

    def _host_for_url(self) -> str:
        host = self.config.host
        if host in ("0.0.0.0", ""):
            return "127.0.0.1"
        return f"[{host}]" if ":" in host else host

    # -- queries (tests and the status endpoint) ------------------------------------------

    @property
    def start_ms(self) -> int:
        """Simulated time at start."""
        if self._clock is None:
            raise RuntimeError("the simulator is not started")
        return self._clock.start_ms

    def now_ms(self) -> int:
        if self._clock is None:
            raise RuntimeError("the simulator is not started")
        return self._clock.now_ms(asyncio.get_running_loop().time())

    def kline(self, symbol: str, interval: str, open_ms: int) -> Kline | None:
        """The candle opening at ``open_ms`` as the exchange sees it now (ground truth)."""
        return build_kline(self._paths[symbol], interval, open_ms, self.now_ms())

    def status(self) -> SimStatus:
        now = asyncio.get_running_loop().time()
        return SimStatus(
            connections=len(self.sessions),
            subscriptions=sum(len(s.subs) for s in self.sessions),
            frames_sent=self._frames_sent,
            rest_requests=self._rest_requests,
            sim_now_ms=self.now_ms(),
            stalled=self.fault_state.stalled(now),
            malformed_pending=self.fault_state.malformed_pending,
            rest_errors_pending=self.fault_state.rest_pending,
            rest_delay_s=self.fault_state.rest_delay_s,
            duplicates_pending=self.fault_state.duplicate_pending,
            reorders_pending=self.fault_state.reorder_pending,
            time_scale=self.config.time_scale,
            seed=self.config.seed,
        )

    # -- plumbing -------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background; kept referenced, cancelled on stop, errors logged."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, ConnectionClosed):
                log.error("background task failed", exc_info=exc)

    def remote(self, session: _Session) -> str:
        addr = session.conn.remote_address
        return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)

    # -- HTTP -----------------------------------------------------------------------------

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        url = urlsplit(request.path)
        if url.path.startswith("/api/"):
            delay = self.fault_state.rest_delay_s
            if delay > 0:
                await asyncio.sleep(delay)
            return self._rest(url.path, url.query)
        if url.path.startswith("/_sim/"):
            return self._sim_control(url.path, url.query)
        target = parse_ws_target(
            url.path,
            url.query,
            self._symbols,
            strict=self.config.strict_symbols,
            max_streams=self.config.max_streams_per_connection,
        )
        if target is None:
            if "websocket" in request.headers.get("Upgrade", "").lower():
                return connection.respond(http.HTTPStatus.BAD_REQUEST, "Invalid request path")
            return _response(404, encode({"code": -1000, "msg": "Not found."}))
        if isinstance(target, HttpRejection):
            return connection.respond(target.status, target.text)
        assert isinstance(connection, _SimConnection)
        connection.target = target
        return None

    def _rest(self, path: str, query: str) -> Response:
        self._rest_requests += 1
        fault = self.fault_state.take_rest_fault()
        if fault is not None:
            extra = [("Retry-After", str(fault.retry_after_s))] if fault.status == 429 else []
            return _response(fault.status, fault.body(), extra)
        if path == "/api/v3/ping":
            return _response(200, "{}")
        if path == "/api/v3/time":
            return _response(200, encode({"serverTime": self.now_ms()}))
        if path != "/api/v3/klines":
            return _response(404, encode({"code": -1000, "msg": "Not found."}))
        q = parse_klines_query(query, self._symbols)
        if isinstance(q, RestFailure):
            return _response(q.status, q.body())
        now = self.now_ms()
        rows = []
        for open_ms in select_opens(q.interval, now, q.limit, q.start_ms, q.end_ms):
            k = build_kline(self._paths[q.symbol], q.interval, open_ms, now)
            if k is not None:
                rows.append(rest_row(k))
        return _response(200, encode(rows), [("X-MBX-USED-WEIGHT-1M", "2")])

    def _sim_control(self, path: str, query: str) -> Response:
        params = dict(parse_qsl(query))
        try:
            if path == "/_sim/status":
                return _response(200, encode(asdict(self.status())))
            if path == "/_sim/faults/drop":
                return _ack("drop", connections=self.faults.drop())
            if path == "/_sim/faults/stall":
                seconds = float(params.get("seconds", "5"))
                self.faults.stall(seconds)
                return _ack("stall", seconds=seconds)
            if path == "/_sim/faults/malformed":
                count = int(params.get("count", "1"))
                self.faults.malformed(count)
                return _ack("malformed", count=count)
            if path == "/_sim/faults/duplicate":
                count = int(params.get("count", "1"))
                self.faults.duplicate(count)
                return _ack("duplicate", count=count)
            if path == "/_sim/faults/reorder":
                count = int(params.get("count", "1"))
                self.faults.reorder(count)
                return _ack("reorder", count=count)
            if path == "/_sim/faults/rest_error":
                count = int(params.get("count", "1"))
                status = int(params.get("status", "500"))
                retry_after = int(params.get("retry_after", "1"))
                self.faults.rest_error(count, status, retry_after)
                return _ack("rest_error", count=count, status=status, retry_after=retry_after)
            if path == "/_sim/faults/rest_delay":
                seconds = float(params.get("seconds", "1"))
                self.faults.rest_delay(seconds)
                return _ack("rest_delay", seconds=seconds)
            if path == "/_sim/faults/server_shutdown":
                grace = float(params.get("grace_s", "1"))
                if not math.isfinite(grace) or grace < 0:
                    raise ValueError(f"grace_s must be >= 0, got {grace}")
                return _ack("server_shutdown", connections=self.faults.server_shutdown(grace))
        except ValueError as exc:
            return _response(400, encode({"ok": False, "error": str(exc)}))
        return _response(404, encode({"ok": False, "error": f"no such control: {path}"}))

    # -- WebSocket ------------------------------------------------------------------------

    async def _handle(self, connection: ServerConnection) -> None:
        assert isinstance(connection, _SimConnection)
        session = _Session(self, connection, connection.target or WsTarget(False, ()))
        connection.session = session
        self.sessions.add(session)
        log.debug(
            "connection opened",
            extra={"remote": self.remote(session), "streams": len(session.subs)},
        )
        tasks = [
            asyncio.create_task(self._push_loop(session)),
            asyncio.create_task(self._lifetime(session)),
        ]
        try:
            async for message in connection:
                if session.closing:
                    continue  # closing with a specific code: ignore what still arrives
                await self._on_message(session, message)
        except ConnectionClosed:
            pass
        finally:
            self.sessions.discard(session)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            log.debug(
                "connection closed",
                extra={"remote": self.remote(session), "code": connection.close_code},
            )

    async def _send(self, session: _Session, text: str) -> None:
        await session.conn.send(text)
        self._frames_sent += 1

    async def _wait_unstalled(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            remaining = self.fault_state.stall_until - loop.time()
            if remaining <= 0:
                return
            await asyncio.sleep(remaining)  # the stall may be extended meanwhile: re-check

    async def _reply(self, session: _Session, text: str) -> None:
        await self._wait_unstalled()
        await self._send(session, text)

    async def _on_message(self, session: _Session, message: str | bytes) -> None:
        req = parse_control(message)
        if isinstance(req, ControlFailure):
            await self._reply(session, error_reply(req.id, req.code, req.msg))
            return
        if req.method is Method.SUBSCRIBE:
            refs = [
                classify_stream(p, self._symbols, strict=self.config.strict_symbols)
                for p in req.params
            ]
            if any(r.kind is StreamKind.INVALID for r in refs):
                # Binance answers, then closes the connection.
                await self._reply(
                    session,
                    error_reply(
                        req.id, ErrorCode.INVALID_REQUEST, "Invalid request: invalid stream"
                    ),
                )
                session.close_soon(1008, "Invalid request: invalid stream")
                return
            new = {r.name: r for r in refs if r.name not in session.subs}
            limit = self.config.max_streams_per_connection
            if len(session.subs) + len(new) > limit:
                await self._reply(
                    session,
                    error_reply(
                        req.id,
                        ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                        f"Too many subscriptions: at most {limit} streams per connection",
                    ),
                )
                return
            for name, ref in new.items():
                session.subs[name] = _Sub(ref)
            await self._reply(session, result_reply(req.id))
            session.wake.set()
        elif req.method is Method.UNSUBSCRIBE:
            for name in req.params:
                session.subs.pop(name, None)
            await self._reply(session, result_reply(req.id))
        elif req.method is Method.LIST_SUBSCRIPTIONS:
            await self._reply(session, result_reply(req.id, list(session.subs)))
        elif req.method is Method.SET_PROPERTY:
            session.combined = bool(req.params[1])
            await self._reply(session, result_reply(req.id))
        else:
            await self._reply(session, result_reply(req.id, session.combined))

    def _frame(self, session: _Session, stream: str, k: Kline, event_ms: int) -> str:
        payload = kline_payload(k, event_ms)
        kind = self.fault_state.take_malformed()
        if kind is not None:
            return corrupt(payload, stream if session.combined else None, kind)
        return encode(wrap(stream, payload, session.combined))

    async def _push_loop(self, session: _Session) -> None:
        """Kline frames for one connection: every push interval, plus each candle's closing
        frame (``x`` true) exactly once, as soon as the candle is over."""
        assert self._clock is not None
        loop = asyncio.get_running_loop()
        interval_s = self.config.push_interval_s
        next_push = loop.time()
        stalled = False
        try:
            while True:
                session.wake.clear()
                now = loop.time()
                if self.fault_state.stalled(now):
                    stalled = True
                    await _wait(session.wake, self.fault_state.stall_until - now)
                    continue
                if stalled:
                    # Candles that closed during the stall are not sent; resume with live ones.
                    stalled = False
                    for sub in session.subs.values():
                        sub.last_open = None
                sim_now = self._clock.now_ms(now)
                push_due = now >= next_push
                frames, next_close_ms = self._due_frames(session, sim_now, push_due)
                if push_due:
                    next_push = max(next_push + interval_s, now)
                for text in session.disorder.outgoing(frames, self.fault_state):
                    await self._send(session, text)
                wake_at = next_push
                if next_close_ms is not None:
                    # A hair after the close so that the clock reads past it on waking.
                    wake_at = min(wake_at, self._clock.real_at(next_close_ms) + 0.0005)
                await _wait(session.wake, wake_at - loop.time())
        except ConnectionClosed:
            return
        except Exception:
            # A bug must not leave a silent connection behind: say so, and close it.
            log.exception("push loop failed", extra={"remote": self.remote(session)})
            session.close_soon(1011, "internal error")

    def _due_frames(
        self, session: _Session, sim_now: int, push_due: bool
    ) -> tuple[list[tuple[str, str]], int | None]:
        """The (stream, frame) pairs due now, and when the next candle closes."""
        frames: list[tuple[str, str]] = []
        next_close: int | None = None
        for sub in list(session.subs.values()):
            ref = sub.ref
            if ref.kind is not StreamKind.KLINE:
                continue
            path = self._paths[ref.symbol]
            current = interval_open(sim_now, ref.interval)
            if sub.last_open is not None and sub.last_open < current:
                open_ms, n = sub.last_open, 0
                while open_ms < current and n < _MAX_CATCH_UP:
                    k = build_kline(path, ref.interval, open_ms, sim_now)
                    if k is not None:
                        frames.append((ref.name, self._frame(session, ref.name, k, sim_now)))
                    open_ms = interval_next(open_ms, ref.interval)
                    n += 1
            if push_due or sub.last_open is None:
                k = build_kline(path, ref.interval, current, sim_now)
                if k is not None:
                    frames.append((ref.name, self._frame(session, ref.name, k, sim_now)))
            sub.last_open = current
            closes_at = interval_next(current, ref.interval)
            next_close = closes_at if next_close is None else min(next_close, closes_at)
        return frames, next_close

    async def _lifetime(self, session: _Session) -> None:
        notice = self.config.shutdown_notice_s
        await asyncio.sleep(self.config.max_lifetime_s - notice)
        if notice > 0:
            await self._send_shutdown_event(session)
            await asyncio.sleep(notice)
        session.closing = True
        await session.conn.close(1001, "connection lifetime exceeded")

    async def _send_shutdown_event(self, session: _Session) -> None:
        payload = server_shutdown_payload(self.now_ms())
        with contextlib.suppress(ConnectionClosed):
            await self._send(
                session, encode(wrap(SERVER_SHUTDOWN_STREAM, payload, session.combined))
            )

    async def shut_down(self, session: _Session, grace_s: float) -> None:
        await self._send_shutdown_event(session)
        await asyncio.sleep(grace_s)
        session.closing = True
        await session.conn.close(1001, "server shutdown")


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Until ``event`` is set or ``seconds`` pass, whichever first."""
    if seconds <= 0:
        return
    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
    # races with the event, and a push loop that cannot be cancelled hangs the server's stop.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


def _response(
    status: int, body: str, extra: Iterable[tuple[str, str]] = (), content_type: str = _JSON
) -> Response:
    data = body.encode()
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Content-Type", content_type),
            ("Content-Length", str(len(data))),
            ("Connection", "close"),
            *extra,
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, data)


def _ack(fault: str, **fields: Any) -> Response:
    return _response(200, encode({"ok": True, "fault": fault, **fields}))
