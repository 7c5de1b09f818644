"""When a fill or settlement may reach the strategy (core/release.py). Table tests."""

from __future__ import annotations

import pytest

from baton.gateway.core.release import Held, Release, Standby, next_check_ms, release

C, R, T = Release.COMMITTED, Release.REPLICATED, Release.TIMED_OUT
WAIT = 1000
NOW = 10_000
FOLLOWING_AT_5 = Standby(following=True, acked=5)
GONE = Standby(following=False, acked=0)

CASES = [
    # (id, held, standby, now, released)
    ("nothing-held", [], None, NOW, []),
    ("not-yet-written-waits", [Held(NOW)], None, NOW, []),
    ("written-without-replication-goes", [Held(NOW, 3)], None, NOW, [C]),
    ("written-standby-not-following-goes", [Held(NOW, 3)], GONE, NOW, [C]),
    ("written-standby-acked-it-goes", [Held(NOW, 5)], FOLLOWING_AT_5, NOW, [R]),
    ("written-standby-acked-later-goes", [Held(NOW, 4)], FOLLOWING_AT_5, NOW, [R]),
    ("written-standby-behind-waits", [Held(NOW, 6)], FOLLOWING_AT_5, NOW, []),
    ("standby-behind-past-the-bound-goes", [Held(NOW - WAIT, 6)], FOLLOWING_AT_5, NOW, [T]),
    ("unwritten-past-the-bound-goes", [Held(NOW - WAIT)], None, NOW, [T]),
    ("one-ms-before-the-bound-waits", [Held(NOW - WAIT + 1, 6)], FOLLOWING_AT_5, NOW, []),
    (
        "in-order-a-waiting-one-holds-back-the-next",
        [Held(NOW, 6), Held(NOW, 5)],
        FOLLOWING_AT_5,
        NOW,
        [],
    ),
    (
        "in-order-the-prefix-that-may-go",
        [Held(NOW, 4), Held(NOW, 5), Held(NOW, 6), Held(NOW)],
        FOLLOWING_AT_5,
        NOW,
        [R, R],
    ),
    (
        "timed-out-head-then-replicated",
        [Held(NOW - WAIT, 7), Held(NOW, 5)],
        FOLLOWING_AT_5,
        NOW,
        [T, R],
    ),
]


@pytest.mark.parametrize(
    ("held", "standby", "now", "released"),
    [pytest.param(*c[1:], id=c[0]) for c in CASES],
)
def test_release(
    held: list[Held], standby: Standby | None, now: int, released: list[Release]
) -> None:
    assert release(held, standby=standby, now_ms=now, wait_ms=WAIT) == released


def test_a_zero_wait_tells_everything_at_once() -> None:
    held = [Held(NOW), Held(NOW, 9)]
    assert release(held, standby=FOLLOWING_AT_5, now_ms=NOW, wait_ms=0) == [T, T]


@pytest.mark.parametrize(
    ("held", "due"),
    [
        pytest.param([], None, id="nothing-held-no-timer"),
        pytest.param([Held(100, 1), Held(50)], 100 + WAIT, id="the-oldest-held-decides"),
    ],
)
def test_next_check(held: list[Held], due: int | None) -> None:
    assert next_check_ms(held, WAIT) == due
