"""Traces end to end, in a real Jaeger v2: one trace per tick (gateway -> strategy pod ->
gateway) and one per rollout, the operator's rounds and the gateway's handoff in it.

Every process exports over OTLP gRPC to the test's Jaeger (``OTEL_EXPORTER_OTLP_ENDPOINT``).
Spans are batched; the gateway and the pods flush every 200 ms (``OTEL_BSP_SCHEDULE_DELAY``).
The operator and, in the second test, the gateway and the strategy host get a delay longer
than the test, so their spans can only arrive through the flush they do on SIGTERM.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.common import spawn_baton
from tests.e2e.jaeger import Jaeger, Trace, assert_rollout_trace, tick_trace
from tests.e2e.stack import V2, Stack, StartStack, eventually, sv_yaml
from tests.procs import V1, StartGateway, run_ticks

pytestmark = pytest.mark.timeout(240)

FAST = {"OTEL_BSP_SCHEDULE_DELAY": "200"}
NEVER = {"OTEL_BSP_SCHEDULE_DELAY": "600000"}  # 10 min: only the exit flush sends spans
QUERY_TIMEOUT_S = 30.0


def otel(jaeger: Jaeger, delay: dict[str, str]) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint, **delay}


async def find_tick_trace(jaeger: Jaeger) -> Trace:
    async def probe() -> Trace | None:
        traces = jaeger.traces("baton-gateway", operation="gateway.tick", limit=50)
        return next((t for t in traces if tick_trace(t)), None)

    return await eventually(probe, timeout_s=QUERY_TIMEOUT_S, what="a tick trace in Jaeger")


@pytest.fixture
async def stack(start_stack: StartStack, jaeger: Jaeger) -> Stack:
    return await start_stack(
        gateway_env=otel(jaeger, FAST),
        operator_env=otel(jaeger, NEVER),
        pod_env=otel(jaeger, FAST),
    )


async def test_a_tick_is_one_trace_and_a_rollout_with_its_handoff_is_another(
    stack: Stack, jaeger: Jaeger
) -> None:
    s = stack
    s.apply(sv_yaml("mom-v1", "v1", V1))
    await s.wait_phase("mom-v1", "Active")
    await run_ticks(s.ledger, 2)
    s.apply(sv_yaml("mom-v2", "v2", V2))
    v2 = await s.wait_phase("mom-v2", "Active", "Failed")
    assert v2["status"]["phase"] == "Active", v2["status"]["message"]
    traceparent = v2["status"]["traceparent"]
    _, trace_id, _, flags = traceparent.split("-")
    assert int(flags, 16) & 1  # sampled
    await s.wait_phase("mom-v1", "Retired")

    # (a) A tick: the gateway's tick span, the pod's evaluate span, the gateway's execute span.
    tick = await find_tick_trace(jaeger)
    print(tick.render())
    evaluate = tick.named("strategy.evaluate")[0]
    assert evaluate.tags["baton.seq"] >= 1
    assert evaluate.tags["baton.role"] in ("ACTIVE", "SHADOW")
    # The resource names the service, its version and the pod it ran in.
    assert evaluate.resource["service.version"] in ("v1", "v2")
    assert evaluate.resource["baton.strategy"] == "momentum"
    pod = evaluate.resource["k8s.pod.name"]
    assert pod.startswith(("mom-v1-", "mom-v2-"))
    assert evaluate.resource["service.instance.id"] == pod
    assert evaluate.resource["k8s.namespace.name"] == s.namespace
    gateway_span = tick.named("gateway.tick")[0]
    assert gateway_span.resource["service.version"] == "0.1.0"

    # (b) v2's rollout: the operator's spans (flushed when it stops, on SIGTERM) and the
    # gateway's handoff, all in the trace whose traceparent the status keeps.
    assert await s.operator.stop() == 0

    async def rollout() -> Trace | None:
        trace = jaeger.trace(trace_id)
        if trace is None or not (
            trace.named("operator.rollout") and trace.named("gateway.handoff")
        ):
            return None
        return trace

    trace = await eventually(rollout, timeout_s=QUERY_TIMEOUT_S, what="v2's rollout trace")
    print(trace.render())  # shown when the test fails
    assert_rollout_trace(trace, "mom-v2", v2["status"]["handoff"]["id"])
    events = {e.tags["baton.reason"] for e in trace.named("operator.event")}
    assert {"Starting", "HandoffStarted", "HandoffCompleted"} <= events


async def test_the_gateway_and_the_strategy_host_flush_their_spans_on_sigterm(
    start_gateway: StartGateway, ledger: Path, log_dir: Path, jaeger: Jaeger
) -> None:
    """Spans batched for 10 minutes reach Jaeger anyway: each process flushes as it exits."""
    gateway = await start_gateway(**otel(jaeger, NEVER))
    strategy = await spawn_baton(
        "strategy",
        ["strategy", "--gateway", gateway.ready["grpc_addr"], "--entrypoint", V1],
        log_dir=log_dir,
        env=otel(jaeger, NEVER),
    )
    try:
        await run_ticks(ledger, 2)
        assert jaeger.services() == []  # nothing sent yet: all of it is batched
    finally:
        assert await strategy.stop() == 0
        assert await gateway.stop() == 0
    trace = await find_tick_trace(jaeger)
    assert {"baton-gateway", "baton-strategy"} <= trace.services
