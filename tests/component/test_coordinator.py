"""The handoff coordinator in-process: the real coordinator and the real (pure) router, with
fakes of what it drives (``Fleet``, ``TakeOver``, ``HandoffRecorder``). Facts arrive as the
other parts would report them; every time is the test's clock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from baton.gateway.coordinator import Coordinator, PromoteError
from baton.gateway.core import handoff as hm
from baton.gateway.core.clock import SlotClock, Tick
from baton.gateway.core.records import EvalOutcome
from baton.gateway.core.router import InstanceInfo, Router, Verdict
from baton.model import Action, Decision, Role, Slot
from baton.v1 import gateway_pb2 as gw
from tests.component.fakes import Clock, FakeFleet, FakeRecorder, FakeTakeOver, batch, kind

SLOTS = (Slot("BTC", "BTCUSDT", "5m"),)
CADENCE_MS = 1_000
BAKE_MS = 3_000
POLICY = hm.Policy(bake_ms=BAKE_MS)


@dataclass
class Bed:
    clock: Clock
    router: Router
    fleet: FakeFleet
    takeover: FakeTakeOver
    recorder: FakeRecorder
    coordinator: Coordinator
    slot_clock: SlotClock
    blue: str
    green: str

    def tick(self, index: int) -> Tick:
        return self.slot_clock.tick(index)

    def dispatch(self, index: int) -> Tick:
        """Tick ``index`` sent as the dispatch sends it: a batch per instance, then the
        coordinator's moment right after it."""
        tick = self.tick(index)
        self.clock.t_ms = tick.scheduled_ms
        plan = self.router.on_tick(tick, tick.scheduled_ms)
        for instance_id in dict.fromkeys(s.instance_id for s in plan.sends):
            self.fleet.deliver(
                instance_id, batch([s for s in plan.sends if s.instance_id == instance_id])
            )
        self.coordinator.after_dispatch(tick.scheduled_ms, tick.scheduled_ms + 1.5)
        return tick

    def answer(
        self, instance_id: str, tick: Tick, action: Action = Action.UP, *, error: str = ""
    ) -> Verdict:
        """``instance_id`` answers ``tick``'s evaluation (the router judges; the coordinator is
        told what the execution would tell it)."""
        slot = SLOTS[0]
        seq = self.router.seq_of(slot, tick)
        decision = Decision(
            slot.slot_id, seq, self.router.epoch, None if error else action, error=error
        )
        self.coordinator.check_green_answer(instance_id, error, decision.epoch)
        judgement = self.router.judge(instance_id, decision, self.clock())
        if judgement.verdict is Verdict.SHADOW:
            self.coordinator.on_shadow_answer(instance_id, slot.slot_id, seq, action.value)
        elif judgement.verdict is Verdict.EXECUTE:
            self.coordinator.on_executed(slot.slot_id, seq, action.value)
        return judgement.verdict

    def phase(self) -> hm.Phase:
        h = self.coordinator.current
        assert h is not None
        return h.phase


def bed() -> Bed:
    clock = Clock()
    router = Router(SLOTS)
    blue = router.attach(InstanceInfo("blue", "momentum", "v1", 1), clock()).instance_id
    green = router.attach(InstanceInfo("green", "momentum", "v2", 1), clock()).instance_id
    fleet = FakeFleet(router)
    takeover = FakeTakeOver(router, clock)
    recorder = FakeRecorder()
    coordinator = Coordinator(
        fleet=fleet, takeover=takeover, roster=router, recorder=recorder, now_ms=clock
    )
    slot_clock = SlotClock.starting_after(CADENCE_MS, clock())
    return Bed(clock, router, fleet, takeover, recorder, coordinator, slot_clock, blue, green)


def snapshot(handoff_id: str) -> gw.StateSnapshot:
    return gw.StateSnapshot(handoff_id=handoff_id, state=b"state", digest="sha256:d1")


def imported(handoff_id: str, ok: bool = True) -> gw.ImportResult:
    return gw.ImportResult(
        handoff_id=handoff_id, ok=ok, digest="sha256:d1", error="" if ok else "bad"
    )


def to_shadowing(b: Bed) -> tuple[str, Tick]:
    """Promote green and follow the handoff to SHADOWING: blue is sent tick 0 after its
    snapshot point, so the replay holds it. Returns the handoff id and tick 0."""
    h = b.coordinator.promote(b.green, POLICY)
    assert h.phase is hm.Phase.EXPORTING
    tick0 = b.dispatch(0)  # ExportState goes out right after this tick's dispatch
    assert b.fleet.calls[-2:] == [("send export_state", b.blue), ("start_journal", b.blue)]
    tick1 = b.dispatch(1)  # sent after the snapshot point: journaled for green
    b.coordinator.on_exported(b.blue, snapshot(h.handoff_id))
    assert b.phase() is hm.Phase.IMPORTING
    assert b.fleet.sent[b.green][-1].import_state.snapshot.digest == "sha256:d1"
    b.coordinator.on_imported(b.green, imported(h.handoff_id))
    assert b.phase() is hm.Phase.SHADOWING
    assert tick0.index == 0
    return h.handoff_id, tick1


def to_baking(b: Bed) -> tuple[str, Tick]:
    """On to the flip: green answers what it was replayed, then shadows one whole live tick
    (the default ``shadow_ticks``), compared with blue's; the boundary after it flips. Returns
    the handoff id and the first tick green is ACTIVE for (not dispatched yet)."""
    handoff_id, replayed = to_shadowing(b)
    assert b.answer(b.blue, replayed) is Verdict.EXECUTE
    assert b.answer(b.green, replayed) is Verdict.SHADOW  # green has caught up
    b.clock.t_ms = b.tick(2).scheduled_ms
    b.coordinator.on_boundary(b.clock())
    # Green joined tick 1 halfway (its import landed between two boundaries): no tick of it
    # has been compared whole yet, so this boundary starts the live shadow, it does not flip.
    assert b.phase() is hm.Phase.SHADOWING
    live = b.dispatch(2)
    assert b.answer(b.green, live) is Verdict.SHADOW
    assert b.answer(b.blue, live) is Verdict.EXECUTE
    flip_tick = b.tick(3)
    b.clock.t_ms = flip_tick.scheduled_ms
    b.coordinator.on_boundary(b.clock())
    assert b.phase() is hm.Phase.BAKING
    return handoff_id, flip_tick


def test_a_full_handoff_replays_blues_journal_to_green_then_flips_and_drains_blue() -> None:
    b = bed()
    handoff_id, replayed = to_shadowing(b)
    # Green got, as SHADOW, what blue was sent after its snapshot: tick 1's batch, in order.
    replay = b.fleet.replays[b.green]
    assert [kind(m) for m in replay] == ["evaluate_batch"]
    assert [r.seq for r in replay[0].evaluate_batch.requests] == [
        b.router.seq_of(SLOTS[0], replayed)
    ]
    assert b.router.instances[b.green].role is Role.SHADOW
    assert ("stop_journal", b.blue) in b.fleet.calls

    # Blue executes tick 1 in time; green has not answered its replay yet.
    assert b.answer(b.blue, replayed) is Verdict.EXECUTE
    # A boundary while green still owes its replayed answer: no flip, the tick goes out.
    b.clock.t_ms = b.tick(2).scheduled_ms
    b.coordinator.on_boundary(b.clock())
    assert b.phase() is hm.Phase.SHADOWING
    assert b.takeover.flips == []
    tick2 = b.dispatch(2)

    # Green answers the replay and tick 2 as a shadow, blue executes tick 2: both compared.
    assert b.answer(b.green, replayed) is Verdict.SHADOW
    assert b.answer(b.green, tick2) is Verdict.SHADOW
    assert b.answer(b.blue, tick2) is Verdict.EXECUTE
    shadowing = b.coordinator.current
    assert shadowing is not None
    assert (shadowing.compared, shadowing.divergences) == (2, 0)
    b.clock.t_ms = b.tick(3).scheduled_ms
    b.coordinator.on_boundary(b.clock())
    assert b.phase() is hm.Phase.BAKING
    assert b.takeover.flips == [(b.green, Role.SHADOW)]
    assert (b.router.active_id, b.router.epoch) == (b.green, 2)
    assert b.router.instances[b.blue].role is Role.SHADOW  # blue shadows green in the bake
    assert b.takeover.taken_over == []  # blue owed nothing at the boundary

    # The first tick dispatched to green measures the pause.
    b.dispatch(3)
    h = b.coordinator.current
    assert h is not None
    assert h.pause_ms == pytest.approx(1.5)

    # The bake window passes without a fault: blue is drained, then the handoff completes.
    b.clock.advance(BAKE_MS)
    b.coordinator.on_boundary(b.clock())
    assert b.phase() is hm.Phase.DRAINING
    assert b.fleet.calls[-1] == ("drain", b.blue)
    b.coordinator.on_drained(b.blue)
    assert b.coordinator.current is None
    [(done, missed)] = b.recorder.handoffs
    assert (done.handoff_id, done.phase, done.epoch_after, missed) == (
        handoff_id,
        hm.Phase.COMPLETED,
        2,
        0,
    )
    assert b.coordinator.get(handoff_id) == done
    assert b.coordinator.missed_of(handoff_id) == 0


def test_a_rollback_while_shadowing_aborts_and_blue_never_stops_being_active() -> None:
    b = bed()
    handoff_id, _ = to_shadowing(b)
    h = b.coordinator.rollback(handoff_id, "operator said no")
    assert (h.phase, h.message) == (hm.Phase.ABORTED, "operator said no")
    assert b.takeover.flips == []
    assert (b.router.active_id, b.router.epoch) == (b.blue, 1)
    assert b.router.instances[b.green].role is Role.STANDBY
    assert b.fleet.calls[-2:] == [("role STANDBY", b.green), ("stop_journal", b.blue)]
    assert [(r.phase, m) for r, m in b.recorder.handoffs] == [(hm.Phase.ABORTED, 0)]
    with pytest.raises(PromoteError):
        b.coordinator.rollback(handoff_id, "again")


def test_a_missed_evaluation_of_green_in_the_bake_window_hands_back_to_blue() -> None:
    b = bed()
    handoff_id, flip_tick = to_baking(b)
    tick = b.dispatch(flip_tick.index)
    # Blue shadows green: it answers too, so a hand-back can use blue's answer.
    assert b.answer(b.blue, tick) is Verdict.SHADOW
    # Green's evaluation times out: a fault inside the bake window.
    b.clock.t_ms = tick.deadline_ms
    for record in b.router.expire(b.clock()):
        assert (record.outcome, record.instance_id) == (EvalOutcome.TIMEOUT, b.green)
        b.coordinator.on_record(record)
    assert b.takeover.flips[-1] == (b.blue, Role.STANDBY)
    assert (b.router.active_id, b.router.epoch) == (b.blue, 3)
    assert b.fleet.calls[-2:] == [("drain", b.green), ("stop_journal", b.blue)]
    [(done, missed)] = b.recorder.handoffs
    assert (done.handoff_id, done.phase, missed) == (handoff_id, hm.Phase.ROLLED_BACK, 1)
    assert "green failed inside the bake window" in done.message


def test_a_strategy_error_of_green_hands_back_before_the_answer_is_judged() -> None:
    b = bed()
    _, flip_tick = to_baking(b)
    tick = b.dispatch(flip_tick.index)
    assert b.answer(b.blue, tick) is Verdict.SHADOW
    # Green answers with an error: the hand-back happens before the router judges it, so the
    # evaluation is blue's again and its shadow answer is executed: nothing is missed.
    b.answer(b.green, tick, error="ZeroDivisionError")
    assert b.takeover.flips[-1] == (b.blue, Role.STANDBY)
    assert [(i, j.verdict) for i, j in b.takeover.taken_over[-1:]] == [(b.blue, Verdict.EXECUTE)]
    [(done, missed)] = b.recorder.handoffs
    assert (done.phase, missed) == (hm.Phase.ROLLED_BACK, 0)


def test_blue_lost_during_import_fails_over_to_green_with_the_kept_journal() -> None:
    b = bed()
    h = b.coordinator.promote(b.green, POLICY)
    b.dispatch(0)
    tick1 = b.dispatch(1)
    b.coordinator.on_exported(b.blue, snapshot(h.handoff_id))
    assert b.phase() is hm.Phase.IMPORTING
    # Blue dies mid-import: its connection hands over what it had journaled (Instances.detach
    # forgets it in the router first, then tells the coordinator).
    journal = b.fleet.journals.pop(b.blue)
    b.router.detach(b.blue)
    b.coordinator.on_gone(b.blue, "peer went away", journal)
    assert b.phase() is hm.Phase.IMPORTING
    assert b.coordinator.current is not None
    assert b.coordinator.current.blue_gone
    # A settlement broadcast meanwhile is owed to green too, after the journal.
    settlement = gw.AttachResponse(settlement=gw.Settlement(bet_id="b-1"))
    b.coordinator.on_broadcast(settlement)

    b.coordinator.on_imported(b.green, imported(h.handoff_id))
    assert [kind(m) for m in b.fleet.replays[b.green]] == ["evaluate_batch", "settlement"]
    assert b.fleet.replays[b.green][0].evaluate_batch.requests[0].seq == b.router.seq_of(
        SLOTS[0], tick1
    )
    # Fail-over: green takes over at once, under a new epoch.
    assert b.phase() is hm.Phase.BAKING
    assert b.takeover.flips == [(b.green, Role.SHADOW)]
    assert (b.router.active_id, b.router.epoch) == (b.green, 2)
    # With no blue to hand back to, the bake window ends the handoff without a drain.
    b.clock.advance(BAKE_MS + 1)
    b.coordinator.on_boundary(b.clock())
    [(done, _)] = b.recorder.handoffs
    assert done.phase is hm.Phase.COMPLETED
    assert done.blue_gone
    assert ("drain", b.blue) not in b.fleet.calls


def test_green_lost_during_import_aborts_and_blue_stays_active() -> None:
    b = bed()
    h = b.coordinator.promote(b.green, POLICY)
    b.dispatch(0)
    b.coordinator.on_exported(b.blue, snapshot(h.handoff_id))
    b.router.detach(b.green)
    b.coordinator.on_gone(b.green, "peer went away")
    [(done, _)] = b.recorder.handoffs
    assert done.phase is hm.Phase.ABORTED
    assert "green went away" in done.message
    assert (b.router.active_id, b.router.epoch) == (b.blue, 1)
    assert b.takeover.flips == []
    assert b.fleet.calls[-1] == ("stop_journal", b.blue)


def test_promote_is_idempotent_per_request_and_refuses_an_unknown_instance() -> None:
    b = bed()
    first = b.coordinator.promote(b.green, POLICY, request_id="r-1")
    assert b.coordinator.promote(b.green, POLICY, request_id="r-1") == first
    with pytest.raises(PromoteError) as refused:
        b.coordinator.promote("nobody", POLICY)
    assert refused.value.code == "NOT_FOUND"


async def test_watchers_see_every_transition_until_the_end() -> None:
    b = bed()
    h = b.coordinator.promote(b.green, POLICY)
    statuses = b.coordinator.watch(h.handoff_id)
    async with asyncio.timeout(5):
        assert (await anext(statuses)).phase is hm.Phase.EXPORTING  # now subscribed
        b.coordinator.rollback(h.handoff_id, "no")
        assert (await anext(statuses)).phase is hm.Phase.ABORTED
        with pytest.raises(StopAsyncIteration):
            await anext(statuses)
