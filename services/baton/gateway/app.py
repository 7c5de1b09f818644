"""The market gateway process: wires the feed, the book, the clock, the router, the venue and
the ledger together, and does all their I/O. The decisions live in the pure modules."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from opentelemetry import propagate, trace

from baton import wire
from baton.common import sampled
from baton.gateway.config import ClockStart, GatewayConfig
from baton.gateway.connection import Connection, SendResult
from baton.gateway.coordinator import Coordinator
from baton.gateway.core.clock import SlotClock, Tick
from baton.gateway.core.handoff import Handoff
from baton.gateway.core.health import LedgerHealth
from baton.gateway.core.market import MarketBook
from baton.gateway.core.records import ConnectionEvent, EvaluationRecord, InstanceEvent
from baton.gateway.core.router import (
    InstanceInfo,
    Judgement,
    Pending,
    Router,
    Send,
    Verdict,
    answered_record,
)
from baton.gateway.core.venue import PaperVenue, Rejection
from baton.gateway.exchange import ExchangeFeed
from baton.gateway.ledger import DuplicateRecordError, Ledger
from baton.gateway.metrics import GatewayMetrics, MetricsServer
from baton.model import Action, Candle, Decision, Role
from baton.v1 import gateway_pb2 as gw
from baton.v1 import market_pb2 as mk

log = logging.getLogger(__name__)
tracer = trace.get_tracer("baton.gateway")

# Bigger than any state snapshot we accept (the SDK caps state at 64 MiB).
MAX_MESSAGE_BYTES = 96 * 1024 * 1024


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def wall_ms_f() -> float:
    """Wall time in ms with sub-ms precision: dispatch delays and cutover pauses are ~1 ms."""
    return time.time_ns() / 1_000_000


@dataclass
class GatewayStats:
    ticks: int = 0
    dispatched: int = 0
    executed: int = 0
    errors: int = 0
    missed: int = 0
    dropped_decisions: int = 0
    malformed: int = 0
    candles_closed: int = 0
    duplicate_records: int = 0


class Gateway:
    """One gateway process. ``start()`` binds and begins; ``stop()`` ends cleanly."""

    def __init__(self, config: GatewayConfig, *, now_ms: Callable[[], int] = wall_ms) -> None:
        self.config = config
        self._now_ms = now_ms
        self.ledger = Ledger(config.ledger_path, max_pending_rows=config.ledger_max_pending_rows)
        self._ledger_health = LedgerHealth()  # replaced after every flush (_flush)
        self.slots = config.slots
        self._slot_by_id = {s.slot_id: s for s in self.slots}
        self.book = MarketBook(config.streams, depth=max(config.history, 1))
        self.venue = PaperVenue(config.venue, self.slots)
        self.venue.restore(self.ledger.open_bets())
        last = self.ledger.last_seqs()
        # Sequence numbers never go backwards, even across gateway restarts.
        self.router = Router(self.slots, seq_base={k: v + 1 for k, v in last.items()})
        self.connections: dict[str, Connection] = {}
        self.stats = GatewayStats()
        self.metrics = GatewayMetrics(s.slot_id for s in self.slots)
        self._metrics_server = MetricsServer(self.metrics.registry)
        self.metrics_addr: str | None = None  # bound HOST:PORT of /metrics, once started
        self.feed = ExchangeFeed(config.exchange, config.streams, self, self.metrics.feed)
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._clock_go = asyncio.Event()
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()  # set while nothing is pending
        self._idle.set()
        self.clock_started = asyncio.Event()
        self._clock_task: asyncio.Task[None] | None = None
        self.run_id = 0
        self.handoffs = Coordinator(
            fleet=self, takeover=self, roster=self.router, recorder=self, now_ms=now_ms
        )
        self._history_cache: dict[tuple[str, str], tuple[int, list[mk.Candle]]] = {}

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        from baton.gateway.server import add_servicer  # the servicer imports this module

        self.run_id = self.ledger.record_run(
            started_ms=self._now_ms(),
            cadence_ms=self.config.cadence_ms,
            slots=[s.slot_id for s in self.slots],
            config_json=self.config.to_json(),
        )
        self.ledger.flush()
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                # Notice dead peers within seconds, not at the next TCP timeout.
                ("grpc.keepalive_time_ms", 10_000),
                ("grpc.keepalive_timeout_ms", 5_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
            ]
        )
        add_servicer(server, self)
        self.port = server.add_insecure_port(self.config.listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.config.listen}")
        if self.config.metrics_listen is not None:
            self.metrics_addr = self._metrics_server.start(self.config.metrics_listen)
        await server.start()
        self._server = server
        self._tasks.append(asyncio.create_task(self.feed.run(), name="feed"))
        self._clock_task = asyncio.create_task(self._run_clock(), name="clock")
        if self.config.clock_start is ClockStart.IMMEDIATE:
            self._clock_go.set()
        log.info(
            "gateway started",
            extra={"port": self.port, "slots": len(self.slots), "run": self.run_id},
        )

    def request_stop(self) -> None:
        self._stopping.set()

    async def wait_stopped(self) -> None:
        await self._stopping.wait()

    async def stop(self, grace_s: float = 2.0) -> None:
        """Finish the tick in flight (answers or timeouts), record it, then close everything."""
        self._stopping.set()
        if self._clock_task is not None:
            await self._clock_task
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for conn in list(self.connections.values()):
            conn.close("gateway stopping")
        if self._server is not None:
            await self._server.stop(grace_s)
        self.ledger.close()
        log.info("gateway stopped", extra={"stats": vars(self.stats)})

    # -- the clock ----------------------------------------------------------------------------

    async def _run_clock(self) -> None:
        go = asyncio.create_task(self._clock_go.wait())
        stop = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({go, stop}, return_when=asyncio.FIRST_COMPLETED)
        go.cancel()
        stop.cancel()
        if self._stopping.is_set():
            return
        clock = SlotClock.starting_after(self.config.cadence_ms, self._now_ms())
        self.clock_started.set()
        log.info("clock started", extra={"origin_ms": clock.origin_ms})
        next_index = 0
        while not self._stopping.is_set():
            await self._sleep_until(clock.tick(next_index).scheduled_ms)
            now = self._now_ms()
            self._resolve(self.router.expire(now))
            plan = clock.plan(now, next_index)
            for late in plan.late:
                log.warning("tick missed by the gateway", extra={"tick": late.index})
                self._resolve(self.router.on_late_tick(late))
            if plan.dispatch is not None:
                # Between two ticks: the only place a handoff flips (G4).
                self.handoffs.on_boundary(now)
                dispatched = self._dispatch(plan.dispatch, now)
                if self.router.pending:
                    # Written with this tick's flush, before any request leaves the process
                    # (no await in between): a restart after a crash never reuses these seqs.
                    tick, seq_of = plan.dispatch, self.router.seq_of
                    self.ledger.reserve_seqs({s.slot_id: seq_of(s, tick) for s in self.slots})
                self.handoffs.after_dispatch(plan.dispatch.scheduled_ms, dispatched)
            next_index = plan.next_index
            self._flush()
        # Stopping: every dispatched evaluation is resolved before we go.
        last_deadline = clock.tick(next_index - 1).deadline_ms if next_index else 0
        remaining = (last_deadline - self._now_ms()) / 1000
        if self.router.pending and remaining > 0:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._idle.wait()
        self._resolve(self.router.expire(max(self._now_ms(), last_deadline)))
        self._flush()

    async def _sleep_until(self, t_ms: int) -> None:
        delay = (t_ms - self._now_ms()) / 1000
        if delay <= 0:
            return
        stop = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({stop}, timeout=delay)
        finally:
            stop.cancel()

    def _dispatch(self, tick: Tick, now: int) -> float:
        """Send one tick: one ``EvaluationBatch`` per instance. Returns when (wall ms) the ACTIVE
        instance's batch was queued: the moment the tick is dispatched to it (shadows are
        served after)."""
        self.stats.ticks += 1
        self.metrics.tick_dispatched(tick.scheduled_ms, wall_ms_f())
        active_done: float | None = None
        with tracer.start_as_current_span(
            "gateway.tick",
            attributes={"baton.tick": tick.index, "baton.scheduled_ms": tick.scheduled_ms},
        ) as span:
            # The tick's context rides in every request of the tick, but only when the tick is
            # sampled: an unsampled tick makes no per-evaluation span anywhere.
            carrier: dict[str, str] = {}
            if span.get_span_context().trace_flags.sampled:
                propagate.inject(carrier)
            plan = self.router.on_tick(tick, now)
            self._resolve(plan.missed)
            batches = self._batches(plan.sends, carrier)
            for instance_id, (msg, sends) in batches.items():  # the ACTIVE's first
                if sends[0].role is Role.SHADOW and active_done is None:
                    active_done = wall_ms_f()
                self._send_batch(instance_id, msg, sends)
            if active_done is None:
                active_done = wall_ms_f()
            span.set_attribute("baton.dispatched", len(plan.sends))
        if self.router.pending:
            self._idle.clear()
        return active_done

    def _batches(
        self, sends: tuple[Send, ...], carrier: dict[str, str]
    ) -> dict[str, tuple[gw.AttachResponse, list[Send]]]:
        """The tick's requests grouped per instance, in send order (the ACTIVE's come first).
        A request is built once, for the ACTIVE; a shadow gets a copy marked SHADOW."""
        batches: dict[str, tuple[gw.AttachResponse, list[Send]]] = {}
        built: dict[str, gw.EvaluationRequest] = {}
        for send in sends:
            entry = batches.get(send.instance_id)
            if entry is None:
                entry = batches[send.instance_id] = (gw.AttachResponse(), [])
            msg, grouped = entry
            # Built in place: wrapping a finished batch in an AttachResponse would copy it.
            request = msg.evaluate_batch.requests.add()
            first = built.get(send.slot.slot_id)
            if first is None:
                self._fill_request(request, send, carrier)
                built[send.slot.slot_id] = request
            else:
                request.CopyFrom(first)
                request.role = wire.role_to_proto(send.role)
            grouped.append(send)
        return batches

    def _send_batch(self, instance_id: str, msg: gw.AttachResponse, sends: list[Send]) -> None:
        conn = self.connections.get(instance_id)
        if sends[0].role is Role.SHADOW:
            # A shadow that cannot keep up falls behind and is never flipped to: the handoff
            # waits for it at the boundary (and aborts past its step timeout).
            if conn is not None:
                conn.send(msg, droppable=False)
            return
        result = conn.send(msg, droppable=True) if conn else SendResult.CLOSED
        if result is SendResult.QUEUED:
            self.stats.dispatched += len(sends)
            return
        log.warning(
            "evaluations undelivered",
            extra={"instance": instance_id, "count": len(sends), "why": result.value},
        )
        for send in sends:
            record = self.router.undelivered(send.slot.slot_id, send.seq)
            if record is not None:
                self._resolve((record,))

    def _history(self, symbol: str, interval: str) -> list[mk.Candle]:
        """Closed-candle history as protos, rebuilt only when a candle closed (not per send)."""
        key = (symbol, interval)
        stamp = self.book.last_closed(symbol, interval)
        cached = self._history_cache.get(key)
        if cached is None or cached[0] != stamp:
            candles = self.book.history(symbol, interval, self.config.history)
            cached = (stamp, [wire.candle_to_proto(c) for c in candles])
            self._history_cache[key] = cached
        return cached[1]

    def _fill_request(self, msg: gw.EvaluationRequest, send: Send, carrier: dict[str, str]) -> None:
        slot = send.slot
        msg.slot.CopyFrom(wire.slot_to_proto(slot))
        msg.seq = send.seq
        msg.scheduled_ms = send.tick.scheduled_ms
        msg.deadline_ms = send.tick.deadline_ms
        msg.epoch = send.epoch
        msg.role = wire.role_to_proto(send.role)
        msg.history.extend(self._history(slot.symbol, slot.timeframe))
        msg.trace_context.update(carrier)
        live = self.book.live(slot.symbol, slot.timeframe)
        if live is not None:
            msg.live.CopyFrom(wire.candle_to_proto(live))

    def _resolve(self, records: tuple[EvaluationRecord, ...]) -> None:
        for record in records:
            if record.outcome.answered:
                if record.executed:
                    self.stats.executed += 1
                else:
                    self.stats.errors += 1
            else:
                self.stats.missed += 1
            self.handoffs.on_record(record)
            try:
                self.ledger.record_evaluation(record)
                self.metrics.resolved(record)  # as the ledger has it: not a refused duplicate
            except DuplicateRecordError:
                # A second outcome for one (slot, seq) is a bug (G1/G2): say so loudly, keep the
                # first outcome, and keep the clock running.
                self.stats.duplicate_records += 1
                log.error(
                    "second outcome for one evaluation refused",
                    extra={
                        "slot": record.slot_id,
                        "seq": record.seq,
                        "outcome": record.outcome.value,
                    },
                )
        if not self.router.pending:
            self._idle.set()

    @property
    def ledger_health(self) -> LedgerHealth:
        """The ledger's writes as of the last flush (the control API's ``ledger``)."""
        return self._ledger_health

    def _flush(self) -> None:
        ledger = self.ledger
        writing = ledger.pending_rows > 0
        discarded = ledger.discarded_rows
        before = self._ledger_health
        started = time.perf_counter()
        try:
            ledger.flush()
        except Exception as exc:  # the clock must keep its time even when the disk does not
            health = before.failed(
                str(exc), pending_rows=ledger.pending_rows, discarded_rows=ledger.discarded_rows
            )
            self._ledger_health = health
            self.metrics.ledger_write_failed(ledger.discarded_rows - discarded)
            # The traceback once per outage; then one line per failed flush.
            log.error(
                "ledger flush failed; rows kept for the next flush",
                exc_info=health.failed_flushes == 1,
                extra={
                    "error": str(exc),
                    "pending_rows": ledger.pending_rows,
                    "discarded_rows": ledger.discarded_rows,
                    "failed_flushes": health.failed_flushes,
                },
            )
        else:
            self._ledger_health = before.flushed(
                now_ms=self._now_ms(),
                pending_rows=ledger.pending_rows,
                discarded_rows=ledger.discarded_rows,
            )
            if writing:
                self.metrics.ledger_flushed(time.perf_counter() - started)
            if not before.ok:
                log.warning(
                    "ledger writes recovered",
                    extra={
                        "failed_flushes": before.failed_flushes,
                        "discarded_rows": ledger.discarded_rows,
                    },
                )
        self.metrics.ledger_pending(ledger.pending_rows)
        # Once per tick, right after the rows: between ticks the counters equal the ledger.
        self.metrics.commit()

    # -- strategy instances -------------------------------------------------------------------

    def attach(self, hello: gw.Hello) -> tuple[Connection, gw.Welcome]:
        now = self._now_ms()
        info = InstanceInfo(hello.pod_name, hello.strategy, hello.version, hello.state_schema)
        instance = self.router.attach(info, now)
        conn = Connection(instance.instance_id, self.config.send_queue)
        self.connections[instance.instance_id] = conn
        self.ledger.record_instance_event(
            InstanceEvent(
                now,
                instance.instance_id,
                "attached",
                hello.pod_name,
                hello.strategy,
                hello.version,
                instance.role.value,
                self.router.epoch,
            )
        )
        log.info(
            "instance attached",
            extra={
                "instance": instance.instance_id,
                "version": hello.version,
                "role": instance.role.value,
                "epoch": self.router.epoch,
            },
        )
        if instance.role is Role.ACTIVE:
            self._clock_go.set()
        welcome = gw.Welcome(
            instance_id=instance.instance_id,
            role=wire.role_to_proto(instance.role),
            epoch=self.router.epoch,
            slots=[wire.slot_to_proto(s) for s in self.slots],
            cadence_ms=self.config.cadence_ms,
        )
        self._observe_membership()
        return conn, welcome

    def detach(self, conn: Connection, reason: str) -> None:
        conn.close(reason)
        self.connections.pop(conn.instance_id, None)
        instance = self.router.detach(conn.instance_id)
        self._observe_membership()
        if instance is None:
            return
        self.ledger.record_instance_event(
            InstanceEvent(
                self._now_ms(),
                conn.instance_id,
                "detached",
                instance.info.pod_name,
                instance.info.strategy,
                instance.info.version,
                instance.role.value,
                self.router.epoch,
                reason,
            )
        )
        log.info("instance detached", extra={"instance": conn.instance_id, "why": reason})
        self.handoffs.on_gone(conn.instance_id, reason, conn.stop_journal())

    def on_decision(self, instance_id: str, msg: gw.Decision) -> None:
        now = self._now_ms()
        try:
            decision = wire.decision_from_proto(msg)
        except wire.WireError as exc:
            self._drop(instance_id, msg.slot_id, msg.seq, msg.epoch, now, None, f"invalid: {exc}")
            return
        self.handoffs.check_green_answer(instance_id, decision.error, decision.epoch)
        self._apply_judgement(
            instance_id, decision, self.router.judge(instance_id, decision, now), now
        )

    def _apply_judgement(
        self, instance_id: str, decision: Decision, judgement: Judgement, now: int
    ) -> None:
        pending = judgement.pending
        action = decision.action.value if decision.action else None
        if judgement.verdict is Verdict.SHADOW:
            self.handoffs.on_shadow_answer(
                instance_id, decision.slot_id, decision.seq, action or "ERROR"
            )
        if judgement.verdict not in (Verdict.EXECUTE, Verdict.ERROR) or pending is None:
            self._drop(
                instance_id,
                decision.slot_id,
                decision.seq,
                decision.epoch,
                now,
                action,
                judgement.verdict.value,
            )
            return
        if not sampled(decision.trace_context):  # an unsampled tick: no span, no extraction
            self._execute(judgement.verdict, pending, decision, now, None)
            return
        # A sampled tick: the context came back in the decision, so this span is the child of
        # the strategy's evaluate span and the tick's trace reads dispatch -> evaluate -> execute.
        with tracer.start_as_current_span(
            "gateway.execute",
            context=propagate.extract(decision.trace_context),
            attributes={
                "baton.slot_id": pending.slot.slot_id,
                "baton.seq": pending.seq,
                "baton.instance": instance_id,
                "baton.verdict": judgement.verdict.value,
                "baton.action": action or "ERROR",
            },
        ) as span:
            self._execute(judgement.verdict, pending, decision, now, span)

    def _execute(
        self,
        verdict: Verdict,
        pending: Pending,
        decision: Decision,
        now: int,
        span: trace.Span | None,
    ) -> None:
        """Carry out an answer the router accepted: place its bet, record its outcome."""
        bet_id, note = None, ""
        side = decision.action
        if verdict is Verdict.EXECUTE and side in (Action.UP, Action.DOWN):
            assert side is not None
            if span is None:
                bet_id, note = self._bet(pending.slot.slot_id, pending.seq, side, now)
            else:
                with tracer.start_as_current_span("gateway.bet") as bet_span:
                    bet_id, note = self._bet(pending.slot.slot_id, pending.seq, side, now)
                    bet_span.set_attribute("baton.side", side.value)
                    bet_span.set_attribute("baton.bet_id", bet_id or "")
                    if note:
                        bet_span.set_attribute("baton.note", note)
        if verdict is Verdict.EXECUTE:
            action = decision.action.value if decision.action else ""
            self.handoffs.on_executed(pending.slot.slot_id, pending.seq, action)
        self._resolve((answered_record(pending, decision, now, bet_id=bet_id, note=note),))

    def _bet(self, slot_id: str, seq: int, side: Action, now: int) -> tuple[str | None, str]:
        """Place the bet an executed UP/DOWN decision asks for; a refusal is noted, not fatal."""
        slot = self._slot_by_id[slot_id]
        live = self.book.live(slot.symbol, slot.timeframe)
        result = self.venue.place(slot, seq, side, live)
        if isinstance(result, Rejection):
            return None, f"bet rejected: {result.reason}"
        active = self.router.active
        self.ledger.record_bet(
            result,
            instance_id=active.instance_id if active else "",
            version=active.info.version if active else "",
            epoch=self.router.epoch,
            placed_ms=now,
        )
        self._broadcast(gw.AttachResponse(fill=wire.fill_to_proto(result)))
        return result.bet_id, ""

    def _drop(
        self,
        instance_id: str,
        slot_id: str,
        seq: int,
        epoch: int,
        now: int,
        action: str | None,
        reason: str,
    ) -> None:
        self.stats.dropped_decisions += 1
        self.ledger.record_dropped_decision(
            slot_id=slot_id,
            seq=seq,
            instance_id=instance_id,
            epoch=epoch,
            received_ms=now,
            action=action,
            reason=reason,
        )

    def _broadcast(self, msg: gw.AttachResponse) -> None:
        """Fills and settlements go to every instance that keeps state (ACTIVE, SHADOW,
        DRAINING) so shadows follow; a STANDBY has no state yet and gets it by import."""
        for instance_id, conn in list(self.connections.items()):
            instance = self.router.instances.get(instance_id)
            if instance is not None and instance.role is not Role.STANDBY:
                conn.send(msg, droppable=False)
        self.handoffs.on_broadcast(msg)

    # -- what the handoff coordinator drives -------------------------------------------------

    def send_to(self, instance_id: str, msg: gw.AttachResponse) -> bool:
        conn = self.connections.get(instance_id)
        return conn is not None and conn.send(msg, droppable=False) is SendResult.QUEUED

    def start_journal(self, instance_id: str) -> None:
        conn = self.connections.get(instance_id)
        if conn is not None:
            conn.start_journal()

    def stop_journal(self, instance_id: str) -> list[gw.AttachResponse]:
        conn = self.connections.get(instance_id)
        return conn.stop_journal() if conn is not None else []

    def set_role(self, instance_id: str, role: Role) -> None:
        if instance_id not in self.router.instances:
            return
        self.router.set_role(instance_id, role)
        self._announce_role(instance_id)

    def make_shadow(self, instance_id: str, replay: list[gw.AttachResponse]) -> None:
        """Green follows as SHADOW: first what blue was sent after the snapshot, in order."""
        if instance_id not in self.router.instances:
            return
        self.set_role(instance_id, Role.SHADOW)
        evaluations = 0
        for msg in replay:
            requests = _evaluations_in(msg)
            if requests:
                # Marked SHADOW, the role green has now: these were sent to blue as ACTIVE and
                # are past their deadlines, and a host sheds late requests only when ACTIVE.
                msg = _as_shadow(msg)
                evaluations += requests
            self.send_to(instance_id, msg)
        self.router.shadow_sent(instance_id, evaluations)

    def flip_to(self, instance_id: str, *, previous_role: Role = Role.SHADOW) -> None:
        """Make ``instance_id`` ACTIVE under a new epoch. Evaluations the previous ACTIVE still
        owed move to it; those it already answered as a shadow are executed now."""
        previous = self.router.active_id
        now = self._now_ms()
        answered = self.router.flip(instance_id, previous_role=previous_role)
        self._announce_role(instance_id)
        if previous is not None and previous != instance_id:
            self._announce_role(previous)
        self.ledger.record_instance_event(
            InstanceEvent(now, instance_id, "role", role=Role.ACTIVE.value, epoch=self.router.epoch)
        )
        for pending in answered:
            decision, judgement = self.router.take_over_answer(pending, now)
            self._apply_judgement(instance_id, decision, judgement, now)

    def drain(self, instance_id: str, reason: str) -> None:
        if instance_id not in self.router.instances:
            return
        self.set_role(instance_id, Role.DRAINING)
        self.send_to(instance_id, gw.AttachResponse(drain=gw.Drain(reason=reason)))

    def _observe_membership(self) -> None:
        roles = (i.role for i in self.router.instances.values())
        self.metrics.membership(roles, self.router.epoch)

    def _announce_role(self, instance_id: str) -> None:
        self._observe_membership()  # every role change is announced
        instance = self.router.instances.get(instance_id)
        if instance is None:
            return
        self.send_to(
            instance_id,
            gw.AttachResponse(
                role_change=gw.RoleChange(
                    role=wire.role_to_proto(instance.role), epoch=self.router.epoch
                )
            ),
        )

    def record_handoff(self, h: Handoff, missed: int) -> None:
        self.ledger.record_handoff(h, missed=missed)
        self.metrics.handoff(h.phase.value, h.pause_ms)
        self._flush()

    # -- the exchange feed (FeedSink) ---------------------------------------------------------

    def on_candle(self, candle: Candle, source: str) -> None:
        update = self.book.apply(candle)
        if not update.newly_closed:
            return
        now = self._now_ms()
        self.stats.candles_closed += 1
        self.ledger.record_candle(candle, source=source, observed_ms=now)
        for settlement in self.venue.on_candle(candle):
            self.ledger.record_settlement(settlement, settled_ms=now)
            self._broadcast(gw.AttachResponse(settlement=wire.settlement_to_proto(settlement)))

    def on_connection(self, event: str, detail: str) -> None:
        self.ledger.record_connection_event(ConnectionEvent(self._now_ms(), event, detail))
        log.info("exchange connection", extra={"event": event, "detail": detail})

    def on_malformed(self, reason: str, raw: str) -> None:
        self.stats.malformed += 1
        log.warning("malformed exchange message skipped", extra={"why": reason, "raw": raw[:200]})


def _evaluations_in(msg: gw.AttachResponse) -> int:
    if msg.WhichOneof("body") == "evaluate_batch":
        return len(msg.evaluate_batch.requests)
    return 0


def _as_shadow(msg: gw.AttachResponse) -> gw.AttachResponse:
    copy = gw.AttachResponse()
    copy.CopyFrom(msg)
    shadow = wire.role_to_proto(Role.SHADOW)
    for request in copy.evaluate_batch.requests:
        request.role = shadow
    return copy
