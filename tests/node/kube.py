"""Helpers for the real-node tests (tests/node): the cluster of hack/cluster.sh, kubectl and helm
against it, bounded waits, and the artifacts each run records.

The fixtures that bring the cluster up and install the chart are in ``conftest.py`` (one of
each per session, shared by every test file here).
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO / "hack" / "cluster.sh"
CLUSTER_VALUES = REPO / "hack" / "cluster-values.yaml"
STATE = Path(os.environ.get("BATON_CLUSTER_DIR", "/var/lib/baton-cluster"))
CACHE = Path(
    os.environ.get("BATON_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "baton"
)
KUBECTL = CACHE / "bin" / "kubectl"
HELM = CACHE / "bin" / "helm"
ARTIFACTS = REPO / "build" / "artifacts"
UP_TIMEOUT_S = 600.0
RELEASE_NS = "baton"  # the README's walk-through: `helm install baton charts/baton -n baton`

T = TypeVar("T")
Json = dict[str, Any]


@dataclass
class Node:
    kubeconfig: Path
    host_before: str
    up_s: float
    timings: dict[str, float]

    def kubectl(
        self, *args: str, check: bool = True, input_: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(
            [str(KUBECTL), "--kubeconfig", str(self.kubeconfig), *args],
            input=input_,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: exit {p.returncode}\n{p.stderr}")
        return p

    def get(self, *args: str, ns: str = RELEASE_NS) -> Json:
        """``kubectl get ... -o json`` in ``ns``, parsed."""
        out: Json = json.loads(self.kubectl("-n", ns, "get", *args, "-o", "json").stdout)
        return out

    def helm(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(HELM), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
        )


@dataclass(frozen=True)
class Release:
    """The chart installed as the README's walk-through installs it (release ``baton`` in the
    namespace ``baton``), with hack/cluster-values.yaml: every image local, Jaeger included."""

    install_s: float  # `helm install --wait`: until every Deployment and StatefulSet is Ready
    pods: dict[str, Json]  # the release's pods once installed, by name
    ready_s: dict[str, float]  # each of those pods: from its creation to Ready


@dataclass(frozen=True)
class Rollout:
    """examples/strategyversion-v1.yaml applied, Active; then -v2, Active through a live
    handoff, and v1 Retired: the walk-through's steps, timed."""

    v1_active_s: float  # from `kubectl apply` of v1 to v1 Active (no handoff: nothing ran)
    v2_active_s: float  # from `kubectl apply` of v2 to v2 Active (its pod, attach, handoff)
    v1: Json  # the objects as they ended
    v2: Json


def cluster(cmd: str, timeout: float, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLUSTER_SH), cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **env},
    )


def host_state() -> str:
    p = cluster("host-state", 60)
    assert p.returncode == 0, p.stderr
    return p.stdout


# What other work on the machine may change meanwhile (podman's containers and builds: their
# mounts, network namespaces, veths on its bridge, cgroups, CNI chains and IPAM files), not ours.
FOREIGN = re.compile(
    r"/var/lib/containers/|/run/containers/|libpod|machine\.slice|netns-|podman|CNI-"
)


def diff(before: str, after: str) -> list[str]:
    b = {x for x in before.splitlines() if not FOREIGN.search(x)}
    a = {x for x in after.splitlines() if not FOREIGN.search(x)}
    return [f"- {x}" for x in sorted(b - a)] + [f"+ {x}" for x in sorted(a - b)]


def record(name: str, data: object) -> None:
    """One artifact of the run: build/artifacts/<name> (JSON)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / name).write_text(json.dumps(data, indent=2) + "\n")


def wait_for(
    probe: Callable[[], T | None], *, timeout_s: float, what: str, poll_s: float = 0.25
) -> T:
    """Poll ``probe`` until it returns a value other than None/False; bounded. The failure names
    what was awaited and the probe's last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)


def pod_json(name: str, ns: str, argv: list[str], labels: dict[str, str] | None = None) -> str:
    """A pod of baton:dev as the chart runs it: non-root, read-only root, no privileges."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "securityContext": {"runAsNonRoot": True},
                "containers": [
                    {
                        "name": "main",
                        "image": "baton:dev",
                        "imagePullPolicy": "Never",
                        "command": argv,
                        "securityContext": {
                            "readOnlyRootFilesystem": True,
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            },
        }
    )


SLEEP = ["python", "-c", "import time; time.sleep(3600)"]


def run_pod(node: Node, ns: str, name: str, argv: list[str], **labels: str) -> None:
    node.kubectl("apply", "-f", "-", input_=pod_json(name, ns, argv, labels))
    p = node.kubectl(
        *("-n", ns, "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=90s"),
        check=False,
        timeout=120,
    )
    if p.returncode != 0:
        desc = node.kubectl("-n", ns, "describe", "pod", name, check=False).stdout
        raise AssertionError(f"pod {name} not Ready: {p.stderr}\n{desc[-3000:]}")


# ---- the release: StrategyVersions, the gateway's view ------------------------------------


def sv(node: Node, name: str) -> Json | None:
    p = node.kubectl("-n", RELEASE_NS, "get", "sv", name, "-o", "json", check=False)
    return json.loads(p.stdout) if p.returncode == 0 else None


def phase(node: Node, name: str) -> str:
    obj = sv(node, name)
    return str(((obj or {}).get("status") or {}).get("phase", ""))


def wait_phase(node: Node, name: str, *want: str, timeout_s: float) -> Json:
    """Wait until StrategyVersion ``name`` is in one of the phases ``want``; its object."""
    last: list[str] = [""]

    def probe() -> Json | None:
        obj = sv(node, name)
        last[0] = str(((obj or {}).get("status") or {}).get("phase", ""))
        return obj if last[0] in want else None

    try:
        return wait_for(probe, timeout_s=timeout_s, what=f"{name} in {want}", poll_s=0.2)
    except AssertionError as exc:
        desc = node.kubectl("-n", RELEASE_NS, "describe", "sv", name, check=False).stdout
        raise AssertionError(f"{exc}; it is {last[0]!r}\n{desc[-4000:]}") from None


def sv_manifest(name: str, version: str, entrypoint: str) -> str:
    """A StrategyVersion of ``momentum`` like examples/strategyversion-v2.yaml."""
    return json.dumps(
        {
            "apiVersion": "baton.dev/v1alpha1",
            "kind": "StrategyVersion",
            "metadata": {"name": name, "namespace": RELEASE_NS},
            "spec": {
                "strategy": "momentum",
                "version": version,
                "image": "baton:dev",
                "entrypoint": entrypoint,
                "config": {},
                "resources": {
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"memory": "512Mi"},
                },
                "handoff": {
                    "mode": "StateTransfer",
                    "shadowTicks": 1,
                    "bakeSeconds": 10,
                    "autoRollback": True,
                },
            },
        }
    )


MOMENTUM_V1 = "baton.strategy.examples.momentum_v1:MomentumV1"
MOMENTUM_V2 = "baton.strategy.examples.momentum_v2:MomentumV2"


GATEWAY_ROLE = "baton.dev/gateway-role"  # the label each replica keeps on its own pod
GATEWAY_LEASE = "baton-gateway-leader"


def pod_ready(pod: Json) -> bool:
    conds = pod.get("status", {}).get("conditions") or []
    return pod["metadata"].get("deletionTimestamp") is None and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conds
    )


def gateway_pods(node: Node) -> list[Json]:
    items = node.get("pods", "-l", "app.kubernetes.io/component=gateway")["items"]
    return sorted(items, key=lambda p: str(p["metadata"]["name"]))


def leader_pod(node: Node, timeout_s: float = 60) -> str:
    """The gateway pod that leads: labelled so by its replica, Ready, not terminating, and the
    one whose replica holds the Lease (the label routes; the Lease decides)."""

    def find() -> str | None:
        holder = lease_holder(node)
        for pod in gateway_pods(node):
            name = str(pod["metadata"]["name"])
            labels = pod["metadata"].get("labels") or {}
            leads = labels.get(GATEWAY_ROLE) == "leader" and holder.startswith(f"{name}-")
            if leads and pod_ready(pod):
                return name
        return None

    return wait_for(find, timeout_s=timeout_s, what="the gateway's leader pod")


def lease_holder(node: Node) -> str:
    """The gateway Lease's holderIdentity ("" when free or absent)."""
    p = node.kubectl(*("-n", RELEASE_NS, "get", "lease", GATEWAY_LEASE, "-o", "json"), check=False)
    if p.returncode != 0:
        return ""
    spec = json.loads(p.stdout).get("spec") or {}
    return str(spec.get("holderIdentity") or "")


def presence(node: Node, pod: str | None = None) -> Json:
    """``baton presence --json`` of a gateway pod's ledger, run inside it: the leader's (the
    ledger that every other copies) unless ``pod`` says which."""
    pod = pod or leader_pod(node)
    out = node.kubectl(
        *("-n", RELEASE_NS, "exec", pod, "--"),
        *("baton", "presence", "--ledger", "/data/ledger.sqlite", "--json"),
        timeout=90,
    ).stdout
    report: Json = json.loads(out)
    return report


def events(node: Node, reason: str, obj: str | None = None) -> list[str]:
    """The messages of the release namespace's Events with ``reason`` (of ``obj`` if given)."""
    selector = f"reason={reason}" + (f",involvedObject.name={obj}" if obj else "")
    items = node.get("events", "--field-selector", selector)["items"]
    return [str(e.get("message", "")) for e in items]


def pod_ready_s(pod: Json) -> float | None:
    """Seconds from the pod's creation to its Ready condition (1 s resolution: both are API
    timestamps); None when it is not Ready."""

    def ts(s: str) -> float:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()

    ready = next((c for c in pod["status"].get("conditions") or [] if c["type"] == "Ready"), None)
    if ready is None or ready["status"] != "True":
        return None
    return ts(ready["lastTransitionTime"]) - ts(pod["metadata"]["creationTimestamp"])


@contextmanager
def port_forward(node: Node, target: str, port: int, ns: str = RELEASE_NS) -> Iterator[int]:
    """``kubectl port-forward TARGET :PORT`` on 127.0.0.1 (through the kubelet, into the pod's
    network namespace); yields the local port, stops the forwarder on exit."""
    argv = [str(KUBECTL), "--kubeconfig", str(node.kubeconfig), "-n", ns, "port-forward"]
    # Each connection prints a line to stdout, unread after the first: few enough here for the
    # pipe's buffer. The pipes are closed on exit (the with block).
    with subprocess.Popen(
        [*argv, "--address", "127.0.0.1", target, f":{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        try:
            local, line, deadline = 0, "", time.monotonic() + 30
            while not local and time.monotonic() < deadline and proc.poll() is None:
                if select.select([proc.stdout], [], [], 0.5)[0]:
                    line = proc.stdout.readline()
                    if m := re.match(r"Forwarding from 127\.0\.0\.1:(\d+) ->", line):
                        local = int(m.group(1))
            if not local:
                proc.kill()
                _, err = proc.communicate(timeout=10)
                raise AssertionError(f"kubectl port-forward {target}: {line!r} {err}")
            yield local
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
