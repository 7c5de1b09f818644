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
from typing import TYPE_CHECKING

import grpc

from baton.v1 import gateway_pb2 as gw
from baton.v1 import gateway_pb2_grpc as gw_grpc

if TYPE_CHECKING:
    from baton.gateway.app import Gateway
    from baton.gateway.connection import Connection

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0


class GatewayServicer(gw_grpc.GatewayServiceServicer):
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def Attach(
        self,
        request_iterator: AsyncIterator[gw.AttachRequest],
        context: grpc.aio.ServicerContext[gw.AttachRequest, gw.AttachResponse],
    ) -> AsyncIterator[gw.AttachResponse]:
        try:
            first = await asyncio.wait_for(anext(request_iterator), HELLO_TIMEOUT_S)
        except (StopAsyncIteration, TimeoutError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected a Hello first")
        if not first.HasField("hello"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be Hello")
        hello = first.hello
        problem = _check_hello(hello)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        conn, welcome = self._gateway.attach(hello)
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
            self._gateway.detach(conn, reason)

    async def _read(self, requests: AsyncIterator[gw.AttachRequest], conn: Connection) -> None:
        reason = "instance closed its stream"
        try:
            async for msg in requests:
                kind = msg.WhichOneof("body")
                if kind == "decision":
                    self._gateway.on_decision(conn.instance_id, msg.decision)
                elif kind == "drain_complete":
                    reason = "drained"
                    break
                else:
                    # Handoff messages (state export/import) arrive with the handoff feature.
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


def add_servicer(server: grpc.aio.Server, gateway: Gateway) -> None:
    gw_grpc.add_GatewayServiceServicer_to_server(GatewayServicer(gateway), server)
