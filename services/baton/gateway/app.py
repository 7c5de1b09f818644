"""The market gateway process: builds the parts of its I/O shell, wires them through the
interfaces of ``ports.py``, binds the gRPC server and runs the clock and the feed.

The parts (docs/gateway.md): ``ticker`` (the clock loop), ``dispatch`` (one tick's batches),
``instances`` (connections and roles), ``execution`` (answers, bets, the flip), ``outcomes``
(every evaluation's one outcome), ``feed_sink`` (candles and settlements), ``ledger_writer``
(the per-tick flush and its health) and ``coordinator`` (handoffs). The decisions live in the
pure modules of ``core/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import grpc
from prometheus_client import CollectorRegistry

from baton.gateway.config import ClockStart, GatewayConfig
from baton.gateway.coordinator import Coordinator
from baton.gateway.core.book import StrategyEntry
from baton.gateway.core.pricing import pricing_model
from baton.gateway.core.records import EvaluationRecord
from baton.gateway.core.release import Standby
from baton.gateway.core.router import Router
from baton.gateway.core.venue import PaperVenue
from baton.gateway.dispatch import Dispatcher
from baton.gateway.exchange import ExchangeFeed
from baton.gateway.execution import Execution
from baton.gateway.feed_sink import MarketSink
from baton.gateway.freshness_watch import FreshnessWatch
from baton.gateway.instances import Instances
from baton.gateway.lanes import Lane, Lanes
from baton.gateway.ledger import Ledger, LedgerError, RunEnd
from baton.gateway.ledger_writer import LedgerWriter
from baton.gateway.market_data import BookSink, MarketData, market_book
from baton.gateway.metrics import GatewayMetrics, MetricsServer, ReplicationMetrics
from baton.gateway.outcomes import GatewayStats, Outcomes
from baton.gateway.ports import HandoffFacts, HandoverPort
from baton.gateway.release import LedgerState, ReleaseGate
from baton.gateway.replication import Replicator, add_replication_servicer
from baton.gateway.server import Parts, add_servicer
from baton.gateway.standby_keeper import StandbyKeeper
from baton.gateway.ticker import Ticker
from baton.gateway.warmup import BackfillGate
from baton.model import Role
from baton.v1 import gateway_pb2 as gw

log = logging.getLogger(__name__)

# Bigger than any state snapshot we accept (the SDK caps state at 64 MiB).
MAX_MESSAGE_BYTES = 96 * 1024 * 1024


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def wall_ms_f() -> float:
    """Wall time in ms with sub-ms precision: dispatch delays and cutover pauses are ~1 ms."""
    return time.time_ns() / 1_000_000


def always() -> bool:
    return True


def prefer_wait_ms(cadence_ms: int) -> int:
    """How long a started gateway waits for the pod that held a strategy's state (hosts dial
    every gateway address and attach within a second or two) before another goes on: two
    cadences, at least 3 s."""
    return max(2 * cadence_ms, 3000)


class Gateway:
    """One gateway process. ``start()`` binds and begins; ``stop()`` ends cleanly.

    Under leader election (``replica.Replica`` builds it once elected) it leads ``term`` and
    executes only while ``executing()`` holds: the ticker's dispatch, the execution of an answer
    and a settlement each ask it at that instant (docs/gateway-standby.md). Without election the
    term is 0 and it always executes. ``registry``: the replica's, which already serves /metrics;
    ``market``: the replica's market book and running feed (``market_data.py``), taken over warm;
    ``on_fenced(term, source)``: a strategy host has seen a newer term than ``term``;
    ``replication``: serve ``ReplicationService`` from this ledger (a replica with a ledger of its
    own: its standby follows it); ``seq_gap``: seqs skipped per slot past the ledger's last (a
    new leader whose predecessor may have dispatched ticks it never replicated).
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        now_ms: Callable[[], int] = wall_ms,
        term: int = 0,
        executing: Callable[[], bool] = always,
        registry: CollectorRegistry | None = None,
        market: MarketData | None = None,
        on_fenced: Callable[[int, str], None] | None = None,
        replication: ReplicationMetrics | None = None,
        seq_gap: int = 0,
        handover: HandoverPort | None = None,
    ) -> None:
        self.config = config
        self._now_ms = now_ms
        self.term = term
        self._handover = handover  # a replica's ControlService.Handover; None: not a replica
        self._executing = executing
        self.ledger = Ledger(
            config.ledger_path, max_pending_rows=config.ledger_max_pending_rows, term=term
        )
        # Attached to the ledger's commits before the first one (the run): every row reaches
        # the standby in the order it was written.
        self.replicator = (
            Replicator(self.ledger, metrics=replication) if replication is not None else None
        )
        self.slots = config.slots
        self._warm = market
        self.market = market.book if market is not None else market_book(config)
        # Sequence numbers never go backwards, even across gateway restarts; one clock for the
        # whole book, so every strategy's evaluation of a (slot, tick) has the same seq.
        self._seq_base = {k: v + 1 + seq_gap for k, v in self.ledger.last_seqs().items()}
        self.stats = GatewayStats()
        self.metrics = GatewayMetrics(
            (s.slot_id for s in self.slots),
            registry=registry,
            feed=market.metrics if market is not None else None,
        )
        self._metrics_server = MetricsServer(self.metrics.registry)
        self.metrics_addr: str | None = None  # bound HOST:PORT of /metrics, once started
        self.writer = LedgerWriter(self.ledger, self.metrics, now_ms)
        self._clock_go = asyncio.Event()
        self._stopping = asyncio.Event()
        self.lanes = Lanes(
            make_lane=self._make_lane,
            gateway_slots=self.slots,
            default_stake=config.venue.stake,
            ledger=self.ledger,
            now_ms=now_ms,
        )
        self.instances = Instances(
            book=self.lanes,
            cadence_ms=config.cadence_ms,
            send_queue=config.send_queue,
            ledger=self.ledger,
            metrics=self.metrics,
            active_seen=self._clock_go,
            now_ms=now_ms,
            # Stamped on everything sent to a host; a host that has seen a newer term refuses
            # it, and ``on_fenced`` (the replica's elector) deposes this gateway at once.
            term=lambda: self.term,
            on_fenced=on_fenced,
        )
        # Fills and settlements reach the strategies through the gate: once the ledger (and the
        # standby following it) holds them, so the next leader knows every bet a strategy was
        # told of (docs/gateway-standby.md, core/release.py).
        self.gate = ReleaseGate(
            self.instances,
            ledger=lambda: LedgerState(self.ledger.pending_rows, self.ledger.last_commit.position),
            # Not while writes fail: the tick's flush retries, the gate's bound releases.
            write=self.writer.flush_early,
            standby=self._standby,
            now_ms=now_ms,
            wait_ms=config.release_wait_ms,
            metrics=self.metrics,
        )
        self.writer.on_flushed = self.gate.pump
        if self.replicator is not None:
            self.replicator.on_change = self.gate.pump
        # The strategies earlier runs served are scheduled again (missed until they attach).
        self.lanes.restore(
            self.ledger.strategies(),
            closing=[
                row
                for row in self.ledger.strategies(retired=True)
                if row.retired_ms is not None and self.ledger.open_bets(row.name)
            ],
        )
        # Each strategy waits (bounded) for the pod that held its state when the last run
        # ended: whichever host re-attaches first must not go on with its own state.
        for lane in self.lanes:
            lane.router.prefer_pod = self.ledger.last_active_pod(lane.name)
        self._prefer_timer: asyncio.TimerHandle | None = None
        sink = MarketSink(
            book=self.market,
            venues=self.lanes.venues,
            ledger=self.ledger,
            peers=self.gate,
            stats=self.stats,
            now_ms=now_ms,
            executing=executing,
        )
        self._sink = sink
        if market is not None:
            self.feed = market.feed  # already running: the replica owns its task
        else:
            self.feed = ExchangeFeed(config.exchange, config.streams, sink, self.metrics.feed)
        self.ticker = Ticker(
            cadence_ms=config.cadence_ms,
            lanes=self.lanes,
            freshness=FreshnessWatch(
                slots=self.slots,
                book=self.market,
                stale_after_ms=config.stale_after_ms,
                needs_history=config.history > 0,
            ),
            ledger=self.ledger,
            writer=self.writer,
            metrics=self.metrics,
            stats=self.stats,
            go=self._clock_go,
            stopping=self._stopping,
            now_ms=now_ms,
            wall_ms_f=wall_ms_f,
            executing=executing,
            warmup=BackfillGate(
                feed=self.feed,
                book=self.market,
                max_wait_ms=config.backfill_wait_ms,
                metrics=self.metrics,
                stopping=self._stopping,
                now_ms=now_ms,
            ),
        )
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._clock_task: asyncio.Task[None] | None = None
        self.run_id = 0

    def _standby(self) -> Standby | None:
        """The standby following this ledger, as the release gate needs it (None: no
        replication here)."""
        r = self.replicator
        if r is None:
            return None
        return Standby(following=r.follower is not None, acked=r.acked_position)

    def _make_lane(self, entry: StrategyEntry) -> Lane:
        """The parts of one strategy of the book; shared: clock, feed, market, connections,
        ledger. The coordinator drives the parts below and they tell it what happens: it is
        built last, and they reach it through a forwarder until then."""
        config, now_ms = self.config, self._now_ms
        router = Router(entry.slots, strategy=entry.name, seq_base=dict(self._seq_base))
        venue = PaperVenue(
            replace(config.venue, stake=entry.stake),
            entry.slots,
            pricing=pricing_model(config.venue),
            bet_prefix=f"{entry.name}:",
        )
        venue.restore(self.ledger.open_bets(entry.name))
        facts = _LaneFacts()
        outcomes = Outcomes(router, self.ledger, self.metrics, self.stats, facts)
        execution = Execution(
            router=router,
            book=self.market,
            venue=venue,
            slots=entry.slots,
            ledger=self.ledger,
            peers=self.gate,
            outcomes=outcomes,
            facts=facts,
            stats=self.stats,
            now_ms=now_ms,
            executing=self._executing,
        )
        handoffs = Coordinator(
            fleet=self.instances,
            takeover=execution,
            roster=router,
            recorder=self.writer,
            now_ms=now_ms,
        )
        keeper = StandbyKeeper(
            strategy=entry.name,
            router=router,
            fleet=self.instances,
            taps=self.instances,
            takeover=execution,
            handoffs=handoffs,
            ledger=self.ledger,
            metrics=self.metrics,
            now_ms=now_ms,
            stopping=self._stopping,
        )
        facts.target = handoffs
        facts.keeper = keeper
        dispatcher = Dispatcher(
            router=router,
            book=self.market,
            history=config.history,
            outlets=self.instances,
            outcomes=outcomes,
            stats=self.stats,
            wall_ms_f=wall_ms_f,
        )
        self.metrics.membership(entry.name, (), router.epoch)
        return Lane(entry, router, venue, outcomes, execution, dispatcher, handoffs, keeper, facts)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
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
                # gRPC sets SO_REUSEPORT by default: a second gateway given the same port would
                # start, and the kernel would split the strategy hosts between the two.
                ("grpc.so_reuseport", 0),
            ]
        )
        add_servicer(
            server,
            Parts(
                instances=self.instances,
                lanes=self.lanes,
                ledger=self.writer,
                handover=self._handover,
            ),
        )
        if self.replicator is not None:
            add_replication_servicer(server, self.replicator)
        try:
            self.port = server.add_insecure_port(self.config.listen)
        except RuntimeError as exc:  # grpcio raises on a port in use; older ones returned 0
            raise OSError(f"cannot listen on {self.config.listen} (gateway.listen): {exc}") from exc
        if self.port == 0:
            raise OSError(f"cannot listen on {self.config.listen} (gateway.listen)")
        if self.config.metrics_listen is not None:
            self.metrics_addr = self._metrics_server.start(self.config.metrics_listen)
        await server.start()
        self._server = server
        if self._warm is not None:
            self._warm.sink.target = self._sink  # from now on candles are recorded and settle
        else:
            self._tasks.append(asyncio.create_task(self.feed.run(), name="feed"))
        self._clock_task = asyncio.create_task(self.ticker.run(), name="clock")
        if self.config.clock_start is ClockStart.IMMEDIATE:
            self._clock_go.set()
        waiting = {lane.name: lane.router.prefer_pod for lane in self.lanes}
        if any(waiting.values()):
            wait_ms = prefer_wait_ms(self.config.cadence_ms)
            log.info(
                "waiting for the pods that held each strategy's state",
                extra={"pods": waiting, "wait_ms": wait_ms},
            )
            self._prefer_timer = asyncio.get_running_loop().call_later(
                wait_ms / 1000, self._stop_preferring
            )
        log.info(
            "gateway started",
            extra={
                "port": self.port,
                "slots": len(self.slots),
                "run": self.run_id,
                "strategies": [lane.name for lane in self.lanes],
            },
        )

    def request_stop(self) -> None:
        self._stopping.set()

    def _stop_preferring(self) -> None:
        """The preferred pods had their time: a strategy still without an ACTIVE goes on with
        the instance attached first, with its own state (as a gateway without a ledger would)."""
        self._prefer_timer = None
        for lane in self.lanes:
            router = lane.router
            pod, router.prefer_pod = router.prefer_pod, None
            if pod is None or router.active_id is not None or router.hold:
                continue
            first = router.first_standby()
            log.warning(
                "the pod that held the strategy's state did not attach",
                extra={
                    "strategy": lane.name,
                    "waited_for": pod,
                    "instance": first,  # goes on with its own state (None: nobody attached)
                },
            )
            if first is not None:
                lane.execution.flip_to(first, previous_role=Role.STANDBY)
                self._clock_go.set()  # the clock starts on the first ACTIVE

    async def stop_listening(self) -> None:
        """Close the gRPC port and every stream at once (a deposed leader: nothing it could
        still receive may be executed, and the new leader may bind the same address)."""
        if self._server is not None:
            await self._server.stop(0)

    async def wait_stopped(self) -> None:
        await self._stopping.wait()

    async def stop_after_next_tick(
        self, grace_s: float = 2.0, *, after_close: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """A planned handover (docs/gateway-standby.md): dispatch the next tick, resolve and
        write it, then stop; the next leader takes over within the cadence that follows, so no
        tick is left unscheduled. Bounded: a clock that has not started stops at once, and one
        tick is at most two cadences away (the tick and its deadline)."""
        ticker = self.ticker
        if ticker.clock_started.is_set() and not self._stopping.is_set():
            ticker.last_tick.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2 * self.config.cadence_ms / 1000 + grace_s):
                    await ticker.clock_stopped.wait()
        await self.stop(grace_s, end=RunEnd.HANDOVER, after_close=after_close)

    @property
    def last_tick_ms(self) -> int:
        """The scheduled time of the last tick dispatched (0: none yet)."""
        return self.ticker.last_scheduled_ms

    async def stop(
        self,
        grace_s: float = 2.0,
        *,
        end: RunEnd = RunEnd.STOPPED,
        after_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Finish the tick in flight (answers or timeouts), record it and how the run ``end``s,
        then close everything. ``after_close``: run once the port is closed while the calls in
        flight still have ``grace_s`` to finish (a Handover's answer leaves after the lease's
        release, which must follow the port's closing: the next leader may bind the address)."""
        self._stopping.set()
        if self._prefer_timer is not None:
            self._prefer_timer.cancel()
        if self._clock_task is not None:
            await self._clock_task
        if self._warm is not None:
            # The replica's feed outlives this gateway: its candles no longer reach the ledger.
            self._warm.sink.target = BookSink(self.market, self._now_ms)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if end is not RunEnd.DEPOSED and not await self.gate.drained(grace_s):
            # Their rows are written; the strategies hear of them only from the ledger now.
            log.warning("fills or settlements held past the stop's grace")
        self.gate.close()
        self.instances.close_all("gateway stopping")
        # The run's last rows (each stream's detachment, recorded as its handler ends; bounded),
        # then its end: the last thing it writes, so a standby that holds the end holds all.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                await self.instances.all_detached.wait()
        self.writer.flush()
        if self.run_id:
            try:
                self.ledger.end_run(ended_ms=self._now_ms(), reason=end.value)
            except LedgerError as exc:  # the report then reads the run as one that never said
                log.error("cannot record the run's end", extra={"error": str(exc)})
        if self.replicator is not None:
            if end is RunEnd.HANDOVER:
                # The standby leads next: it must hold every row, the run's end included.
                head = self.ledger.last_commit.position
                if not await self.replicator.wait_acked(head, within_s=grace_s):
                    log.warning("standby did not acknowledge the last rows", extra={"head": head})
            self.replicator.close("gateway stopping")
        if self._server is not None:
            closing = asyncio.ensure_future(self._server.stop(grace_s))
            if after_close is not None:
                # The stop's first step closes the listening socket (grpc core shuts its
                # listeners down at once); then the calls in flight get ``grace_s``.
                await asyncio.sleep(0)
                await after_close()
            await closing
        elif after_close is not None:
            await after_close()
        self.ledger.close()
        log.info("gateway stopped", extra={"stats": vars(self.stats)})


class _LaneFacts:
    """``LaneFacts`` for the parts built before the coordinator and the keeper: forwards to
    them. An instance gone is the handoff's first (it may take over from its blue), then the
    keeper's (it takes over when nobody else did)."""

    target: HandoffFacts
    keeper: StandbyKeeper

    def on_gone(
        self, instance_id: str, reason: str, journal: list[gw.AttachResponse] | None = None
    ) -> None:
        self.target.on_gone(instance_id, reason, journal)
        self.keeper.on_gone(instance_id)

    def on_attached(self, instance_id: str) -> None:
        self.keeper.on_attached(instance_id)

    def on_broadcast(self, msg: gw.AttachResponse) -> None:
        self.target.on_broadcast(msg)

    def on_record(self, record: EvaluationRecord) -> None:
        self.target.on_record(record)

    @property
    def running(self) -> bool:
        return self.target.running

    def check_green_answer(self, instance_id: str, error: str, epoch: int) -> None:
        self.target.check_green_answer(instance_id, error, epoch)

    def on_executed(self, slot_id: str, seq: int, action: str) -> None:
        self.target.on_executed(slot_id, seq, action)

    def on_shadow_answer(self, instance_id: str, slot_id: str, seq: int, action: str) -> None:
        self.target.on_shadow_answer(instance_id, slot_id, seq, action)
