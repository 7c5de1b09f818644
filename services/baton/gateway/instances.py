"""The attached strategy instances: their connections (outgoing streams), their roles as the
router has them, and the role changes and journals a handoff asks for.

Offers ``attach``/``detach`` to the ``Attach`` servicer, ``Outlets`` to the dispatch, ``Fleet``
to the handoff coordinator and ``Peers`` to the execution (ports.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from baton import wire
from baton.gateway.connection import Connection, SendResult
from baton.gateway.core.records import InstanceEvent
from baton.gateway.core.router import InstanceInfo, Router
from baton.gateway.metrics import GatewayMetrics
from baton.gateway.ports import HandoffFacts, InstanceRows
from baton.model import Role, Slot
from baton.v1 import gateway_pb2 as gw

log = logging.getLogger(__name__)


class Instances:
    def __init__(
        self,
        *,
        router: Router,
        slots: tuple[Slot, ...],
        cadence_ms: int,
        send_queue: int,
        ledger: InstanceRows,
        metrics: GatewayMetrics,
        facts: HandoffFacts,
        active_seen: asyncio.Event,
        now_ms: Callable[[], int],
    ) -> None:
        self._router = router
        self._slots = slots
        self._cadence_ms = cadence_ms
        self._send_queue = send_queue
        self._ledger = ledger
        self._metrics = metrics
        self._facts = facts
        self._active_seen = active_seen  # the clock starts on the first ACTIVE (clock_start)
        self._now_ms = now_ms
        self.connections: dict[str, Connection] = {}

    def attach(self, hello: gw.Hello) -> tuple[Connection, gw.Welcome]:
        now = self._now_ms()
        info = InstanceInfo(hello.pod_name, hello.strategy, hello.version, hello.state_schema)
        instance = self._router.attach(info, now)
        conn = Connection(instance.instance_id, self._send_queue)
        self.connections[instance.instance_id] = conn
        self._ledger.record_instance_event(
            InstanceEvent(
                now,
                instance.instance_id,
                "attached",
                hello.pod_name,
                hello.strategy,
                hello.version,
                instance.role.value,
                self._router.epoch,
            )
        )
        log.info(
            "instance attached",
            extra={
                "instance": instance.instance_id,
                "version": hello.version,
                "role": instance.role.value,
                "epoch": self._router.epoch,
            },
        )
        if instance.role is Role.ACTIVE:
            self._active_seen.set()
        welcome = gw.Welcome(
            instance_id=instance.instance_id,
            role=wire.role_to_proto(instance.role),
            epoch=self._router.epoch,
            slots=[wire.slot_to_proto(s) for s in self._slots],
            cadence_ms=self._cadence_ms,
        )
        self._observe_membership()
        return conn, welcome

    def detach(self, conn: Connection, reason: str) -> None:
        conn.close(reason)
        self.connections.pop(conn.instance_id, None)
        instance = self._router.detach(conn.instance_id)
        self._observe_membership()
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
                self._router.epoch,
                reason,
            )
        )
        log.info("instance detached", extra={"instance": conn.instance_id, "why": reason})
        self._facts.on_gone(conn.instance_id, reason, conn.stop_journal())

    def close_all(self, reason: str) -> None:
        for conn in list(self.connections.values()):
            conn.close(reason)

    # -- Outlets and Peers --------------------------------------------------------------------

    def send(self, instance_id: str, msg: gw.AttachResponse, *, droppable: bool) -> SendResult:
        conn = self.connections.get(instance_id)
        return conn.send(msg, droppable=droppable) if conn is not None else SendResult.CLOSED

    def broadcast(self, msg: gw.AttachResponse) -> None:
        """Fills and settlements go to every instance that keeps state (ACTIVE, SHADOW,
        DRAINING) so shadows follow; a STANDBY has no state yet and gets it by import."""
        for instance_id, conn in list(self.connections.items()):
            instance = self._router.instances.get(instance_id)
            if instance is not None and instance.role is not Role.STANDBY:
                conn.send(msg, droppable=False)
        self._facts.on_broadcast(msg)

    # -- Fleet: what the handoff coordinator drives -------------------------------------------

    def send_to(self, instance_id: str, msg: gw.AttachResponse) -> bool:
        conn = self.connections.get(instance_id)
        return conn is not None and conn.send(msg, droppable=False) is SendResult.QUEUED

    def start_journal(self, instance_id: str) -> None:
        conn = self.connections.get(instance_id)
        if conn is not None:
            conn.start_journal()

    def stop_journal(self, instance_id: str) -> list[gw.AttachResponse]:
        conn = self.connections.get(instance_id)
        return conn.stop_journal() if conn is not None else []

    def set_role(self, instance_id: str, role: Role) -> None:
        if instance_id not in self._router.instances:
            return
        self._router.set_role(instance_id, role)
        self.announce_role(instance_id)

    def make_shadow(self, instance_id: str, replay: list[gw.AttachResponse]) -> None:
        """Green follows as SHADOW: first what blue was sent after the snapshot, in order."""
        if instance_id not in self._router.instances:
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
        self._router.shadow_sent(instance_id, evaluations)

    def drain(self, instance_id: str, reason: str) -> None:
        if instance_id not in self._router.instances:
            return
        self.set_role(instance_id, Role.DRAINING)
        self.send_to(instance_id, gw.AttachResponse(drain=gw.Drain(reason=reason)))

    def _observe_membership(self) -> None:
        roles = (i.role for i in self._router.instances.values())
        self._metrics.membership(roles, self._router.epoch)

    def announce_role(self, instance_id: str) -> None:
        self._observe_membership()  # every role change is announced
        instance = self._router.instances.get(instance_id)
        if instance is None:
            return
        self.send_to(
            instance_id,
            gw.AttachResponse(
                role_change=gw.RoleChange(
                    role=wire.role_to_proto(instance.role), epoch=self._router.epoch
                )
            ),
        )


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
