"""The chart's NetworkPolicies enforced on the real node, not just stored.

hack/cluster.sh runs kube-router's network-policy controller (iptables + ipset; why this one:
docs/real-node.md). With the chart installed and the walk-through's v2 running (the session's
``rollout`` fixture), connections are tried from inside pods (Python sockets in the baton image,
through ``kubectl exec``), as a strategy would try them:

- a strategy pod (the operator's, label ``app.kubernetes.io/name=baton-strategy``) resolves the
  gateway's Service and connects to its gRPC port, through the Service and to the pod, and to
  the in-chart Jaeger's OTLP gRPC port (its spans);
- it does not connect to the gateway's metrics port, the simulator, the API server (through the
  ``kubernetes`` Service or on the node's address), the kubelet, or Jaeger's other ports (OTLP
  over HTTP, the UI and query API: the same pod, another port);
- the control: a pod of the same namespace and image that no strategy policy selects connects to
  each of those, so they are up and reachable, and the strategy pod's failures are the policy's
  doing; that pod is itself refused by the gateway's gRPC port (the gateway's ingress policy
  admits strategy pods and the operator only);
- and the same strategy pod reaches the simulator and the API server once the strategy policy is
  deleted, and is cut off again once it is put back: enforcement follows the policy, live.

Every verdict is a poll with a deadline (the controller applies a change within a second), never a
sleep; a refused connection (the controller REJECTs) and a timeout (the kernel rate-limits the
ICMP errors of a REJECT) both count as "no".
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.node.kube import (
    RELEASE_NS,
    SLEEP,
    Json,
    Node,
    Rollout,
    leader_pod,
    record,
    run_pod,
)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the real node needs root"),
    pytest.mark.timeout(600),
]

STRATEGY_LABEL = "app.kubernetes.io/name=baton-strategy"
STRATEGY_POLICY = "baton-strategy"  # <fullname>-strategy in the release namespace
NODE_IP = "10.213.0.1"  # hack/cluster.sh: the bridge's address, the apiserver's and the kubelet's
CONNECT_TIMEOUT_S = 2.0
VERDICT_TIMEOUT_S = 60.0

# Run in the pod: each target is [name, host, port] (a TCP connect) or [name, host, 0] (a name
# lookup), all at once (a round takes one connect timeout at most). Prints {name: "open" |
# "refused" | "timeout" | "<errno name>" | the resolved address}.
PROBE = """
import concurrent.futures, errno, json, socket, sys

def one(target):
    name, host, port = target
    if port == 0:
        try:
            return name, socket.gethostbyname(host)
        except OSError as e:
            return name, "unresolved: %s" % e
    s = socket.socket()
    s.settimeout(float(sys.argv[2]))
    try:
        s.connect((host, port))
        return name, "open"
    except socket.timeout:
        return name, "timeout"
    except ConnectionRefusedError:
        return name, "refused"
    except OSError as e:
        return name, errno.errorcode.get(e.errno, str(e.errno))
    finally:
        s.close()

targets = json.loads(sys.argv[1])
with concurrent.futures.ThreadPoolExecutor(len(targets)) as pool:
    out = dict(pool.map(one, targets))
print(json.dumps(out, sort_keys=True))
"""


@dataclass(frozen=True)
class Targets:
    """Where the probes connect: each a (host, port) a strategy should or should not reach."""

    gateway_name: str  # the gateway's Service name, resolved in the pod
    gateway_ip: str  # its ClusterIP
    connect: dict[str, tuple[str, int]]

    def argv(self) -> str:
        items: list[list[object]] = [["dns", self.gateway_name, 0]]
        items += [[name, host, port] for name, (host, port) in sorted(self.connect.items())]
        return json.dumps(items)


def _get(node: Node, *args: str) -> Json:
    out: Json = json.loads(node.kubectl("-n", RELEASE_NS, "get", *args, "-o", "json").stdout)
    return out


def _port(svc: Json, name: str) -> int:
    return int(next(p["port"] for p in svc["spec"]["ports"] if p["name"] == name))


@pytest.fixture(scope="module")
def targets(node: Node, rollout: Rollout) -> Targets:
    gw = _get(node, "svc", "baton-gateway")
    sim = _get(node, "svc", "baton-sim")
    # The leader's pod: only it serves gRPC (a follower's port is closed).
    gw_pod = _get(node, "pod", leader_pod(node))["status"]["podIP"]
    grpc, metrics = _port(gw, "grpc"), _port(gw, "metrics")
    jaeger = _get(node, "svc", "baton-jaeger")  # hack/cluster-values.yaml: the in-chart Jaeger
    jaeger_ports = {
        f"jaeger_{name.replace('-', '_')}": (jaeger["spec"]["clusterIP"], _port(jaeger, name))
        for name in ("otlp-grpc", "otlp-http", "ui")
    }
    return Targets(
        gateway_name=f"baton-gateway.{RELEASE_NS}.svc.cluster.local",
        gateway_ip=gw["spec"]["clusterIP"],
        connect={
            "gateway_grpc_service": (gw["spec"]["clusterIP"], grpc),
            "gateway_grpc_pod": (gw_pod, grpc),
            "gateway_metrics_service": (gw["spec"]["clusterIP"], metrics),
            "gateway_metrics_pod": (gw_pod, metrics),
            "simulator": (sim["spec"]["clusterIP"], int(sim["spec"]["ports"][0]["port"])),
            "apiserver_service": ("10.214.0.1", 443),
            "apiserver_node": (NODE_IP, 6443),
            "kubelet": (NODE_IP, 10250),
            **jaeger_ports,
        },
    )


def _strategy_pod(node: Node) -> str:
    """A running strategy pod of the release (v2's, after the walk-through)."""
    pods = _get(node, "pods", "-l", STRATEGY_LABEL)["items"]
    running = [
        p["metadata"]["name"]
        for p in pods
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]
    assert running, f"no running strategy pod: {[p['metadata']['name'] for p in pods]}"
    return str(running[0])


def probe(node: Node, pod: str, targets: Targets) -> dict[str, str]:
    p = node.kubectl(
        *("-n", RELEASE_NS, "exec", pod, "--", "python", "-c", PROBE),
        *(targets.argv(), str(CONNECT_TIMEOUT_S)),
        timeout=60,
    )
    out: dict[str, str] = json.loads(p.stdout.strip().splitlines()[-1])
    return out


# What the enforcer's REJECT looks like from inside the pod: "refused" (the ICMP error it sends),
# or "timeout" when the kernel's ICMP rate limit (net.ipv4.icmp_ratelimit: about one error a
# second towards one address) swallows that error and the SYN goes unanswered.
NO = ("refused", "timeout")


def _matches(got: dict[str, str], want: dict[str, str | tuple[str, ...]]) -> bool:
    return all(got.get(k) in (v if isinstance(v, tuple) else (v,)) for k, v in want.items())


def until(
    node: Node, pod: str, targets: Targets, want: dict[str, str | tuple[str, ...]], what: str
) -> tuple[dict[str, str], float]:
    """Probe from ``pod`` until every verdict in ``want`` holds at once (bounded); the last
    verdicts and the seconds it took."""
    t0 = time.monotonic()
    deadline = t0 + VERDICT_TIMEOUT_S
    while True:
        got = probe(node, pod, targets)
        if _matches(got, want):
            return got, time.monotonic() - t0
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what}: after {VERDICT_TIMEOUT_S} s from {pod}: got {got}, want {want}"
            )
        time.sleep(0.5)


@pytest.fixture
def control_pod(node: Node, rollout: Rollout) -> Iterator[str]:
    """A pod of baton:dev in the release namespace that no strategy policy selects."""
    name = "netpol-control"
    run_pod(node, RELEASE_NS, name, SLEEP, app="netpol-control")
    yield name
    node.kubectl(
        *("-n", RELEASE_NS, "delete", "pod", name, "--wait=true", "--timeout=60s"),
        check=False,
        timeout=90,
    )


def test_a_strategy_pod_reaches_the_gateway_grpc_port_and_nothing_else(
    node: Node, targets: Targets, control_pod: str
) -> None:
    strategy = _strategy_pod(node)
    # The control first: everything is up and reachable from a pod no strategy policy selects,
    # but the gateway's gRPC port, which admits strategy pods and the operator only.
    control, _ = until(
        node,
        control_pod,
        targets,
        {
            "dns": targets.gateway_ip,
            "gateway_grpc_service": NO,
            "gateway_grpc_pod": NO,
            "gateway_metrics_service": "open",
            "gateway_metrics_pod": "open",
            "simulator": "open",
            "apiserver_service": "open",
            "apiserver_node": "open",
            "kubelet": "open",
            "jaeger_otlp_grpc": "open",
            "jaeger_otlp_http": "open",
            "jaeger_ui": "open",
        },
        "the control pod",
    )
    # The strategy pod: the gateway's gRPC port, DNS and Jaeger's OTLP gRPC port, nothing else.
    blocked = {
        k: NO
        for k in (
            "gateway_metrics_service",
            "gateway_metrics_pod",
            "simulator",
            "apiserver_service",
            "apiserver_node",
            "kubelet",
            "jaeger_otlp_http",
            "jaeger_ui",
        )
    }
    got, _ = until(
        node,
        strategy,
        targets,
        {
            "dns": targets.gateway_ip,
            "gateway_grpc_service": "open",
            "gateway_grpc_pod": "open",
            "jaeger_otlp_grpc": "open",
            **blocked,
        },
        "the strategy pod",
    )
    # The enforcer is the one saying no: the chart's policies are kube-router's chains.
    rules = subprocess.run(
        ["iptables-save", "-t", "filter"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    for policy in ("baton-gateway", STRATEGY_POLICY):
        assert f"nw policy {policy}" in rules, f"no kube-router chain for {policy}"
    record(
        "cluster-netpol.json",
        {"strategy_pod": strategy, "from_strategy": got, "from_control": control},
    )


def test_enforcement_follows_the_policy(node: Node, targets: Targets) -> None:
    """The same strategy pod without the strategy policy reaches what the policy forbids, and
    is cut off again when the policy is back: the "no" above is the policy's, not a broken
    network. The policy is put back whatever happens (the other tests of the session share the
    release)."""
    strategy = _strategy_pod(node)
    saved = _get(node, "networkpolicy", STRATEGY_POLICY)
    for k in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
        saved["metadata"].pop(k, None)
    saved.pop("status", None)
    forbidden = ("simulator", "apiserver_service", "gateway_metrics_pod")
    try:
        node.kubectl("-n", RELEASE_NS, "delete", "networkpolicy", STRATEGY_POLICY)
        opened, open_s = until(
            node,
            strategy,
            targets,
            {"gateway_grpc_service": "open", **{k: "open" for k in forbidden}},
            "the strategy pod without its policy",
        )
    finally:
        node.kubectl("apply", "-f", "-", input_=json.dumps(saved))
    closed, closed_s = until(
        node,
        strategy,
        targets,
        {"gateway_grpc_service": "open", **{k: NO for k in forbidden}},
        "the strategy pod with its policy back",
    )
    record(
        "cluster-netpol-live.json",
        {
            "policy_deleted_to_open_s": round(open_s, 2),
            "policy_back_to_closed_s": round(closed_s, 2),
            "without_policy": opened,
            "with_policy": closed,
        },
    )
