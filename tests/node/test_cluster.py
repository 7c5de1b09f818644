"""The real single-node cluster of hack/cluster.sh (docs/real-node.md): containerd + runc, the
kubelet, kube-proxy and CoreDNS on this machine, the Baton image imported.

One cluster for the session (``conftest.py``, shared with the other files here): brought up
once (``hack/cluster.sh up``), always taken down (``hack/cluster.sh down``), and the host
compared before and after. Root only (containerd, the kubelet and netfilter need it); one
session at a time on a machine (a lock file), since the node's bridge, ports and state dir are
fixed.
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from tests.node.kube import (
    GATEWAY_ROLE,
    RELEASE_NS,
    SLEEP,
    STATE,
    UP_TIMEOUT_S,
    Node,
    Release,
    Rollout,
    cluster,
    diff,
    events,
    gateway_pods,
    host_state,
    leader_pod,
    pod_json,
    presence,
    record,
    run_pod,
)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the real node needs root"),
    pytest.mark.timeout(900),
]


def test_node_ready(node: Node) -> None:
    nodes = json.loads(node.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert [n["metadata"]["name"] for n in nodes] == ["baton-node"]
    n = nodes[0]
    ready = {c["type"]: c["status"] for c in n["status"]["conditions"]}["Ready"]
    assert ready == "True"
    info = n["status"]["nodeInfo"]
    assert info["kubeletVersion"] == "v1.36.3"
    assert info["containerRuntimeVersion"].startswith("containerd://")
    addrs = {a["type"]: a["address"] for a in n["status"]["addresses"]}
    assert addrs["InternalIP"] == "10.213.0.1"
    dns = json.loads(
        node.kubectl("-n", "kube-system", "get", "deploy", "coredns", "-o", "json").stdout
    )
    assert dns["status"].get("availableReplicas") == 1
    # The timings up reported, in order.
    t = node.timings
    assert 0 < t["apiserver_ready_s"] <= t["node_ready_s"] <= t["coredns_available_s"]


def test_baton_pod_non_root_read_only(node: Node, namespace: str) -> None:
    run_pod(node, namespace, "baton", SLEEP)
    uid = node.kubectl("-n", namespace, "exec", "baton", "--", "id", "-u").stdout.strip()
    assert uid == "10001"
    # /tmp is world-writable in the image: only a read-only root refuses it (EROFS, 30).
    probe = (
        "import sys\n"
        "try:\n    open('/tmp/probe', 'w')\n"
        "except OSError as e:\n    print(e.errno); sys.exit(0)\n"
        "print('written'); sys.exit(1)\n"
    )
    p = node.kubectl("-n", namespace, "exec", "baton", "--", "python", "-c", probe, check=False)
    assert (p.returncode, p.stdout.strip()) == (0, "30"), p.stdout + p.stderr
    # The container is the image's entrypoint's world: baton itself answers.
    v = node.kubectl("-n", namespace, "exec", "baton", "--", "baton", "--help")
    assert "usage" in v.stdout.lower()


def test_service_dns_from_a_pod(node: Node, namespace: str) -> None:
    run_pod(
        node,
        namespace,
        "web",
        ["python", "-m", "http.server", "8080", "--directory", "/"],
        app="web",
    )
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    node.kubectl("apply", "-f", "-", input_=json.dumps(svc))
    cluster_ip = node.kubectl(
        "-n", namespace, "get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"
    ).stdout.strip()
    run_pod(node, namespace, "client", SLEEP)
    check = (
        "import json, socket, sys, time, urllib.request\n"
        f"name = 'web.{namespace}.svc.cluster.local'\n"
        "deadline = time.monotonic() + 30\n"
        "while True:\n"
        "    try:\n"
        "        ip = socket.gethostbyname(name)\n"
        "        status = urllib.request.urlopen('http://web/', timeout=5).status\n"
        "        api = socket.gethostbyname('kubernetes.default.svc.cluster.local')\n"
        "        break\n"
        "    except OSError as e:\n"
        "        if time.monotonic() > deadline: raise\n"
        "        print('retry', e, file=sys.stderr); time.sleep(0.5)\n"
        "print(json.dumps({'ip': ip, 'status': status, 'api': api}))\n"
    )
    p = node.kubectl("-n", namespace, "exec", "client", "--", "python", "-c", check, timeout=90)
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got == {"ip": cluster_ip, "status": 200, "api": "10.214.0.1"}


def test_a_claim_binds_to_a_local_volume(node: Node, namespace: str) -> None:
    """The default StorageClass ("standard", as kind's) binds a claim like the gateway's (1Gi,
    no class named) to one of the static local volumes; uid 10001 writes and reads it back."""
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": namespace},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    node.kubectl("apply", "-f", "-", input_=json.dumps(claim))
    pod = json.loads(pod_json("ledger", namespace, SLEEP))
    pod["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    node.kubectl("apply", "-f", "-", input_=json.dumps(pod))
    p = node.kubectl(
        *("-n", namespace, "wait", "--for=condition=Ready", "pod/ledger", "--timeout=90s"),
        check=False,
        timeout=120,
    )
    assert p.returncode == 0, node.kubectl("-n", namespace, "describe", "pod", "ledger").stdout
    got = json.loads(node.kubectl("-n", namespace, "get", "pvc", "data", "-o", "json").stdout)
    assert got["status"]["phase"] == "Bound"
    assert got["spec"]["storageClassName"] == "standard"
    assert got["spec"]["volumeName"].startswith("baton-local-pv")
    write = "open('/data/probe', 'w').write('ledger'); print(open('/data/probe').read())"
    out = node.kubectl("-n", namespace, "exec", "ledger", "--", "python", "-c", write)
    assert out.stdout.strip() == "ledger"


def test_the_readme_walkthrough_on_the_real_node(
    node: Node, release: Release, rollout: Rollout
) -> None:
    """The README's kind walk-through on this node (the ``release`` and ``rollout`` fixtures do
    its steps): `helm install --wait` of the chart with hack/cluster-values.yaml (the gateway's
    ledger claim bound to a local volume; Jaeger from the local image), then StrategyVersion
    v1, then v2 handed off live: completed, 0 missed in the ledger, the figures recorded."""
    # Every component of the release Running and Ready, Jaeger included, from the local images.
    components = {
        p["metadata"]["labels"].get("app.kubernetes.io/component"): p for p in release.pods.values()
    }
    assert {"gateway", "operator", "sim", "jaeger"} <= set(components), list(components)
    for name, pod in release.pods.items():
        assert pod["status"]["phase"] == "Running", name
        assert name in release.ready_s, f"{name} not Ready"
    jaeger = components["jaeger"]["spec"]["containers"][0]
    assert jaeger["image"] == "localhost/baton-jaeger:v2.13.0"
    assert jaeger["imagePullPolicy"] == "Never"
    # Two gateway pods, each Ready (the follower: caught up) on a claim of its own; one leads:
    # its pod labelled so, its replica the Lease's holder.
    gateways = sorted(n for n, p in release.pods.items() if n.startswith("baton-gateway-"))
    assert gateways == ["baton-gateway-0", "baton-gateway-1"], list(release.pods)
    pvc = node.get("pvc")["items"]
    assert sorted(c["metadata"]["name"] for c in pvc) == [f"data-{g}" for g in gateways]
    assert [c["status"]["phase"] for c in pvc] == ["Bound", "Bound"]
    leader = leader_pod(node)
    roles = {
        p["metadata"]["name"]: p["metadata"]["labels"].get(GATEWAY_ROLE) for p in gateway_pods(node)
    }
    assert roles == {g: ("leader" if g == leader else "follower") for g in gateways}, roles

    assert rollout.v1["status"]["phase"] == "Retired"
    v2 = rollout.v2["status"]
    assert v2["phase"] == "Active"
    assert v2["handoff"]["missed"] == 0, v2["handoff"]
    completed = events(node, "HandoffCompleted", "mom-v2")
    assert len(completed) == 1, completed
    assert "from v1 completed" in completed[0]
    assert "missed 0" in completed[0], completed
    assert events(node, "Retired", "mom-v1"), "no Retired event on mom-v1"
    # `kubectl get sv` tells it.
    table = node.kubectl("-n", RELEASE_NS, "get", "sv").stdout
    assert re.search(r"^mom-v2\s.*Active", table, re.M), table
    assert re.search(r"^mom-v1\s.*Retired", table, re.M), table
    report = presence(node)
    assert report["missed"] == 0, report
    figures = {
        "helm_install_s": round(release.install_s, 1),
        "pod_start_to_ready_s": release.ready_s,
        "v1_apply_to_active_s": round(rollout.v1_active_s, 1),
        "v2_apply_to_active_s": round(rollout.v2_active_s, 1),
        "handoff_pause_ms": v2["handoff"].get("pauseMs"),
        "handoff_missed": v2["handoff"]["missed"],
        "ledger_missed": report["missed"],
    }
    record("cluster-walkthrough.json", {**figures, "presence": report})
    print("walk-through on the real node:", json.dumps(figures))


def test_down_restores_the_host(node: Node) -> None:
    """Last of the session's node tests (conftest.LAST): take the cluster down and compare the
    host with before `up`."""
    t0 = time.monotonic()
    p = cluster("down", 300)
    down_s = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    changed = diff(node.host_before, host_state())
    record("cluster-down.json", {"down_s": round(down_s, 1), "diff": changed})
    assert changed == []
    assert not (STATE / "pids").exists()
    # Idempotent.
    again = cluster("down", 120)
    assert again.returncode == 0, again.stderr
    assert diff(node.host_before, host_state()) == []


def test_down_after_a_crash(node: Node) -> None:
    """Up again (warm, without rebuilding the image), SIGKILL every process as a crash would,
    leave the stale pid files: down still restores the host."""
    t0 = time.monotonic()
    p = cluster("up", UP_TIMEOUT_S, BATON_CLUSTER_BUILD="0", BATON_CLUSTER_IMAGE="0")
    warm_s = time.monotonic() - t0
    assert p.returncode == 0, p.stderr[-6000:]
    timings = json.loads((STATE / "timings.json").read_text())
    record("cluster-up-warm.json", {"wall_s": round(warm_s, 1), **timings})
    for f in sorted((STATE / "pids").glob("*.pid")):
        os.kill(int(f.read_text()), 9)
    time.sleep(1)
    assert any((STATE / "pids").glob("*.pid"))  # stale
    t0 = time.monotonic()
    p = cluster("down", 300)
    down_s = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    changed = diff(node.host_before, host_state())
    record("cluster-down-crash.json", {"down_s": round(down_s, 1), "diff": changed})
    assert changed == []
