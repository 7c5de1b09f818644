"""Per-stream bookkeeping: live frames plus REST backfills give every closed candle exactly
once, in order, whatever the stream loses, repeats or reorders."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.gateway.core.binance import (
    BackfillPlan,
    Delivery,
    Phase,
    StreamState,
    apply_backfill,
    on_reconnect,
    on_ws_candle,
    plan_backfill,
)
from baton.model import Candle

MIN = 60_000


def candle(k: int, *, closed: bool = False, progress: float = 0.5) -> Candle:
    """Candle number ``k``. Its values tell a final candle from a partial one."""
    o = 100.0 + k
    c = o + (1.0 if closed else progress)
    return Candle("BTCUSDT", "1m", k * MIN, k * MIN + MIN - 1, o, c + 1, o - 1, c, 1.0, 1, closed)


def final(k: int) -> Candle:
    return candle(k, closed=True)


def live_at(next_k: int | None, phase: Phase = Phase.LIVE) -> StreamState:
    state = StreamState.new("BTCUSDT", "1m")
    return replace(state, phase=phase, next_open_ms=None if next_k is None else next_k * MIN)


def opens(deliveries: tuple[Delivery, ...]) -> list[tuple[int, bool, str]]:
    return [(d.candle.open_time_ms // MIN, d.candle.closed, d.source) for d in deliveries]


@pytest.mark.parametrize(
    ("next_k", "incoming", "delivered", "next_after", "phase", "dropped"),
    [
        (5, candle(5), [(5, False, "ws")], 5, Phase.LIVE, 0),
        (5, final(5), [(5, True, "ws")], 6, Phase.LIVE, 0),
        (6, final(5), [], 6, Phase.LIVE, 1),
        (6, candle(5), [], 6, Phase.LIVE, 1),
        (5, final(6), [], 5, Phase.BACKFILL, 0),
        (5, candle(7), [], 5, Phase.BACKFILL, 0),
        (None, candle(9), [(9, False, "ws")], 9, Phase.LIVE, 0),
        (None, final(9), [(9, True, "ws")], 10, Phase.LIVE, 0),
    ],
    ids=[
        "the live candle after the last closed is delivered",
        "its closing frame is delivered and advances the sequence",
        "a repeated closing frame is dropped",
        "a late live frame of a closed candle is dropped",
        "a closing frame after a missed one opens a gap",
        "a live frame two candles ahead opens a gap",
        "without history the stream starts the sequence",
        "without history a closing frame starts it too",
    ],
)
def test_live_frames(
    next_k: int | None,
    incoming: Candle,
    delivered: list[tuple[int, bool, str]],
    next_after: int,
    phase: Phase,
    dropped: int,
) -> None:
    step = on_ws_candle(live_at(next_k), incoming)
    assert opens(step.deliver) == delivered
    assert step.state.next_open_ms == next_after * MIN
    assert (step.state.phase, step.dropped) == (phase, dropped)


def test_a_gap_holds_the_frame_that_revealed_it() -> None:
    step = on_ws_candle(live_at(5), final(7))
    assert step.state.held == (final(7),)
    assert step.state.seen_open_ms == 7 * MIN


@pytest.mark.parametrize(
    ("frames", "held"),
    [
        ([candle(5), candle(5, progress=0.7)], [candle(5, progress=0.7)]),
        ([candle(5), final(5)], [final(5)]),
        ([final(5), candle(5)], [final(5)]),
        ([final(5), final(6), candle(7)], [final(5), final(6), candle(7)]),
        ([final(6), final(5)], [final(5), final(6)]),
        ([final(5), final(5)], [final(5)]),
    ],
    ids=[
        "only the newest live frame is kept",
        "a closing frame replaces its live frames",
        "a stale live frame after its close is ignored",
        "closed candles are all kept, the live one after them",
        "held closed candles are kept in order",
        "a repeated closing frame is held once",
    ],
)
def test_frames_are_held_while_backfilling(frames: list[Candle], held: list[Candle]) -> None:
    state = live_at(5, Phase.BACKFILL)
    for f in frames:
        step = on_ws_candle(state, f)
        assert step.deliver == ()
        state = step.state
    assert list(state.held) == held


def test_a_reconnect_backfills_and_forgets_stale_live_frames() -> None:
    state = replace(live_at(5), held=(final(5), candle(6)))
    after = on_reconnect(state)
    assert after.phase is Phase.BACKFILL
    assert after.held == (final(5),)


@pytest.mark.parametrize(
    ("next_k", "seen_k", "now_ms", "start", "closed_before"),
    [
        (None, None, None, None, None),
        (5, None, None, 5 * MIN, None),
        (5, 8, None, 5 * MIN, 8 * MIN),
        (5, 8, 9 * MIN + 30_000, 5 * MIN, 9 * MIN),
        (5, 8, 2 * MIN, 5 * MIN, 8 * MIN),
    ],
    ids=[
        "first connect: the most recent candles",
        "after a drop: from the first missing candle",
        "what the stream showed bounds what is closed",
        "the exchange clock bounds it further",
        "an older clock does not lower the bound",
    ],
)
def test_backfill_plans(
    next_k: int | None,
    seen_k: int | None,
    now_ms: int | None,
    start: int | None,
    closed_before: int | None,
) -> None:
    state = replace(
        live_at(next_k, Phase.BACKFILL), seen_open_ms=None if seen_k is None else seen_k * MIN
    )
    plan = plan_backfill(state, keep=3, exchange_now_ms=now_ms)
    assert (plan.start_ms, plan.closed_before_ms, plan.keep) == (start, closed_before, 3)


def rows(first: int, last_final: int, partial: int | None = None) -> list[Candle]:
    """REST's answer: final rows ``first..last_final`` and maybe the open candle after them.
    REST does not say which rows are closed."""
    out = [replace(final(k), closed=False) for k in range(first, last_final + 1)]
    if partial is not None:
        out.append(candle(partial, progress=0.3))
    return out


@pytest.mark.parametrize(
    ("next_k", "held", "closed_before_k", "rest", "delivered", "next_after"),
    [
        (None, [], None, rows(0, 9, 10), [(k, True, "rest") for k in range(7, 10)], 10),
        (None, [], None, rows(0, 9), [(k, True, "rest") for k in range(6, 9)], 9),
        (None, [], 10, rows(0, 9), [(k, True, "rest") for k in range(7, 10)], 10),
        (5, [], None, rows(5, 7, 8), [(5, True, "rest"), (6, True, "rest"), (7, True, "rest")], 8),
        (
            5,
            [final(7), candle(8)],
            8,
            rows(5, 7, 8),
            [(5, True, "rest"), (6, True, "rest"), (7, True, "rest"), (8, False, "ws")],
            8,
        ),
        (
            5,
            [final(8), candle(9)],
            8,
            rows(5, 7, 8),
            [
                (5, True, "rest"),
                (6, True, "rest"),
                (7, True, "rest"),
                (8, True, "ws"),
                (9, False, "ws"),
            ],
            9,
        ),
        (5, [], 9, [*rows(5, 5), *rows(8, 8)], [(5, True, "rest"), (8, True, "rest")], 9),
        (5, [], None, [], [], 5),
        (5, [candle(5)], 5, [candle(5, progress=0.3)], [(5, False, "ws")], 5),
    ],
    ids=[
        "first connect keeps the newest closed candles, not the open one",
        "the newest row may still be open: it is not delivered as closed",
        "the exchange clock proves the newest row closed",
        "after a drop: the missing closed candles, oldest first",
        "held frames follow the backfill; a repeated close is dropped",
        "a closing frame that arrived during the fetch comes from the stream",
        "candles the exchange never had (downtime) are skipped, not awaited",
        "nothing new yet: the sequence stays where it was",
        "a live frame held during the fetch is delivered after it",
    ],
)
def test_backfills(
    next_k: int | None,
    held: list[Candle],
    closed_before_k: int | None,
    rest: list[Candle],
    delivered: list[tuple[int, bool, str]],
    next_after: int,
) -> None:
    state = replace(live_at(next_k, Phase.BACKFILL), held=tuple(held))
    plan = BackfillPlan(
        state.stream,
        "BTCUSDT",
        "1m",
        state.next_open_ms,
        3,
        None if closed_before_k is None else closed_before_k * MIN,
    )
    step = apply_backfill(state, plan, rest, exhausted=True)
    assert opens(step.deliver) == delivered
    assert step.state.phase is Phase.LIVE
    assert step.state.next_open_ms == next_after * MIN
    for d in step.deliver:
        if d.candle.closed:
            assert d.candle == final(d.candle.open_time_ms // MIN)


def test_a_partial_backfill_keeps_holding_for_another_round() -> None:
    state = replace(live_at(5, Phase.BACKFILL), held=(final(2000),))
    plan = plan_backfill(state, keep=3, exchange_now_ms=None)
    step = apply_backfill(state, plan, rows(5, 1004), exhausted=False)
    assert len(step.deliver) == 999  # the last row of a full page may be the open candle
    assert step.state.phase is Phase.BACKFILL
    assert step.state.held == (final(2000),)
    assert step.state.next_open_ms == 1004 * MIN


FATES = st.sampled_from(["ok", "ok", "ok", "ok", "lost", "twice"])
ACTIONS = st.sampled_from(["none", "none", "none", "fetch", "fetch", "reconnect"])


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_mix_of_losses_repeats_and_reconnects_yields_each_closed_candle_once(
    data: st.DataObject,
) -> None:
    """An exchange sends a live frame every quarter candle and a closing frame at each close;
    frames get lost or repeated, the connection drops, REST answers with what exists at the
    time of the answer. The sink must see every closed candle once, in order, final values."""
    quarters = 48
    state = StreamState.new("BTCUSDT", "1m")
    out: list[Delivery] = []
    exchange_now: int | None = None
    inflight: BackfillPlan | None = None

    def rest_answer(now_ms: int, plan: BackfillPlan) -> list[Candle]:
        now_k = now_ms // MIN
        first = max(0, now_k - plan.keep) if plan.start_ms is None else plan.start_ms // MIN
        return rows(first, now_k - 1, now_k) if first <= now_k else []

    def take(step_deliver: tuple[Delivery, ...]) -> None:
        out.extend(step_deliver)

    def backfill_now(now_ms: int) -> None:
        nonlocal state
        plan = plan_backfill(state, keep=3, exchange_now_ms=exchange_now)
        step = apply_backfill(state, plan, rest_answer(now_ms, plan), exhausted=True)
        state = step.state
        take(step.deliver)

    for q in range(quarters + 1):
        now = q * 15_000 + 1
        k = q // 4
        frames = [final(k - 1)] if q % 4 == 0 and q > 0 else []
        frames.append(candle(k, progress=(q % 4 + 1) / 5))
        for frame in frames:
            fate = data.draw(FATES) if q < quarters else "ok"
            for _ in range({"ok": 1, "lost": 0, "twice": 2}[fate]):
                exchange_now = now
                step = on_ws_candle(state, frame)
                state = step.state
                take(step.deliver)
        if inflight is not None:  # the answer arrives a quarter candle after the request
            step = apply_backfill(state, inflight, rest_answer(now, inflight), exhausted=True)
            state = step.state
            take(step.deliver)
            inflight = None
        action = data.draw(ACTIONS) if q < quarters else "none"
        if action == "reconnect":
            state, inflight = on_reconnect(state), None
        elif action == "fetch" and state.phase is Phase.BACKFILL:
            inflight = plan_backfill(state, keep=3, exchange_now_ms=exchange_now)
    while state.phase is Phase.BACKFILL:
        backfill_now(quarters * 15_000 + 1)

    # Every update is for the expected candle; closed ones come once each, final values.
    expected: int | None = None
    for d in out:
        c = d.candle
        if expected is None:
            expected = c.open_time_ms
        assert c.open_time_ms == expected
        if c.closed:
            assert c == final(c.open_time_ms // MIN)
            expected += MIN
    closed = [d.candle.open_time_ms // MIN for d in out if d.candle.closed]
    assert closed, "something was delivered"
    assert closed[-1] == quarters // 4 - 1, "every candle closed by the end was delivered"
