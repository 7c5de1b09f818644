"""Two ``baton gateway`` replica processes with ``leader.backend = kube`` on the test bed's real
kube-apiserver, as the chart runs them (docs/gateway-standby.md): each with a ledger of its own
(replicated from the address the leader serves), a kubeconfig of the gateway's ServiceAccount
bound only to ``baton.gateway.core.lease_rbac``'s rules (the Lease, and ``patch`` on the two pod
names), ``POD_NAME`` set to a pod that does not exist on the test bed (no kubelet: the label
patch answers 404, told once, the leadership untouched).

The leader SIGKILLed: the other leads within the bound from its copy, the Lease's holder and
term change, the strategy host follows, ticks continue, and the ledger's report counts the
failover's misses within ceil(takeover / cadence) + the re-attach's tick. ``/ready`` says who may
be Ready: the leader, and the follower only once caught up.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from baton.common import Service
from baton.demo_replicas import free_port
from baton.gateway.core.leadership import Settings
from baton.gateway.core.lease_rbac import DEFAULT_LEASE_NAME, pod_names, render
from baton.gateway.kube_lease import KubeLease
from baton.gateway.report import presence_report
from baton.local import Processes
from tests.e2e.testbed import REPO, Cluster, as_list
from tests.procs import SLOTS, V1, count, gateway_env, wait_until

S = Settings()  # the reference settings: lease 4 s, renew deadline 3 s, retry 0.5 s
CADENCE_S = 3.0
# How late a process may notice something on 2 busy cores (the bound the design claims is the
# rest of the assertion).
LATE_S = 2.0
GATEWAY_SA = "baton-gateway"
PODS = pod_names("baton-gateway", 2)
EXECUTED = "SELECT count(*) FROM evaluations WHERE outcome = 'executed'"
ARTIFACTS = REPO / "build" / "artifacts"


def record(name: str, data: object) -> None:
    """One figure of the run: build/artifacts/<name> (JSON), as tests/node records them."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / name).write_text(json.dumps(data, indent=2) + "\n")


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def ready(replica: Service) -> tuple[int, str]:
    return await asyncio.to_thread(http_get, f"http://{replica.ready['metrics_addr']}/ready")


async def metric(replica: Service, name: str, labels: str) -> float:
    _, text = await asyncio.to_thread(http_get, f"http://{replica.ready['metrics_addr']}/metrics")
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class KubePair:
    def __init__(
        self, procs: Processes, sim: Service, kubeconfig: Path, namespace: str, tmp: Path
    ) -> None:
        self.procs = procs
        self.sim = sim
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.tmp = tmp
        self.addr = f"127.0.0.1:{free_port()}"

    def ledger(self, name: str) -> Path:
        return self.tmp / f"{name}.sqlite"

    async def replica(self, name: str, pod: str) -> Service:
        env = {
            **gateway_env(self.sim, self.ledger(name)),
            "BATON_GATEWAY__LISTEN": self.addr,
            "BATON_GATEWAY__CADENCE_S": str(CADENCE_S),
            "BATON_LEADER__BACKEND": "kube",
            "BATON_LEADER__NAMESPACE": self.namespace,
            "BATON_LEADER__LEASE_NAME": DEFAULT_LEASE_NAME,
            "BATON_LEADER__REPLICATE_FROM": self.addr,
            # Not in a pod: lease_store() falls back from the in-cluster config to this.
            "KUBECONFIG": str(self.kubeconfig),
            "POD_NAME": pod,
        }
        return await self.procs.spawn(name, ["gateway"], env=env)

    async def strategy(self) -> Service:
        args = ["strategy", "--gateway", self.addr, "--entrypoint", V1, "--pod-name", "pod-0"]
        return await self.procs.spawn("strategy", args)


@pytest.fixture
async def kube_pair(
    cluster: Cluster, namespace: str, sim: Service, log_dir: Path, tmp_path: Path
) -> AsyncIterator[KubePair]:
    docs = render(service_account=GATEWAY_SA, namespace=namespace, pods=PODS)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(as_list(docs)))
    kubeconfig = cluster.user_kubeconfig(
        f"system:serviceaccount:{namespace}:{GATEWAY_SA}",
        ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
    )
    procs = Processes(log_dir)
    yield KubePair(procs, sim, kubeconfig, namespace, tmp_path)
    await procs.close()


async def test_two_replicas_on_the_kube_lease_fail_over_when_the_leader_is_sigkilled(
    cluster: Cluster, kube_pair: KubePair
) -> None:
    pair = kube_pair
    a = await pair.replica("gw-a", PODS[0])
    led = await a.wait_announced("role", "leader", timeout_s=20)
    assert led["term"] == 1
    assert (await ready(a))[0] == 200
    b = await pair.replica("gw-b", PODS[1])
    assert b.ready["role"] == "follower"
    await pair.strategy()
    a_ledger, b_ledger = pair.ledger("gw-a"), pair.ledger("gw-b")
    await wait_until(
        lambda: count(a_ledger, EXECUTED) >= 3 * SLOTS, timeout_s=60, what="three ticks led by gw-a"
    )
    # The standby holds the leader's ledger, and only then says Ready.
    await wait_until(
        lambda: count(b_ledger, EXECUTED) >= count(a_ledger, EXECUTED) - 2 * SLOTS,
        timeout_s=20,
        what="gw-b's copy within a tick of gw-a's",
    )
    status, why = await ready(b)
    assert (status, why.split(",")[0]) == (200, f"follower {b.ready['replica']}"), why

    with cluster.api_client() as admin:
        lease = KubeLease(admin, pair.namespace, DEFAULT_LEASE_NAME)
        held = await lease.read()
        assert held is not None
        assert (held.holder, held.term) == (led["replica"], 1)
        assert held.holder.startswith(f"{PODS[0]}-")

        # The label patch found no pod of that name (404: allowed, and not there): counted,
        # never a reason to stop leading.
        assert await metric(a, "baton_gateway_pod_label_patches_total", 'result="not_found"') >= 1
        assert await metric(a, "baton_gateway_pod_label_patches_total", 'result="error"') == 0

        assert await pair.procs.kill(a) == -9
        killed = time.monotonic()
        led_b = await b.wait_announced("role", "leader", timeout_s=30)
        takeover_s = time.monotonic() - killed
        assert led_b["term"] == 2
        bound_s = (S.lease_duration_ms + S.retry_period_ms) / 1000
        assert takeover_s <= bound_s + LATE_S, f"took over after {takeover_s:.1f} s"
        held = await lease.read()
        assert held is not None
        assert (held.holder, held.term) == (led_b["replica"], 2)
        assert held.holder.startswith(f"{PODS[1]}-")

    executed = count(b_ledger, EXECUTED)
    await wait_until(
        lambda: count(b_ledger, EXECUTED) >= executed + 2 * SLOTS,
        timeout_s=30,
        what="two ticks led by gw-b",
    )
    assert (await ready(b))[0] == 200
    assert await pair.procs.reap(b) == 0

    report = presence_report(b_ledger)
    assert report.runs == 2
    (failover,) = report.gateway_failovers
    assert failover.term == 2
    assert failover.from_replica == led["replica"]
    assert failover.to_replica == led_b["replica"]
    # Misses: the ticks scheduled between the death and the new leader's first dispatch; the
    # host's re-attach and the next boundary add at most one.
    bound_ticks = math.ceil(takeover_s / CADENCE_S) + 1
    assert failover.missed_ticks <= bound_ticks, (failover, takeover_s)
    record(
        "gateway-kube-failover.json",
        {
            "takeover_s": round(takeover_s, 2),
            "takeover_ms_report": failover.pause_ms,
            "missed_ticks": failover.missed_ticks,
            "missed": failover.missed,
            "cadence_s": CADENCE_S,
            "bound_s": bound_s,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "load": os.getloadavg()[0],
        },
    )
    print(f"\nkube lease failover: takeover {takeover_s:.2f} s, {failover}")
