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
from baton.gateway.ports import Decisions, LedgerHealthView, Membership, Roster
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
    execution: Decisions
    handoffs: Coordinator
    roster: Roster
    ledger: LedgerHealthView


class GatewayServicer(gw_grpc.GatewayServiceServicer):
    def __init__(self, parts: Parts) -> None:
        self._instances = parts.instances
        self._execution = parts.execution
        self._handoffs = parts.handoffs

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
        conn, welcome = self._instances.attach(hello)
        reader = asyncio.create_task(self._read(request_iterator, conn))
        reason = "stream ended"
        try:
            yield gw.AttachResponse(welcome=welcome)
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
                    for decision in msg.decisions.decisions:
                        self._execution.on_decision(conn.instance_id, decision)
                elif kind == "state_export":
                    self._handoffs.on_exported(conn.instance_id, msg.state_export)
                elif kind == "import_result":
                    self._handoffs.on_imported(conn.instance_id, msg.import_result)
                elif kind == "drain_complete":
                    self._handoffs.on_drained(conn.instance_id)
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


def _check_hello(hello: gw.Hello) -> str:
    for field in ("pod_name", "strategy", "version"):
        if not getattr(hello, field):
            return f"hello.{field} is required"
    return ""


class ControlServicer(ctl_grpc.ControlServiceServicer):
    """The operator's and the CLI's handle on the gateway. Errors map to gRPC status codes
    here and nowhere else."""

    def __init__(self, parts: Parts) -> None:
        self._handoffs = parts.handoffs
        self._roster = parts.roster
        self._ledger = parts.ledger

    def _status(self, h: hm.Handoff) -> ctl.HandoffStatus:
        return wire.handoff_status_to_proto(hm.status(h, self._handoffs.missed_of(h.handoff_id)))

    async def ListInstances(
        self,
        request: ctl.ListInstancesRequest,
        context: grpc.aio.ServicerContext[ctl.ListInstancesRequest, ctl.ListInstancesResponse],
    ) -> ctl.ListInstancesResponse:
        router = self._roster
        response = ctl.ListInstancesResponse(
            epoch=router.epoch,
            active_instance_id=router.active_id or "",
            instances=[
                wire.instance_status_to_proto(i.status()) for i in router.instances.values()
            ],
            ledger=wire.ledger_health_to_proto(self._ledger.health),
        )
        current = self._handoffs.current
        if current is not None:
            response.current_handoff.CopyFrom(self._status(current))
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
            # The caller's trace context (the operator's rollout) parents the handoff's span.
            h = self._handoffs.promote(
                request.instance_id,
                policy,
                request.request_id,
                trace_context=dict(request.trace_context),
            )
        except PromoteError as exc:
            await context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        return ctl.PromoteResponse(handoff=self._status(h))

    async def Rollback(
        self,
        request: ctl.RollbackRequest,
        context: grpc.aio.ServicerContext[ctl.RollbackRequest, ctl.RollbackResponse],
    ) -> ctl.RollbackResponse:
        try:
            h = self._handoffs.rollback(request.handoff_id, request.reason)
        except PromoteError as exc:
            await context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        return ctl.RollbackResponse(handoff=self._status(h))

    async def GetHandoff(
        self,
        request: ctl.GetHandoffRequest,
        context: grpc.aio.ServicerContext[ctl.GetHandoffRequest, ctl.GetHandoffResponse],
    ) -> ctl.GetHandoffResponse:
        h = self._handoffs.get(request.handoff_id)
        if h is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no handoff {request.handoff_id!r}")
        return ctl.GetHandoffResponse(handoff=self._status(h))

    async def WatchHandoff(
        self,
        request: ctl.WatchHandoffRequest,
        context: grpc.aio.ServicerContext[ctl.WatchHandoffRequest, ctl.WatchHandoffResponse],
    ) -> AsyncIterator[ctl.WatchHandoffResponse]:
        if self._handoffs.get(request.handoff_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no handoff {request.handoff_id!r}")
        async for h in self._handoffs.watch(request.handoff_id):
            yield ctl.WatchHandoffResponse(handoff=self._status(h))


def add_servicer(server: grpc.aio.Server, parts: Parts) -> None:
    gw_grpc.add_GatewayServiceServicer_to_server(GatewayServicer(parts), server)
    ctl_grpc.add_ControlServiceServicer_to_server(ControlServicer(parts), server)
