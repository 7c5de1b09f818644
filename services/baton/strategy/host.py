"""The strategy host: one ``GatewayService.Attach`` stream, one worker thread, one state.

Protocol (``proto/baton/v1/gateway.proto``): the host sends ``Hello`` and waits for ``Welcome``;
then the gateway sends evaluations, fills, settlements, role changes, export/import commands and
finally ``Drain``, and the host answers each in arrival order.

Threads: the event loop only moves messages. Every call that touches the strategy's state runs
on one worker thread (``SerialExecutor``) in the order its message arrived, so the strategy
never sees two calls at once and the loop stays responsive while it computes. Replies leave in
the same order: a writer task awaits each queued call's result in turn.

Roles and handoffs: the host behaves the same in every role. It evaluates every request it is
sent and answers it with that request's own epoch (never the epoch of its last RoleChange), so a
replay of requests journaled for another instance, or a request sent before a role change and
answered after it, carries the epoch the gateway will check; fencing is the gateway's job. A
RoleChange takes effect when it is read, not behind queued work, and only updates ``role`` /
``epoch`` (and calls ``on_role_changed``). ExportState, ImportState and Drain are answered in
stream order with everything else, so an export covers exactly the messages sent before it.

Backpressure, not loss: the queue of calls in flight is bounded; when it is full the reader stops
reading and gRPC flow control slows the gateway. Fills, settlements and the requests of a SHADOW
are never dropped: a shadow must see what the ACTIVE saw for its state to follow.

Load shedding: an ACTIVE's evaluation request that reaches the worker at or after its deadline
is skipped (``is_late``), not evaluated. The gateway has already recorded it as ``timeout`` and
would drop the answer as late; evaluating it anyway only delays the requests behind it, which
is how an overloaded host used to turn a small overload into missing every tick (measured:
docs/benchmarks.md, "Scale"). The state then does not include that evaluation, exactly as if
the gateway had not delivered it (``undelivered``). The count is ``shed``; it is logged.

Batches: the gateway sends one ``EvaluationBatch`` per tick; the host evaluates it in chunks of
``_CHUNK`` requests, one worker call and one ``DecisionBatch`` reply per chunk, so that
per-message costs are paid per chunk and the first answers leave before the last are computed.

Reconnect: if the gateway is unreachable or the stream breaks, the host attaches again (a new
``Hello``) after a ``Backoff`` delay (``RECONNECT_BACKOFF``: 0.1 s doubling to at most 1 s,
jittered, started over after every successful attach, so a restarted gateway has its strategy
back within about a second), keeping its in-memory state; the gateway decides the role. Each
attempt is bounded and gets a channel of its own (``channel_options``): the Hello must be on a
connected transport within ``connect_timeout_s`` (2 s), else the attempt is given up and the
next one opens a new connection. An attempt at an address that swallows the handshake (a
terminating pod behind a Service, whose SYNs are still DNATed to it) used to wait out gRPC's
20 s connect deadline, and ticks went unanswered all that time (docs/real-node.md). Every
re-attach logs ``re-attached to gateway`` with ``detached_ms`` and the attempts it took.
With ``exit_on_disconnect`` it returns ``HostExit.DISCONNECTED`` instead (Kubernetes restarts the
pod).

Fencing (``core.term``, docs/gateway-standby.md "Fencing"): every gateway message carries the
term of the gateway that sent it. The host keeps the highest term it has seen for its whole life
(``term``, across reconnects) and checks each message on the event loop, in arrival order,
before anything else is done with it: a newer term is adopted, an older one is refused. A
refused message is not acted on and is answered with one ``Fenced`` (in stream order with the
other replies), so the gateway learns it has been deposed from the first message it sends; a
refused EvaluationBatch is never answered. A refused Welcome ends the session (it is a stale
leader: the host attaches again, as after a lost stream). Replies echo the term of the message
they answer.

Usage in-process (tests)::

    host = StrategyHost(MomentumV1({}), "127.0.0.1:50051", pod_name="blue")
    task = asyncio.create_task(host.run())
    await asyncio.wait_for(host.wait_attached(), 5)
    ...
    host.stop()
    assert await task is HostExit.STOPPED
    host.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import math
import os
import random
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import grpc.aio
from opentelemetry import trace

from baton import wire
from baton.common import Backoff
from baton.model import Decision, Role, Slot, StandbyPolicy, check_slot_ids
from baton.strategy._executor import SerialExecutor
from baton.strategy._history import HistoryCache
from baton.strategy.core.errors import StateError
from baton.strategy.core.runtime import EncodedState, ImportOutcome, StrategyRuntime, describe_error
from baton.strategy.core.state import DEFAULT_MAX_STATE_BYTES, state_digest
from baton.strategy.core.strategy import Strategy
from baton.strategy.core.streams import Streams, lost, observe, parse_gateways, welcome
from baton.strategy.core.term import TermVerdict
from baton.v1 import gateway_pb2 as gw
from baton.v1 import gateway_pb2_grpc as gw_grpc

log = logging.getLogger(__name__)
tracer = trace.get_tracer("baton.strategy")

T = TypeVar("T")

#: Room on top of the state limit for the rest of a StateSnapshot / ImportState message.
_MESSAGE_OVERHEAD = 1024 * 1024

#: Requests of an EvaluationBatch per worker call and DecisionBatch reply: large enough to
#: amortise the thread hop and the stream write (~30 us and ~25 us per message), small enough
#: that the first answers of a tick of thousands of slots leave within a few ms.
_CHUNK = 64

#: A shedding host logs a summary at most this often.
_SHED_LOG_INTERVAL_MS = 10_000

_ROLE_ACTIVE = wire.role_to_proto(Role.ACTIVE)


def is_late(request: gw.EvaluationRequest, now_ms: int) -> bool:
    """Whether to shed ``request`` instead of evaluating it: sent to this host as ACTIVE and
    already at or past its deadline (the gateway judges an answer then ``late``). A SHADOW's
    request (live, or replayed from another instance's journal) is always evaluated.

    >>> r = gw.EvaluationRequest(deadline_ms=1_000, role=_ROLE_ACTIVE)
    >>> is_late(r, 999), is_late(r, 1_000)
    (False, True)
    """
    return request.role == _ROLE_ACTIVE and 0 < request.deadline_ms <= now_ms


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


#: Delays between attach attempts. Capped at 1 s: while the host is away every tick is missed,
#: and an attempt at a gateway that is down costs one refused connection. With the generic
#: 10 s cap a host could come back up to ~10 s after its gateway did (measured: docs/gateway.md,
#: "Restart").
RECONNECT_BACKOFF = Backoff(initial_s=0.1, factor=2.0, max_s=1.0)

#: How long one attach attempt may take to get its Hello onto a connected transport. A gateway
#: on the same node or behind a Service connects in milliseconds; 2 s is room for a loaded
#: machine while still ending a hung attempt (SYNs to a pod that is gone, a peer that accepts
#: and never speaks HTTP/2) well within one 5 s cadence, where gRPC alone waits 20 s.
DEFAULT_CONNECT_TIMEOUT_S = 2.0

#: gRPC clamps its connect deadline to at least 100 ms; longer than a minute is a hang, not a
#: connect.
_CONNECT_TIMEOUT_RANGE_S = (0.1, 60.0)


def check_connect_timeout(value: float) -> float:
    """``value`` if it is a usable connect timeout, else ``ValueError`` naming the setting.

    >>> check_connect_timeout(2)
    2.0
    >>> check_connect_timeout(0)
    Traceback (most recent call last):
    ...
    ValueError: connect_timeout_s: must be a number of seconds from 0.1 to 60, got 0
    """
    low, high = _CONNECT_TIMEOUT_RANGE_S
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(
            f"connect_timeout_s: must be a number of seconds from {low:g} to {high:g}, "
            f"got {value!r}"
        )
    return float(value)


def channel_options(
    max_message: int, connect_timeout_s: float, backoff: Backoff = RECONNECT_BACKOFF
) -> list[tuple[str, int]]:
    """The gRPC options of one attach attempt's channel.

    Why each reconnect option: the host opens a new channel per attempt and ends the attempt
    itself, so gRPC's own reconnect machinery should never be what the host waits on. Left at
    its defaults it would be: a subchannel that failed backs off 1 s x 1.6 per failure up to
    120 s, and a connect attempt may take 20 s (``min_reconnect_backoff_ms`` is gRPC's minimum
    connect deadline, not a backoff), which is the 20 s the node measured.

    - ``grpc.min_reconnect_backoff_ms`` = the connect timeout: the transport gives up its
      connect when the host gives up the attempt, so nothing half-open outlives it.
    - ``grpc.initial_reconnect_backoff_ms`` / ``grpc.max_reconnect_backoff_ms`` = the host's own
      backoff (0.1 s, 1 s): if a channel ever does retry by itself, it is no slower than the host.
    - ``grpc.use_local_subchannel_pool``: by default channels to the same target with the same
      options share subchannels process-wide, so a "new" channel could inherit the old one's
      broken connection and its backoff; a local pool makes the new channel really new (and its
      connection a new conntrack entry, DNATed to whichever pod serves now).

    >>> dict(channel_options(1024, 2.0))["grpc.min_reconnect_backoff_ms"]
    2000
    """
    return [
        ("grpc.max_send_message_length", max_message),
        ("grpc.max_receive_message_length", max_message),
        ("grpc.min_reconnect_backoff_ms", max(100, round(connect_timeout_s * 1000))),
        ("grpc.initial_reconnect_backoff_ms", max(100, round(backoff.initial_s * 1000))),
        ("grpc.max_reconnect_backoff_ms", max(100, round(backoff.max_s * 1000))),
        ("grpc.use_local_subchannel_pool", 1),
    ]


#: Status codes after which attaching again cannot help: the gateway refuses this host as it is.
_FATAL_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)


def is_retryable(code: grpc.StatusCode) -> bool:
    """Whether a stream that failed with ``code`` is worth attaching again.

    >>> is_retryable(grpc.StatusCode.UNAVAILABLE), is_retryable(grpc.StatusCode.INVALID_ARGUMENT)
    (True, False)
    """
    return code not in _FATAL_CODES


def default_pod_name(environ: Mapping[str, str] | None = None) -> str:
    """``$POD_NAME`` (set by Kubernetes' downward API), else ``<hostname>-<pid>``."""
    env = os.environ if environ is None else environ
    return env.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


class HostExit(enum.Enum):
    """Why ``StrategyHost.run`` returned."""

    DRAINED = "drained"  # the gateway drained this instance; DrainComplete was sent
    STOPPED = "stopped"  # stop() (SIGTERM)
    DISCONNECTED = "disconnected"  # the stream broke and exit_on_disconnect is set
    REJECTED = "rejected"  # the gateway refused the attach with a non-retryable status

    @property
    def exit_code(self) -> int:
        return 0 if self in (HostExit.DRAINED, HostExit.STOPPED) else 1


@dataclass(frozen=True, slots=True)
class Attachment:
    """What a Welcome told the host."""

    instance_id: str
    role: Role | None
    epoch: int
    slots: tuple[Slot, ...]
    cadence_ms: int
    attach_count: int  # 1 for the first attach of this process, 2 after one reconnect, ...


@dataclass(slots=True)
class _Link:
    """One gateway address the host keeps an attach loop to (event loop thread)."""

    address: str
    attempts: int = 0  # attach attempts since its last Welcome (or since the start)
    welcomes: int = 0  # Welcomes accepted on it
    fenced_logged: set[int] = field(default_factory=set)  # older terms logged this session


class _StreamLost(Exception):
    """The stream ended or failed in a way worth attaching again for."""


class _Rejected(Exception):
    """The gateway refused the attach with a non-retryable status."""


class _Marker(enum.Enum):
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class _Drain:
    """Drain, queued behind the calls before it; ``term``: the Drain's, echoed."""

    term: int


class _Wait(enum.Enum):
    """How a bounded wait of the attach ended."""

    DONE = "done"
    TIMEOUT = "timeout"
    STOPPED = "stopped"  # stop() came first


_Reply = asyncio.Future[gw.AttachRequest | None]
_OutboxItem = _Reply | _Marker | _Drain


def _term_of(msg: gw.AttachResponse) -> tuple[str | None, int]:
    """The kind of a gateway message and the gateway term it carries."""
    kind = msg.WhichOneof("body")
    return kind, (getattr(msg, kind).term if kind is not None else 0)


class StrategyHost:
    """Runs one strategy against one gateway until drained or stopped.

    ``stop`` must be called from the event loop's thread (a signal handler installed with
    ``loop.add_signal_handler`` is). ``close`` releases the worker thread once ``run`` returned.
    """

    def __init__(
        self,
        strategy: Strategy[Any],
        gateway: str | Sequence[str],
        *,
        pod_name: str | None = None,
        labels: Mapping[str, str] | None = None,
        exit_on_disconnect: bool = False,
        backoff: Backoff | None = None,
        max_state_bytes: int = DEFAULT_MAX_STATE_BYTES,
        welcome_timeout_s: float = 10.0,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        stop_grace_s: float = 2.0,
        max_in_flight: int = 10_000,
        on_attached: Callable[[Attachment], None] | None = None,
        on_detached: Callable[[str], None] | None = None,
        on_role_changed: Callable[[Role, int], None] | None = None,
        rng: random.Random | None = None,
        shed_late: bool = True,
        now_ms: Callable[[], int] = wall_ms,
        slots: Sequence[str] = (),
        stake: float | None = None,
        standby: StandbyPolicy | None = None,
    ) -> None:
        self.strategy = strategy
        # The strategy's part of the gateway's book, sent in every Hello (checked here, once,
        # so a bad value fails the start instead of every attach).
        self.slots = check_slot_ids(slots)
        if stake is not None and not (math.isfinite(stake) and stake > 0):
            raise ValueError(f"stake: must be a number > 0, got {stake!r}")
        self.stake = stake
        self.standby = standby  # None: the gateway's defaults
        # Every replica's address (a comma list, or a sequence): an attach loop to each.
        self.gateways = (
            parse_gateways(gateway)
            if isinstance(gateway, str)
            else parse_gateways(",".join(gateway))
        )
        self.gateway = ",".join(self.gateways)
        self.pod_name = pod_name or default_pod_name()
        self._labels = dict(labels or {})
        self._exit_on_disconnect = exit_on_disconnect
        self._backoff = backoff or RECONNECT_BACKOFF
        self._rng = rng
        self._welcome_timeout_s = welcome_timeout_s
        self._connect_timeout_s = check_connect_timeout(connect_timeout_s)
        self._stop_grace_s = stop_grace_s
        self._max_in_flight = max_in_flight
        self._on_attached = on_attached
        self._on_detached = on_detached
        self._on_role_changed = on_role_changed
        self._max_message = max_state_bytes + _MESSAGE_OVERHEAD
        self._channel_options = channel_options(
            self._max_message, self._connect_timeout_s, self._backoff
        )
        # The attach loop's record of the current outage (event loop thread).
        self._detached_at: float | None = None  # monotonic s when the last attached stream ended
        self._last_reason = ""
        self._reconnects = 0
        self._last_detached_ms: int | None = None
        self._runtime = StrategyRuntime(strategy, max_state_bytes=max_state_bytes)
        self._worker = SerialExecutor("baton-strategy-worker")
        self._stop = asyncio.Event()
        self._attached = asyncio.Event()
        self._attachment: Attachment | None = None
        self._attach_count = 0
        self._role: Role | None = None
        self._epoch = 0
        # Worker-thread state: the history cache and the shedding counters.
        self._history = HistoryCache()
        self._shed_late = shed_late
        self._now_ms = now_ms
        self._shed = 0
        self._shed_logged = 0  # _shed when the last summary was logged
        self._shed_logged_ms: int | None = None
        # Event-loop state: the attached streams and the highest gateway term seen (for the
        # process's life), the messages refused for an older one, the switches of stream.
        self._streams = Streams()
        self._fenced = 0
        self._term_switches = 0

    # -- observation (event loop thread) ---------------------------------------------------

    @property
    def attachment(self) -> Attachment | None:
        """The last Welcome, or None before the first one."""
        return self._attachment

    @property
    def attached(self) -> bool:
        return self._attached.is_set()

    @property
    def instance_id(self) -> str:
        return self._attachment.instance_id if self._attachment else ""

    @property
    def role(self) -> Role | None:
        return self._role

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def attach_count(self) -> int:
        return self._attach_count

    @property
    def reconnects(self) -> int:
        """Attaches after the first: each one ended an outage."""
        return self._reconnects

    @property
    def last_detached_ms(self) -> int | None:
        """How long the last outage lasted: from the stream's end to the next Welcome."""
        return self._last_detached_ms

    @property
    def evaluations(self) -> int:
        """Evaluations completed by this process (returned or raised), across reconnects."""
        return self._runtime.evaluations

    @property
    def shed(self) -> int:
        """Evaluation requests skipped because they reached the worker past their deadline."""
        return self._shed

    @property
    def term(self) -> int:
        """The highest gateway term this process has seen (0 until a gateway with an elected
        leader sent one)."""
        return self._streams.highest

    @property
    def attached_gateways(self) -> tuple[str, ...]:
        """The addresses whose stream is attached now (a Welcome taken, not yet ended)."""
        return tuple(address for address, _ in self._streams.attached)

    @property
    def obeyed_gateway(self) -> str | None:
        """The attached stream of the highest term: the one whose requests the host acts on."""
        return self._streams.obeyed

    @property
    def term_switches(self) -> int:
        """How often the obeyed stream moved from one address to another."""
        return self._term_switches

    @property
    def fenced(self) -> int:
        """Gateway messages refused (answered ``Fenced``) for carrying an older term."""
        return self._fenced

    @property
    def applied_seq(self) -> dict[str, int]:
        return self._runtime.applied_seq

    async def wait_attached(self) -> Attachment:
        """Wait until the host is attached (bound it with ``asyncio.wait_for``)."""
        await self._attached.wait()
        assert self._attachment is not None
        return self._attachment

    async def export_state(self) -> EncodedState:
        """The current state, encoded on the worker thread (after every call queued before)."""
        return await self._on_worker(self._runtime.export)

    async def state_digest(self) -> str:
        return (await self.export_state()).digest

    # -- control ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask ``run`` to finish: stop reading, flush queued replies briefly, detach."""
        self._stop.set()

    def close(self) -> None:
        """Release the worker thread. Does not wait for a strategy call stuck in user code."""
        self._worker.shutdown(wait=False)

    async def run(self) -> HostExit:
        """Attach (again and again) to every gateway address until drained, stopped or refused.

        With several addresses (the replicas of one gateway) an attach loop runs for each at
        once; the first loop to end ends the host (a Drain, a refusal, ``stop()``, or with
        ``exit_on_disconnect`` the loss of the last attached stream) and the others are stopped.
        """
        links = [_Link(address) for address in self.gateways]
        if len(links) == 1:
            return await self._attach_loop(links[0])
        loops = [
            asyncio.create_task(self._attach_loop(link), name=f"attach {link.address}")
            for link in links
        ]
        try:
            done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_COMPLETED)
            end = next(iter(done)).result()
            self._stop.set()  # the other loops: flush their replies briefly and detach
            await asyncio.gather(*loops, return_exceptions=True)
            return end
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def _attach_loop(self, link: _Link) -> HostExit:
        delays = self._delays()
        several = len(self.gateways) > 1
        while not self._stop.is_set():
            welcomes_before = link.welcomes
            try:
                end = await self._session(link)
            except _Rejected as exc:
                log.error(
                    "gateway rejected the attach",
                    extra={"error": str(exc), "gateway": link.address},
                )
                return HostExit.REJECTED
            except _StreamLost as exc:
                reason = str(exc)
            else:
                return end
            finally:
                was_attached = self._detach(link)
            self._last_reason = reason
            if self._on_detached is not None and (was_attached or not several):
                self._on_detached(reason)
            if self._stop.is_set():
                break
            # One address: any loss ends the host. Several: the loss of the last attached
            # stream does (a replica that does not listen, a follower, is dialled on).
            if self._exit_on_disconnect and (
                not several or (was_attached and not self._streams.attached)
            ):
                log.error(
                    "gateway connection lost; exiting (exit_on_disconnect)",
                    extra={"reason": reason, "gateway": link.address},
                )
                return HostExit.DISCONNECTED
            if link.welcomes != welcomes_before:
                delays = self._delays()  # the last attempt got through: start the backoff over
            delay = next(delays)
            # A replica that is not listening (a follower) is dialled on quietly: DEBUG.
            level = logging.WARNING if was_attached or not several else logging.DEBUG
            log.log(
                level,
                "gateway connection lost; attaching again",
                extra={
                    "reason": reason,
                    "gateway": link.address,
                    "retry_in_s": round(delay, 3),
                    "attempts": link.attempts,
                },
            )
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as its inner wait ends (gateway/election.py).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()
        return HostExit.STOPPED

    def _detach(self, link: _Link) -> bool:
        """The session of ``link`` ended: whether it had been attached. When it was the last
        attached stream, an outage starts."""
        if self._streams.term_of(link.address) is None:
            return False
        self._streams = lost(self._streams, link.address)
        log.info(
            "detached from gateway",
            extra={"gateway": link.address, "still_attached": list(self.attached_gateways)},
        )
        if not self._streams.attached:
            self._detached_at = time.monotonic()  # an outage starts
            self._attached.clear()
        return True

    # -- internals -------------------------------------------------------------------------

    def _delays(self) -> Iterator[float]:
        return self._backoff.delays(self._rng)

    def _on_worker(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        return asyncio.get_running_loop().run_in_executor(self._worker, fn)

    def _hello(self) -> gw.AttachRequest:
        return gw.AttachRequest(
            hello=gw.Hello(
                pod_name=self.pod_name,
                strategy=self.strategy.name,
                version=self.strategy.version,
                state_schema=self.strategy.state_schema,
                labels=self._labels,
                slots=self.slots,
                stake=self.stake,
                standby=wire.standby_to_proto(self.standby) if self.standby else None,
            )
        )

    async def _session(self, link: _Link) -> HostExit:
        link.attempts += 1
        log.log(
            # With several addresses a follower is dialled on and on: its attempts at DEBUG.
            logging.INFO if link.attempts == 1 or len(self.gateways) == 1 else logging.DEBUG,
            "attaching to gateway",
            extra={
                "gateway": link.address,
                "pod_name": self.pod_name,
                "slots": len(self.slots) or "all",  # a count: a selection can be thousands
                "stake": self.stake,
                "attempt": link.attempts,
                "connect_timeout_s": self._connect_timeout_s,
            },
        )
        # A channel per attempt, closed with it: a channel that saw its target die keeps its
        # subchannel's state and backoff (channel_options says which).
        async with grpc.aio.insecure_channel(
            link.address, options=self._channel_options
        ) as channel:
            stub = gw_grpc.GatewayServiceStub(channel)
            # No request iterator: the host writes with call.write() (replies leave in order).
            call = stub.Attach(None)
            try:
                return await self._attached_session(call, link)
            except grpc.aio.AioRpcError as exc:
                text = f"{exc.code().name}: {exc.details()}"
                if is_retryable(exc.code()):
                    raise _StreamLost(text) from exc
                raise _Rejected(text) from exc
            finally:
                call.cancel()

    async def _bounded(
        self, awaitable: asyncio.Future[T], timeout_s: float
    ) -> tuple[_Wait, T | None]:
        """``awaitable``'s result within ``timeout_s``, unless stop() (SIGTERM) comes first; on
        a timeout or a stop it is cancelled and waited for, so nothing is left running."""
        stopped = asyncio.ensure_future(self._stop.wait())
        racing: set[asyncio.Future[Any]] = {awaitable, stopped}
        try:
            done, _ = await asyncio.wait(
                racing, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopped.cancel()
            if not awaitable.done():
                awaitable.cancel()
        if awaitable in done:
            return _Wait.DONE, awaitable.result()  # raises what the awaitable raised
        await asyncio.wait({awaitable})  # let the cancelled call finish before leaving
        if not awaitable.cancelled():
            awaitable.exception()  # it lost the race: retrieved and dropped
        return (_Wait.STOPPED if self._stop.is_set() else _Wait.TIMEOUT), None

    async def _attached_session(
        self, call: grpc.aio.StreamStreamCall[gw.AttachRequest, gw.AttachResponse], link: _Link
    ) -> HostExit:
        # The Hello's write completes once the call is on a connected transport, so it is the
        # connect: bounded by the connect timeout. A refused connection fails it at once
        # (UNAVAILABLE); one that hangs (no SYN-ACK, no HTTP/2 preface) would wait out gRPC's
        # connect deadline without this bound.
        sent, _ = await self._bounded(
            asyncio.ensure_future(self._write(call, self._hello())), self._connect_timeout_s
        )
        if sent is _Wait.STOPPED:
            return HostExit.STOPPED
        if sent is _Wait.TIMEOUT:
            raise _StreamLost(
                f"no connection to {link.address} within {self._connect_timeout_s:g} s "
                "(connect_timeout_s)"
            )
        got, first = await self._bounded(
            asyncio.ensure_future(call.read()), self._welcome_timeout_s
        )
        if got is _Wait.STOPPED:
            return HostExit.STOPPED
        if got is _Wait.TIMEOUT:
            raise _StreamLost(f"no Welcome within {self._welcome_timeout_s:g} s")
        if not isinstance(first, gw.AttachResponse):
            raise _StreamLost("gateway closed the stream before Welcome")
        if first.WhichOneof("body") != "welcome":
            raise _StreamLost(f"expected Welcome first, got {first.WhichOneof('body')}")
        link.fenced_logged.clear()
        refusal = self._check_welcome(first, link)
        if refusal is not None:
            # A deposed leader's Welcome: take no role from it. Say so (the gateway learns it is
            # fenced) and half-close, so that the Fenced arrives before the end of the stream;
            # give the gateway a moment to end it, then attach again as after a lost stream.
            await self._write(call, refusal)
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                await call.done_writing()
            await self._await_close(call)
            raise _StreamLost(
                f"fenced: the gateway's term {first.welcome.term} is older than {self.term}"
            )
        self._outage_over(link)  # first: on_attached (in _welcomed) sees this outage's figures
        self._welcomed(first.welcome, link)

        outbox: asyncio.Queue[_OutboxItem] = asyncio.Queue(self._max_in_flight)
        reader = asyncio.create_task(self._read_loop(call, outbox, link), name="strategy-reader")
        writer = asyncio.create_task(self._write_loop(call, outbox), name="strategy-writer")
        stopper = asyncio.create_task(self._stop.wait(), name="strategy-stop")
        tasks: set[asyncio.Task[Any]] = {reader, writer, stopper}
        try:
            while True:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                if writer in done:
                    end: HostExit = writer.result()
                    if end is HostExit.DRAINED:
                        await self._await_close(call)
                    return end
                if stopper in done:
                    return await self._stop_session(call, outbox, reader, writer)
                if reader in done:
                    reader.result()  # raises when the stream broke; returns after a Drain
                    tasks.discard(reader)  # keep waiting for the writer to finish the drain
        finally:
            for task in (reader, writer, stopper):
                task.cancel()
            await asyncio.gather(reader, writer, stopper, return_exceptions=True)

    def _outage_over(self, link: _Link) -> None:
        """After a Welcome: the record of the outage it ends (none on the first attach, none
        while another stream was attached)."""
        attempts, link.attempts = link.attempts, 0
        if self._detached_at is None:
            return
        detached_ms = round((time.monotonic() - self._detached_at) * 1000)
        self._detached_at = None
        self._reconnects += 1
        self._last_detached_ms = detached_ms
        log.info(
            "re-attached to gateway",
            extra={
                "gateway": link.address,
                "detached_ms": detached_ms,
                "attempts": attempts,
                "last_reason": self._last_reason,
                "reconnects": self._reconnects,
            },
        )

    def _welcomed(self, welcome: gw.Welcome, link: _Link) -> None:
        role: Role | None
        try:
            role = wire.role_from_proto(welcome.role, field="welcome.role")
        except wire.WireError:
            role = None
        slots: list[Slot] = []
        for s in welcome.slots:
            with contextlib.suppress(wire.WireError):
                slots.append(wire.slot_from_proto(s))
        self._attach_count += 1
        link.welcomes += 1
        self._role, self._epoch = role, welcome.epoch
        self._attachment = Attachment(
            instance_id=welcome.instance_id,
            role=role,
            epoch=welcome.epoch,
            slots=tuple(slots),
            cadence_ms=welcome.cadence_ms,
            attach_count=self._attach_count,
        )
        log.info(
            "attached to gateway" if self._attach_count == 1 else "attached to gateway again",
            extra={
                "gateway": link.address,
                "attached": list(self.attached_gateways),
                "instance_id": welcome.instance_id,
                "role": role.value if role else None,
                "epoch": welcome.epoch,
                "term": self.term,  # the highest seen, which this Welcome's term is
                "slots": len(slots),
                "cadence_ms": welcome.cadence_ms,
                "attach_count": self._attach_count,
                "applied_seq_slots": len(self._runtime.applied_seq),
            },
        )
        self._attached.set()
        if self._on_attached is not None:
            self._on_attached(self._attachment)

    async def _read_loop(
        self,
        call: grpc.aio.StreamStreamCall[gw.AttachRequest, gw.AttachResponse],
        outbox: asyncio.Queue[_OutboxItem],
        link: _Link,
    ) -> None:
        """Read until Drain (returns) or the end of the stream (raises ``_StreamLost``)."""
        while True:
            msg = await call.read()
            if not isinstance(msg, gw.AttachResponse):
                raise _StreamLost("gateway closed the stream")
            refusal = self._check_term(msg, link)
            if refusal is not None:
                await outbox.put(_resolved(refusal))
                continue
            kind, term = _term_of(msg)
            if kind == "evaluate_batch":
                requests = msg.evaluate_batch.requests
                for i in range(0, len(requests), _CHUNK):
                    chunk = requests[i : i + _CHUNK]
                    evaluate = functools.partial(self._evaluate_chunk, chunk, term)
                    await outbox.put(self._submit(evaluate))
            elif kind == "fill":
                await outbox.put(self._submit(functools.partial(self._fill, msg.fill)))
            elif kind == "settlement":
                await outbox.put(self._submit(functools.partial(self._settlement, msg.settlement)))
            elif kind == "export_state":
                await outbox.put(self._submit(functools.partial(self._export, msg.export_state)))
            elif kind == "import_state":
                await outbox.put(self._submit(functools.partial(self._import, msg.import_state)))
            elif kind == "role_change":
                self._role_changed(msg.role_change)
            elif kind == "drain":
                log.info("drain requested", extra={"reason": msg.drain.reason})
                await outbox.put(_Drain(term))
                return
            else:
                log.warning("unexpected message from gateway", extra={"kind": kind})

    def _check_term(self, msg: gw.AttachResponse, link: _Link) -> gw.AttachRequest | None:
        """Apply the term rule to ``msg`` (event loop, arrival order, every stream alike): None
        when the host acts on it, else the ``Fenced`` to answer it with."""
        kind, term = _term_of(msg)
        if kind is None:
            return None  # nothing to act on: the caller says it is unexpected
        before = self._streams.highest
        if term > before and self._streams.term_of(link.address) is not None:
            # An attached stream carrying a newer term: it is that term's stream now.
            change = welcome(self._streams, link.address, term)
            self._streams = change.streams
            self._note_switch(change.switched_from, link, term)
            check = change.check
        else:
            self._streams, check = observe(self._streams, term)
        return self._verdict(check.verdict, kind, term, before, link)

    def _check_welcome(self, msg: gw.AttachResponse, link: _Link) -> gw.AttachRequest | None:
        """The term rule on a Welcome: taken, the stream is attached (and may be the one now
        obeyed); refused, the ``Fenced`` to answer it with."""
        term = msg.welcome.term
        before = self._streams.highest
        change = welcome(self._streams, link.address, term)
        self._streams = change.streams
        if change.check.acts:
            with tracer.start_as_current_span(
                "strategy.attached",
                attributes={
                    "baton.gateway": link.address,
                    "baton.term": term,
                    "baton.attached": len(self._streams.attached),
                },
            ):
                pass
            if change.switched_from is not None:
                self._note_switch(change.switched_from, link, term)
        return self._verdict(change.check.verdict, "welcome", term, before, link)

    def _note_switch(self, previous: str | None, link: _Link, term: int) -> None:
        if previous is None:
            return
        self._term_switches += 1
        log.info(
            "obeying another gateway: its term is newer",
            extra={"from_gateway": previous, "gateway": link.address, "term": term},
        )
        with tracer.start_as_current_span(
            "strategy.term_switch",
            attributes={
                "baton.from_gateway": previous,
                "baton.gateway": link.address,
                "baton.term": term,
            },
        ):
            pass

    def _verdict(
        self, verdict: TermVerdict, kind: str, term: int, before: int, link: _Link
    ) -> gw.AttachRequest | None:
        if verdict is TermVerdict.ADOPT:
            log.info(
                "gateway term advanced",
                extra={"from_term": before, "term": term, "what": kind, "gateway": link.address},
            )
        if verdict is not TermVerdict.REFUSE:
            return None
        self._fenced += 1
        current = self._streams.highest
        # One Fenced per refused message (the gateway may lose the first with its stream, and a
        # deposed gateway exits on the first it reads, so they are few); one WARNING per older
        # term and session: a stale gateway that goes on sending would flood the log.
        if term not in link.fenced_logged:
            link.fenced_logged.add(term)
            log.warning(
                "gateway message of an older term refused",
                extra={
                    "term": term,
                    "current_term": current,
                    "what": kind,
                    "gateway": link.address,
                },
            )
        return gw.AttachRequest(fenced=gw.Fenced(term=term, current_term=current, what=kind))

    def _submit(self, fn: Callable[[], gw.AttachRequest | None]) -> _Reply:
        future = self._on_worker(lambda: self._guarded(fn))
        # Retrieve the outcome even if no writer is left to (the stream broke meanwhile): the
        # call still runs, so the state keeps following what it was sent.
        future.add_done_callback(_consume)
        return future

    @staticmethod
    def _guarded(fn: Callable[[], gw.AttachRequest | None]) -> gw.AttachRequest | None:
        # Runs on the worker. The runtime never raises for strategy errors; this catches bugs in
        # the host itself (e.g. an unconvertible message) so one bad message cannot stop it.
        try:
            return fn()
        except Exception:
            log.exception("handling a gateway message failed")
            return None

    def _role_changed(self, change: gw.RoleChange) -> None:
        try:
            role = wire.role_from_proto(change.role, field="role_change.role")
        except wire.WireError as exc:
            log.warning("role change with an unknown role", extra={"error": str(exc)})
            return
        log.info(
            "role changed",
            extra={
                "from_role": self._role.value if self._role else None,
                "role": role.value,
                "from_epoch": self._epoch,
                "epoch": change.epoch,
            },
        )
        self._role, self._epoch = role, change.epoch
        if self._on_role_changed is not None:
            self._on_role_changed(role, change.epoch)

    # Worker-thread handlers: proto in, proto reply out.

    def _evaluate_chunk(
        self, requests: Sequence[gw.EvaluationRequest], term: int
    ) -> gw.AttachRequest | None:
        reply = gw.AttachRequest()
        reply.decisions.term = term  # the batch's: the gateway takes answers of its own only
        decisions = reply.decisions.decisions
        for m in requests:
            decision = self._decide(m)
            if decision is not None:
                decisions.append(decision)
        return reply if len(decisions) else None

    def _decide(self, m: gw.EvaluationRequest) -> gw.Decision | None:
        """The answer to one request; None when it is shed."""
        if self._shed_late:
            now = self._now_ms()
            if is_late(m, now):
                self._shed += 1
                self._log_shedding(now, m)
                return None
        try:
            request = wire.evaluation_from_proto(m, self._history.convert(m.history))
        except wire.WireError as exc:
            log.warning("malformed evaluation request", extra={"error": str(exc), "seq": m.seq})
            decision = Decision(
                slot_id=m.slot.slot_id,
                seq=m.seq,
                epoch=m.epoch,
                action=None,
                error=f"malformed request: {exc}",
            )
        else:
            decision = self._runtime.evaluate(request)
        return wire.decision_to_proto(decision)

    def _log_shedding(self, now_ms: int, m: gw.EvaluationRequest) -> None:
        last = self._shed_logged_ms
        if last is not None and now_ms - last < _SHED_LOG_INTERVAL_MS:
            return
        log.warning(
            "shedding evaluations that reached the strategy past their deadline",
            extra={
                "shed": self._shed - self._shed_logged,
                "shed_total": self._shed,
                "since_ms": now_ms - last if last is not None else None,
                "slot": m.slot.slot_id,
                "seq": m.seq,
                "late_ms": now_ms - m.deadline_ms,
            },
        )
        self._shed_logged, self._shed_logged_ms = self._shed, now_ms

    def _fill(self, m: gw.Fill) -> None:
        try:
            fill = wire.fill_from_proto(m)
        except wire.WireError as exc:
            log.warning("malformed fill", extra={"error": str(exc), "bet_id": m.bet_id})
            return
        self._runtime.on_fill(fill)

    def _settlement(self, m: gw.Settlement) -> None:
        try:
            settlement = wire.settlement_from_proto(m)
        except wire.WireError as exc:
            log.warning("malformed settlement", extra={"error": str(exc), "bet_id": m.bet_id})
            return
        self._runtime.on_settlement(settlement)

    def _export(self, m: gw.ExportState) -> gw.AttachRequest:
        # Built in place: a 10 MB state is copied into the message once, not once more by
        # wrapping a finished StateSnapshot in an AttachRequest.
        reply = gw.AttachRequest()
        snapshot = reply.state_export
        snapshot.handoff_id = m.handoff_id
        snapshot.term = m.term
        snapshot.strategy = self.strategy.name
        snapshot.version = self.strategy.version
        snapshot.state_schema = self.strategy.state_schema
        try:
            encoded = self._runtime.export()
        except Exception as exc:
            # StateError is the expected failure; anything else is still answered, so the
            # gateway aborts the handoff at once instead of waiting out its step timeout.
            # State and digest stay empty (never valid for a real export).
            snapshot.error = describe_error(exc)
            log.error(
                "state export failed",
                extra={"handoff_id": m.handoff_id, "error": snapshot.error},
                exc_info=not isinstance(exc, StateError),
            )
            return reply
        if not m.digest_only:
            snapshot.state = encoded.data
        snapshot.digest = encoded.digest
        snapshot.applied_seq.update(encoded.applied_seq)
        if m.digest_only:
            return reply  # every tick on some policies: not logged
        log.info(
            "state exported",
            extra={
                "handoff_id": m.handoff_id,
                "digest": encoded.digest,
                "bytes": len(encoded.data),
                "applied_seq_slots": len(encoded.applied_seq),
            },
        )
        return reply

    def _import(self, m: gw.ImportState) -> gw.AttachRequest:
        s = m.snapshot
        data = s.state
        if s.error:
            # A failed export forwarded by mistake: say so rather than "not canonical JSON".
            outcome = ImportOutcome(
                ok=False,
                digest=state_digest(data),
                error=f"StateDecodeError: the snapshot is a failed export ({s.error})",
            )
        else:
            outcome = self._runtime.import_(
                EncodedState(
                    strategy=s.strategy,
                    version=s.version,
                    state_schema=s.state_schema,
                    data=data,
                    digest=s.digest,
                    applied_seq=dict(s.applied_seq),
                )
            )
        log.info(
            "state import answered",
            extra={"handoff_id": m.handoff_id, "ok": outcome.ok, "error": outcome.error},
        )
        return gw.AttachRequest(
            import_result=gw.ImportResult(
                handoff_id=m.handoff_id,
                term=m.term,
                ok=outcome.ok,
                error=outcome.error,
                digest=outcome.digest,
                state_schema=outcome.state_schema,
                migrated_digest=outcome.migrated_digest,
            )
        )

    # Writing.

    async def _write(
        self,
        call: grpc.aio.StreamStreamCall[gw.AttachRequest, gw.AttachResponse],
        msg: gw.AttachRequest,
    ) -> None:
        try:
            await call.write(msg)
        except asyncio.InvalidStateError as exc:  # the RPC already finished
            raise _StreamLost("stream closed while writing") from exc

    async def _write_loop(
        self,
        call: grpc.aio.StreamStreamCall[gw.AttachRequest, gw.AttachResponse],
        outbox: asyncio.Queue[_OutboxItem],
    ) -> HostExit:
        while True:
            item = await outbox.get()
            if item is _Marker.STOP:
                return HostExit.STOPPED
            if isinstance(item, _Drain):
                # Every call queued before the Drain has been answered (awaited in order), so
                # applied_seq now covers all of them.
                applied = self._runtime.applied_seq
                done = gw.DrainComplete(applied_seq=applied, term=item.term)
                await self._write(call, gw.AttachRequest(drain_complete=done))
                await call.done_writing()
                log.info("drain complete", extra={"applied_seq_slots": len(applied)})
                return HostExit.DRAINED
            assert isinstance(item, asyncio.Future)
            # Shielded: cancelling the writer (stream lost) must not cancel the queued call.
            reply = await asyncio.shield(item)
            if reply is not None:
                await self._write(call, reply)

    async def _await_close(
        self, call: grpc.aio.StreamStreamCall[gw.AttachRequest, gw.AttachResponse]
    ) -> None:
        """After DrainComplete: give the gateway a moment to end the stream itself."""
        with contextlib.suppress(TimeoutError, grpc.aio.AioRpcError):
            await asyncio.wait_for(call.code(), self._stop_grace_s)

    async def _stop_session(
        self,
        call: grpc.aio.StreamStreamCall[gw.AttachRequest, gw.AttachResponse],
        outbox: asyncio.Queue[_OutboxItem],
        reader: asyncio.Task[None],
        writer: asyncio.Task[HostExit],
    ) -> HostExit:
        """stop(): read nothing more, flush the replies already queued (bounded), detach."""
        log.info("stopping", extra={"queued": outbox.qsize()})
        reader.cancel()
        with contextlib.suppress(asyncio.QueueFull):
            outbox.put_nowait(_Marker.STOP)
        with contextlib.suppress(TimeoutError, _StreamLost, grpc.aio.AioRpcError):
            await asyncio.wait_for(asyncio.shield(writer), self._stop_grace_s)
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await call.done_writing()
        return HostExit.STOPPED


def _resolved(reply: gw.AttachRequest) -> _Reply:
    """A reply that needs no worker, queued in stream order with those that do."""
    future: _Reply = asyncio.get_running_loop().create_future()
    future.set_result(reply)
    return future


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
