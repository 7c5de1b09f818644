"""The router state machine: roles, epochs and which decisions execute (G1, G2)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from baton.gateway.core.clock import SlotClock
from baton.gateway.core.records import EvalOutcome
from baton.gateway.core.router import InstanceInfo, Router, Verdict, answered_record
from baton.model import Action, Decision, Role, Slot

SLOTS = (Slot("BTC", "BTCUSDT", "5m"), Slot("MATIC", "POLUSDT", "15m"))
CLOCK = SlotClock(1000, 0)


def info(pod: str = "blue", version: str = "v1") -> InstanceInfo:
    return InstanceInfo(pod, "momentum", version, 1)


def active_router() -> tuple[Router, str]:
    router = Router(SLOTS)
    instance = router.attach(info(), now_ms=0)
    return router, instance.instance_id


def test_first_attach_becomes_active_under_epoch_1_later_ones_standby() -> None:
    router = Router(SLOTS)
    first = router.attach(info("blue"), 0)
    second = router.attach(info("green", "v2"), 0)
    assert (first.role, second.role, router.epoch) == (Role.ACTIVE, Role.STANDBY, 1)
    assert first.instance_id != second.instance_id


def test_detach_of_active_leaves_no_active_and_next_attach_gets_a_new_epoch() -> None:
    router, blue = active_router()
    router.detach(blue)
    assert router.active is None
    green = router.attach(info("green"), 5)
    assert green.role is Role.ACTIVE
    assert router.epoch == 2


@pytest.mark.parametrize(
    ("prefer", "order", "active", "still_preferred"),
    [
        pytest.param(None, ("green", "blue"), "green", None, id="no-preference-first-wins"),
        pytest.param("blue", ("blue", "green"), "blue", None, id="preferred-first-is-active"),
        pytest.param(
            "blue", ("green", "blue"), "blue", None, id="preferred-after-another-is-active"
        ),
        pytest.param("blue", ("green",), None, "blue", id="another-alone-waits-as-standby"),
        pytest.param("blue", ("green", "red"), None, "blue", id="others-all-wait"),
    ],
)
def test_a_started_gateway_prefers_the_pod_that_held_the_state(
    prefer: str | None, order: tuple[str, ...], active: str | None, still_preferred: str | None
) -> None:
    router = Router(SLOTS, prefer_pod=prefer)
    for n, pod in enumerate(order):
        router.attach(info(pod), n)
    assert (router.active.info.pod_name if router.active else None) == active
    assert router.prefer_pod == still_preferred
    assert router.epoch == (1 if active else 0)


def test_when_the_wait_ends_the_first_standby_is_the_one_attached_first() -> None:
    router = Router(SLOTS, prefer_pod="blue")
    green = router.attach(info("green"), 5).instance_id
    router.attach(info("red"), 7)
    assert router.first_standby() == green
    router.flip(green, previous_role=Role.STANDBY)
    assert (router.active_id, router.prefer_pod) == (green, None)
    assert Router(SLOTS).first_standby() is None


def test_tick_without_active_is_missed_at_once() -> None:
    router = Router(SLOTS)
    plan = router.on_tick(CLOCK.tick(0), now_ms=0)
    assert plan.sends == ()
    assert [r.outcome for r in plan.missed] == [EvalOutcome.NO_ACTIVE] * 2
    assert router.pending == {}


def test_tick_sends_every_slot_to_active_with_per_slot_seq() -> None:
    router, blue = active_router()
    router.seq_base = {"BTC/5m": 41}
    plan = router.on_tick(CLOCK.tick(2), now_ms=2000)
    assert [(s.slot.slot_id, s.seq, s.instance_id) for s in plan.sends] == [
        ("BTC/5m", 43, blue),
        ("MATIC/15m", 3, blue),
    ]
    assert set(router.pending) == {("BTC/5m", 43), ("MATIC/15m", 3)}


def decision(
    seq: int = 1, epoch: int = 1, action: Action | None = Action.UP, error: str = ""
) -> Decision:
    return Decision("BTC/5m", seq, epoch, action, error=error)


@pytest.mark.parametrize(
    ("make_decision", "sender", "now", "verdict", "resolves"),
    [
        (lambda: decision(), "active", 500, Verdict.EXECUTE, True),
        (lambda: decision(action=Action.HOLD), "active", 500, Verdict.EXECUTE, True),
        (lambda: decision(action=None, error="boom"), "active", 500, Verdict.ERROR, True),
        (lambda: decision(), "active", 1000, Verdict.LATE, False),
        (lambda: decision(), "active", 1500, Verdict.LATE, False),
        (lambda: decision(epoch=0), "active", 500, Verdict.FENCED, False),
        (lambda: decision(epoch=2), "active", 500, Verdict.FENCED, False),
        (lambda: decision(seq=99), "active", 500, Verdict.UNKNOWN, False),
        (lambda: decision(), "standby", 500, Verdict.NOT_ACTIVE, False),
        (lambda: decision(), "nobody", 500, Verdict.NOT_ACTIVE, False),
    ],
    ids=[
        "active, current epoch, in time: executed",
        "a HOLD is executed as a no-op",
        "a strategy error resolves the evaluation without executing",
        "at the deadline: late",
        "after the deadline: late",
        "an older epoch is fenced",
        "a future epoch is fenced",
        "a seq never sent is unknown",
        "a standby's answer is never executed",
        "an unknown instance's answer is never executed",
    ],
)
def test_judge(
    make_decision: Callable[[], Decision], sender: str, now: int, verdict: Verdict, resolves: bool
) -> None:
    router, blue = active_router()
    standby = router.attach(info("green", "v2"), 0).instance_id
    router.on_tick(CLOCK.tick(0), now_ms=0)
    senders = {"active": blue, "standby": standby, "nobody": "i99-x"}
    judgement = router.judge(senders[sender], make_decision(), now)
    assert judgement.verdict is verdict
    assert (("BTC/5m", 1) not in router.pending) is resolves


def test_second_answer_for_the_same_seq_is_not_executed_twice() -> None:
    router, blue = active_router()
    router.on_tick(CLOCK.tick(0), now_ms=0)
    assert router.judge(blue, decision(), 100).verdict is Verdict.EXECUTE
    assert router.judge(blue, decision(), 200).verdict is Verdict.UNKNOWN


def test_answer_from_a_previous_incarnation_after_reattach_is_fenced() -> None:
    router, blue = active_router()
    router.on_tick(CLOCK.tick(0), now_ms=0)
    router.detach(blue)
    again = router.attach(info(), 10).instance_id
    # The pending evaluation was sent to the old incarnation: nobody else may answer it.
    assert router.judge(again, decision(epoch=1), 20).verdict is Verdict.FENCED
    assert router.judge(again, decision(epoch=2), 20).verdict is Verdict.FENCED


def test_expire_resolves_pending_at_deadline_as_timeouts_once() -> None:
    router, _ = active_router()
    router.on_tick(CLOCK.tick(0), now_ms=3)
    assert router.expire(999) == ()
    expired = router.expire(1000)
    assert [(r.slot_id, r.outcome, r.dispatched_ms) for r in expired] == [
        ("BTC/5m", EvalOutcome.TIMEOUT, 3),
        ("MATIC/15m", EvalOutcome.TIMEOUT, 3),
    ]
    assert router.expire(5000) == ()


def test_evaluations_a_fenced_host_leaves_unanswered_time_out_as_fenced() -> None:
    # Its host refused this gateway's term: it answers nothing, and the record says why.
    router, blue = active_router()
    router.on_tick(CLOCK.tick(0), now_ms=3)
    router.note_fenced(blue, "fenced: the host has seen term 2")
    router.note_fenced("never-attached", "fenced")  # an unknown instance is not remembered
    router.detach(blue)  # its stream ends: what it owed still expires with the reason
    assert [(r.outcome, r.reason) for r in router.expire(1000)] == [
        (EvalOutcome.TIMEOUT, "fenced: the host has seen term 2")
    ] * 2
    assert router.fenced == {}  # gone and owing nothing: forgotten


def test_evaluations_of_a_host_that_was_not_fenced_time_out_without_a_reason() -> None:
    router, _ = active_router()
    router.on_tick(CLOCK.tick(0), now_ms=3)
    assert {r.reason for r in router.expire(1000)} == {""}


def test_late_tick_misses_every_slot_with_gateway_late() -> None:
    router, _ = active_router()
    records = router.on_late_tick(CLOCK.tick(4))
    assert [(r.slot_id, r.seq, r.outcome) for r in records] == [
        ("BTC/5m", 5, EvalOutcome.GATEWAY_LATE),
        ("MATIC/15m", 5, EvalOutcome.GATEWAY_LATE),
    ]


def test_undelivered_resolves_once() -> None:
    router, _ = active_router()
    router.on_tick(CLOCK.tick(0), now_ms=0)
    record = router.undelivered("BTC/5m", 1)
    assert record is not None
    assert record.outcome is EvalOutcome.UNDELIVERED
    assert router.undelivered("BTC/5m", 1) is None


def test_answered_record_carries_decision_and_bet() -> None:
    router, blue = active_router()
    router.on_tick(CLOCK.tick(0), now_ms=2)
    judgement = router.judge(blue, decision(), 40)
    assert judgement.pending is not None
    record = answered_record(judgement.pending, decision(), 40, bet_id="b1")
    assert (record.outcome, record.action, record.decided_ms, record.bet_id) == (
        EvalOutcome.EXECUTED,
        "UP",
        40,
        "b1",
    )
    assert record.executed
    err = answered_record(judgement.pending, decision(action=None, error="x"), 40)
    assert (err.outcome, err.executed, err.error) == (EvalOutcome.ERROR, False, "x")


def shadowing_router() -> tuple[Router, str, str]:
    router, blue = active_router()
    green = router.attach(info("green", "v2"), 0).instance_id
    router.set_role(green, Role.SHADOW)
    return router, blue, green


def test_shadow_gets_every_evaluation_and_its_answers_are_never_executed() -> None:
    router, blue, green = shadowing_router()
    plan = router.on_tick(CLOCK.tick(0), now_ms=0)
    assert sorted((s.instance_id, s.role) for s in plan.sends) == sorted(
        [(blue, Role.ACTIVE)] * 2 + [(green, Role.SHADOW)] * 2
    )
    assert not router.caught_up(green)
    assert router.judge(green, decision(), 10).verdict is Verdict.SHADOW
    assert ("BTC/5m", 1) in router.pending, "a shadow answer resolves nothing"
    router.judge(green, Decision("MATIC/15m", 1, 1, Action.HOLD), 11)
    assert router.caught_up(green)
    assert router.judge(blue, decision(), 12).verdict is Verdict.EXECUTE


def test_a_shadow_without_an_active_is_sent_nothing_and_owes_nothing() -> None:
    # A dead ACTIVE's state being rebuilt (core/standby.py): the instance replaying its journal
    # is a SHADOW with nobody ACTIVE; it must be seen caught up once the replay is answered.
    router, blue, green = shadowing_router()
    router.detach(blue)
    plan = router.on_tick(CLOCK.tick(0), now_ms=0)
    assert plan.sends == ()
    assert router.caught_up(green)


def test_a_hold_keeps_an_attaching_instance_from_becoming_active() -> None:
    router, blue = active_router()
    router.detach(blue)
    router.hold = True
    assert router.attach(info("green"), 5).role is Role.STANDBY
    assert (router.active, router.epoch) == (None, 1)


def test_standby_and_draining_receive_nothing() -> None:
    router, blue = active_router()
    standby = router.attach(info("green", "v2"), 0).instance_id
    draining = router.attach(info("old", "v0"), 0).instance_id
    router.set_role(draining, Role.DRAINING)
    plan = router.on_tick(CLOCK.tick(0), now_ms=0)
    assert {s.instance_id for s in plan.sends} == {blue}
    assert router.judge(standby, decision(), 5).verdict is Verdict.NOT_ACTIVE
    assert router.judge(draining, decision(), 5).verdict is Verdict.NOT_ACTIVE


def test_flip_at_a_boundary_new_epoch_old_active_fenced() -> None:
    router, blue, green = shadowing_router()
    router.on_tick(CLOCK.tick(0), now_ms=0)
    for slot in ("BTC/5m", "MATIC/15m"):
        router.judge(blue, Decision(slot, 1, 1, Action.HOLD), 5)
    assert router.flip(green) == ()
    assert router.epoch == 2
    assert router.active_id == green
    assert router.instances[blue].role is Role.SHADOW
    plan = router.on_tick(CLOCK.tick(1), now_ms=1000)
    assert {(s.instance_id, s.role, s.epoch) for s in plan.sends} == {
        (green, Role.ACTIVE, 2),
        (blue, Role.SHADOW, 2),
    }
    # Blue, now a shadow, can never have a decision executed.
    assert router.judge(blue, decision(seq=2, epoch=2), 1005).verdict is Verdict.SHADOW
    assert router.judge(green, decision(seq=2, epoch=2), 1006).verdict is Verdict.EXECUTE


def test_fail_over_moves_pending_to_the_shadow_and_uses_its_answer() -> None:
    router, blue, green = shadowing_router()
    router.on_tick(CLOCK.tick(0), now_ms=0)
    router.judge(green, decision(), 3)  # green answered BTC as a shadow; MATIC not yet
    router.detach(blue)  # blue dies with both evaluations pending
    answered = router.flip(green)
    assert [p.slot.slot_id for p in answered] == ["BTC/5m"]
    assert {p.instance_id for p in router.pending.values()} == {green}
    decision_taken, judgement = router.take_over_answer(answered[0], now_ms=4)
    assert decision_taken.slot_id == "BTC/5m"
    assert judgement.verdict is Verdict.EXECUTE
    # The rest is answered live, under the epoch it was sent with.
    late = router.judge(green, Decision("MATIC/15m", 1, 1, Action.DOWN), 6)
    assert late.verdict is Verdict.EXECUTE
    assert router.pending == {}


def test_hand_back_makes_blue_active_and_green_standby() -> None:
    router, blue, green = shadowing_router()
    router.flip(green)
    router.on_tick(CLOCK.tick(0), now_ms=0)
    router.judge(blue, decision(epoch=2), 2)  # blue shadows green
    answered = router.flip(blue, previous_role=Role.STANDBY)
    assert router.epoch == 3
    assert router.instances[green].role is Role.STANDBY
    assert [p.slot.slot_id for p in answered] == ["BTC/5m"]
    assert router.take_over_answer(answered[0], 5)[1].verdict is Verdict.EXECUTE
    assert router.judge(green, decision(seq=1, epoch=2), 6).verdict is Verdict.NOT_ACTIVE


def test_set_role_refuses_active() -> None:
    router, blue = active_router()
    with pytest.raises(ValueError, match="flip"):
        router.set_role(blue, Role.ACTIVE)


def test_an_answer_after_its_timeout_was_recorded_is_late_not_unknown() -> None:
    router, blue = active_router()
    router.on_tick(CLOCK.tick(0), now_ms=0)
    router.expire(1000)
    assert router.judge(blue, decision(), 1200).verdict is Verdict.LATE
    assert router.judge(blue, decision(seq=7), 1200).verdict is Verdict.UNKNOWN


def test_recently_missed_memory_is_bounded() -> None:
    router, _ = active_router()
    for i in range(20):
        router.on_tick(CLOCK.tick(i), now_ms=i * 1000)
        router.expire((i + 1) * 1000)
    assert len(router.recently_missed) == 4 * len(SLOTS)
    assert ("BTC/5m", 20) in router.recently_missed
    assert ("BTC/5m", 1) not in router.recently_missed
