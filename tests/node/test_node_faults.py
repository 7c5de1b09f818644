"""Faults on real pods, on the release of the walk-through (after its v1 -> v2 rollout).

Each test rolls the ``momentum`` strategy on from whatever version is ACTIVE (the two example
classes alternate: each migrates the other's state) and breaks something with ``kubectl delete
pod``, as a node drain, an eviction or a person would:

- the operator's pod in the middle of a handoff: the Deployment's next pod finds the handoff
  (Promote is idempotent on the StrategyVersion's uid) and carries the rollout to Active, 0
  missed (docs/operator.md, "Restart safety");
- the green strategy pod inside the bake window: the gateway rolls back to blue, the rollout is
  Failed (``RolledBack``), blue ACTIVE again, nothing missed (docs/handoff.md, "Failures");
- the gateway's pod: the StatefulSet brings ``baton-gateway-0`` back on the same claim; the
  ledger keeps every row from before, and ``baton presence`` reports the outage (a second
  gateway run, ticks ``not_scheduled`` while no gateway ran, the gap in ``max_gap_ms``) rather
  than hiding it (docs/gateway.md, "Restart").

Every wait is on a condition, bounded. The gateway's test is last: it is the one that leaves a
gap in the ledger.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.jaeger import Jaeger, Trace
from tests.node.kube import (
    ARTIFACTS,
    MOMENTUM_V1,
    MOMENTUM_V2,
    RELEASE_NS,
    Json,
    Node,
    Rollout,
    events,
    port_forward,
    presence,
    record,
    sv,
    sv_manifest,
    wait_for,
    wait_phase,
)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the real node needs root"),
    pytest.mark.timeout(900),
]


def momentum_versions(node: Node) -> list[Json]:
    items = node.get("sv")["items"]
    return [x for x in items if x["spec"]["strategy"] == "momentum"]


def active(node: Node) -> Json:
    """The one momentum StrategyVersion in phase Active."""
    (one,) = [x for x in momentum_versions(node) if x.get("status", {}).get("phase") == "Active"]
    return one


def next_version(node: Node) -> tuple[str, str, str]:
    """(name, version, entrypoint) of the next momentum StrategyVersion: the other example
    class than the ACTIVE one (a version must be what its code declares, and the two classes
    migrate each other's state, as ``baton demo --handoffs`` alternates them), named
    ``mom-<N>`` after the versions applied so far."""
    n = 1 + len(momentum_versions(node))
    blue = active(node)["spec"]["entrypoint"]
    version, entrypoint = ("v1", MOMENTUM_V1) if blue == MOMENTUM_V2 else ("v2", MOMENTUM_V2)
    return f"mom-{n}", version, entrypoint


def pods(node: Node, component: str) -> list[Json]:
    selector = f"app.kubernetes.io/component={component}"
    return list(node.get("pods", "-l", selector)["items"])


def ready(pod: Json) -> bool:
    conds = pod.get("status", {}).get("conditions") or []
    return pod["metadata"].get("deletionTimestamp") is None and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conds
    )


def apply_next(node: Node) -> tuple[str, str]:
    """Apply the next momentum version, a second after the last one (the operator orders
    versions by creationTimestamp, one-second resolution); (its name, blue's name)."""
    blue = active(node)["metadata"]["name"]
    name, version, entrypoint = next_version(node)
    time.sleep(1.1)  # creationTimestamp's resolution, not a synchronisation
    node.kubectl("apply", "-f", "-", input_=sv_manifest(name, version, entrypoint))
    return name, blue


def handoff_phase(node: Node, name: str) -> str:
    obj = sv(node, name) or {}
    return str(((obj.get("status") or {}).get("handoff") or {}).get("phase", ""))


def test_operator_pod_deleted_mid_handoff_converges(
    node: Node, rollout: Rollout, tmp_path: Path
) -> None:
    before = presence(node)
    (old,) = pods(node, "operator")
    old_name = old["metadata"]["name"]
    green, blue = apply_next(node)
    wait_phase(node, green, "HandingOff", timeout_s=120)
    t0 = time.monotonic()
    node.kubectl("-n", RELEASE_NS, "delete", "pod", old_name, "--timeout=60s", timeout=90)
    deleted_s = time.monotonic() - t0
    # The old operator is gone; the handoff goes on in the gateway without its caller.
    assert phase_of(node, green) == "HandingOff", "the rollout ended before the operator died"

    def new_operator() -> str | None:
        fresh = [p for p in pods(node, "operator") if p["metadata"]["name"] != old_name]
        return next((p["metadata"]["name"] for p in fresh if ready(p)), None)

    new_name = wait_for(new_operator, timeout_s=120, what="a new operator pod Ready")
    back_s = time.monotonic() - t0
    v = wait_phase(node, green, "Active", "Failed", timeout_s=180)
    status = v["status"]
    assert status["phase"] == "Active", status.get("message")
    assert status["handoff"]["phase"] == "completed"
    assert status["handoff"]["missed"] == 0, status["handoff"]
    wait_phase(node, blue, "Retired", timeout_s=60)
    done = events(node, "HandoffCompleted", green)
    assert len(done) == 1, done
    assert "missed 0" in done[0], done
    assert status["handoff"]["id"] in done[0]

    # The new operator finished it: the round that took the rollout from HandingOff to Active
    # ran in the new pod (its span's resource), the handoff's Promote in the old one.
    _, trace_id, _, _ = status["traceparent"].split("-")
    with port_forward(node, "svc/baton-jaeger", 16686) as port:
        jaeger = Jaeger("", f"http://127.0.0.1:{port}", tmp_path)

        def finished() -> Trace | None:
            t = jaeger.trace(trace_id)
            if t is None or not t.named("gateway.handoff"):  # the gateway's: when it ends
                return None
            rounds = t.named("operator.reconcile")
            return t if any(r.tags.get("baton.next_phase") == "Active" for r in rounds) else None

        trace = wait_for(finished, timeout_s=60, what=f"{green}'s rollout trace", poll_s=1)
    print(trace.render())
    (last,) = [
        r for r in trace.named("operator.reconcile") if r.tags.get("baton.next_phase") == "Active"
    ]
    assert last.resource["k8s.pod.name"] == new_name, last.resource
    promotes = trace.named("operator.promote")
    assert promotes
    assert promotes[0].resource["k8s.pod.name"] == old_name
    (handoff,) = trace.named("gateway.handoff")  # one handoff: Promote was not repeated anew
    assert handoff.tags["baton.result"] == "completed"

    after = presence(node)
    assert after["missed"] == before["missed"] == 0, after["missed_by_reason"]
    assert after["handoffs_completed"] == before["handoffs_completed"] + 1
    assert after["handoffs_failed"] == before["handoffs_failed"]
    record(
        "cluster-fault-operator.json",
        {
            "delete_s": round(deleted_s, 1),
            "new_operator_ready_s": round(back_s, 1),
            "handoff": status["handoff"],
        },
    )


def phase_of(node: Node, name: str) -> str:
    obj = sv(node, name) or {}
    return str((obj.get("status") or {}).get("phase", ""))


def test_green_pod_deleted_in_the_bake_window_rolls_back_to_blue(
    node: Node, rollout: Rollout
) -> None:
    before = presence(node)
    green, blue = apply_next(node)
    wait_for(
        lambda: handoff_phase(node, green) == "baking",
        timeout_s=120,
        what=f"{green}'s handoff baking",
        poll_s=0.1,
    )
    pod = (sv(node, green) or {})["status"]["pod"]
    node.kubectl("-n", RELEASE_NS, "delete", "pod", pod, "--wait=false")
    v = wait_phase(node, green, "Failed", "Active", timeout_s=120)
    status = v["status"]
    assert status["phase"] == "Failed", status
    assert status["handoff"]["phase"] == "rolled_back", status["handoff"]
    assert status["handoff"]["missed"] == 0, status["handoff"]
    rolled = events(node, "RolledBack", green)
    assert len(rolled) == 1, rolled
    assert "rolled back inside the bake window" in rolled[0], rolled

    # Blue serves again, under a new epoch; green's pod stays gone (a Failed rollout's pod is
    # deleted, never made again).
    def blue_active() -> Json | None:
        x = sv(node, blue)
        return x if x is not None and x["status"].get("active") is True else None

    b = wait_for(blue_active, timeout_s=60, what=f"{blue} ACTIVE again")
    assert b["status"]["phase"] == "Active"
    wait_for(
        lambda: not [p for p in pods(node, "strategy") if p["metadata"]["name"] == pod],
        timeout_s=60,
        what=f"pod {pod} gone",
    )
    after = presence(node)
    assert after["missed"] == before["missed"] == 0, after["missed_by_reason"]
    assert after["handoffs_failed"] == before["handoffs_failed"] + 1
    record("cluster-fault-green.json", {"handoff": status["handoff"], "event": rolled[0]})


def test_gateway_pod_deleted_comes_back_with_its_ledger(node: Node, rollout: Rollout) -> None:
    before = presence(node)
    old = node.get("pod", "baton-gateway-0")
    claim = node.get("pvc", "data-baton-gateway-0")
    t0 = time.monotonic()
    node.kubectl("-n", RELEASE_NS, "delete", "pod", "baton-gateway-0", "--timeout=90s", timeout=120)
    gone_s = time.monotonic() - t0

    def back() -> Json | None:
        p = node.kubectl(
            *("-n", RELEASE_NS, "get", "pod", "baton-gateway-0", "-o", "json"), check=False
        )
        pod: Json | None = json.loads(p.stdout) if p.returncode == 0 else None
        if pod and pod["metadata"]["uid"] != old["metadata"]["uid"] and ready(pod):
            return pod
        return None

    new = wait_for(back, timeout_s=120, what="baton-gateway-0 back and Ready")
    ready_s = time.monotonic() - t0
    # The same claim, bound to the same volume: the ledger is the one from before.
    vols = {v["name"]: v for v in new["spec"]["volumes"]}
    assert vols["data"]["persistentVolumeClaim"]["claimName"] == "data-baton-gateway-0"
    again = node.get("pvc", "data-baton-gateway-0")
    assert again["metadata"]["uid"] == claim["metadata"]["uid"]
    assert again["spec"]["volumeName"] == claim["spec"]["volumeName"]

    # Ticks resume once the ACTIVE strategy's pod has attached again.
    def ticking() -> Json | None:
        r = presence(node)
        return r if r["evaluated"] >= before["evaluated"] + 2 * r["slots"] else None

    after = wait_for(ticking, timeout_s=120, what="ticks after the restart", poll_s=1)
    resumed_s = time.monotonic() - t0
    # Every row from before is still there: the same first tick, nothing lost, only more.
    assert after["first_scheduled_ms"] == before["first_scheduled_ms"]
    assert after["scheduled"] > before["scheduled"]
    assert after["handoffs_completed"] == before["handoffs_completed"]
    assert after["handoffs_failed"] == before["handoffs_failed"]
    assert after["unaccounted"] == 0  # SIGTERM: the tick in flight was recorded
    # The gap, told: a second gateway run, ticks no clock scheduled, the longest gap.
    assert after["runs"] == before["runs"] + 1
    # Ticks no clock scheduled: only when the outage spans a whole tick of the old clock and
    # the new one (a quick restart has none, seen once); the gap itself always shows.
    assert after["not_scheduled"] >= before["not_scheduled"], after
    assert after["max_gap_ms"] > after["cadence_ms"], after
    assert sum(after["missed_by_reason"].values()) == after["missed"]
    text = node.kubectl(
        *("-n", RELEASE_NS, "exec", "baton-gateway-0", "--"),
        *("baton", "presence", "--ledger", "/data/ledger.sqlite"),
        timeout=90,
    ).stdout
    assert f"not_scheduled: {after['not_scheduled']}" in text, text
    assert active(node)["status"]["phase"] == "Active"
    figures = {
        "delete_s": round(gone_s, 1),
        "back_ready_s": round(ready_s, 1),
        "ticks_resumed_s": round(resumed_s, 1),
        "runs": after["runs"],
        "not_scheduled": after["not_scheduled"] - before["not_scheduled"],
        "max_gap_ms": after["max_gap_ms"],
        "missed": after["missed"],
        "missed_by_reason": after["missed_by_reason"],
    }
    print("gateway pod deleted:", json.dumps(figures))
    record("cluster-fault-gateway.json", figures)
    # The new gateway's first log lines, for where the time to the first tick goes.
    logs = node.kubectl(
        "-n", RELEASE_NS, "logs", "baton-gateway-0", "--timestamps", check=False, timeout=30
    ).stdout
    (ARTIFACTS / "cluster-fault-gateway.log").write_text("\n".join(logs.splitlines()[:150]) + "\n")
    started = next((x for x in logs.splitlines() if '"msg": "gateway started"' in x), "")
    attached = next((x for x in logs.splitlines() if '"msg": "instance attached"' in x), "")
    if started and attached:  # the kubelet's timestamps, RFC 3339 with nanoseconds
        t = [datetime.fromisoformat(x.split()[0][:26] + "+00:00") for x in (started, attached)]
        figures["attach_after_start_s"] = round((t[1] - t[0]).total_seconds(), 1)
        record("cluster-fault-gateway.json", figures)
        print("the ACTIVE strategy attached again", figures["attach_after_start_s"], "s after")
    # ... and the ACTIVE strategy pod's side: its attempts to attach again.
    blue_pod = active(node)["status"]["pod"]
    host = node.kubectl(
        *("-n", RELEASE_NS, "logs", blue_pod, "--timestamps"), check=False, timeout=30
    ).stdout
    lines = [x for x in host.splitlines() if "attach" in x or "gateway" in x]
    (ARTIFACTS / "cluster-fault-gateway-strategy.log").write_text("\n".join(lines[-150:]) + "\n")
