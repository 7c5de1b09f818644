"""The gRPC edge of the gateway: ``GatewayService.Attach``.

One bidirectional stream per strategy instance. The first message must be a Hello; after the
Welcome, a reader task hands incoming messages to the gateway while this handler writes the
instance's outgoing queue, until either side ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from baton import wire
from baton.gateway.connection import Connection
from baton.gateway.coordinator import Coordinator, PromoteError
from baton.gateway.core import handoff as hm
from baton.gateway.core.handover import NOT_A_REPLICA, HandoverRefused
from baton.gateway.lanes import AdmitError, Lane, Lanes
from baton.gateway.ports import HandoverPort, LedgerHealthView, Membership
from baton.model import StandbyPolicy
from baton.v1 import control_pb2 as ctl
from baton.v1 import control_pb2_grpc as ctl_grpc
from baton.v1 import gateway_pb2 as gw
from baton.v1 import gateway_pb2_grpc as gw_grpc

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Parts:
    """The parts of the gateway the servicers talk to: one object per concern."""

    instances: Membership
    lanes: Lanes  # the book: routes decisions and handoff messages to their strategy's lane
    ledger: LedgerHealthView
    handover: HandoverPort | None = None  # a replica's (leader.backend on); None: a single one


class GatewayServicer(gw_grpc.GatewayServiceServicer):
    def __init__(self, parts: Parts) -> None:
        self._instances = parts.instances
        self._lanes = parts.lanes

    async def Attach(
        self,
        request_iterator: AsyncIterator[gw.AttachRequest],
        context: grpc.aio.ServicerContext[gw.AttachRequest, gw.AttachResponse],
    ) -> AsyncIterator[gw.AttachResponse]:
        try:
            async with asyncio.timeout(HELLO_TIMEOUT_S):
                first = await anext(request_iterator)
        except (StopAsyncIteration, TimeoutError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected a Hello first")
        if not first.HasField("hello"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be Hello")
        hello = first.hello
        problem = _check_hello(hello)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        try:
            conn, welcome = self._instances.attach(hello)
        except AdmitError as exc:
            await context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        reader = asyncio.create_task(self._read(request_iterator, conn))
        reason = "stream ended"
        try:
            yield conn.stamp(gw.AttachResponse(welcome=welcome))
            async for msg in conn.outgoing():
                yield msg
            reason = conn.close_reason or reason
        except asyncio.CancelledError:
            reason = "peer went away"
            raise
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self._instances.detach(conn, reason)

    async def _read(self, requests: AsyncIterator[gw.AttachRequest], conn: Connection) -> None:
        reason = "instance closed its stream"
        try:
            async for msg in requests:
                kind = msg.WhichOneof("body")
                if kind == "decisions":
                    # Answers to a batch of another term (sent by another leader) are never
                    # executed here: recorded as dropped, like any answer not ours to take.
                    batch = msg.decisions
                    if batch.term == conn.term():
                        for decision in batch.decisions:
                            self._lanes.on_decision(conn.instance_id, decision)
                    else:
                        for decision in batch.decisions:
                            self._lanes.on_other_term(conn.instance_id, decision)
                elif kind == "fenced":
                    self._instances.fenced(conn, msg.fenced)
                elif kind == "state_export":
                    if _own_term(conn, kind, msg.state_export.term):
                        self._lanes.on_exported(conn.instance_id, msg.state_export)
                elif kind == "import_result":
                    if _own_term(conn, kind, msg.import_result.term):
                        self._lanes.on_imported(conn.instance_id, msg.import_result)
                elif kind == "drain_complete":
                    self._lanes.on_drained(conn.instance_id)
                    reason = "drained"
                    break
                else:
                    log.warning(
                        "unexpected message from instance",
                        extra={"instance": conn.instance_id, "kind": kind},
                    )
        except grpc.aio.AioRpcError as exc:
            reason = f"stream error: {exc.code().name}"
        except Exception:  # a bug here must not take the gateway down; the instance goes
            log.exception("reader failed", extra={"instance": conn.instance_id})
            reason = "gateway reader failed"
        conn.close(reason)


def _own_term(conn: Connection, kind: str, term: int) -> bool:
    """Whether an answer echoes this gateway's term; one of another term is not acted on (its
    command's step waits out its timeout, as for an answer that never came)."""
    if term == conn.term():
        return True
    log.warning(
        "answer to another gateway term ignored",
        extra={"instance": conn.instance_id, "kind": kind, "term": term, "own_term": conn.term()},
    )
    return False


def _check_hello(hello: gw.Hello) -> str:
    for field in ("pod_name", "strategy", "version"):
        if not getattr(hello, field):
            return f"hello.{field} is required"
    try:
        wire.standby_from_proto(hello.standby, StandbyPolicy())
    except ValueError as exc:  # WireError, or a policy out of range
        return str(exc)
    return ""


class ControlServicer(ctl_grpc.ControlServiceServicer):
    """The operator's and the CLI's handle on the gateway. Errors map to gRPC status codes
    here and nowhere else."""

    def __init__(self, parts: Parts) -> None:
        self._lanes = parts.lanes
        self._ledger = parts.ledger
        self._handover = parts.handover

    @staticmethod
    def _status(coordinator: Coordinator, h: hm.Handoff) -> ctl.HandoffStatus:
        return wire.handoff_status_to_proto(hm.status(h, coordinator.missed_of(h.handoff_id)))

    def _strategy_status(self, lane: Lane) -> ctl.StrategyStatus:
        router = lane.router
        status = ctl.StrategyStatus(
            name=lane.name,
            epoch=router.epoch,
            active_instance_id=router.active_id or "",
            slot_ids=[s.slot_id for s in lane.slots],
            stake=lane.entry.stake,
        )
        current = lane.handoffs.current
        if current is not None:
            status.current_handoff.CopyFrom(self._status(lane.handoffs, current))
        k = lane.standby.keeping
        standby = status.standby
        standby.mode = k.policy.mode.value
        if k.sync is not None:
            standby.standby_instance_id = k.sync.instance_id
            standby.standby_phase = k.sync.phase.value
        if k.checkpoint is not None:
            standby.last_checkpoint_id = k.checkpoint.checkpoint_id
            standby.last_checkpoint_ms = k.checkpoint.taken_ms
            standby.last_checkpoint_bytes = k.checkpoint.state_bytes
        standby.divergences = k.divergences
        if k.recovery is not None:
            standby.recovering_into = k.recovery.candidate
        standby.failovers = len(lane.standby.failovers)
        return status

    async def ListInstances(
        self,
        request: ctl.ListInstancesRequest,
        context: grpc.aio.ServicerContext[ctl.ListInstancesRequest, ctl.ListInstancesResponse],
    ) -> ctl.ListInstancesResponse:
        lanes = self._lanes()
        response = ctl.ListInstancesResponse(
            instances=[
                wire.instance_status_to_proto(i.status())
                for lane in lanes
                for i in lane.router.instances.values()
            ],
            ledger=wire.ledger_health_to_proto(self._ledger.health),
            strategies=[self._strategy_status(lane) for lane in lanes],
        )
        if len(lanes) == 1:
            # One strategy, as every gateway before the book served: the top-level fields.
            only = response.strategies[0]
            response.epoch = only.epoch
            response.active_instance_id = only.active_instance_id
            if only.HasField("current_handoff"):
                response.current_handoff.CopyFrom(only.current_handoff)
        return response

    async def Promote(
        self,
        request: ctl.PromoteRequest,
        context: grpc.aio.ServicerContext[ctl.PromoteRequest, ctl.PromoteResponse],
    ) -> ctl.PromoteResponse:
        try:
            policy = wire.policy_from_proto(request.policy)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            coordinator = self._lanes.coordinator_of_instance(request.instance_id)
            # The caller's trace context (the operator's rollout) parents the handoff's span.
            h = coordinator.promote(
                request.instance_id,
                policy,
                request.request_id,
                trace_context=dict(request.trace_context),
            )
        except PromoteError as exc:
            await context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        return ctl.PromoteResponse(handoff=self._status(coordinator, h))

    async def Rollback(
        self,
        request: ctl.RollbackRequest,
        context: grpc.aio.ServicerContext[ctl.RollbackRequest, ctl.RollbackResponse],
    ) -> ctl.RollbackResponse:
        # The handoff's own coordinator; with no id, the running one when one strategy hands
        # off (a finished one's coordinator refuses: nothing of it is running).
        found = self._lanes.handoff(request.handoff_id)
        if found is None:
            what = repr(request.handoff_id) if request.handoff_id else "(none named)"
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"no running handoff {what}: name the handoff when several strategies hand off",
            )
        coordinator, _ = found
        try:
            h = coordinator.rollback(request.handoff_id, request.reason)
        except PromoteError as exc:
            await context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        return ctl.RollbackResponse(handoff=self._status(coordinator, h))

    async def GetHandoff(
        self,
        request: ctl.GetHandoffRequest,
        context: grpc.aio.ServicerContext[ctl.GetHandoffRequest, ctl.GetHandoffResponse],
    ) -> ctl.GetHandoffResponse:
        found = self._lanes.handoff(request.handoff_id)
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no handoff {request.handoff_id!r}")
        coordinator, h = found
        return ctl.GetHandoffResponse(handoff=self._status(coordinator, h))

    async def WatchHandoff(
        self,
        request: ctl.WatchHandoffRequest,
        context: grpc.aio.ServicerContext[ctl.WatchHandoffRequest, ctl.WatchHandoffResponse],
    ) -> AsyncIterator[ctl.WatchHandoffResponse]:
        found = self._lanes.handoff(request.handoff_id)
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no handoff {request.handoff_id!r}")
        coordinator, watched = found
        async for h in coordinator.watch(watched.handoff_id):
            yield ctl.WatchHandoffResponse(handoff=self._status(coordinator, h))

    async def RetireStrategy(
        self,
        request: ctl.RetireStrategyRequest,
        context: grpc.aio.ServicerContext[ctl.RetireStrategyRequest, ctl.RetireStrategyResponse],
    ) -> ctl.RetireStrategyResponse:
        try:
            lane = self._lanes.retire(request.name)
        except PromoteError as exc:
            await context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        return ctl.RetireStrategyResponse(retired=self._strategy_status(lane))

    async def Handover(
        self,
        request: ctl.HandoverRequest,
        context: grpc.aio.ServicerContext[ctl.HandoverRequest, ctl.HandoverResponse],
    ) -> ctl.HandoverResponse:
        try:
            if self._handover is None:
                raise NOT_A_REPLICA
            result = await self._handover.handover(request.reason)
        except HandoverRefused as exc:
            await context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        return ctl.HandoverResponse(
            from_replica=result.from_replica,
            term=result.term,
            last_tick_ms=result.last_tick_ms,
            asked_ms=result.asked_ms,
            released_ms=result.released_ms,
            to_replica=result.to_replica,
            new_term=result.new_term,
        )


def add_servicer(server: grpc.aio.Server, parts: Parts) -> None:
    gw_grpc.add_GatewayServiceServicer_to_server(GatewayServicer(parts), server)
    ctl_grpc.add_ControlServiceServicer_to_server(ControlServicer(parts), server)
