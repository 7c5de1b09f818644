"""The clock loop: waits for the clock to start, then at each tick's schedule resolves what
expired, decides the market data's freshness once, and for each strategy of the book
dispatches the tick and lets its handoff act at the boundary and right after the dispatch;
then writes the tick's rows. When stopping, waits for what is still pending.

The first tick waits for the exchange backfill (bounded, through ``Warmup``). One clock for the
whole book: every strategy's evaluation of a (slot, tick) has the same seq. Offers ``run`` (a
task) to ``app.Gateway``; uses ``TickLane`` (its ``TickDispatch``, ``Settling`` and
``Boundaries``), ``TickWrites``, ``Flusher`` and ``Warmup`` (ports.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from asyncio import FIRST_COMPLETED
from collections.abc import Callable, Mapping, Sequence

from baton.gateway.core.clock import SlotClock
from baton.gateway.core.records import Staleness
from baton.gateway.metrics import GatewayMetrics
from baton.gateway.outcomes import GatewayStats
from baton.gateway.ports import Flusher, TickLane, TickWrites, Warmup

log = logging.getLogger(__name__)

# The early write of a tick's answers gives up this long before the next boundary (whose flush
# writes them anyway): it never delays a dispatch.
ANSWERED_MARGIN_S = 0.05


class Ticker:
    def __init__(
        self,
        *,
        cadence_ms: int,
        lanes: Callable[[], Sequence[TickLane]],
        freshness: Callable[[int], Mapping[str, Staleness]],
        ledger: TickWrites,
        writer: Flusher,
        metrics: GatewayMetrics,
        stats: GatewayStats,
        go: asyncio.Event,
        stopping: asyncio.Event,
        now_ms: Callable[[], int],
        wall_ms_f: Callable[[], float],
        warmup: Warmup | None = None,
        executing: Callable[[], bool] = lambda: True,
    ) -> None:
        self._cadence_ms = cadence_ms
        self._lanes = lanes  # the book's strategies, as of now (a new one joins at a tick)
        self._freshness = freshness
        self._metrics = metrics
        self._stats = stats
        self._wall_ms_f = wall_ms_f
        self._ledger = ledger
        self._writer = writer
        self._clock_go = go  # set: the clock starts (at once, or on the first ACTIVE)
        self._stopping = stopping
        self._now_ms = now_ms
        self._warmup = warmup  # None: the first tick waits for nothing but ``go``
        # Under leader election: whether this replica may execute at this instant. A deposed
        # leader's clock stops at once (the replica then stops the gateway and exits).
        self._executing = executing
        # Set: stop after the next tick is dispatched and resolved (a planned handover: the next
        # leader then has almost a whole cadence before the tick after it).
        self.last_tick = asyncio.Event()
        self.clock_stopped = asyncio.Event()  # the loop has ended (its last flush written)
        self.clock_started = asyncio.Event()
        self.last_scheduled_ms = 0  # the scheduled time of the last tick dispatched

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self.clock_stopped.set()

    async def _run(self) -> None:
        go = asyncio.create_task(self._clock_go.wait())
        stop = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({go, stop}, return_when=asyncio.FIRST_COMPLETED)
        go.cancel()
        stop.cancel()
        if self._stopping.is_set():
            return
        if self._warmup is not None:
            # The first tick waits for the backfill (bounded): ticks that fall meanwhile were
            # never scheduled, the clock's origin is the first boundary after the wait.
            await self._warmup.wait()
            if self._stopping.is_set():
                return
        clock = SlotClock.starting_after(self._cadence_ms, self._now_ms())
        self.clock_started.set()
        log.info("clock started", extra={"origin_ms": clock.origin_ms})
        next_index = 0
        while not self._stopping.is_set():
            await self._sleep_until(clock.tick(next_index).scheduled_ms)
            if not self._executing():
                log.warning("clock stopped: no longer leading", extra={"tick": next_index})
                break
            now = self._now_ms()
            lanes = self._lanes()
            for lane in lanes:
                lane.outcomes.resolve(lane.router.expire(now))
            plan = clock.plan(now, next_index)
            for late in plan.late:
                log.warning("tick missed by the gateway", extra={"tick": late.index})
                for lane in lanes:
                    lane.outcomes.resolve(lane.router.on_late_tick(late))
            tick = plan.dispatch
            if tick is not None:
                self._stats.ticks += 1
                self.last_scheduled_ms = tick.scheduled_ms
                self._metrics.tick_dispatched(tick.scheduled_ms, self._wall_ms_f())
                if self._warmup is not None:
                    self._warmup.before_tick()
                stale = self._freshness(now)
                reserved: dict[str, int] = {}
                # Lanes in turn, starting one further each tick: under overload the lane served
                # last is the first to miss (bench: the book at the knee), so no strategy is
                # always last.
                start = tick.index % len(lanes) if lanes else 0
                for lane in (*lanes[start:], *lanes[:start]):
                    # Between two ticks: the only place a handoff flips or a recovered instance
                    # takes over (G4).
                    lane.standby.on_boundary(now)
                    lane.handoffs.on_boundary(now)
                    dispatched = lane.dispatcher.dispatch(tick, now, stale)
                    lane.outcomes.track()
                    router = lane.router
                    if router.pending:
                        reserved.update({s.slot_id: router.seq_of(s, tick) for s in router.slots})
                    lane.handoffs.after_dispatch(tick.scheduled_ms, dispatched)
                    lane.standby.after_dispatch(tick.index)
                if reserved:
                    # Written with this tick's flush, before any request leaves the process
                    # (no await since the dispatch): a restart after a crash never reuses them.
                    self._ledger.reserve_seqs(reserved)
            next_index = plan.next_index
            self._writer.flush()
            if self.last_tick.is_set() and tick is not None:
                log.info("clock stopped after its last tick", extra={"tick": tick.index})
                break
            if tick is not None and await self._answered_before(
                clock.tick(next_index).scheduled_ms
            ):
                # The tick's answers written as soon as they are all in (a few ms), not at the
                # next boundary: a leader killed mid-cadence leaves its standby (and its own
                # ledger) every tick it had answered (docs/gateway-standby.md).
                self._writer.flush_early()
        # Stopping: every dispatched evaluation is resolved before we go.
        lanes = self._lanes()
        last_deadline = clock.tick(next_index - 1).deadline_ms if next_index else 0
        remaining = (last_deadline - self._now_ms()) / 1000
        if any(lane.router.pending for lane in lanes) and remaining > 0:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await asyncio.gather(*(lane.outcomes.settled() for lane in lanes))
        for lane in lanes:
            lane.outcomes.resolve(lane.router.expire(max(self._now_ms(), last_deadline)))
        self._writer.flush()

    async def _answered_before(self, t_ms: int) -> bool:
        """Whether every lane's pending evaluations are resolved before ``t_ms`` (less a
        margin: the boundary's own flush writes whatever is late) and no stop came first."""
        if self._stopping.is_set():
            return False
        lanes = [lane for lane in self._lanes() if lane.router.pending]
        if not lanes:
            return True  # answered already, as the dispatch went out
        delay = (t_ms - self._now_ms()) / 1000 - ANSWERED_MARGIN_S
        if delay <= 0:
            return False

        async def answered() -> None:
            await asyncio.gather(*(lane.outcomes.settled() for lane in lanes))

        async def stopped() -> None:
            await self._stopping.wait()

        waits = {asyncio.create_task(answered()), asyncio.create_task(stopped())}
        try:
            done, _ = await asyncio.wait(waits, timeout=delay, return_when=FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*waits)
        return bool(done) and not self._stopping.is_set()

    async def _sleep_until(self, t_ms: int) -> None:
        delay = (t_ms - self._now_ms()) / 1000
        if delay <= 0:
            return
        stop = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({stop}, timeout=delay)
        finally:
            stop.cancel()
