"""The clock loop: waits for the clock to start (and for the exchange backfill, through
``Warmup``), then at each tick's schedule resolves what expired, dispatches the tick, lets a
handoff act at the boundary and right after the dispatch, and writes the tick's rows; when
stopping, waits for what is still pending.

Offers ``run`` (a task) to ``app.Gateway``; uses ``TickDispatch``, ``Settling``,
``Boundaries``, ``TickWrites``, ``Flusher`` and ``Warmup`` (ports.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from baton.gateway.core.clock import SlotClock
from baton.gateway.core.router import Router
from baton.gateway.ports import Boundaries, Flusher, Settling, TickDispatch, TickWrites, Warmup
from baton.model import Slot

log = logging.getLogger(__name__)


class Ticker:
    def __init__(
        self,
        *,
        cadence_ms: int,
        slots: tuple[Slot, ...],
        router: Router,
        dispatcher: TickDispatch,
        outcomes: Settling,
        handoffs: Boundaries,
        ledger: TickWrites,
        writer: Flusher,
        go: asyncio.Event,
        stopping: asyncio.Event,
        now_ms: Callable[[], int],
        warmup: Warmup | None = None,
    ) -> None:
        self._cadence_ms = cadence_ms
        self._slots = slots
        self._router = router
        self._dispatcher = dispatcher
        self._outcomes = outcomes
        self._handoffs = handoffs
        self._ledger = ledger
        self._writer = writer
        self._clock_go = go  # set: the clock starts (at once, or on the first ACTIVE)
        self._stopping = stopping
        self._now_ms = now_ms
        self._warmup = warmup  # None: the first tick waits for nothing but ``go``
        self.clock_started = asyncio.Event()

    async def run(self) -> None:
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
            now = self._now_ms()
            self._outcomes.resolve(self._router.expire(now))
            plan = clock.plan(now, next_index)
            for late in plan.late:
                log.warning("tick missed by the gateway", extra={"tick": late.index})
                self._outcomes.resolve(self._router.on_late_tick(late))
            if plan.dispatch is not None:
                # Between two ticks: the only place a handoff flips (G4).
                self._handoffs.on_boundary(now)
                if self._warmup is not None:
                    self._warmup.before_tick()
                dispatched = self._dispatcher.dispatch(plan.dispatch, now)
                self._outcomes.track()
                if self._router.pending:
                    # Written with this tick's flush, before any request leaves the process
                    # (no await in between): a restart after a crash never reuses these seqs.
                    tick, seq_of = plan.dispatch, self._router.seq_of
                    self._ledger.reserve_seqs({s.slot_id: seq_of(s, tick) for s in self._slots})
                self._handoffs.after_dispatch(plan.dispatch.scheduled_ms, dispatched)
            next_index = plan.next_index
            self._writer.flush()
        # Stopping: every dispatched evaluation is resolved before we go.
        last_deadline = clock.tick(next_index - 1).deadline_ms if next_index else 0
        remaining = (last_deadline - self._now_ms()) / 1000
        if self._router.pending and remaining > 0:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._outcomes.settled()
        self._outcomes.resolve(self._router.expire(max(self._now_ms(), last_deadline)))
        self._writer.flush()

    async def _sleep_until(self, t_ms: int) -> None:
        delay = (t_ms - self._now_ms()) / 1000
        if delay <= 0:
            return
        stop = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({stop}, timeout=delay)
        finally:
            stop.cancel()
