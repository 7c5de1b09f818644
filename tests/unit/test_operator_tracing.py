"""The operator's rollout trace: opened by the first round, kept in the status, continued by
later rounds (any operator), carried to the gateway by Promote, closed when the rollout is."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from baton.control import ControlClient
from baton.operator.core.pods import PodSettings
from baton.operator.core.rollout import (
    Decision,
    DeletePod,
    Event,
    EventType,
    Observed,
    Phase,
    Progress,
    Promote,
    decide,
    pod_name_for,
    request_id_for,
)
from baton.operator.core.spec import HandoffSpec, StrategyVersionSpec
from baton.operator.executor import TRACEPARENT_FIELD, Executor, stored_traceparent
from baton.operator.kube import Kube
from baton.operator.observe import World
from baton.v1 import control_pb2 as ctl

NOW = 1_795_000_000.0
UID = "0f1e2d3c-aaaa-bbbb-cccc-000000000002"
POD = pod_name_for("mom-v2", UID)
SPEC = StrategyVersionSpec(
    strategy="momentum",
    version="v2",
    image="baton:dev",
    entrypoint="baton.strategy.examples.momentum_v2:MomentumV2",
)
STARTING = Progress(
    phase=Phase.STARTING, pod=POD, started_at=NOW - 5, request_id=request_id_for(UID)
)


class FakeKube:
    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.events: list[str] = []

    async def create_pod(self, namespace: str, manifest: dict[str, Any]) -> bool:
        return True

    async def delete_pod(self, namespace: str, name: str) -> bool:
        return True

    async def patch_sv_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str
    ) -> None:
        self.statuses.append(status)

    async def post_event(self, obj: Any, type_: str, reason: str, message: str, now: str) -> None:
        self.events.append(reason)


class FakeControl:
    def __init__(self) -> None:
        self.trace_contexts: list[dict[str, str]] = []

    async def promote(
        self,
        instance_id: str,
        policy: ctl.HandoffPolicy | None = None,
        *,
        request_id: str = "",
        trace_context: dict[str, str] | None = None,
    ) -> ctl.HandoffStatus:
        self.trace_contexts.append(dict(trace_context or {}))
        return ctl.HandoffStatus(handoff_id="h-1", phase=ctl.HANDOFF_PHASE_EXPORTING)


def world(progress: Progress, status: dict[str, Any] | None = None) -> World:
    from baton.operator.core.rollout import GatewayFacts

    observed = Observed(
        name="mom-v2",
        uid=UID,
        created=NOW - 10,
        spec=SPEC,
        progress=progress,
        pod=None,
        gateway=GatewayFacts(epoch=7, active_instance="i-blue"),
        siblings=(),
        now=NOW,
    )
    obj = {
        "metadata": {"name": "mom-v2", "namespace": "ns", "uid": UID, "resourceVersion": "1"},
        "status": status or {},
    }
    return World(obj, observed)


def setup() -> tuple[Executor, FakeKube, FakeControl, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    kube, control = FakeKube(), FakeControl()
    executor = Executor(
        cast(Kube, kube),
        cast(ControlClient, control),
        PodSettings(gateway_address="gw:1"),
        tracer=provider.get_tracer("test"),
    )
    return executor, kube, control, exporter


def ids(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")


def parent_id(span: ReadableSpan) -> str:
    return format(span.parent.span_id, "016x") if span.parent is not None else ""


def by_name(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


async def test_the_first_round_opens_the_rollout_trace_and_keeps_it_in_the_status() -> None:
    executor, kube, _, exporter = setup()
    w = world(Progress())
    await executor.carry_out(w, decide(w.observed), NOW)

    (rollout,) = by_name(exporter, "operator.rollout")
    (round_,) = by_name(exporter, "operator.reconcile")
    (create,) = by_name(exporter, "operator.create_pod")
    (event,) = by_name(exporter, "operator.event")
    assert rollout.parent is None
    assert parent_id(round_) == ids(rollout)[1]
    assert parent_id(create) == parent_id(event) == ids(round_)[1]
    assert round_.attributes is not None
    assert (round_.attributes["baton.phase"], round_.attributes["baton.next_phase"]) == (
        "Pending",
        "Starting",
    )
    trace_id, span_id = ids(rollout)
    version, stored_trace, stored_span, flags = kube.statuses[-1][TRACEPARENT_FIELD].split("-")
    assert (version, stored_trace, stored_span) == ("00", trace_id, span_id)
    assert int(flags, 16) & 1  # sampled
    assert kube.statuses[-1]["phase"] == "Starting"


async def test_later_rounds_continue_the_stored_trace_and_promote_carries_it() -> None:
    executor, kube, control, exporter = setup()
    stored = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    w = world(STARTING, {"phase": "Starting", TRACEPARENT_FIELD: stored})
    decision = Decision(
        replace(STARTING, phase=Phase.HANDING_OFF, instance_id="i-green"),
        (
            Promote("i-green", request_id_for(UID), HandoffSpec()),
            Event(EventType.NORMAL, "HandoffStarted", "asked the gateway"),
        ),
    )
    await executor.carry_out(w, decision, NOW)

    assert by_name(exporter, "operator.rollout") == []  # opened once, by the first round
    (round_,) = by_name(exporter, "operator.reconcile")
    (promote,) = by_name(exporter, "operator.promote")
    assert ids(round_)[0] == "0af7651916cd43dd8448eb211c80319c"
    assert parent_id(round_) == "b7ad6b7169203331"
    assert parent_id(promote) == ids(round_)[1]
    # The gateway gets the promote span's context: its handoff span becomes that span's child.
    _, trace_id, parent, flags = control.trace_contexts[-1]["traceparent"].split("-")
    assert (trace_id, parent) == ids(promote)
    assert int(flags, 16) & 1
    assert promote.attributes is not None
    assert promote.attributes["baton.handoff"] == "h-1"
    assert kube.statuses[-1][TRACEPARENT_FIELD] == stored  # kept as it was
    assert kube.events == ["HandoffStarted"]


async def test_rounds_after_the_rollout_are_their_own_trace_linked_to_it() -> None:
    executor, _, _, exporter = setup()
    stored = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    active = replace(STARTING, phase=Phase.ACTIVE, instance_id="i-green", active=True)
    w = world(active, {"phase": "Active", TRACEPARENT_FIELD: stored})
    decision = Decision(replace(active, phase=Phase.RETIRED), (DeletePod(POD, "retired"),))
    await executor.carry_out(w, decision, NOW)

    (round_,) = by_name(exporter, "operator.reconcile")
    assert round_.parent is None
    assert ids(round_)[0] != "0af7651916cd43dd8448eb211c80319c"
    (link,) = round_.links
    assert format(link.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(link.context.span_id, "016x") == "b7ad6b7169203331"


async def test_a_steady_round_makes_no_span() -> None:
    executor, kube, _, exporter = setup()
    active = replace(STARTING, phase=Phase.ACTIVE, instance_id="i-green", active=True)
    await executor.carry_out(world(active), Decision(active), NOW)
    assert exporter.get_finished_spans() == ()
    assert kube.statuses == []


def test_stored_traceparent_reads_only_a_string() -> None:
    assert stored_traceparent({"status": {TRACEPARENT_FIELD: "00-a-b-01"}}) == "00-a-b-01"
    assert stored_traceparent({"status": {TRACEPARENT_FIELD: 3}}) == ""
    assert stored_traceparent({}) == ""
