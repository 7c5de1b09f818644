"""Whether a standby with a ledger of its own may take over (core/eligibility.py). Table tests."""

from __future__ import annotations

from dataclasses import replace

import pytest

from baton.gateway.core.eligibility import Standing, Why, cut_off_margin_ms, judge

MARGIN = cut_off_margin_ms(500)  # the reference retry period: 2 s
BROKE = 10_000  # when the stream broke

FOLLOWING = Standing(
    caught_up=True, connected=True, lag=0, disconnected_ms=None, renewal_seen_ms=9_900
)
LEADER_DIED = Standing(
    caught_up=True, connected=False, lag=0, disconnected_ms=BROKE, renewal_seen_ms=BROKE - 300
)
LAST_RENEWAL_SEEN_LATE = Standing(
    caught_up=True,
    connected=False,
    lag=0,
    disconnected_ms=BROKE,
    renewal_seen_ms=BROKE + MARGIN,
)
LEADER_ALIVE = Standing(
    caught_up=True,
    connected=False,
    lag=0,
    disconnected_ms=BROKE,
    renewal_seen_ms=BROKE + MARGIN + 1,
)
BACK_BEHIND = Standing(
    caught_up=True, connected=True, lag=3, disconnected_ms=None, renewal_seen_ms=BROKE + 5_000
)
BACK_AT_HEAD = Standing(
    caught_up=True, connected=True, lag=0, disconnected_ms=None, renewal_seen_ms=BROKE + 5_000
)
JUST_STARTED = Standing(
    caught_up=False, connected=False, lag=0, disconnected_ms=None, renewal_seen_ms=9_000
)

CASES = [
    # (id, standing, was cut off, eligible, cut off, why)
    ("following-at-the-head", FOLLOWING, False, True, False, Why.CAUGHT_UP),
    ("the-leader-died-stays-a-candidate", LEADER_DIED, False, True, False, Why.CAUGHT_UP),
    (
        "a-renewal-seen-within-the-margin-is-the-dead-leaders-last",
        LAST_RENEWAL_SEEN_LATE,
        False,
        True,
        False,
        Why.CAUGHT_UP,
    ),
    ("the-leader-renews-after-the-break", LEADER_ALIVE, False, False, True, Why.CUT_OFF),
    (
        "cut-off-stays-after-that-leader-dies",
        LEADER_DIED,
        True,
        False,
        True,
        Why.CUT_OFF,
    ),
    ("back-but-behind-still-cut-off", BACK_BEHIND, True, False, True, Why.CUT_OFF),
    ("back-at-the-head-a-candidate-again", BACK_AT_HEAD, True, True, False, Why.CAUGHT_UP),
    ("just-started-not-caught-up", JUST_STARTED, False, False, False, Why.BEHIND),
    (
        "cut-off-but-bootstrap",
        replace(LEADER_ALIVE, bootstrap=True),
        False,
        True,
        True,
        Why.BOOTSTRAP,
    ),
    (
        "never-held-needs-nothing",
        Standing(
            caught_up=False,
            connected=False,
            lag=0,
            disconnected_ms=None,
            renewal_seen_ms=None,
            never_held=True,
        ),
        False,
        True,
        False,
        Why.NEVER_HELD,
    ),
    (
        "a-free-lease-is-no-renewal",
        Standing(
            caught_up=True, connected=False, lag=0, disconnected_ms=BROKE, renewal_seen_ms=None
        ),
        False,
        True,
        False,
        Why.CAUGHT_UP,
    ),
]


@pytest.mark.parametrize(
    ("standing", "was_cut_off", "eligible", "cut_off", "why"),
    [pytest.param(*c[1:], id=str(c[0])) for c in CASES],
)
def test_judge(
    standing: Standing, was_cut_off: bool, eligible: bool, cut_off: bool, why: Why
) -> None:
    verdict = judge(standing, was_cut_off=was_cut_off, margin_ms=MARGIN)
    assert (verdict.eligible, verdict.cut_off, verdict.why) == (eligible, cut_off, why)
