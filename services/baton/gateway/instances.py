"""The attached strategy instances: their connections (outgoing streams), their roles as their
strategy's router has them, and the role changes and journals a handoff asks for.

An instance belongs to one strategy of the gateway's book (its Hello names it): the book admits
it into that strategy's lane (``Book``, ports.py), and every role, epoch and broadcast is that
lane's. Offers ``attach``/``detach`` to the ``Attach`` servicer, ``Outlets`` to the dispatch,
``Fleet`` to the handoff coordinators and ``Peers`` to the execution and the feed (ports.py).

The gateway term (docs/gateway-standby.md, "Fencing") comes from one provider, ``term``: every
connection stamps it on what it queues, and the servicer takes only answers of that term. A host
that refuses a message for its older term (``Fenced``) is reported to ``fenced``: an ERROR, the
metric ``baton_gateway_fenced_total``, the instance's unanswered evaluations marked to time out
as ``fenced``, and the hook ``on_fenced(term, source)`` (the elector's ``term_seen``: a newer
term seen anywhere deposes this gateway).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from opentelemetry import trace

from baton import wire
from baton.gateway.connection import Connection, SendResult, no_election
from baton.gateway.core.records import InstanceEvent
from baton.gateway.core.router import InstanceInfo, Router
from baton.gateway.metrics import GatewayMetrics
from baton.gateway.ports import Book, InstanceRows, LaneView
from baton.model import Role, StandbyPolicy
from baton.v1 import gateway_pb2 as gw

log = logging.getLogger(__name__)
tracer = trace.get_tracer("baton.gateway")

#: Told of a newer gateway term a host has seen: (that term, who said so).
FencedHook = Callable[[int, str], None]


class Instances:
    def __init__(
        self,
        *,
        book: Book,
        cadence_ms: int,
        send_queue: int,
        ledger: InstanceRows,
        metrics: GatewayMetrics,
        active_seen: asyncio.Event,
        now_ms: Callable[[], int],
        term: Callable[[], int] = no_election,
        on_fenced: FencedHook | None = None,
    ) -> None:
        # Public and read at each use, so the composition root (or a test) may set them after
        # construction: the elector exists only once the gateway is built.
        self.term = term
        self.on_fenced = on_fenced
        self._book = book
        self._cadence_ms = cadence_ms
        self._send_queue = send_queue
        self._ledger = ledger
        self._metrics = metrics
        self._active_seen = active_seen  # the clock starts on the first ACTIVE (clock_start)
        self._now_ms = now_ms
        self.connections: dict[str, Connection] = {}
        # Set while no instance is attached: a stopping gateway waits for its streams' ends
        # (their detachments are rows of its run) before it writes the run's end.
        self.all_detached = asyncio.Event()
        self.all_detached.set()

    def _router(self, instance_id: str) -> Router | None:
        lane = self._book.lane_of(instance_id)
        return None if lane is None else lane.router

    def attach(self, hello: gw.Hello) -> tuple[Connection, gw.Welcome]:
        """Admit an instance into its strategy's lane (raises ``core.book`` refusals as
        ``AdmitError``: the servicer answers them with a status)."""
        now = self._now_ms()
        lane = self._book.admit(hello)
        router = lane.router
        info = InstanceInfo(
            hello.pod_name,
            hello.strategy,
            hello.version,
            hello.state_schema,
            # Checked by the servicer before the attach (an unknown mode is refused there).
            wire.standby_from_proto(hello.standby, StandbyPolicy()),
        )
        instance = router.attach(info, now, number=self._book.next_number())
        self._book.bind(instance.instance_id, lane)
        conn = Connection(instance.instance_id, self._send_queue, term=self._term)
        self.connections[instance.instance_id] = conn
        self.all_detached.clear()
        self._ledger.record_instance_event(
            InstanceEvent(
                now,
                instance.instance_id,
                "attached",
                hello.pod_name,
                hello.strategy,
                hello.version,
                instance.role.value,
                router.epoch,
            )
        )
        log.info(
            "instance attached",
            extra={
                "instance": instance.instance_id,
                "strategy": hello.strategy,
                "version": hello.version,
                "role": instance.role.value,
                "epoch": router.epoch,
            },
        )
        if instance.role is Role.ACTIVE:
            self._active_seen.set()
        welcome = gw.Welcome(
            instance_id=instance.instance_id,
            role=wire.role_to_proto(instance.role),
            epoch=router.epoch,
            slots=[wire.slot_to_proto(s) for s in lane.slots],
            cadence_ms=self._cadence_ms,
        )
        self._observe_membership(lane)
        # The servicer writes the Welcome before anything queued here: a recovery may queue an
        # import for this instance at once.
        lane.facts.on_attached(instance.instance_id)
        return conn, welcome

    def detach(self, conn: Connection, reason: str) -> None:
        conn.close(reason)
        self.connections.pop(conn.instance_id, None)
        if not self.connections:
            self.all_detached.set()
        lane = self._book.lane_of(conn.instance_id)
        if lane is None:
            return
        instance = lane.router.detach(conn.instance_id)
        self._observe_membership(lane)
        if instance is None:
            return
        self._ledger.record_instance_event(
            InstanceEvent(
                self._now_ms(),
                conn.instance_id,
                "detached",
                instance.info.pod_name,
                instance.info.strategy,
                instance.info.version,
                instance.role.value,
                lane.router.epoch,
                reason,
            )
        )
        log.info("instance detached", extra={"instance": conn.instance_id, "why": reason})
        lane.facts.on_gone(conn.instance_id, reason, conn.stop_journal())

    def _term(self) -> int:
        return self.term()

    def fenced(self, conn: Connection, refusal: gw.Fenced) -> None:
        """``conn``'s host refused a message of ours: it has seen a newer term than ours."""
        lane = self._book.lane_of(conn.instance_id)
        instance = None if lane is None else lane.router.instances.get(conn.instance_id)
        pod = instance.info.pod_name if instance is not None else ""
        source = f"strategy host {pod or '?'} ({conn.instance_id})"
        # A label from the peer: only the kinds we send, so a bad host cannot grow the series.
        what = refusal.what if refusal.what in _BODIES else "other"
        self._metrics.fenced(what)
        facts: dict[str, str | int] = {
            "instance": conn.instance_id,
            "pod": pod,
            "term": refusal.term,
            "current_term": refusal.current_term,
            "what": what,
        }
        # An event, as gateway.deposed is: where in a trace the gateway learnt it.
        span_attributes = {f"baton.{k}": v for k, v in facts.items()}
        with tracer.start_as_current_span("gateway.fenced", attributes=span_attributes):
            if lane is None or conn.instance_id not in lane.router.fenced:
                # Once per instance: a gateway not (yet) stopped by its hook is refused every
                # tick; the metric counts each refusal.
                log.error("a strategy host refused this gateway's term: another leads", extra=facts)
            if lane is not None:
                lane.router.note_fenced(
                    conn.instance_id, f"fenced: the host has seen term {refusal.current_term}"
                )
            if self.on_fenced is not None and refusal.current_term > refusal.term:
                self.on_fenced(refusal.current_term, source)

    def close_all(self, reason: str) -> None:
        for conn in list(self.connections.values()):
            conn.close(reason)

    # -- Outlets and Peers --------------------------------------------------------------------

    def send(self, instance_id: str, msg: gw.AttachResponse, *, droppable: bool) -> SendResult:
        conn = self.connections.get(instance_id)
        return conn.send(msg, droppable=droppable) if conn is not None else SendResult.CLOSED

    def broadcast(self, strategy: str, msg: gw.AttachResponse) -> None:
        """A strategy's fills and settlements go to every instance of it that keeps state
        (ACTIVE, SHADOW, DRAINING) so shadows follow; a STANDBY has no state yet and gets it by
        import. Another strategy's instances never see them (its bets are its own)."""
        lane = self._book.lane(strategy)
        if lane is None:
            return
        for instance_id, instance in list(lane.router.instances.items()):
            conn = self.connections.get(instance_id)
            if conn is not None and instance.role is not Role.STANDBY:
                conn.send(msg, droppable=False)
        lane.facts.on_broadcast(msg)

    # -- Fleet: what the handoff coordinator drives -------------------------------------------

    def send_to(self, instance_id: str, msg: gw.AttachResponse) -> bool:
        conn = self.connections.get(instance_id)
        return conn is not None and conn.send(msg, droppable=False) is SendResult.QUEUED

    def tap(self, instance_id: str, observer: Callable[[gw.AttachResponse], None] | None) -> None:
        conn = self.connections.get(instance_id)
        if conn is not None:
            conn.observer = observer

    def start_journal(self, instance_id: str) -> None:
        conn = self.connections.get(instance_id)
        if conn is not None:
            conn.start_journal()

    def stop_journal(self, instance_id: str) -> list[gw.AttachResponse]:
        conn = self.connections.get(instance_id)
        return conn.stop_journal() if conn is not None else []

    def set_role(self, instance_id: str, role: Role) -> None:
        router = self._router(instance_id)
        if router is None or instance_id not in router.instances:
            return
        router.set_role(instance_id, role)
        self.announce_role(instance_id)

    def make_shadow(self, instance_id: str, replay: list[gw.AttachResponse]) -> None:
        """Green follows as SHADOW: first what blue was sent after the snapshot, in order."""
        router = self._router(instance_id)
        if router is None or instance_id not in router.instances:
            return
        self.set_role(instance_id, Role.SHADOW)
        evaluations = 0
        for msg in replay:
            requests = _evaluations_in(msg)
            if requests:
                # Marked SHADOW, the role green has now: these were sent to blue as ACTIVE and
                # are past their deadlines, and a host sheds late requests only when ACTIVE.
                msg = _as_shadow(msg)
                evaluations += requests
            self.send_to(instance_id, msg)
        router.shadow_sent(instance_id, evaluations)

    def drain(self, instance_id: str, reason: str) -> None:
        router = self._router(instance_id)
        if router is None or instance_id not in router.instances:
            return
        self.set_role(instance_id, Role.DRAINING)
        self.send_to(instance_id, gw.AttachResponse(drain=gw.Drain(reason=reason)))

    def _observe_membership(self, lane: LaneView) -> None:
        router = lane.router
        self._metrics.membership(
            router.strategy, (i.role for i in router.instances.values()), router.epoch
        )

    def announce_role(self, instance_id: str) -> None:
        lane = self._book.lane_of(instance_id)
        if lane is None:
            return
        self._observe_membership(lane)  # every role change is announced
        instance = lane.router.instances.get(instance_id)
        if instance is None:
            return
        self.send_to(
            instance_id,
            gw.AttachResponse(
                role_change=gw.RoleChange(
                    role=wire.role_to_proto(instance.role), epoch=lane.router.epoch
                )
            ),
        )


#: The kinds of message the gateway sends a host (the bodies of ``AttachResponse``).
_BODIES = frozenset(f.name for f in gw.AttachResponse.DESCRIPTOR.oneofs_by_name["body"].fields)


def _evaluations_in(msg: gw.AttachResponse) -> int:
    if msg.WhichOneof("body") == "evaluate_batch":
        return len(msg.evaluate_batch.requests)
    return 0


def _as_shadow(msg: gw.AttachResponse) -> gw.AttachResponse:
    copy = gw.AttachResponse()
    copy.CopyFrom(msg)
    shadow = wire.role_to_proto(Role.SHADOW)
    for request in copy.evaluate_batch.requests:
        request.role = shadow
    return copy
