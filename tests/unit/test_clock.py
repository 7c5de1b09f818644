"""The slot clock: when ticks are due and how a stalled gateway's ticks are accounted for."""

from __future__ import annotations

import pytest

from baton.gateway.core.clock import SlotClock, Tick

C = SlotClock(cadence_ms=1000, origin_ms=10_000)


@pytest.mark.parametrize(
    ("now", "next_index", "late", "dispatch", "next_after"),
    [
        (9_999, 0, [], None, 0),
        (10_000, 0, [], 0, 1),
        (10_999, 0, [], 0, 1),
        (11_000, 0, [0], 1, 2),
        (13_500, 1, [1, 2], 3, 4),
        (10_500, 1, [], None, 1),
        (12_000, 2, [], 2, 3),
    ],
    ids=[
        "before the first tick nothing is due",
        "due exactly at its schedule",
        "still dispatchable 1 ms before its deadline",
        "at its deadline a tick is late and the next one is due",
        "a 2.5 s stall marks two ticks late, never skips them silently",
        "already dispatched ticks are not due again",
        "resumes at the next index",
    ],
)
def test_plan(
    now: int, next_index: int, late: list[int], dispatch: int | None, next_after: int
) -> None:
    plan = C.plan(now, next_index)
    assert [t.index for t in plan.late] == late
    assert (plan.dispatch.index if plan.dispatch else None) == dispatch
    assert plan.next_index == next_after


def test_tick_deadline_is_next_schedule() -> None:
    assert C.tick(3) == Tick(3, 13_000, 14_000)
    assert C.tick(3).deadline_ms == C.tick(4).scheduled_ms


@pytest.mark.parametrize(
    ("cadence", "now", "origin"),
    [(5000, 12_300, 15_000), (5000, 15_000, 20_000), (250, 1_001, 1_250)],
    ids=["rounds up to the next boundary", "a boundary itself is not used", "sub-second"],
)
def test_starting_after_aligns_to_cadence(cadence: int, now: int, origin: int) -> None:
    assert SlotClock.starting_after(cadence, now).origin_ms == origin


def test_rejects_non_positive_cadence() -> None:
    with pytest.raises(ValueError, match="cadence_ms"):
        SlotClock(0, 0)
