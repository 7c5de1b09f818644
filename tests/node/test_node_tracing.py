"""Traces on the real node, found in the chart's own Jaeger (README: "trace it in Jaeger").

The release runs Jaeger from the local image (``localhost/baton-jaeger``: the pinned jaeger
binary, hack/cluster-values.yaml); every component exports to it over OTLP through its Service,
as the chart wires it. After the walk-through's v1 -> v2 rollout (the ``rollout`` fixture), the
test reads Jaeger's query API through ``kubectl port-forward`` (the same ``/api/traces`` queries
as the test bed's tests/e2e/test_tracing.py): v2's rollout trace, whose id the StrategyVersion's
status keeps, holds the operator's rounds and the gateway's handoff; a tick's trace goes from
the gateway through a strategy pod and back.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.jaeger import Jaeger, Trace, assert_rollout_trace, tick_trace
from tests.node.kube import RELEASE_NS, Node, Rollout, port_forward, record, sv, wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the real node needs root"),
    pytest.mark.timeout(900),
]

# Spans are batched (OTEL_BSP_SCHEDULE_DELAY, 5 s by default in the chart's pods).
QUERY_TIMEOUT_S = 60.0


def test_rollout_and_tick_traces_in_the_in_cluster_jaeger(
    node: Node, rollout: Rollout, tmp_path: Path
) -> None:
    status = rollout.v2["status"]
    _, trace_id, _, flags = status["traceparent"].split("-")
    assert int(flags, 16) & 1  # sampled
    with port_forward(node, "svc/baton-jaeger", 16686) as port:
        jaeger = Jaeger("", f"http://127.0.0.1:{port}", tmp_path)

        def rollout_trace() -> Trace | None:
            t = jaeger.trace(trace_id)
            if t is None or not (t.named("operator.rollout") and t.named("gateway.handoff")):
                return None
            # The handoff's phases end with it: wait for the last of them too.
            return t if t.named("gateway.handoff.draining") else None

        trace = wait_for(
            rollout_trace, timeout_s=QUERY_TIMEOUT_S, what="v2's rollout trace", poll_s=1
        )
        print(trace.render())  # shown when the test fails

        def a_tick() -> Trace | None:
            ticks = jaeger.traces("baton-gateway", operation="gateway.tick", limit=50)
            return next((t for t in ticks if tick_trace(t)), None)

        tick = wait_for(a_tick, timeout_s=QUERY_TIMEOUT_S, what="a tick trace", poll_s=1)
        print(tick.render())
        services = jaeger.services()
    record(
        "cluster-traces.json",
        {"services": services, "rollout": trace.render(), "tick": tick.render()},
    )

    # (a) v2's rollout: the operator's rounds and the gateway's handoff, one trace.
    root = assert_rollout_trace(trace, "mom-v2", status["handoff"]["id"])
    # The operator's resource names the pod it ran in: the chart's operator, not a stand-in.
    assert root.resource["k8s.pod.name"].startswith("baton-operator-"), root.resource
    assert root.resource["k8s.namespace.name"] == RELEASE_NS

    # (b) a tick: gateway.tick -> strategy.evaluate (in a strategy pod) -> gateway.execute.
    evaluate = tick.named("strategy.evaluate")[0]
    assert evaluate.tags["baton.role"] in ("ACTIVE", "SHADOW")
    assert evaluate.resource["baton.strategy"] == "momentum"
    # The pod of a StrategyVersion (named after it), whose version the resource carries: the
    # one ACTIVE when the trace was taken (test_node_faults.py may have rolled out more).
    pod = evaluate.resource["k8s.pod.name"]
    owner = sv(node, pod.rsplit("-", 1)[0])
    assert owner is not None, pod
    assert evaluate.resource["service.version"] == owner["spec"]["version"]
    assert evaluate.resource["k8s.namespace.name"] == RELEASE_NS
    gateway = tick.named("gateway.tick")[0]
    # One of the two gateway pods: whichever led at that tick.
    assert gateway.resource["k8s.pod.name"] in ("baton-gateway-0", "baton-gateway-1"), (
        gateway.resource
    )
    assert {"baton-gateway", "baton-strategy", "baton-operator"} <= set(services), services
