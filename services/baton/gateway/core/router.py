"""The router: which instance holds which role, under which epoch, and what it owes us.

A pure state machine (time passed in, no I/O). The gateway's async layer asks it whom to send
each evaluation to, and what to do with each decision that comes back. One router per strategy
of the gateway's book (``strategy``): its instances, its ACTIVE, its epoch, its slots; routers
never share an instance or an evaluation, so one strategy's handoff or crash never touches
another's.

- exactly one instance is ACTIVE at a time; every promotion increments the epoch;
- only a decision from the ACTIVE instance, under the current epoch, for a pending (slot, seq),
  received before the deadline, is executed (G1, G2); everything else is recorded and dropped;
- a (slot, seq) is resolved exactly once: executed, errored, or missed with a reason.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from baton.gateway.core.clock import Tick
from baton.gateway.core.records import EvalOutcome, EvaluationRecord, Staleness
from baton.model import Decision, InstanceStatus, Role, Slot, StandbyPolicy


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """What an instance said about itself in its Hello."""

    pod_name: str
    strategy: str
    version: str
    state_schema: int
    standby: StandbyPolicy = field(default_factory=StandbyPolicy)  # the ACTIVE's is followed


@dataclass(slots=True)
class Instance:
    instance_id: str
    info: InstanceInfo
    role: Role
    attached_ms: int

    def status(self) -> InstanceStatus:
        """As the control service lists it."""
        return InstanceStatus(
            instance_id=self.instance_id,
            pod_name=self.info.pod_name,
            strategy=self.info.strategy,
            version=self.info.version,
            state_schema=self.info.state_schema,
            role=self.role,
            attached_ms=self.attached_ms,
        )


@dataclass(frozen=True, slots=True)
class Pending:
    """An evaluation sent to the ACTIVE instance and not yet resolved."""

    slot: Slot
    seq: int
    tick: Tick
    instance_id: str
    version: str
    epoch: int
    dispatched_ms: int
    stale: Staleness = Staleness.FRESH
    strategy: str = ""


@dataclass(frozen=True, slots=True)
class Send:
    """Send evaluation (slot, seq) of ``tick`` to ``instance_id`` in ``role``."""

    instance_id: str
    role: Role
    slot: Slot
    seq: int
    tick: Tick
    epoch: int


@dataclass(frozen=True, slots=True)
class TickPlan:
    sends: tuple[Send, ...]
    missed: tuple[EvaluationRecord, ...]  # resolved at once (no ACTIVE instance)


class Verdict(enum.Enum):
    EXECUTE = "execute"  # act on it (a HOLD is executed as a no-op)
    SHADOW = "shadow"  # a SHADOW's answer: recorded and compared, never executed
    ERROR = "error"  # the ACTIVE instance answered with an error: resolved, nothing executed
    LATE = "late"  # answered at or after the deadline
    FENCED = "fenced"  # carries an epoch other than the current one
    NOT_ACTIVE = "not_active"  # from an instance that is not ACTIVE (shadow, draining...)
    UNKNOWN = "unknown"  # no such pending evaluation: never sent, or already resolved


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    pending: Pending | None = None


@dataclass(slots=True)
class Router:
    slots: tuple[Slot, ...]
    strategy: str = ""  # the book's strategy this router serves; on every record it makes
    seq_base: dict[str, int] = field(default_factory=dict)  # slot_id -> seq of tick 0
    epoch: int = 0
    instances: dict[str, Instance] = field(default_factory=dict)
    active_id: str | None = None
    pending: dict[tuple[str, int], Pending] = field(default_factory=dict)
    # Per SHADOW instance: evaluations sent and not yet answered (0 = caught up).
    outstanding: dict[str, int] = field(default_factory=dict)
    # Shadow answers for still-pending evaluations, kept so that an instance taking over
    # (hand-back, fail-over) can have its answer executed without asking again.
    shadow_answers: dict[tuple[str, int], dict[str, Decision]] = field(default_factory=dict)
    # Evaluations resolved as missed recently: an answer for one of them is LATE, not UNKNOWN.
    recently_missed: dict[tuple[str, int], None] = field(default_factory=dict)
    # Set while a dead ACTIVE's state is being rebuilt from its checkpoint (core/standby.py): an
    # instance attaching then is not made ACTIVE with an empty state; the recovery decides.
    hold: bool = False
    # After a gateway start (a restart, a new leader): the pod whose instance the ledger last
    # recorded ACTIVE, the one holding the strategy's state. Until it attaches (or the gateway
    # stops waiting for it), an instance of another pod attaching stays STANDBY instead of
    # going on with its own state.
    prefer_pod: str | None = None
    # Instances whose host refused a message of this gateway's term (``Fenced``: it has seen a
    # newer one) -> why: the evaluations it leaves unanswered time out with this reason.
    fenced: dict[str, str] = field(default_factory=dict)
    _next_number: int = 1

    # -- membership ---------------------------------------------------------------------------

    def attach(self, info: InstanceInfo, now_ms: int, *, number: int | None = None) -> Instance:
        """Register a new instance. With no ACTIVE instance it becomes ACTIVE (new epoch),
        unless a recovery ``hold``s the promotion.
        ``number``: the gateway-wide instance number (a book numbers the instances of all its
        routers, so ids stay unique across strategies); default: this router's own count."""
        if number is None:
            number = self._next_number
            self._next_number += 1
        instance_id = f"i{number}-{info.pod_name}"
        instance = Instance(instance_id, info, Role.STANDBY, now_ms)
        self.instances[instance_id] = instance
        preferred = self.prefer_pod is None or info.pod_name == self.prefer_pod
        if self.active_id is None and not self.hold and preferred:
            self._promote(instance)
        return instance

    def first_standby(self) -> str | None:
        """The STANDBY instance attached first (the one made ACTIVE when the gateway stops
        waiting for the preferred pod)."""
        waiting = [i for i in self.instances.values() if i.role is Role.STANDBY]
        return min(waiting, key=lambda i: i.attached_ms).instance_id if waiting else None

    def _promote(self, instance: Instance) -> None:
        self.prefer_pod = None  # an ACTIVE is chosen: nobody is waited for any more
        self.epoch += 1
        instance.role = Role.ACTIVE
        self.active_id = instance.instance_id

    def set_role(self, instance_id: str, role: Role) -> None:
        """Change a non-ACTIVE role (STANDBY, SHADOW, DRAINING). Use ``flip`` to promote."""
        if role is Role.ACTIVE:
            raise ValueError("use flip() to make an instance ACTIVE")
        instance = self.instances[instance_id]
        if self.active_id == instance_id:
            self.active_id = None
        instance.role = role
        if role is Role.SHADOW:
            self.outstanding.setdefault(instance_id, 0)
        else:
            self.outstanding.pop(instance_id, None)

    def shadow_sent(self, instance_id: str, n: int = 1) -> None:
        """``n`` evaluations went to a shadow outside a tick (a replay)."""
        self.outstanding[instance_id] = self.outstanding.get(instance_id, 0) + n

    def caught_up(self, instance_id: str) -> bool:
        return self.outstanding.get(instance_id, 0) == 0

    def flip(self, to_id: str, *, previous_role: Role = Role.SHADOW) -> tuple[Pending, ...]:
        """Make ``to_id`` ACTIVE under a new epoch; the previous ACTIVE (if still attached) takes
        ``previous_role``. Evaluations still pending on the previous ACTIVE move to the new one
        (they keep the epoch they were sent under, which is what ``to_id`` saw as a shadow).

        Returns the moved evaluations for which ``to_id`` already answered as a shadow: the
        caller executes those answers now (``take_over_answer``).
        """
        instance = self.instances[to_id]
        previous = self.active_id
        if previous is not None and previous != to_id:
            self.instances[previous].role = previous_role
            if previous_role is Role.SHADOW:
                self.outstanding[previous] = 0
        self.outstanding.pop(to_id, None)
        self._promote(instance)
        answered: list[Pending] = []
        for key, pending in list(self.pending.items()):
            owner = pending.instance_id
            # Move what the previous ACTIVE owed, or what an instance that went away owed.
            if owner == to_id or (owner != previous and owner in self.instances):
                continue
            moved = replace(pending, instance_id=to_id, version=instance.info.version)
            self.pending[key] = moved
            if to_id in self.shadow_answers.get(key, {}):
                answered.append(moved)
        return tuple(answered)

    def take_over_answer(self, pending: Pending, now_ms: int) -> tuple[Decision, Judgement]:
        """The shadow answer the new ACTIVE gave for a moved evaluation, judged as if it had
        just arrived."""
        decision = self.shadow_answers[(pending.slot.slot_id, pending.seq)][pending.instance_id]
        return decision, self.judge(pending.instance_id, decision, now_ms)

    def detach(self, instance_id: str) -> Instance | None:
        """Forget an instance. Its pending evaluations stay pending and time out (or are
        answered by nobody): a detach never resolves an evaluation by itself."""
        instance = self.instances.pop(instance_id, None)
        self.outstanding.pop(instance_id, None)
        if instance is not None and self.active_id == instance_id:
            self.active_id = None
        return instance

    @property
    def active(self) -> Instance | None:
        return None if self.active_id is None else self.instances[self.active_id]

    # -- the clock ----------------------------------------------------------------------------

    def seq_of(self, slot: Slot, tick: Tick) -> int:
        return self.seq_base.get(slot.slot_id, 1) + tick.index

    def on_tick(
        self, tick: Tick, now_ms: int, stale: Mapping[str, Staleness] | None = None
    ) -> TickPlan:
        """Plan one tick: every slot's evaluation goes to the ACTIVE instance (and is pending
        until answered or expired), or is missed at once when there is none. ``stale``: per
        slot id, its data's freshness (absent: fresh), carried to the evaluation's record."""
        stale = stale or {}
        active = self.active
        shadows = [i for i in self.instances.values() if i.role is Role.SHADOW]
        sends: list[Send] = []
        missed: list[EvaluationRecord] = []
        if active is not None:  # shadows follow the ACTIVE's requests: none without one
            for shadow in shadows:
                self.outstanding[shadow.instance_id] = self.outstanding.get(
                    shadow.instance_id, 0
                ) + len(self.slots)
        for slot in self.slots:
            seq = self.seq_of(slot, tick)
            if active is None:
                missed.append(
                    EvaluationRecord(
                        slot.slot_id,
                        seq,
                        tick.scheduled_ms,
                        tick.deadline_ms,
                        EvalOutcome.NO_ACTIVE,
                        epoch=self.epoch,
                        stale=stale.get(slot.slot_id, Staleness.FRESH),
                        strategy=self.strategy,
                    )
                )
                continue
            self.pending[(slot.slot_id, seq)] = Pending(
                slot,
                seq,
                tick,
                active.instance_id,
                active.info.version,
                self.epoch,
                now_ms,
                stale.get(slot.slot_id, Staleness.FRESH),
                self.strategy,
            )
            sends.append(Send(active.instance_id, Role.ACTIVE, slot, seq, tick, self.epoch))
        # Shadows after the ACTIVE: the executed path is never delayed by the followers.
        if active is not None:
            active_sends = list(sends)
            for shadow in shadows:
                sends.extend(
                    replace(s, instance_id=shadow.instance_id, role=Role.SHADOW)
                    for s in active_sends
                )
        return TickPlan(tuple(sends), tuple(missed))

    def on_late_tick(self, tick: Tick) -> tuple[EvaluationRecord, ...]:
        """The gateway could not dispatch ``tick`` before its deadline: every slot missed it."""
        return tuple(
            EvaluationRecord(
                slot.slot_id,
                self.seq_of(slot, tick),
                tick.scheduled_ms,
                tick.deadline_ms,
                EvalOutcome.GATEWAY_LATE,
                epoch=self.epoch,
                strategy=self.strategy,
            )
            for slot in self.slots
        )

    def undelivered(self, slot_id: str, seq: int) -> EvaluationRecord | None:
        """The send of a pending evaluation failed (queue full, stream gone): resolve it."""
        pending = self.pending.pop((slot_id, seq), None)
        if pending is None:
            return None
        self.shadow_answers.pop((slot_id, seq), None)
        return _missed(pending, EvalOutcome.UNDELIVERED)

    def note_fenced(self, instance_id: str, reason: str) -> None:
        """``instance_id``'s host refused this gateway's term: it will answer nothing more."""
        if instance_id in self.instances:
            self.fenced[instance_id] = reason

    def expire(self, now_ms: int) -> tuple[EvaluationRecord, ...]:
        """Resolve every pending evaluation whose deadline has passed as a timeout (with the
        reason ``fenced: ...`` when its instance's host refused this gateway's term)."""
        expired = [key for key, p in self.pending.items() if p.tick.deadline_ms <= now_ms]
        for key in expired:
            self.shadow_answers.pop(key, None)
            self._remember_missed(key)
        records = tuple(
            _missed(p, EvalOutcome.TIMEOUT, self.fenced.get(p.instance_id, ""))
            for p in (self.pending.pop(key) for key in expired)
        )
        if self.fenced:
            # Forget a gone instance's mark once nothing of it is left to expire.
            owing = {p.instance_id for p in self.pending.values()}
            for instance_id in [i for i in self.fenced if i not in self.instances]:
                if instance_id not in owing:
                    del self.fenced[instance_id]
        return records

    def _remember_missed(self, key: tuple[str, int]) -> None:
        self.recently_missed[key] = None
        # A few ticks' worth, oldest first out (dicts keep insertion order).
        while len(self.recently_missed) > 4 * len(self.slots):
            del self.recently_missed[next(iter(self.recently_missed))]

    # -- decisions ----------------------------------------------------------------------------

    def judge(self, instance_id: str, decision: Decision, now_ms: int) -> Judgement:
        """Decide what a decision from ``instance_id`` received at ``now_ms`` is worth.

        Only EXECUTE and ERROR resolve the pending evaluation. A pending evaluation can be
        answered only by the instance it is assigned to, under the epoch it was sent with:
        anything else is FENCED (an old ACTIVE after a flip, a previous incarnation).
        """
        instance = self.instances.get(instance_id)
        if instance is None or instance.role not in (Role.ACTIVE, Role.SHADOW):
            return Judgement(Verdict.NOT_ACTIVE)
        key = (decision.slot_id, decision.seq)
        pending = self.pending.get(key)
        if instance.role is Role.SHADOW:
            count = self.outstanding.get(instance_id, 0)
            self.outstanding[instance_id] = max(0, count - 1)
            if pending is not None:
                self.shadow_answers.setdefault(key, {})[instance_id] = decision
            return Judgement(Verdict.SHADOW, pending)
        if pending is None:
            if key in self.recently_missed:
                return Judgement(Verdict.LATE)
            return Judgement(Verdict.UNKNOWN if decision.epoch == self.epoch else Verdict.FENCED)
        if pending.instance_id != instance_id or decision.epoch != pending.epoch:
            return Judgement(Verdict.FENCED)
        if now_ms >= pending.tick.deadline_ms:
            return Judgement(Verdict.LATE, pending)
        del self.pending[key]
        self.shadow_answers.pop(key, None)
        if decision.error or decision.action is None:
            return Judgement(Verdict.ERROR, pending)
        return Judgement(Verdict.EXECUTE, pending)


def _missed(p: Pending, outcome: EvalOutcome, reason: str = "") -> EvaluationRecord:
    return EvaluationRecord(
        p.slot.slot_id,
        p.seq,
        p.tick.scheduled_ms,
        p.tick.deadline_ms,
        outcome,
        dispatched_ms=p.dispatched_ms,
        instance_id=p.instance_id,
        version=p.version,
        epoch=p.epoch,
        reason=reason,
        stale=p.stale,
        strategy=p.strategy,
    )


def answered_record(
    p: Pending, decision: Decision, now_ms: int, *, bet_id: str | None = None, note: str = ""
) -> EvaluationRecord:
    """The ledger record of a pending evaluation resolved by a decision (executed or error)."""
    executed = not decision.error and decision.action is not None
    return EvaluationRecord(
        p.slot.slot_id,
        p.seq,
        p.tick.scheduled_ms,
        p.tick.deadline_ms,
        EvalOutcome.EXECUTED if executed else EvalOutcome.ERROR,
        dispatched_ms=p.dispatched_ms,
        decided_ms=now_ms,
        instance_id=p.instance_id,
        version=p.version,
        epoch=p.epoch,
        action=decision.action.value if decision.action is not None else None,
        reason=(decision.reason + (f" [{note}]" if note else "")).strip(),
        error=decision.error,
        eval_us=decision.eval_us,
        bet_id=bet_id,
        stale=p.stale,
        strategy=p.strategy,
    )
