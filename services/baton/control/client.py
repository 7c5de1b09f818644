"""An asyncio client for ``baton.v1.ControlService`` with bounded calls and typed errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType

import grpc

from baton import wire
from baton.model import HandoffPhase
from baton.v1 import control_pb2 as ctl
from baton.v1 import control_pb2_grpc as ctl_grpc
from baton.v1 import market_pb2 as mk

# The wire numbers of the model's terminal phases (``HandoffPhase.terminal`` decides which).
TERMINAL_PHASES = frozenset(
    wire.handoff_phase_to_proto(phase) for phase in HandoffPhase if phase.terminal
)


def phase_name(phase: int) -> str:
    """``HANDOFF_PHASE_BAKING`` -> ``baking``."""
    return (
        ctl.HandoffPhase.Name(ctl.HandoffPhase.ValueType(phase))
        .removeprefix("HANDOFF_PHASE_")
        .lower()
    )


def step_line(status: ctl.HandoffStatus) -> str:
    """A handoff's latest step, as ``baton handoff`` prints it while it runs::

    h-3f2a phase      step: detail      (``step`` alone when the step has no detail)
    """
    where = ""
    if status.steps:
        step = status.steps[-1]
        where = f"{step.name}: {step.detail}" if step.detail else step.name
    return f"{status.handoff_id} {phase_name(status.phase):<12} {where}".rstrip()


def summary_line(status: ctl.HandoffStatus) -> str:
    """One line on a finished handoff. Figures the gateway could not measure (no pause: green
    never took a tick; no transfer: nothing was imported) read ``-``, never a sentinel number::

        completed: v1 -> v2, pause 3.22 ms, compared 16 (0 diverged), missed 0, state 12.9 kB
        aborted: v1 -> v2, pause -, compared 0 (0 diverged), missed 0, state 0.0 kB (why)
    """
    h = wire.handoff_status_from_proto(status)
    pause = f"{h.pause_ms:.2f} ms" if h.pause_ms is not None else "-"
    line = (
        f"{h.phase.value}: {h.from_version or '(none)'} -> {h.to_version}, "
        f"pause {pause}, compared {h.compared} ({h.divergences} diverged), "
        f"missed {h.missed}, state {h.state_bytes / 1024:.1f} kB"
    )
    return line + (f" ({h.message})" if h.message else "")


def role_name(role: int) -> str:
    return mk.Role.Name(mk.Role.ValueType(role)).removeprefix("ROLE_")


def _count(n: int, noun: str, plural: str = "") -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {plural or noun + 's'}"


def ledger_line(listing: ctl.ListInstancesResponse, *, now_ms: int) -> str:
    """One line on the gateway's ledger writes (``ListInstancesResponse.ledger``), ``now_ms``
    being the caller's wall time. A failing ledger says so first, with its error::

        ledger: ok (last good flush 0.4 s ago)
        ledger: FAILING (3 failed flushes, 48 rows pending, last good flush 3.1 s ago): <error>
        ledger: ok (last good flush 0.2 s ago; 7 rows discarded; recovered from: <error>)
    """
    if not listing.HasField("ledger"):
        return "ledger: unknown (this gateway does not report it)"
    h = listing.ledger
    if h.last_ok_flush_ms:
        last = f"last good flush {max(0, now_ms - h.last_ok_flush_ms) / 1000:.1f} s ago"
    else:
        last = "no good flush yet"
    discarded = [_count(h.discarded_rows, "row") + " discarded"] if h.discarded_rows else []
    if not h.ok:
        facts = [
            _count(h.failed_flushes, "failed flush", "failed flushes"),
            _count(h.pending_rows, "row") + " pending",
            *discarded,
            last,
        ]
        return f"ledger: FAILING ({', '.join(facts)}): {h.last_error or 'no error text'}"
    recovered = [f"recovered from: {h.last_error}"] if h.last_error else []
    return f"ledger: ok ({'; '.join([last, *discarded, *recovered])})"


class ControlError(Exception):
    """A control call failed. ``code`` is the gRPC status name; ``retryable`` for transient ones."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.retryable = code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")


def _error(exc: grpc.aio.AioRpcError) -> ControlError:
    return ControlError(exc.code().name, exc.details() or "")


class ControlClient:
    def __init__(self, address: str, *, timeout_s: float = 10.0) -> None:
        self.address = address
        self._timeout_s = timeout_s
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = ctl_grpc.ControlServiceStub(self._channel)

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close(None)

    async def handover(
        self, reason: str = "", *, timeout_s: float | None = None
    ) -> ctl.HandoverResponse:
        """Ask the leader replica to hand over (``ControlService.Handover``): returns once its
        lease is released; ``timeout_s``: the call's deadline (default: the client's)."""
        try:
            return await self._stub.Handover(
                ctl.HandoverRequest(reason=reason),
                timeout=timeout_s if timeout_s is not None else self._timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from exc

    async def list_instances(self) -> ctl.ListInstancesResponse:
        try:
            return await self._stub.ListInstances(
                ctl.ListInstancesRequest(), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from exc

    async def promote(
        self,
        instance_id: str,
        policy: ctl.HandoffPolicy | None = None,
        *,
        request_id: str = "",
        trace_context: dict[str, str] | None = None,
    ) -> ctl.HandoffStatus:
        request = ctl.PromoteRequest(
            instance_id=instance_id,
            request_id=request_id,
            trace_context=trace_context or {},
        )
        if policy is not None:
            request.policy.CopyFrom(policy)
        try:
            response = await self._stub.Promote(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from exc
        return response.handoff

    async def rollback(self, handoff_id: str = "", reason: str = "") -> ctl.HandoffStatus:
        try:
            response = await self._stub.Rollback(
                ctl.RollbackRequest(handoff_id=handoff_id, reason=reason), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from exc
        return response.handoff

    async def get(self, handoff_id: str = "") -> ctl.HandoffStatus:
        try:
            response = await self._stub.GetHandoff(
                ctl.GetHandoffRequest(handoff_id=handoff_id), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from exc
        return response.handoff

    async def watch(self, handoff_id: str) -> AsyncIterator[ctl.HandoffStatus]:
        """The status after each step until a terminal phase (no overall deadline: a bake
        window can be long; callers bound it)."""
        call = self._stub.WatchHandoff(ctl.WatchHandoffRequest(handoff_id=handoff_id))
        try:
            async for response in call:
                yield response.handoff
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from exc
        finally:
            call.cancel()

    async def retire(self, name: str) -> ctl.StrategyStatus:
        """Take strategy ``name`` out of the gateway's book (docs/gateway.md)."""
        try:
            response = await self._stub.RetireStrategy(
                ctl.RetireStrategyRequest(name=name), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from exc
        return response.retired

    async def wait(self, handoff_id: str) -> ctl.HandoffStatus:
        """The terminal status of a handoff."""
        last: ctl.HandoffStatus | None = None
        async for status in self.watch(handoff_id):
            last = status
            if status.phase in TERMINAL_PHASES:
                return status
        if last is None:
            raise ControlError("NOT_FOUND", f"no handoff {handoff_id!r}")
        return await self.get(handoff_id)
