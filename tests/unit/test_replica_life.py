"""The gateway replica's life (core/replica.py): follow, lead one term, stop. Table tests."""

from __future__ import annotations

import pytest

from baton.gateway.core.replica import (
    Deposed,
    Elected,
    Event,
    Exit,
    Finish,
    Life,
    Phase,
    Started,
    StartFailed,
    StartGateway,
    StopAsked,
    StopGateway,
    Stopped,
    failover_seq_gap,
    step,
)

FOLLOWING = Life()
STARTING = Life(Phase.STARTING, term=4)
LEADING = Life(Phase.LEADING, term=4)
STOPPING_ASKED = Life(Phase.STOPPING, term=4, exit=Exit.STOPPED)
STOPPING_DEPOSED = Life(Phase.STOPPING, term=4, exit=Exit.DEPOSED)
DONE = Life(Phase.DONE, term=4, exit=Exit.STOPPED)

CASES = [
    # (id, before, event, phase after, actions)
    ("follower-elected-starts-its-gateway", FOLLOWING, Elected(4), Phase.STARTING,
     (StartGateway(4),)),
    ("follower-asked-to-stop-just-ends", FOLLOWING, StopAsked(), Phase.DONE,
     (Finish(Exit.STOPPED),)),
    ("follower-deposed-is-ignored", FOLLOWING, Deposed("stopped"), Phase.FOLLOWING, ()),
    ("started-leads", STARTING, Started(), Phase.LEADING, ()),
    ("start-failed-releases-the-lease", STARTING, StartFailed("port in use"), Phase.STOPPING,
     (StopGateway(release=True, reason="start failed: port in use"),)),
    ("deposed-while-starting-stops-without-release", STARTING, Deposed("renew deadline passed"),
     Phase.STOPPING, (StopGateway(release=False, reason="renew deadline passed"),)),
    ("stop-asked-while-starting-hands-over", STARTING, StopAsked(), Phase.STOPPING,
     (StopGateway(release=True, reason="asked to stop"),)),
    ("leader-deposed-stops-without-release", LEADING, Deposed("fenced by term 5"),
     Phase.STOPPING, (StopGateway(release=False, reason="fenced by term 5"),)),
    ("leader-asked-to-stop-hands-over", LEADING, StopAsked(), Phase.STOPPING,
     (StopGateway(release=True, reason="asked to stop"),)),
    ("leader-elected-again-is-ignored", LEADING, Elected(5), Phase.LEADING, ()),
    ("started-twice-is-ignored", LEADING, Started(), Phase.LEADING, ()),
    ("stopped-after-a-planned-stop-ends-stopped", STOPPING_ASKED, Stopped(), Phase.DONE,
     (Finish(Exit.STOPPED),)),
    ("stopped-after-deposition-ends-deposed", STOPPING_DEPOSED, Stopped(), Phase.DONE,
     (Finish(Exit.DEPOSED),)),
    ("deposed-while-stopping-keeps-the-planned-exit", STOPPING_ASKED, Deposed("handover"),
     Phase.STOPPING, ()),
    ("stop-asked-twice-is-ignored", STOPPING_DEPOSED, StopAsked(), Phase.STOPPING, ()),
    ("stopped-while-following-is-ignored", FOLLOWING, Stopped(), Phase.FOLLOWING, ()),
    ("anything-after-done-is-ignored", DONE, Elected(9), Phase.DONE, ()),
]  # fmt: skip


@pytest.mark.parametrize(
    ("before", "event", "phase", "actions"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_step(before: Life, event: Event, phase: Phase, actions: tuple[object, ...]) -> None:
    s = step(before, event)
    assert s.life.phase is phase
    assert s.actions == actions
    # An event that changes nothing says why (the shell logs it); one that acts does not.
    assert bool(s.note) == (not actions and s.life == before)


def test_exit_codes_tell_a_supervisor_what_happened() -> None:
    assert [e.code for e in Exit] == [0, 3, 1]


def test_a_whole_life_leads_one_term_and_ends_deposed() -> None:
    life = FOLLOWING
    seen: list[object] = []
    for event in (Elected(2), Started(), Deposed("renew deadline passed"), Stopped()):
        s = step(life, event)
        life = s.life
        seen += s.actions
    assert life == Life(Phase.DONE, term=2, exit=Exit.DEPOSED)
    assert seen == [
        StartGateway(2),
        StopGateway(release=False, reason="renew deadline passed"),
        Finish(Exit.DEPOSED),
    ]


@pytest.mark.parametrize(
    ("last_commit_ms", "now_ms", "gap"),
    [
        (10_020, 10_900, 0),  # no boundary since the last commit: nothing can have been sent
        (10_020, 11_000, 1),  # the boundary at 11 s: its tick may have left unreplicated
        (10_020, 12_999, 2),
        (10_999, 13_500, 3),
        (None, 13_500, 1),  # nothing known: one, as before
    ],
)
def test_a_failover_skips_one_seq_per_boundary_since_the_last_commit(
    last_commit_ms: int | None, now_ms: int, gap: int
) -> None:
    assert failover_seq_gap(1000, last_commit_ms, now_ms) == gap


def test_a_failover_never_numbers_a_tick_that_never_was() -> None:
    """The seqs skipped plus the new leader's first one never outrun the ticks between the
    last reserved tick and the new first tick (the old rule, 1 + elapsed / cadence, did by one
    when the takeover ended late in a cadence: the report counted a tick twice)."""
    cadence = 1000
    for last_tick in range(0, 3000, cadence):
        for delay in range(1, cadence, 97):  # the reservation's commit, after the dispatch
            committed = last_tick + delay
            for now in range(committed, committed + 5000, 113):
                first_tick = (now // cadence + 1) * cadence  # the new clock's first boundary
                seqs_advanced = 1 + failover_seq_gap(cadence, committed, now)
                assert seqs_advanced <= (first_tick - last_tick) // cadence
                # ... and every boundary the dead leader may have dispatched is skipped.
                sent = [b for b in range(last_tick + cadence, now + 1, cadence)]
                assert len(sent) <= seqs_advanced - 1
