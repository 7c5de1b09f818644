"""The tick loop in-process over a book of three lanes (real routers, recording fakes of the
rest): every lane is dispatched at every tick, and the lane served first moves on by one each
tick, so under overload no strategy is always the last served (and the first to miss)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from baton.gateway.core.clock import Tick
from baton.gateway.core.records import EvaluationRecord, Staleness
from baton.gateway.core.router import Router
from baton.gateway.metrics import GatewayMetrics
from baton.gateway.outcomes import GatewayStats
from baton.gateway.ticker import Ticker
from baton.model import Slot

SLOTS = (Slot("BTC", "BTCUSDT", "5m"),)


@dataclass
class Calls:
    want: int  # dispatches to see before the test stops the clock
    order: list[tuple[int, str]] = field(default_factory=list)
    enough: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class FakeDispatcher:
    name: str
    calls: Calls

    def dispatch(self, tick: Tick, now: int, stale: Mapping[str, Staleness]) -> float:
        self.calls.order.append((tick.index, self.name))
        if len(self.calls.order) >= self.calls.want:
            self.calls.enough.set()
        return float(now)


class FakeOutcomes:
    def resolve(self, records: tuple[EvaluationRecord, ...]) -> None:
        pass

    def track(self) -> None:
        pass

    async def settled(self) -> None:
        pass


class FakeBoundaries:
    def on_boundary(self, now: int) -> None:
        pass

    def after_dispatch(self, scheduled_ms: int, dispatched_ms: float) -> None:
        pass


class FakeStandby:
    def on_boundary(self, now: int) -> None:
        pass

    def after_dispatch(self, tick_index: int) -> None:
        pass


@dataclass
class FakeLane:
    router: Router
    dispatcher: FakeDispatcher
    outcomes: FakeOutcomes = field(default_factory=FakeOutcomes)
    handoffs: FakeBoundaries = field(default_factory=FakeBoundaries)
    standby: FakeStandby = field(default_factory=FakeStandby)


class Rows:
    def reserve_seqs(self, seqs: Mapping[str, int]) -> None:
        pass

    def flush(self) -> None:
        pass

    def flush_early(self) -> None:
        pass


async def test_every_lane_every_tick_and_the_first_served_rotates() -> None:
    calls = Calls(want=4 * 3)
    lanes = tuple(
        FakeLane(Router(SLOTS, strategy=name), FakeDispatcher(name, calls))
        for name in ("a", "b", "c")
    )
    go, stopping = asyncio.Event(), asyncio.Event()
    go.set()
    rows = Rows()
    ticker = Ticker(
        cadence_ms=20,
        lanes=lambda: lanes,
        freshness=lambda now: {},
        ledger=rows,
        writer=rows,
        metrics=GatewayMetrics(s.slot_id for s in SLOTS),
        stats=GatewayStats(),
        go=go,
        stopping=stopping,
        now_ms=lambda: time.time_ns() // 1_000_000,
        wall_ms_f=lambda: time.time_ns() / 1_000_000,
    )
    task = asyncio.create_task(ticker.run())
    await asyncio.wait_for(calls.enough.wait(), 10)
    stopping.set()
    await asyncio.wait_for(task, 5)

    by_tick: dict[int, list[str]] = {}
    for index, name in calls.order:
        by_tick.setdefault(index, []).append(name)
    ticks = sorted(by_tick)[:4]
    for index in ticks:
        served = by_tick[index]
        assert sorted(served) == ["a", "b", "c"], (index, served)  # every lane, once
        start = index % 3
        assert served == ["a", "b", "c"][start:] + ["a", "b", "c"][:start], (index, served)
    assert len({by_tick[i][0] for i in ticks[:3]}) == 3  # each lane first in turn
