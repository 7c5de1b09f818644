"""One tick through the dispatch in-process: the real ``Dispatcher``, ``Execution`` and
``Outcomes`` over the real (pure) router, book and venue, with fakes of the instances'
streams (``Outlets``/``Peers``), the ledger rows and the handoff facts."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from baton import wire
from baton.gateway.core.clock import SlotClock, Tick
from baton.gateway.core.market import MarketBook
from baton.gateway.core.records import EvalOutcome, Staleness
from baton.gateway.core.router import InstanceInfo, Router
from baton.gateway.core.venue import PaperVenue, VenueConfig
from baton.gateway.dispatch import Dispatcher
from baton.gateway.execution import Execution
from baton.gateway.freshness_watch import FreshnessWatch
from baton.gateway.metrics import GatewayMetrics
from baton.gateway.outcomes import GatewayStats, Outcomes
from baton.model import Action, Candle, Role, Slot, timeframe_ms, window_start
from baton.v1 import gateway_pb2 as gw
from tests.component.fakes import Clock, FakeFacts, FakeOutlets, FakeRows, kind

BTC = Slot("BTC", "BTCUSDT", "5m")
ETH = Slot("ETH", "ETHUSDT", "5m")
SLOTS = (BTC, ETH)
B, E = BTC.slot_id, ETH.slot_id
CADENCE_MS = 1_000


class Wall:
    """The dispatch's sub-ms wall clock: 0.25 ms later at every read."""

    def __init__(self) -> None:
        self.reads: Iterator[float] = (500.0 + 0.25 * i for i in range(1_000))
        self.last = 0.0

    def __call__(self) -> float:
        self.last = next(self.reads)
        return self.last


@dataclass
class Bed:
    clock: Clock
    router: Router
    outlets: FakeOutlets
    rows: FakeRows
    facts: FakeFacts
    stats: GatewayStats
    outcomes: Outcomes
    execution: Execution
    dispatcher: Dispatcher
    wall: Wall
    blue: str
    green: str
    tick: Tick
    book: MarketBook
    freshness: FreshnessWatch

    def dispatch(self, tick: Tick) -> float:
        """As the tick loop does: freshness decided once, then the lane's dispatch."""
        now = self.clock()
        return self.dispatcher.dispatch(tick, now, self.freshness(now))


def bed(*, refuse: set[str] | None = None) -> Bed:
    clock = Clock(1_700_000_000_000)
    router = Router(SLOTS)
    blue = router.attach(InstanceInfo("blue", "momentum", "v1", 1), clock()).instance_id
    green = router.attach(InstanceInfo("green", "momentum", "v2", 1), clock()).instance_id
    router.set_role(green, Role.SHADOW)
    book = MarketBook([(s.symbol, s.timeframe) for s in SLOTS], depth=3)
    start = window_start(clock(), "5m")
    size = timeframe_ms("5m")
    book.apply(Candle("BTCUSDT", "5m", start - size, start - 1, 1, 2, 0.5, 1.5, closed=True))
    book.apply(Candle("BTCUSDT", "5m", start, start + size - 1, 1.5, 1.6, 1.4, 1.55), clock())
    outlets = FakeOutlets(refuse=refuse or set())
    rows, facts, stats = FakeRows(), FakeFacts(), GatewayStats()
    metrics = GatewayMetrics(s.slot_id for s in SLOTS)
    outcomes = Outcomes(router, rows, metrics, stats, facts)
    execution = Execution(
        router=router,
        book=book,
        venue=PaperVenue(VenueConfig(), SLOTS),
        slots=SLOTS,
        ledger=rows,
        peers=outlets,
        outcomes=outcomes,
        facts=facts,
        stats=stats,
        now_ms=clock,
    )
    wall = Wall()
    dispatcher = Dispatcher(
        router=router,
        book=book,
        history=3,
        outlets=outlets,
        outcomes=outcomes,
        stats=stats,
        wall_ms_f=wall,
    )
    freshness = FreshnessWatch(slots=SLOTS, book=book, stale_after_ms=3_600_000, needs_history=True)
    tick = SlotClock.starting_after(CADENCE_MS, clock()).tick(0)
    clock.t_ms = tick.scheduled_ms
    return Bed(
        clock, router, outlets, rows, facts, stats, outcomes, execution, dispatcher, wall, blue,
        green, tick, book, freshness,
    )  # fmt: skip


def requests(msg: gw.AttachResponse) -> list[tuple[str, int, Role]]:
    return [
        (r.slot.slot_id, r.seq, wire.role_from_proto(r.role)) for r in msg.evaluate_batch.requests
    ]


def test_one_tick_one_batch_per_instance_answers_executed_a_timeout_missed() -> None:
    b = bed()
    seq = {s.slot_id: b.router.seq_of(s, b.tick) for s in SLOTS}
    active_done = b.dispatch(b.tick)
    b.outcomes.track()

    # One batch per instance, the ACTIVE's first (droppable), then the shadow's (not).
    assert [(i, kind(m), d) for i, m, d in b.outlets.sent] == [
        (b.blue, "evaluate_batch", True),
        (b.green, "evaluate_batch", False),
    ]
    (_, to_blue, _), (_, to_green, _) = b.outlets.sent
    assert requests(to_blue) == [(B, seq[B], Role.ACTIVE), (E, seq[E], Role.ACTIVE)]
    assert requests(to_green) == [
        (B, seq[B], Role.SHADOW),
        (E, seq[E], Role.SHADOW),
    ]
    btc = to_blue.evaluate_batch.requests[0]
    assert (btc.deadline_ms, btc.epoch, len(btc.history), btc.live.close) == (
        b.tick.deadline_ms,
        1,
        1,
        1.55,
    )
    # The shadow's request is the ACTIVE's, copied, but for its role.
    shadow_btc = gw.EvaluationRequest()
    shadow_btc.CopyFrom(to_green.evaluate_batch.requests[0])
    shadow_btc.role = btc.role
    assert shadow_btc == btc
    # Dispatched to the ACTIVE when its batch was queued, before the shadow's.
    assert active_done == 500.0
    assert b.stats.dispatched == 2  # (ticks are counted by the tick loop, once for the book)
    assert not b.outcomes.idle.is_set()

    # Blue answers BTC in time: executed, with its bet, and the fill goes to the instances.
    b.clock.advance(40)
    up = wire.action_to_proto(Action.UP)
    b.execution.on_decision(b.blue, gw.Decision(slot_id=B, seq=seq[B], epoch=1, action=up))
    # Green's shadow answer is compared, never executed.
    b.execution.on_decision(b.green, gw.Decision(slot_id=E, seq=seq[E], epoch=1, action=up))
    [executed] = b.rows.evaluations
    assert (executed.slot_id, executed.outcome, executed.instance_id) == (
        B,
        EvalOutcome.EXECUTED,
        b.blue,
    )
    assert executed.bet_id is not None
    assert [f.bet_id for f in b.rows.bets] == [executed.bet_id]
    assert [kind(m) for m in b.outlets.broadcasts] == ["fill"]
    assert ("executed", (B, seq[B], "UP")) in b.facts.told
    assert (E, seq[E], "shadow") in b.rows.dropped

    # Nobody answers ETH: at its deadline it is a timeout, counted as missed.
    b.clock.t_ms = b.tick.deadline_ms
    b.outcomes.resolve(b.router.expire(b.clock()))
    assert [(r.slot_id, r.outcome) for r in b.rows.evaluations] == [
        (B, EvalOutcome.EXECUTED),
        (E, EvalOutcome.TIMEOUT),
    ]
    assert (b.stats.executed, b.stats.missed, b.stats.errors) == (1, 1, 0)
    assert b.outcomes.idle.is_set()


def test_a_batch_the_active_cannot_take_is_resolved_undelivered_at_once() -> None:
    b = bed(refuse={"i1-blue"})
    b.dispatch(b.tick)
    assert [(r.slot_id, r.outcome) for r in b.rows.evaluations] == [
        (B, EvalOutcome.UNDELIVERED),
        (E, EvalOutcome.UNDELIVERED),
    ]
    assert (b.stats.dispatched, b.stats.missed) == (0, 2)
    assert [i for i, _, _ in b.outlets.sent] == [b.green]  # the shadow still follows
    assert b.router.pending == {}


def test_the_flip_executes_what_the_new_active_already_answered_as_a_shadow() -> None:
    """``Execution.flip_to``, the take-over: blue owed BTC and ETH, green had answered BTC
    as a shadow; green becomes ACTIVE and its BTC answer is executed at once."""
    b = bed()
    seq = {s.slot_id: b.router.seq_of(s, b.tick) for s in SLOTS}
    b.dispatch(b.tick)
    b.clock.advance(40)
    down = wire.action_to_proto(Action.DOWN)
    b.execution.on_decision(b.green, gw.Decision(slot_id=B, seq=seq[B], epoch=1, action=down))
    assert b.rows.evaluations == []

    b.execution.flip_to(b.green, previous_role=Role.SHADOW)
    assert (b.router.active_id, b.router.epoch) == (b.green, 2)
    assert b.outlets.announced == [b.green, b.blue]
    assert [(e.instance_id, e.event, e.epoch) for e in b.rows.instance_events] == [
        (b.green, "role", 2)
    ]
    [taken_over] = b.rows.evaluations
    assert (taken_over.slot_id, taken_over.outcome, taken_over.instance_id, taken_over.action) == (
        B,
        EvalOutcome.EXECUTED,
        b.green,
        "DOWN",
    )
    # ETH, unanswered, is green's now: its answer under the epoch it was sent with counts.
    up = wire.action_to_proto(Action.UP)
    b.execution.on_decision(b.green, gw.Decision(slot_id=E, seq=seq[E], epoch=1, action=up))
    assert [(r.slot_id, r.instance_id) for r in b.rows.evaluations] == [
        (B, b.green),
        (E, b.green),
    ]
    assert b.stats.executed == 2


def test_freshness_is_decided_at_dispatch_recorded_and_logged_when_it_changes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    b = bed()  # BTC has a live frame and history; ETH has had nothing from the exchange
    up = wire.action_to_proto(Action.UP)

    def tick_answered(index: int) -> dict[str, Staleness]:
        tick = SlotClock.starting_after(CADENCE_MS, b.tick.scheduled_ms - 1).tick(index)
        b.clock.t_ms = tick.scheduled_ms
        b.dispatch(tick)
        b.clock.advance(10)
        for slot in SLOTS:
            seq = b.router.seq_of(slot, tick)
            b.execution.on_decision(
                b.blue, gw.Decision(slot_id=slot.slot_id, seq=seq, epoch=1, action=up)
            )
        return {
            r.slot_id: r.stale for r in b.rows.evaluations if r.seq == b.router.seq_of(BTC, tick)
        }

    with caplog.at_level(logging.INFO, logger="baton.gateway.freshness_watch"):
        assert tick_answered(0) == {B: Staleness.FRESH, E: Staleness.NO_LIVE}
        assert tick_answered(1) == {B: Staleness.FRESH, E: Staleness.NO_LIVE}
        # ETH's first live frame arrives, its backfill has not: no history yet.
        start = window_start(b.clock(), "5m")
        size = timeframe_ms("5m")
        eth_live = Candle("ETHUSDT", "5m", start, start + size - 1, 1, 2, 0.5, 1.5)
        b.book.apply(eth_live, b.clock())
        assert tick_answered(2) == {B: Staleness.FRESH, E: Staleness.NO_HISTORY}
        b.book.apply(Candle("ETHUSDT", "5m", start - size, start - 1, 1, 2, 0.5, 1.5, closed=True))
        b.book.apply(eth_live, b.clock())
        assert tick_answered(3) == {B: Staleness.FRESH, E: Staleness.FRESH}
    lines = [(r.levelname, r.getMessage(), getattr(r, "why", None), getattr(r, "streams", None))
             for r in caplog.records]  # fmt: skip
    assert lines == [
        ("WARNING", "market data stale: evaluations counted stale", "no_live", ["ETHUSDT@5m"]),
        ("WARNING", "market data stale: evaluations counted stale", "no_history", ["ETHUSDT@5m"]),
        ("INFO", "market data live again", None, ["ETHUSDT@5m"]),
    ]
