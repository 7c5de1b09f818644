"""Faults on real pods, on the release of the walk-through (after its v1 -> v2 rollout).

Each test rolls the ``momentum`` strategy on from whatever version is ACTIVE (the two example
classes alternate: each migrates the other's state) and breaks something with ``kubectl delete
pod``, as a node drain, an eviction or a person would:

- the operator's pod in the middle of a handoff: the Deployment's next pod finds the handoff
  (Promote is idempotent on the StrategyVersion's uid) and carries the rollout to Active, 0
  missed (docs/operator.md, "Restart safety");
- the green strategy pod inside the bake window: the gateway rolls back to blue, the rollout is
  Failed (``RolledBack``), blue ACTIVE again, nothing missed (docs/handoff.md, "Failures");
- the gateway's leader pod (two gateway pods, one Lease: docs/gateway-standby.md): its SIGTERM
  hands over to the other pod's replica, which takes the Lease and labels its pod, so the
  Service follows; ticks go on within the bound; the StatefulSet brings the deleted pod back
  on its own claim as a follower, Ready once its ledger holds the leader's;
- ``helm upgrade`` of the gateway (a rolling update of both pods): 0 missed evaluations, each
  handover in the leader's report's ``gateway_handovers``.

Every wait is on a condition, bounded. The gateway's tests are last.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.jaeger import Jaeger, Trace
from tests.node.kube import (
    ARTIFACTS,
    CLUSTER_VALUES,
    GATEWAY_ROLE,
    MOMENTUM_V1,
    MOMENTUM_V2,
    RELEASE_NS,
    REPO,
    Json,
    Node,
    Rollout,
    events,
    leader_pod,
    lease_holder,
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


GATEWAY_PODS = ("baton-gateway-0", "baton-gateway-1")
# The reference Lease (docs/gateway-standby.md): 4 s, renewed every 0.5 s; and how late a poll of
# the API or a pod's exec may see it on 2 busy cores (the bound the design claims is the rest).
LEASE_S, RETRY_S, LATE_S = 4.0, 0.5, 3.0


def gateway_changes(report: Json, after_run: int = 0) -> list[Json]:
    """The report's gateway changes (handovers and failovers) to a run after ``after_run``, in
    order."""
    changes = [*report["gateway_handovers"], *report["gateway_failovers"]]
    return sorted((c for c in changes if c["to_run"] > after_run), key=lambda c: c["to_run"])


def led_since(node: Node, pod: str, runs_before: int, changes: int) -> Json | None:
    """``pod``'s report once it tells ``changes`` gateway changes after run ``runs_before``, the
    last one's new leader having executed (``completed``: its first tick done); else None."""
    r = presence(node, pod)
    new = gateway_changes(r, runs_before)
    return r if len(new) >= changes and new[-1]["result"] == "completed" else None


def pod_back(node: Node, name: str, old_uid: str) -> Json | None:
    """Pod ``name`` recreated (another uid) and Ready."""
    p = node.kubectl(*("-n", RELEASE_NS, "get", "pod", name, "-o", "json"), check=False)
    pod: Json | None = json.loads(p.stdout) if p.returncode == 0 else None
    if pod and pod["metadata"]["uid"] != old_uid and ready(pod):
        return pod
    return None


def test_gateway_leader_pod_deleted_the_other_leads_and_it_comes_back_following(
    node: Node, rollout: Rollout
) -> None:
    """``kubectl delete pod`` of the leader's pod (a drain, an eviction): its SIGTERM hands
    over at a tick boundary, the other pod's replica takes the Lease and labels its pod, the
    Service follows, ticks go on; the StatefulSet brings the deleted pod back on its own claim,
    a follower, Ready once its ledger holds the leader's again."""
    leader = leader_pod(node)
    (other,) = [n for n in GATEWAY_PODS if n != leader]
    before = presence(node, leader)
    cadence_s = before["cadence_ms"] / 1000
    old_holder = lease_holder(node)
    old = node.get("pod", leader)
    claim = node.get("pvc", f"data-{leader}")
    t0 = time.monotonic()
    node.kubectl("-n", RELEASE_NS, "delete", "pod", leader, "--wait=false")

    def took_over() -> str | None:
        holder = lease_holder(node)
        return holder if holder.startswith(f"{other}-") else None

    new_holder = wait_for(took_over, timeout_s=60, what=f"{other} holds the Lease", poll_s=0.1)
    takeover_s = time.monotonic() - t0
    # A handover: the old leader's next tick boundary, then a Lease read; a failover's bound
    # (lease + retry) if the handover did not happen.
    assert takeover_s <= cadence_s + LEASE_S + RETRY_S + LATE_S, takeover_s
    assert leader_pod(node) == other  # labelled, Ready, the Lease's holder
    labelled_s = time.monotonic() - t0

    after = wait_for(
        lambda: led_since(node, other, before["runs"], 1),
        timeout_s=120,
        what="the other pod's first tick executed",
        poll_s=1,
    )
    resumed_s = time.monotonic() - t0
    (change,) = gateway_changes(after, before["runs"])
    assert (change["from"], change["to"]) == (old_holder, new_holder), change
    assert change["result"] == "completed", change
    # Misses: at most the ticks of the takeover (0 for a handover at a tick boundary).
    bound = math.ceil(takeover_s / cadence_s) * after["slots"]
    assert after["missed"] - before["missed"] <= bound, after["missed_by_reason"]
    assert change["missed"] <= bound, change
    # The ledger the other pod held is the leader's, and goes on: the same first tick, every
    # row from before, one more run.
    assert after["first_scheduled_ms"] == before["first_scheduled_ms"]
    assert after["runs"] == before["runs"] + 1
    assert after["handoffs_completed"] == before["handoffs_completed"]
    assert after["unaccounted"] == before["unaccounted"]

    # The deleted pod: back on the same claim, a follower, Ready once caught up.
    new = wait_for(
        lambda: pod_back(node, leader, old["metadata"]["uid"]),
        timeout_s=180,
        what=f"{leader} back and Ready",
    )
    back_s = time.monotonic() - t0
    assert new["metadata"]["labels"][GATEWAY_ROLE] == "follower"
    vols = {v["name"]: v for v in new["spec"]["volumes"]}
    assert vols["data"]["persistentVolumeClaim"]["claimName"] == f"data-{leader}"
    again = node.get("pvc", f"data-{leader}")
    assert again["metadata"]["uid"] == claim["metadata"]["uid"]
    assert again["spec"]["volumeName"] == claim["spec"]["volumeName"]
    copy = presence(node, leader)
    assert copy["first_scheduled_ms"] == before["first_scheduled_ms"]
    assert copy["runs"] == after["runs"]
    assert active(node)["status"]["phase"] == "Active"
    figures = {
        "from": old_holder,
        "to": new_holder,
        "kind": "handover" if change in after["gateway_handovers"] else "failover",
        "takeover_s": round(takeover_s, 2),
        "pause_ms": change.get("pause_ms", change.get("takeover_ms")),
        "change_missed": change["missed"],
        "missed": after["missed"] - before["missed"],
        "leader_labelled_s": round(labelled_s, 1),
        "ticks_resumed_s": round(resumed_s, 1),
        "deleted_pod_back_following_s": round(back_s, 1),
        "cadence_s": cadence_s,
    }
    print("gateway leader pod deleted:", json.dumps(figures))
    record("cluster-fault-gateway.json", figures)
    for pod in GATEWAY_PODS:
        logs = node.kubectl(
            "-n", RELEASE_NS, "logs", pod, "--timestamps", check=False, timeout=30
        ).stdout
        (ARTIFACTS / f"cluster-fault-{pod}.log").write_text(
            "\n".join(logs.splitlines()[-200:]) + "\n"
        )


def gateway_process(pod: str) -> int:
    """The pid (on this host: the node is this machine) of ``baton gateway`` in ``pod``'s
    container: its environment names the pod (the downward API's POD_NAME) and it runs the
    gateway (a ``kubectl exec`` in the same container inherits the environment, not the
    command)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"POD_NAME={pod}".encode() in env and argv[-2:] == [b"gateway", b""]:
            found.append(int(proc.name))
    (pid,) = found
    return pid


HOST_BACKOFF_MAX_S = 1.0  # the strategy host's attach backoff cap (docs/gateway-standby.md)
DNS_TTL_S = 30.0  # CoreDNS's cache and the kubernetes plugin's ttl on the node (hack/cluster.sh)


def ready_for_s(pod: Json) -> float:
    """Seconds since ``pod`` turned Ready (0 when it is not): the node is this machine, so its
    clock is the kubelet's."""
    if not ready(pod):
        return 0.0
    (cond,) = [c for c in pod["status"]["conditions"] if c["type"] == "Ready"]
    since = datetime.fromisoformat(cond["lastTransitionTime"].replace("Z", "+00:00"))
    return (datetime.now(UTC) - since).total_seconds()


def restarts(pod: Json) -> int:
    return int(sum(c.get("restartCount", 0) for c in pod["status"].get("containerStatuses") or []))


def test_gateway_leader_process_sigkilled_the_other_takes_over_within_the_bound(
    node: Node, rollout: Rollout
) -> None:
    """SIGKILL of the leader's gateway process (a crash, the OOM killer: no handover): the other
    pod's replica takes the Lease once it expires (lease + a retry period), labels its pod and
    leads; the ticks scheduled meanwhile are missed, at most ceil(takeover / cadence) of them,
    plus the tick the killed leader had in flight: strategy hosts dial both gateway pods by
    their own names (the chart's --pod-gateway), so the new leader is attached to within a
    second of its start, not after a connect timeout on the killed pod's address behind the
    Service. The kubelet restarts the killed
    container in the same pod: a follower again (its label set back), Ready once its ledger
    holds the new leader's."""
    wait_for(
        lambda: len(pods(node, "gateway")) == 2 and all(ready(p) for p in pods(node, "gateway")),
        timeout_s=180,
        what="both gateway pods Ready",
    )
    # The ACTIVE strategy host dials each gateway pod by its own name (the chart's
    # --pod-gateway), not the Service: a new leader is reached as soon as it listens.
    host_args = node.get("pod", active(node)["status"]["pod"])["spec"]["containers"][0]["args"]
    dialled = host_args[host_args.index("--gateway") + 1].split(",")
    assert dialled == [f"{p}.baton-gateway-headless.{RELEASE_NS}.svc:50051" for p in GATEWAY_PODS]
    leader = leader_pod(node)
    (other,) = [n for n in GATEWAY_PODS if n != leader]
    # The host resolves the standby's name on each attempt, but the cluster DNS caches answers
    # (CoreDNS `cache 30`, hack/cluster.sh, as kubeadm's): a standby pod made again (the test
    # before deletes one) may still resolve to its old address, or to none, for up to 30 s.
    # The bound is for a standby whose name is current: Ready longer than the cache's TTL.
    wait_for(
        lambda: ready_for_s(node.get("pod", other)) > DNS_TTL_S,
        timeout_s=DNS_TTL_S + 60,
        what=f"{other} Ready for more than the DNS cache's {DNS_TTL_S:g} s",
        poll_s=1,
    )
    before = presence(node, leader)
    cadence_s = before["cadence_ms"] / 1000
    old_holder = lease_holder(node)
    old_restarts = restarts(node.get("pod", leader))
    pid = gateway_process(leader)
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    killed_at = datetime.now(UTC)

    def took_over() -> str | None:
        holder = lease_holder(node)
        return holder if holder.startswith(f"{other}-") else None

    new_holder = wait_for(took_over, timeout_s=60, what=f"{other} holds the Lease", poll_s=0.1)
    takeover_s = time.monotonic() - t0
    assert takeover_s <= LEASE_S + RETRY_S + LATE_S, takeover_s
    assert leader_pod(node) == other
    labelled_s = time.monotonic() - t0
    after = wait_for(
        lambda: led_since(node, other, before["runs"], 1),
        timeout_s=120,
        what="the other pod's first tick executed",
        poll_s=1,
    )
    resumed_s = time.monotonic() - t0
    (change,) = gateway_changes(after, before["runs"])
    assert change in after["gateway_failovers"], change
    assert (change["from"], change["to"]) == (old_holder, new_holder), change
    assert change["ended"] == "", "killed: its run never said how it ended"
    # The ACTIVE host attached to the new leader (its log; the node's clock is this machine's):
    # it dials both pods by name, so within its backoff's cap (1 s) of the new gateway's start,
    # no connect timeout on a dead address behind the Service.
    attached_s = (host_attached_at(strategy_log(node), other) - killed_at).total_seconds()
    assert attached_s <= LEASE_S + RETRY_S + HOST_BACKOFF_MAX_S + LATE_S, attached_s
    # The misses: ceil(takeover / cadence), the takeover as the strategy sees it (the SIGKILL
    # to the host attached to the new leader: the boundaries in between have nobody to
    # schedule them), plus one: the last tick the killed leader dispatched, whose evaluations
    # are written with the next tick's flush (ticker.py), so no ledger has them: a SIGKILL
    # always costs it.
    # Not the test's kill -> Lease alone: the new gateway's start and the host's next attempt
    # (within its 1 s backoff) may cross one more boundary. Not the report's takeover_ms either:
    # it runs from the first unrecorded tick's schedule to the new leader's first dispatch, so
    # it spans every missed tick by definition.
    bound_ticks = math.ceil(attached_s / cadence_s) + 1
    assert change["missed_ticks"] <= bound_ticks, (change, takeover_s, attached_s)
    assert change["missed"] <= bound_ticks * after["slots"], change
    assert after["first_scheduled_ms"] == before["first_scheduled_ms"]

    def restarted() -> Json | None:
        pod = node.get("pod", leader)
        labels = pod["metadata"].get("labels") or {}
        back = restarts(pod) > old_restarts and labels.get(GATEWAY_ROLE) == "follower"
        return pod if back and ready(pod) else None

    wait_for(restarted, timeout_s=180, what=f"{leader} restarted, following, Ready")
    back_s = time.monotonic() - t0
    figures = {
        "from": old_holder,
        "to": new_holder,
        "takeover_s": round(takeover_s, 2),
        "report_takeover_ms": change["takeover_ms"],
        "missed_ticks": change["missed_ticks"],
        "missed": change["missed"],
        "bound_ticks": bound_ticks,
        "host_attached_s": round(attached_s, 2),
        "leader_labelled_s": round(labelled_s, 1),
        "first_tick_seen_s": round(resumed_s, 1),
        "killed_pod_back_following_s": round(back_s, 1),
        "cadence_s": cadence_s,
    }
    print("gateway leader SIGKILLed:", json.dumps(figures))
    record("cluster-fault-gateway-sigkill.json", figures)
    # Where the takeover's time goes: both replicas' logs (the killed one's previous container
    # and its restart), and the ACTIVE strategy host's attach attempts.
    for pod, previous in ((leader, True), (leader, False), (other, False)):
        flags = ["--timestamps", *(["--previous"] if previous else [])]
        argv = ["-n", RELEASE_NS, "logs", pod, *flags]
        logs = node.kubectl(*argv, check=False, timeout=30).stdout
        name = f"cluster-fault-sigkill-{pod}{'-previous' if previous else ''}.log"
        (ARTIFACTS / name).write_text("\n".join(logs.splitlines()[-200:]) + "\n")
    strategy_log(node)


def strategy_log(node: Node) -> list[str]:
    """The ACTIVE strategy host's attach attempts (kept as an artifact), with timestamps."""
    host = node.kubectl(
        *("-n", RELEASE_NS, "logs", active(node)["status"]["pod"], "--timestamps"),
        check=False,
        timeout=30,
    ).stdout
    lines = [x for x in host.splitlines() if "attach" in x or "gateway" in x]
    (ARTIFACTS / "cluster-fault-sigkill-strategy.log").write_text("\n".join(lines[-150:]) + "\n")
    return lines


def host_attached_at(lines: list[str], pod: str) -> datetime:
    """When the host logged its last ``attached to gateway again`` to ``pod``'s address."""
    times = [
        _kubectl_time(line.split(" ", 1)[0])
        for line in lines
        if '"attached to gateway again"' in line and f'"gateway": "{pod}.' in line
    ]
    assert times, f"the host never attached to {pod}"
    return times[-1]


def _kubectl_time(stamp: str) -> datetime:
    """``kubectl logs --timestamps``' RFC 3339 time (nanoseconds, trailing zeros trimmed)."""
    whole, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{whole}.{(frac + '000000')[:6]}+00:00")


def test_helm_upgrade_of_the_gateway_is_a_rolling_update_with_0_missed(
    node: Node, rollout: Rollout
) -> None:
    """``helm upgrade`` with a change of the gateway's pod template (its environment): the
    StatefulSet replaces both pods, highest ordinal first, each waited Ready (a follower only
    once caught up); the leader's pod goes when its standby holds the ledger, and its SIGTERM
    hands over at a tick boundary. 0 missed evaluations in the leader's report; each handover
    in ``gateway_handovers``."""
    wait_for(
        lambda: all(ready(p) for p in pods(node, "gateway")) and len(pods(node, "gateway")) == 2,
        timeout_s=180,
        what="both gateway pods Ready",
    )
    before = presence(node)
    sts = node.get("statefulset", "baton-gateway")
    revision = sts["status"]["currentRevision"]
    t0 = time.monotonic()
    p = node.helm(
        *("upgrade", "baton", str(REPO / "charts" / "baton"), "-n", RELEASE_NS),
        *("-f", str(CLUSTER_VALUES), "--wait", "--timeout", "300s"),
        "--set-json",
        'gateway.extraEnv=[{"name": "BATON_EXCHANGE__STALL_TIMEOUT_S", "value": "25"}]',
        timeout=360,
    )
    upgrade_s = time.monotonic() - t0
    assert p.returncode == 0, f"helm upgrade: {p.stderr}"

    def rolled() -> Json | None:
        s = node.get("statefulset", "baton-gateway")["status"]
        done = (
            s.get("updateRevision") != revision
            and s.get("currentRevision") == s.get("updateRevision")
            and s.get("updatedReplicas") == 2
            and s.get("readyReplicas") == 2
        )
        return s if done else None

    status = wait_for(rolled, timeout_s=300, what="both gateway pods on the new revision, Ready")
    rolled_s = time.monotonic() - t0
    for pod in pods(node, "gateway"):
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env["BATON_EXCHANGE__STALL_TIMEOUT_S"] == "25", pod["metadata"]["name"]

    # Both pods replaced, so every handover is done: the last new leader's first tick.
    leader = leader_pod(node)
    after = wait_for(
        lambda: led_since(node, leader, before["runs"], 1),
        timeout_s=120,
        what="the new leader's first tick executed",
        poll_s=1,
    )
    new_changes = gateway_changes(after, before["runs"])
    handovers = [c for c in new_changes if c in after["gateway_handovers"]]
    # One handover when the pod replaced first (the highest ordinal) was the follower, two
    # when it led; never a failover.
    assert new_changes == handovers, new_changes
    assert 1 <= len(handovers) <= 2, handovers
    assert [(h["missed"], h["result"]) for h in handovers] == [(0, "completed")] * len(handovers)
    # The flagship: not one evaluation missed across the upgrade.
    assert after["missed"] == before["missed"], after["missed_by_reason"]
    assert after["not_scheduled"] == before["not_scheduled"], after
    assert after["unaccounted"] == before["unaccounted"], after
    figures = {
        "helm_upgrade_s": round(upgrade_s, 1),
        "rolled_s": round(rolled_s, 1),
        "revision": [revision, status["updateRevision"]],
        "handovers": [
            {k: h[k] for k in ("from", "to", "term", "pause_ms", "missed", "result")}
            for h in handovers
        ],
        "missed": after["missed"] - before["missed"],
        "not_scheduled": after["not_scheduled"] - before["not_scheduled"],
        "max_gap_ms": after["max_gap_ms"],
        "cadence_ms": after["cadence_ms"],
    }
    print("helm upgrade of the gateway:", json.dumps(figures))
    record("cluster-gateway-upgrade.json", figures)
