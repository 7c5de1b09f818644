"""The freshness decision: which evaluations are answered on stale market data."""

from __future__ import annotations

import pytest

from baton.gateway.core.clock import SlotClock
from baton.gateway.core.freshness import (
    MIN_STALE_AFTER_MS,
    StreamView,
    default_stale_after_ms,
    freshness,
)
from baton.gateway.core.market import MarketBook
from baton.gateway.core.records import EvalOutcome, Staleness
from baton.gateway.core.router import InstanceInfo, Router, Verdict, answered_record
from baton.model import Action, Candle, Decision, Market, make_slots

NOW = 1_700_000_000_000
LIMIT = 10_000


@pytest.mark.parametrize(
    ("view", "needs_history", "expected"),
    [
        # live, updated 1 s ago, history: fresh
        (StreamView(True, NOW - 1_000, True), True, Staleness.FRESH),
        # exactly at the limit is still fresh; one ms past it is old
        (StreamView(True, NOW - LIMIT, True), True, Staleness.FRESH),
        (StreamView(True, NOW - LIMIT - 1, True), True, Staleness.OLD),
        # a stalled stream: its candle is held, but not updated for a minute
        (StreamView(True, NOW - 60_000, True), True, Staleness.OLD),
        # unknown symbol: no frame ever arrived
        (StreamView(False, None, False), True, Staleness.NO_LIVE),
        # history from REST only, no live frame
        (StreamView(False, None, True), True, Staleness.NO_LIVE),
        # a live frame before the backfill delivered (the first tick after start)
        (StreamView(True, NOW - 100, False), True, Staleness.NO_HISTORY),
        # ... unless the strategy asks for no history (gateway.history = 0)
        (StreamView(True, NOW - 100, False), False, Staleness.FRESH),
        # no live and no history: no live is the first reason
        (StreamView(False, None, False), False, Staleness.NO_LIVE),
        # no history and old: no history is named first
        (StreamView(True, NOW - 60_000, False), True, Staleness.NO_HISTORY),
        # nothing delivered while the first backfill runs (the feed holds the stream's frames):
        # the clock's wait for it ran out, the reason says so
        (StreamView(False, None, False, backfill_pending=True), True, Staleness.BACKFILL_PENDING),
        (StreamView(False, None, False, backfill_pending=True), False, Staleness.BACKFILL_PENDING),
        # once the stream has delivered, the flag changes nothing: judged by its last update
        (StreamView(True, NOW - 1_000, True, backfill_pending=True), True, Staleness.FRESH),
        (StreamView(True, NOW - 60_000, True, backfill_pending=True), True, Staleness.OLD),
    ],
)
def test_freshness_table(view: StreamView, needs_history: bool, expected: Staleness) -> None:
    got = freshness(view, now_ms=NOW, stale_after_ms=LIMIT, needs_history=needs_history)
    assert got is expected
    assert got.stale is (expected is not Staleness.FRESH)


@pytest.mark.parametrize(
    ("cadence_ms", "expected"),
    [(5_000, 10_000), (200, MIN_STALE_AFTER_MS), (60_000, 120_000)],
)
def test_default_limit_follows_the_cadence(cadence_ms: int, expected: int) -> None:
    assert default_stale_after_ms(cadence_ms) == expected


def _candle(open_ms: int, *, closed: bool) -> Candle:
    return Candle("BTCUSDT", "5m", open_ms, open_ms + 299_999, 1, 2, 0.5, 1.5, closed=closed)


def test_book_view_counts_only_live_frames_as_updates() -> None:
    book = MarketBook([("BTCUSDT", "5m")], depth=3)
    assert book.view("BTCUSDT", "5m") == StreamView(False, None, False)
    assert book.view("NOPEUSDT", "5m") == StreamView(False, None, False)
    start = NOW - NOW % 300_000
    book.apply(_candle(start - 300_000, closed=True))  # REST backfill: no update time
    assert book.view("BTCUSDT", "5m") == StreamView(True, None, True)
    book.apply(_candle(start, closed=False), NOW - 500)
    assert book.view("BTCUSDT", "5m") == StreamView(True, NOW - 500, True)
    # A repeat of a closed candle changes nothing in the book but shows the stream is alive.
    assert book.apply(_candle(start - 300_000, closed=True), NOW).stale
    assert book.view("BTCUSDT", "5m").updated_ms == NOW


def test_book_view_names_the_streams_still_being_backfilled() -> None:
    book = MarketBook([("BTCUSDT", "5m"), ("ETHUSDT", "5m")], depth=3)
    book.set_backfill_pending([("BTCUSDT", "5m")])
    assert book.view("BTCUSDT", "5m") == StreamView(False, None, False, backfill_pending=True)
    assert book.view("ETHUSDT", "5m") == StreamView(False, None, False)
    book.set_backfill_pending([])
    assert not book.view("BTCUSDT", "5m").backfill_pending


def test_router_carries_staleness_to_every_record() -> None:
    slots = make_slots((Market("BTC", "BTCUSDT"), Market("MATIC", "MATICUSDT")), ("5m",))
    btc, matic = (s.slot_id for s in slots)
    router = Router(slots)
    clock = SlotClock.starting_after(1_000, NOW)
    tick = clock.tick(0)
    # No ACTIVE: missed at once, the staleness is still recorded.
    missed = router.on_tick(tick, tick.scheduled_ms, {matic: Staleness.NO_LIVE}).missed
    assert {(r.slot_id, r.outcome, r.stale) for r in missed} == {
        (btc, EvalOutcome.NO_ACTIVE, Staleness.FRESH),
        (matic, EvalOutcome.NO_ACTIVE, Staleness.NO_LIVE),
    }
    instance = router.attach(InstanceInfo("pod", "s", "v1", 1), tick.scheduled_ms)
    tick1 = clock.tick(1)
    router.on_tick(tick1, tick1.scheduled_ms, {matic: Staleness.OLD})
    decision = Decision(matic, router.seq_of(slots[1], tick1), router.epoch, Action.UP)
    judged = router.judge(instance.instance_id, decision, tick1.scheduled_ms + 1)
    assert judged.verdict is Verdict.EXECUTE
    assert judged.pending is not None
    answered = answered_record(judged.pending, decision, tick1.scheduled_ms + 1)
    assert (answered.outcome, answered.stale) == (EvalOutcome.EXECUTED, Staleness.OLD)
    expired = router.expire(tick1.deadline_ms)
    assert [(r.slot_id, r.stale) for r in expired] == [(btc, Staleness.FRESH)]


def test_the_limit_is_a_setting_with_a_cadence_default() -> None:
    from baton.common import ConfigError
    from baton.gateway.config import gateway_config_from

    assert gateway_config_from({}).stale_after_ms == 10_000
    assert gateway_config_from({"gateway.cadence_s": 0.2}).stale_after_ms == MIN_STALE_AFTER_MS
    assert gateway_config_from({"gateway.stale_after_ms": 1500}).stale_after_ms == 1500
    for bad in (-1, 0):  # explicit values only: "unset" is the one way to ask for the default
        with pytest.raises(ConfigError, match=r"gateway\.stale_after_ms"):
            gateway_config_from({"gateway.stale_after_ms": bad})
