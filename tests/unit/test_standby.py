"""The standby keeping machine (core/standby.py): checkpoints and digest checks, the hot
standby's sync, the take-over after an ACTIVE's death, and how the state it goes on with is
verified. Each test drives the machine through real events from a fresh ``Keeping`` and checks
the actions and the fields that matter; ids say the case."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from baton.gateway.core import standby as sb
from baton.model import Role, StandbyMode, StandbyPolicy

T0 = 1_000_000
HOT = StandbyPolicy(StandbyMode.HOT, checkpoint_every_ticks=3)
CKPT = StandbyPolicy(StandbyMode.CHECKPOINT, checkpoint_every_ticks=3)
NONE = StandbyPolicy(StandbyMode.NONE)


def m(instance_id: str, role: Role, version: str = "v1", *, caught_up: bool = True) -> sb.Member:
    return sb.Member(instance_id, version, 1, role, caught_up)


def roster(*members: sb.Member, handoff: bool = False) -> sb.Roster:
    return sb.Roster(tuple(members), handoff_running=handoff)


A = m("a", Role.ACTIVE)


@dataclass
class Run:
    """A Keeping driven by events; ``actions`` of the last step, ``all`` of every step."""

    policy: StandbyPolicy
    k: sb.Keeping = field(default_factory=lambda: sb.Keeping("momentum"))
    actions: tuple[sb.Action, ...] = ()
    all: list[sb.Action] = field(default_factory=list)
    t: int = T0

    def feed(self, event: sb.Event) -> tuple[sb.Action, ...]:
        out = sb.step(self.k, event)
        self.k, self.actions = out.keeping, out.actions
        self.all.extend(out.actions)
        return out.actions

    def tick(self, index: int, r: sb.Roster) -> tuple[sb.Action, ...]:
        self.t = T0 + index * 1000
        self.feed(sb.AtBoundary(self.t, r))
        return self.feed(sb.AfterDispatch(self.t + 1, index, r, self.policy))

    def answer(self, instance_id: str, export_id: str, digest: str, size: int = 100) -> None:
        self.feed(sb.Exported(self.t + 5, instance_id, export_id, digest, size))

    def asked(self, instance_id: str | None = None) -> list[sb.AskExport]:
        return [
            a
            for a in self.actions
            if isinstance(a, sb.AskExport) and instance_id in (None, a.instance_id)
        ]


def kinds(actions: Sequence[sb.Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


def recorded(run: Run) -> list[sb.Failover]:
    return [a.failover for a in run.all if isinstance(a, sb.RecordFailover)]


# -- checkpoints and digest checks --------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        pytest.param(CKPT, [(0, False), (1, True), (2, True), (3, False)], id="checkpoint-every-3"),
        pytest.param(NONE, [(0, True), (1, True), (2, True), (3, True)], id="none-probes-only"),
        pytest.param(
            StandbyPolicy(StandbyMode.CHECKPOINT, 2, verify_every_ticks=0),
            [(0, False), (2, False)],
            id="verify-0-checkpoints-only",
        ),
    ],
)
def test_exports_asked_of_the_active_after_each_dispatch(
    policy: StandbyPolicy, expected: list[tuple[int, bool]]
) -> None:
    run = Run(policy)
    got = []
    for index in range(4):
        run.tick(index, roster(A))
        for ask in run.asked("a"):
            got.append((index, ask.digest_only))
            run.answer("a", ask.export_id, f"d{index}")
    assert got == expected


def test_the_first_dispatch_journals_the_active_and_a_kept_checkpoint_is_stored() -> None:
    run = Run(CKPT)
    actions = run.tick(0, roster(A))
    assert kinds(actions) == ["Journal", "AskExport"]
    assert actions[0] == sb.Journal("a")
    (ask,) = run.asked()
    run.answer("a", ask.export_id, "d0", 4096)
    (keep,) = run.actions
    assert isinstance(keep, sb.KeepCheckpoint)
    assert (keep.checkpoint.digest, keep.checkpoint.state_bytes) == ("d0", 4096)
    assert run.k.checkpoint == keep.checkpoint


def test_a_failed_checkpoint_export_is_asked_again_at_the_next_tick() -> None:
    run = Run(CKPT)
    run.tick(0, roster(A))
    (ask,) = run.asked()
    run.feed(sb.Exported(T0 + 5, "a", ask.export_id, "", 0, "StateError: too big"))
    assert run.k.checkpoint is None
    run.tick(1, roster(A))
    assert [a.digest_only for a in run.asked()] == [False]


def test_a_new_active_after_a_handoff_flip_gets_its_own_journal_and_checkpoint() -> None:
    run = Run(CKPT)
    run.tick(0, roster(A))
    run.answer("a", run.asked()[0].export_id, "d0")
    run.tick(1, roster(A))
    flipped = roster(m("a", Role.SHADOW), m("g", Role.ACTIVE, "v2"))
    actions = run.tick(2, flipped)
    assert actions[0] == sb.Journal("g")
    assert [(a.instance_id, a.digest_only) for a in run.asked()] == [("g", False)]
    assert run.k.checkpoint is None


# -- the hot standby ----------------------------------------------------------------------------


def synced(run: Run, standby: str = "b") -> None:
    """Drive a sync of ``standby`` to FOLLOWING."""
    run.tick(0, roster(A, m(standby, Role.STANDBY)))
    sync = next(a for a in run.asked("a") if a.export_id.startswith(sb.SYNC_PREFIX))
    for ask in run.asked("a"):
        if ask is not sync:
            run.answer("a", ask.export_id, "d0")
    run.answer("a", sync.export_id, "s0")
    assert sb.SendImport(standby, sync.export_id, sync.export_id) in run.actions
    run.feed(sb.Imported(run.t + 9, standby, sync.export_id, True, "s0"))
    assert run.actions == (sb.Follow(standby, sync.export_id),)
    assert run.k.sync is not None
    assert run.k.sync.phase is sb.SyncPhase.FOLLOWING


def test_hot_syncs_a_standby_of_the_actives_version() -> None:
    run = Run(HOT)
    synced(run)
    # From now on each digest check goes to both, at the same point of their streams.
    run.tick(1, roster(A, m("b", Role.SHADOW)))
    assert {a.instance_id for a in run.asked()} == {"a", "b"}
    assert len({a.export_id for a in run.asked()}) == 1


@pytest.mark.parametrize(
    "r",
    [
        pytest.param(roster(A, m("b", Role.STANDBY, "v2")), id="another-version"),
        pytest.param(roster(A, m("b", Role.STANDBY), handoff=True), id="during-a-handoff"),
        pytest.param(roster(A), id="nobody-to-sync"),
    ],
)
def test_hot_syncs_nobody(r: sb.Roster) -> None:
    run = Run(HOT)
    run.tick(0, r)
    assert not any(a.export_id.startswith(sb.SYNC_PREFIX) for a in run.asked())
    assert run.k.sync is None


def test_checkpoint_mode_syncs_nobody() -> None:
    run = Run(CKPT)
    run.tick(0, roster(A, m("b", Role.STANDBY)))
    assert run.k.sync is None


def test_a_sync_import_with_another_digest_sets_the_standby_back() -> None:
    run = Run(HOT)
    run.tick(0, roster(A, m("b", Role.STANDBY)))
    sync = next(a for a in run.asked("a") if a.export_id.startswith(sb.SYNC_PREFIX))
    run.answer("a", sync.export_id, "s0")
    run.feed(sb.Imported(run.t + 9, "b", sync.export_id, True, "other"))
    assert kinds(run.actions) == ["Unfollow"]
    assert run.k.sync is None


def test_different_digests_of_the_active_and_its_standby_are_a_divergence() -> None:
    run = Run(HOT)
    synced(run)
    run.tick(1, roster(A, m("b", Role.SHADOW)))
    (probe,) = {a.export_id for a in run.asked()}
    run.answer("a", probe, "x")
    assert run.actions == ()
    run.answer("b", probe, "y")
    assert kinds(run.actions) == ["Diverged", "Unfollow"]
    assert (run.k.divergences, run.k.sync) == (1, None)


def test_the_standbys_answer_to_a_checkpoint_ask_does_not_settle_the_checkpoint() -> None:
    # A checkpoint's export id goes to the ACTIVE (a full export) and to the following standby
    # (digest only, to compare); the standby's answer, often the first, is not the checkpoint.
    run = Run(HOT)
    synced(run)
    following = roster(A, m("b", Role.SHADOW))
    for index in (1, 2):
        run.tick(index, following)
        for ask in run.asked():
            run.answer(ask.instance_id, ask.export_id, f"d{index}")
    run.tick(3, following)
    asks = sorted((a.instance_id, a.export_id, a.digest_only) for a in run.asked())
    (checkpoint_id,) = {export_id for _, export_id, _ in asks}
    assert checkpoint_id.startswith(sb.CHECKPOINT_PREFIX)
    assert [(i, digest_only) for i, _, digest_only in asks] == [("a", False), ("b", True)]
    run.answer("b", checkpoint_id, "d3", 0)
    assert kinds(run.actions) == []
    assert run.k.checkpoint_asked == checkpoint_id
    run.answer("a", checkpoint_id, "d3", 4096)
    (keep,) = run.actions
    assert isinstance(keep, sb.KeepCheckpoint)
    assert (keep.checkpoint.instance_id, keep.checkpoint.tick_index) == ("a", 3)
    assert keep.checkpoint.state_bytes == 4096


def test_the_standby_of_an_old_version_is_let_go_after_a_handoff() -> None:
    run = Run(HOT)
    synced(run)
    flipped = roster(m("a", Role.SHADOW), m("b", Role.SHADOW), m("g", Role.ACTIVE, "v2"))
    actions = run.tick(1, flipped)
    assert sb.Unfollow("b", "the ACTIVE is another version now") in actions


# -- take-overs ---------------------------------------------------------------------------------


def test_the_active_dies_and_its_hot_standby_takes_over_at_once_with_the_exact_state() -> None:
    run = Run(HOT)
    synced(run)
    run.tick(1, roster(A, m("b", Role.SHADOW)))
    (probe,) = {a.export_id for a in run.asked()}
    run.answer("a", probe, "p1")
    run.answer("b", probe, "p1")
    actions = run.feed(sb.Gone(run.t + 300, "a", roster(m("b", Role.SHADOW))))
    assert sb.TakeOver("b") in actions
    assert sb.Journal("b") in actions
    (fo,) = recorded(run)
    assert (fo.to, fo.takeover_ms, fo.state, fo.result) == (
        "b",
        0,
        sb.FailoverState.EXACT,
        "completed",
    )
    assert fo.verify_probe == probe


def test_a_hot_take_over_waits_for_the_standbys_digest_at_the_deads_last_point() -> None:
    run = Run(HOT)
    synced(run)
    run.tick(1, roster(A, m("b", Role.SHADOW)))
    (probe,) = {a.export_id for a in run.asked()}
    run.answer("a", probe, "p1")  # the standby has not answered it yet when a dies
    run.feed(sb.Gone(run.t + 300, "a", roster(m("b", Role.SHADOW))))
    assert recorded(run) == []
    run.answer("b", probe, "p1")
    (fo,) = recorded(run)
    assert fo.state is sb.FailoverState.EXACT


def checkpointed(run: Run) -> tuple[str, str]:
    """Tick 0 (a checkpoint), tick 1 (a digest check), both answered: (checkpoint, probe)."""
    run.tick(0, roster(A))
    (ckpt,) = run.asked("a")
    run.answer("a", ckpt.export_id, "c0")
    run.tick(1, roster(A))
    (probe,) = run.asked("a")
    run.answer("a", probe.export_id, "p1")
    return ckpt.export_id, probe.export_id


def test_the_active_dies_and_the_next_instance_rebuilds_its_state_from_the_checkpoint() -> None:
    run = Run(CKPT)
    ckpt, probe = checkpointed(run)
    died = run.t + 300
    actions = run.feed(sb.Gone(died, "a", roster()))
    assert actions == (sb.Hold(True),)  # nobody to rebuild in yet: an attach must not promote
    r = roster(m("n", Role.STANDBY))
    actions = run.feed(sb.Attached(died + 700, "n", r))
    (imp,) = actions
    assert isinstance(imp, sb.SendImport)
    assert (imp.instance_id, imp.export_id) == ("n", ckpt)
    run.feed(sb.Imported(died + 750, "n", imp.import_id, True, "c0"))
    assert run.actions == (sb.Follow("n", ckpt),)
    # Not caught up with the journal at a boundary: not yet.
    waiting = run.feed(sb.AtBoundary(died + 800, roster(m("n", Role.SHADOW, caught_up=False))))
    assert waiting == ()
    actions = run.feed(sb.AtBoundary(died + 1700, roster(m("n", Role.SHADOW))))
    assert kinds(actions) == ["TakeOver", "Hold", "Journal"]
    assert recorded(run) == []  # verified when n's answer to the replayed digest check arrives
    run.feed(sb.Exported(died + 1710, "n", probe, "p1", 0))
    (fo,) = recorded(run)
    assert (fo.mode, fo.takeover_ms, fo.state) == (
        StandbyMode.CHECKPOINT,
        1700,
        sb.FailoverState.EXACT,
    )
    assert fo.checkpoint_id == ckpt


def test_a_replay_that_reports_another_digest_is_a_divergence() -> None:
    run = Run(CKPT)
    _, probe = checkpointed(run)
    run.feed(sb.Gone(run.t + 300, "a", roster(m("n", Role.STANDBY))))
    (imp,) = [a for a in run.actions if isinstance(a, sb.SendImport)]
    run.feed(sb.Imported(run.t + 400, "n", imp.import_id, True, "c0"))
    run.feed(sb.AtBoundary(run.t + 1000, roster(m("n", Role.SHADOW))))
    run.feed(sb.Exported(run.t + 1010, "n", probe, "not-p1", 0))
    assert "Diverged" in kinds(run.actions)
    (fo,) = recorded(run)
    assert fo.state is sb.FailoverState.DIVERGED


def test_the_recovering_instance_dies_and_the_next_one_is_taken() -> None:
    run = Run(CKPT)
    ckpt, _ = checkpointed(run)
    run.feed(sb.Gone(run.t + 300, "a", roster(m("n", Role.STANDBY))))
    actions = run.feed(sb.Gone(run.t + 400, "n", roster(m("o", Role.STANDBY))))
    (imp,) = actions
    assert isinstance(imp, sb.SendImport)
    assert (imp.instance_id, imp.export_id) == ("o", ckpt)


def test_a_failed_checkpoint_import_still_ends_with_an_active_instance() -> None:
    run = Run(CKPT)
    checkpointed(run)
    run.feed(sb.Gone(run.t + 300, "a", roster(m("n", Role.STANDBY))))
    (imp,) = [a for a in run.actions if isinstance(a, sb.SendImport)]
    actions = run.feed(sb.Imported(run.t + 400, "n", imp.import_id, False, "", "StateDecodeError"))
    assert sb.TakeOver("n") in actions
    (fo,) = recorded(run)
    assert (fo.state, fo.result) == (sb.FailoverState.EMPTY, "failed")
    assert "StateDecodeError" in fo.message


def test_without_a_checkpoint_the_next_active_starts_empty_and_it_is_recorded() -> None:
    run = Run(NONE)
    run.tick(0, roster(A))
    assert run.feed(sb.Gone(run.t + 300, "a", roster())) == ()
    run.feed(sb.AtBoundary(run.t + 2000, roster(m("n", Role.ACTIVE))))
    (fo,) = recorded(run)
    assert (fo.to, fo.state, fo.takeover_ms) == ("n", sb.FailoverState.EMPTY, 2000 - 300)


def test_a_handoff_that_took_over_from_its_blue_leaves_nothing_to_do() -> None:
    run = Run(CKPT)
    checkpointed(run)
    actions = run.feed(sb.Gone(run.t + 300, "a", roster(m("g", Role.ACTIVE, "v2"))))
    assert actions[0] == sb.Journal("g")
    assert (run.k.failover, run.k.recovery) == (None, None)


def test_green_of_an_interrupted_handoff_recovers_another_versions_state_unverified() -> None:
    run = Run(CKPT)
    checkpointed(run)
    run.feed(sb.Gone(run.t + 300, "a", roster(m("g", Role.STANDBY, "v2"))))
    (imp,) = [a for a in run.actions if isinstance(a, sb.SendImport)]
    run.feed(sb.Imported(run.t + 400, "g", imp.import_id, True, "c0"))
    run.feed(sb.AtBoundary(run.t + 1000, roster(m("g", Role.SHADOW, "v2"))))
    (fo,) = recorded(run)
    assert (fo.to_version, fo.state) == ("v2", sb.FailoverState.UNVERIFIED)
    assert "migrated" in fo.message


def test_a_stuck_recovery_gives_up_after_the_step_timeout() -> None:
    run = Run(CKPT)
    checkpointed(run)
    run.feed(sb.Gone(run.t + 300, "a", roster(m("n", Role.STANDBY))))
    late = run.t + 300 + sb.STEP_TIMEOUT_MS + 1
    actions = run.feed(sb.AtBoundary(late, roster(m("n", Role.STANDBY))))
    assert sb.TakeOver("n") in actions
    (fo,) = recorded(run)
    assert (fo.result, fo.state) == ("failed", sb.FailoverState.UNVERIFIED)


def test_a_verification_that_never_comes_is_recorded_unverified() -> None:
    run = Run(HOT)
    synced(run)
    run.tick(1, roster(A, m("b", Role.SHADOW)))
    (probe,) = {a.export_id for a in run.asked()}
    run.answer("a", probe, "p1")
    run.feed(sb.Gone(run.t + 300, "a", roster(m("b", Role.SHADOW))))
    late = run.t + 300 + sb.STEP_TIMEOUT_MS + 1
    run.feed(sb.AtBoundary(late, roster(m("b", Role.ACTIVE))))
    (fo,) = recorded(run)
    assert fo.state is sb.FailoverState.UNVERIFIED


def test_ids_are_unique_across_runs_of_the_gateway() -> None:
    a = sb.step(sb.Keeping("s", nonce="r1"), sb.AfterDispatch(T0, 0, roster(A), CKPT))
    b = sb.step(sb.Keeping("s", nonce="r2"), sb.AfterDispatch(T0, 0, roster(A), CKPT))
    ids = [x.export_id for s in (a, b) for x in s.actions if isinstance(x, sb.AskExport)]
    assert len(set(ids)) == 2
    assert all(sb.is_keeping_id(i) for i in ids)
    assert not sb.is_keeping_id("h-0123456789ab")  # a handoff's


def test_a_standby_promoted_by_a_handoff_is_no_longer_a_standby() -> None:
    run = Run(HOT)
    synced(run)
    actions = run.tick(1, roster(m("a", Role.SHADOW), m("b", Role.ACTIVE)))
    assert actions[0] == sb.Journal("b")
    assert not any(isinstance(a, sb.Unfollow) for a in actions)
    assert run.k.sync is None


def test_an_instance_promoted_during_a_recovery_is_the_successor() -> None:
    run = Run(CKPT)
    checkpointed(run)
    run.feed(sb.Gone(run.t + 300, "a", roster(m("n", Role.STANDBY))))
    promoted = roster(m("n", Role.STANDBY), m("p", Role.ACTIVE, "v2"))
    actions = run.feed(sb.AtBoundary(run.t + 1000, promoted))
    assert sb.Unfollow("n", "p was promoted during the recovery") in actions
    assert sb.Hold(False) in actions
    assert not any(isinstance(a, sb.TakeOver) for a in actions)
    (fo,) = recorded(run)
    assert (fo.to, fo.result, fo.state) == ("p", "failed", sb.FailoverState.UNVERIFIED)


def test_a_lost_journal_leaves_nothing_to_recover_from_until_the_next_checkpoint() -> None:
    run = Run(CKPT)
    checkpointed(run)
    run.feed(sb.JournalLost(run.t + 10))
    assert run.k.checkpoint is None
    # The next dispatch asks a checkpoint at once; a death before it is the empty-state path.
    run.tick(2, roster(A))
    assert [a.digest_only for a in run.asked()] == [False]
    assert run.feed(sb.Gone(run.t + 300, "a", roster(m("n", Role.STANDBY)))) == ()
    assert run.k.recovery is None


def test_the_deads_last_point_is_the_last_in_its_stream_not_the_last_answered() -> None:
    run = Run(HOT)
    run.tick(0, roster(A, m("b", Role.STANDBY)))
    ckpt, sync = (a.export_id for a in run.asked("a"))
    assert sync.startswith(sb.SYNC_PREFIX)
    run.answer("a", ckpt, "c0")
    run.tick(1, roster(A, m("b", Role.STANDBY)))
    (probe,) = run.asked("a")
    # The host answers in stream order, but the sync's (big) export arrives after the next
    # tick's check was asked: its place in the stream is before that check all the same.
    run.answer("a", sync, "s0")
    run.answer("a", probe.export_id, "p1")
    run.feed(sb.Imported(run.t + 9, "b", sync, True, "s0"))
    run.feed(sb.Gone(run.t + 20, "a", roster(m("b", Role.SHADOW))))
    assert run.k.failover is not None
    assert run.k.failover.verify_probe == probe.export_id
    run.answer("b", probe.export_id, "p1")  # b replays the journal since the sync: the check
    (fo,) = recorded(run)
    assert fo.state is sb.FailoverState.EXACT
