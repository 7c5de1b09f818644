"""Duplicated and reordered kline frames: the simulator's pure fault (``Disorder``) as a table,
and the feed's per-stream bookkeeping, which must deliver neither a repeat of a closed candle
nor an update older than one it already delivered."""

from __future__ import annotations

from dataclasses import replace

import pytest

from baton.exchange_sim.core.faults import Disorder, FaultState
from baton.gateway.core.binance import Phase, StreamState, on_ws_candle
from baton.model import Candle

MIN = 60_000


def pairs(frames: str) -> list[tuple[str, str]]:
    """ "x1 y1 x2" -> [("x", "x1"), ("y", "y1"), ("x", "x2")]: frame x1 is stream x's first."""
    return [(f[0], f) for f in frames.split()]


@pytest.mark.parametrize(
    ("batches", "duplicate", "reorder", "want"),
    [
        (["x1 y1", "x2"], 0, 0, ["x1 y1", "x2"]),
        # duplicate=N: the last N frames sent go again, before the frames due now
        (["x1 y1", "x2"], 1, 0, ["x1 y1", "y1 x2"]),
        (["x1 y1", "x2"], 5, 0, ["x1 y1", "x1 y1 x2"]),  # only what was sent
        (["x1 y1", ""], 2, 0, ["x1 y1", "x1 y1"]),  # a push with nothing new
        # reorder=N: each picked frame goes right after the next frame of its stream
        (["x1", "x2 x3"], 0, 1, ["x1", "x3 x2"]),
        (["x1 y1", "x2 y2 x3 y3"], 0, 1, ["x1 y1", "y2 x3 x2 y3"]),
        (["x1 y1", "x2 y2 x3 y3"], 0, 2, ["x1 y1", "x3 x2 y3 y2"]),
        # held into a later batch when its stream has no next frame in this one
        (["x1", "x2 y2", "y3", "x3"], 0, 1, ["x1", "y2", "y3", "x3 x2"]),
        (["x1 y1", "x2 x3"], 1, 1, ["x1 y1", "y1 x3 x2"]),
    ],
)
def test_disorder_table(batches: list[str], duplicate: int, reorder: int, want: list[str]) -> None:
    faults, disorder = FaultState(), Disorder()
    got = [disorder.outgoing(pairs(batches[0]), faults)]
    faults.add_duplicates(duplicate)
    faults.add_reorders(reorder)
    got += [disorder.outgoing(pairs(batch), faults) for batch in batches[1:]]
    assert [" ".join(frames) for frames in got] == want
    assert faults.duplicate_pending == 0
    assert faults.reorder_pending == 0


def test_disorder_remembers_what_it_sent_in_order_and_is_bounded() -> None:
    faults, disorder = FaultState(), Disorder(memory=3)
    faults.add_reorders(1)
    disorder.outgoing(pairs("x1 x2 x3 x4"), faults)  # sent: x2 x1 x3 x4
    faults.add_duplicates(10)
    assert disorder.outgoing([], faults) == ["x1", "x3", "x4"]


def update(k: int, trades: int, *, closed: bool = False) -> Candle:
    """Candle ``k`` as of ``trades`` trades (the exchange's candles only grow)."""
    o = 100.0 + k
    return Candle(
        "BTCUSDT", "1m", k * MIN, k * MIN + MIN - 1, o, o + 1, o - 1, o, trades, trades, closed
    )


def live(next_k: int) -> StreamState:
    return replace(StreamState.new("BTCUSDT", "1m"), phase=Phase.LIVE, next_open_ms=next_k * MIN)


# (frame, event time E) in arrival order -> trades of the delivered frames, frames dropped.
CASES: dict[str, tuple[list[tuple[Candle, int | None]], list[int], int]] = {
    "in order": ([(update(1, 1), 10), (update(1, 2), 20), (update(1, 3, closed=True), 30)],
                 [1, 2, 3], 0),
    "older update after a newer one": ([(update(1, 2), 20), (update(1, 1), 10)], [2], 1),
    "same frame twice": ([(update(1, 1), 10), (update(1, 1), 10)], [1, 1], 0),
    "closing frame twice": ([(update(1, 3, closed=True), 30), (update(1, 3, closed=True), 30)],
                            [3], 1),
    "update after the close": ([(update(1, 3, closed=True), 30), (update(1, 2), 20)], [3], 1),
    "previous candle's update after the next candle's": (
        [(update(1, 1), 10), (update(2, 1), 70), (update(1, 2), 20)], [1], 0),
    "no event time: no check": ([(update(1, 2), None), (update(1, 1), None)], [2, 1], 0),
}  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_out_of_order_updates_never_overwrite_newer_ones(name: str) -> None:
    frames, want_delivered, want_dropped = CASES[name]
    state, delivered, dropped = live(1), [], 0
    for candle, event_ms in frames:
        step = on_ws_candle(state, candle, event_ms)
        state = step.state
        delivered += [d.candle.trades for d in step.deliver]
        dropped += step.dropped
    assert (delivered, dropped) == (want_delivered, want_dropped)


def test_a_reordered_update_is_dropped_while_backfilling_too() -> None:
    state = replace(live(1), phase=Phase.BACKFILL)
    state = on_ws_candle(state, update(3, 5), 200).state
    step = on_ws_candle(state, update(3, 4), 190)
    assert step.dropped == 1
    assert [c.trades for c in step.state.held] == [5]
