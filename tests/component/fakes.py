"""Small fakes of the interfaces in ``baton.gateway.ports``, for driving one part of the
gateway's I/O shell in-process. Each keeps what it was asked to do, in order, and does to the
(pure, real) router only what the part it stands for does, so that roles and epochs stay true.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from baton import wire
from baton.gateway.connection import SendResult
from baton.gateway.core.handoff import Handoff
from baton.gateway.core.records import EvaluationRecord, InstanceEvent
from baton.gateway.core.router import Judgement, Router, Send
from baton.model import Fill, Role
from baton.v1 import gateway_pb2 as gw


class Clock:
    """``now_ms`` for the parts: moves only when the test moves it."""

    def __init__(self, t_ms: int = 1_000_000) -> None:
        self.t_ms = t_ms

    def __call__(self) -> int:
        return self.t_ms

    def advance(self, ms: int) -> int:
        self.t_ms += ms
        return self.t_ms


def kind(msg: gw.AttachResponse) -> str:
    return msg.WhichOneof("body") or ""


def batch(sends: tuple[Send, ...] | list[Send]) -> gw.AttachResponse:
    """An ``EvaluationBatch`` as the dispatch would send it (the fields a replay needs)."""
    msg = gw.AttachResponse()
    for send in sends:
        request = msg.evaluate_batch.requests.add()
        request.slot.CopyFrom(wire.slot_to_proto(send.slot))
        request.seq = send.seq
        request.epoch = send.epoch
        request.role = wire.role_to_proto(send.role)
    return msg


@dataclass
class FakeFleet:
    """``Fleet``: records every command; roles go to the router as ``Instances`` sends them."""

    router: Router
    calls: list[tuple[str, str]] = field(default_factory=list)  # (command, instance)
    sent: dict[str, list[gw.AttachResponse]] = field(default_factory=dict)
    replays: dict[str, list[gw.AttachResponse]] = field(default_factory=dict)
    journals: dict[str, list[gw.AttachResponse]] = field(default_factory=dict)

    def deliver(self, instance_id: str, msg: gw.AttachResponse) -> None:
        """Something else (a tick, a fill) went to ``instance_id``: journaled if journaling."""
        if instance_id in self.journals:
            self.journals[instance_id].append(msg)

    def send_to(self, instance_id: str, msg: gw.AttachResponse) -> bool:
        self.calls.append((f"send {kind(msg)}", instance_id))
        self.sent.setdefault(instance_id, []).append(msg)
        self.deliver(instance_id, msg)
        return True

    def start_journal(self, instance_id: str) -> None:
        self.calls.append(("start_journal", instance_id))
        self.journals[instance_id] = []

    def stop_journal(self, instance_id: str) -> list[gw.AttachResponse]:
        self.calls.append(("stop_journal", instance_id))
        return self.journals.pop(instance_id, [])

    def set_role(self, instance_id: str, role: Role) -> None:
        self.calls.append((f"role {role.value}", instance_id))
        if instance_id in self.router.instances:
            self.router.set_role(instance_id, role)

    def make_shadow(self, instance_id: str, replay: list[gw.AttachResponse]) -> None:
        self.calls.append(("make_shadow", instance_id))
        self.replays[instance_id] = list(replay)
        self.router.set_role(instance_id, Role.SHADOW)
        replayed = sum(len(m.evaluate_batch.requests) for m in replay)
        self.router.shadow_sent(instance_id, replayed)

    def drain(self, instance_id: str, reason: str) -> None:
        self.calls.append(("drain", instance_id))
        if instance_id in self.router.instances:
            self.router.set_role(instance_id, Role.DRAINING)


@dataclass
class FakeTakeOver:
    """``TakeOver``: flips the router and judges the taken-over shadow answers, as
    ``Execution.flip_to`` does, keeping the judgements instead of executing them."""

    router: Router
    clock: Clock
    flips: list[tuple[str, Role]] = field(default_factory=list)
    taken_over: list[tuple[str, Judgement]] = field(default_factory=list)

    def flip_to(self, instance_id: str, *, previous_role: Role = Role.SHADOW) -> None:
        self.flips.append((instance_id, previous_role))
        for pending in self.router.flip(instance_id, previous_role=previous_role):
            _, judgement = self.router.take_over_answer(pending, self.clock())
            self.taken_over.append((instance_id, judgement))


@dataclass
class FakeRecorder:
    """``HandoffRecorder``."""

    handoffs: list[tuple[Handoff, int]] = field(default_factory=list)

    def record_handoff(self, h: Handoff, missed: int) -> None:
        self.handoffs.append((h, missed))


@dataclass
class FakeOutlets:
    """``Outlets`` (and ``Peers``): what each instance was sent; ``refuse`` answers FULL."""

    refuse: set[str] = field(default_factory=set)
    sent: list[tuple[str, gw.AttachResponse, bool]] = field(default_factory=list)
    broadcasts: list[gw.AttachResponse] = field(default_factory=list)
    announced: list[str] = field(default_factory=list)

    def send(self, instance_id: str, msg: gw.AttachResponse, *, droppable: bool) -> SendResult:
        if instance_id in self.refuse:
            return SendResult.FULL
        self.sent.append((instance_id, msg, droppable))
        return SendResult.QUEUED

    def broadcast(self, strategy: str, msg: gw.AttachResponse) -> None:
        self.broadcasts.append(msg)

    def announce_role(self, instance_id: str) -> None:
        self.announced.append(instance_id)


@dataclass
class FakeRows:
    """The ledger as the execution and the outcomes write it (``EvaluationRows``,
    ``DecisionRows``): rows kept in lists."""

    evaluations: list[EvaluationRecord] = field(default_factory=list)
    bets: list[Fill] = field(default_factory=list)
    dropped: list[tuple[str, int, str]] = field(default_factory=list)  # (slot, seq, reason)
    instance_events: list[InstanceEvent] = field(default_factory=list)

    def record_evaluation(self, rec: EvaluationRecord) -> None:
        self.evaluations.append(rec)

    def record_instance_event(self, ev: InstanceEvent) -> None:
        self.instance_events.append(ev)

    def record_bet(
        self,
        fill: Fill,
        *,
        instance_id: str,
        version: str,
        epoch: int,
        placed_ms: int,
        strategy: str = "",
        pricing: str = "",
    ) -> None:
        self.bets.append(fill)

    def record_dropped_decision(
        self,
        *,
        slot_id: str,
        seq: int,
        instance_id: str,
        epoch: int,
        received_ms: int,
        action: str | None,
        reason: str,
        strategy: str = "",
    ) -> None:
        self.dropped.append((slot_id, seq, reason))


@dataclass
class FakeFacts:
    """``HandoffFacts``: what the coordinator would have been told."""

    told: list[tuple[str, object]] = field(default_factory=list)
    running: bool = True  # a handoff runs: shadow answers are recorded

    def on_gone(
        self, instance_id: str, reason: str, journal: list[gw.AttachResponse] | None = None
    ) -> None:
        self.told.append(("gone", instance_id))

    def on_broadcast(self, msg: gw.AttachResponse) -> None:
        self.told.append(("broadcast", kind(msg)))

    def on_record(self, record: EvaluationRecord) -> None:
        self.told.append(("record", (record.slot_id, record.seq, record.outcome)))

    def check_green_answer(self, instance_id: str, error: str, epoch: int) -> None:
        self.told.append(("answer", instance_id))

    def on_executed(self, slot_id: str, seq: int, action: str) -> None:
        self.told.append(("executed", (slot_id, seq, action)))

    def on_shadow_answer(self, instance_id: str, slot_id: str, seq: int, action: str) -> None:
        self.told.append(("shadow answer", (instance_id, slot_id, seq, action)))
