"""The real node's fixtures, one cluster for the whole session (every test file in tests/node).

``node``: ``hack/cluster.sh up`` once per session (``down`` first in case a killed session left
one, the host snapshot before), always ``down`` at the end of the session, even when a test or
the session fails. A lock file serialises sessions on one machine: the node's bridge, ports and
state dir are fixed. Root only (containerd, the kubelet and netfilter need it).

The tests that take the cluster down and compare the host (``LAST``) run after every other test
of this directory, whatever file they are in.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.node.kube import (
    CLUSTER_VALUES,
    KUBECTL,
    RELEASE_NS,
    REPO,
    STATE,
    UP_TIMEOUT_S,
    Node,
    Release,
    Rollout,
    cluster,
    host_state,
    pod_ready_s,
    record,
    wait_phase,
)

LOCK_FILE = Path("/run/lock/baton-cluster.test.lock")
HERE = Path(__file__).resolve().parent
EXAMPLES = REPO / "examples"
# Tests that take the cluster down: last among the node's tests, in this order.
LAST = ("test_down_restores_the_host", "test_down_after_a_crash")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the tests of ``LAST`` behind every other test of tests/node (the rest of the
    session's order is kept): a test file sorted after test_cluster.py still finds the cluster
    up."""
    ours = [i for i, item in enumerate(items) if Path(str(item.path)).parent == HERE]
    if not ours:
        return
    node_items = [items[i] for i in ours]
    last = sorted(
        (it for it in node_items if getattr(it, "originalname", it.name) in LAST),
        key=lambda it: LAST.index(getattr(it, "originalname", it.name)),
    )
    rest = [it for it in node_items if it not in last]
    for i, item in zip(ours, rest + last, strict=True):
        items[i] = item


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    """The cluster, up once for the session, always taken down. The binaries must be built and
    match the lock already (``make testbed-bins``); ``up`` builds and imports baton:dev."""
    if os.geteuid() != 0:
        pytest.skip("the real node needs root")
    if shutil.which("containerd") is None or not KUBECTL.exists():
        pytest.fail(
            "containerd or the pinned kubectl is missing: hack/host-deps.sh node; make testbed-bins"
        )
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            # A cluster left by a killed session would make "before" a state with a cluster in it.
            cluster("down", 300)
            before = host_state()
            t0 = time.monotonic()
            p = cluster("up", UP_TIMEOUT_S, BATON_CLUSTER_BUILD="0")
            up_s = time.monotonic() - t0
            assert p.returncode == 0, f"hack/cluster.sh up failed:\n{p.stderr[-6000:]}"
            timings = json.loads((STATE / "timings.json").read_text())
            record("cluster-up.json", {"wall_s": round(up_s, 1), **timings})
            yield Node(STATE / "kubeconfig", before, up_s, timings)
        finally:
            cluster("down", 300)


@pytest.fixture
def namespace(node: Node, request: pytest.FixtureRequest) -> Iterator[str]:
    name = "t-" + request.node.name.replace("_", "-").lower()[:40].strip("-")
    node.kubectl("create", "namespace", name)
    yield name
    node.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def release(node: Node) -> Release:
    """``helm install --wait`` of charts/baton, once per session (tests of the walk-through,
    tracing and faults share it); taken down with the cluster."""
    t0 = time.monotonic()
    p = node.helm(
        *("install", "baton", str(REPO / "charts" / "baton"), "-n", RELEASE_NS),
        *("--create-namespace", "--wait", "--timeout", "240s", "-f", str(CLUSTER_VALUES)),
    )
    install_s = time.monotonic() - t0
    pods = node.kubectl("-n", RELEASE_NS, "get", "pods,pvc", "-o", "wide", check=False).stdout
    assert p.returncode == 0, f"helm install: {p.stderr}\n{pods}"
    items = {x["metadata"]["name"]: x for x in node.get("pods")["items"]}
    ready = {name: s for name, pod in items.items() if (s := pod_ready_s(pod)) is not None}
    record("cluster-release.json", {"helm_install_s": round(install_s, 1), "pod_ready_s": ready})
    return Release(install_s, items, ready)


@pytest.fixture(scope="session")
def rollout(node: Node, release: Release) -> Rollout:
    """The walk-through's two ``kubectl apply``s, once per session, timed from each apply to
    Active; the fault tests roll on from where it ends."""
    t0 = time.monotonic()
    node.kubectl("apply", "-n", RELEASE_NS, "-f", str(EXAMPLES / "strategyversion-v1.yaml"))
    wait_phase(node, "mom-v1", "Active", timeout_s=120)
    v1_s = time.monotonic() - t0
    t0 = time.monotonic()
    node.kubectl("apply", "-n", RELEASE_NS, "-f", str(EXAMPLES / "strategyversion-v2.yaml"))
    v2 = wait_phase(node, "mom-v2", "Active", "Failed", timeout_s=180)
    v2_s = time.monotonic() - t0
    assert v2["status"]["phase"] == "Active", v2["status"].get("message")
    v1 = wait_phase(node, "mom-v1", "Retired", timeout_s=60)
    record(
        "cluster-rollout.json",
        {
            "v1_apply_to_active_s": round(v1_s, 2),
            "v2_apply_to_active_s": round(v2_s, 2),
            "handoff": v2["status"].get("handoff"),
        },
    )
    return Rollout(v1_s, v2_s, v1, v2)
