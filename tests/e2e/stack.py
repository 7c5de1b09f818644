"""The whole Baton stack on the test bed: gateway + operator (as least-privilege user) + pods.

Tests drive it the way a user does: ``kubectl apply -f`` StrategyVersions, ``kubectl get sv``,
Events; and read the gateway's ledger for the presence record.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from baton.common import Service, spawn_baton
from baton.operator.kube import Kube, load_api_client
from tests.e2e.testbed import Cluster, as_list
from tests.procs import (
    SLOTS,
    assert_every_scheduled_evaluation_accounted,
    evaluations,
    not_executed,
    run_ticks,
)

T = TypeVar("T")

OPERATOR_SA = "baton-operator"
OPERATOR_NS = "baton-system"
V1 = "baton.strategy.examples.momentum_v1:MomentumV1"
V2 = "baton.strategy.examples.momentum_v2:MomentumV2"


def sv_yaml(
    name: str,
    version: str,
    entrypoint: str,
    *,
    strategy: str = "momentum",
    handoff: dict[str, Any] | None = None,
    startup: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """A StrategyVersion manifest (JSON is YAML, and kubectl reads it from stdin)."""
    spec: dict[str, Any] = {
        "strategy": strategy,
        "version": version,
        "image": "baton:dev",
        "entrypoint": entrypoint,
        "handoff": {"bakeSeconds": 2, **(handoff or {})},
        "startup": {"timeoutSeconds": 60, **(startup or {})},
        **(extra or {}),
    }
    return json.dumps(
        {
            "apiVersion": "baton.dev/v1alpha1",
            "kind": "StrategyVersion",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout_s: float, what: str, poll_s: float = 0.1
) -> T:
    """Poll ``probe`` (state lives in other processes) until it returns a value; bounded."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(poll_s)


@dataclass
class Stack:
    cluster: Cluster
    namespace: str
    gateway: Service
    ledger: Path
    log_dir: Path
    operator_kubeconfig: Path
    kube: Kube
    operators: list[Service] = field(default_factory=list)

    @property
    def operator(self) -> Service:
        return self.operators[-1]

    async def start_operator(
        self, env: Mapping[str, str] | None = None, pod_env: Mapping[str, str] | None = None
    ) -> Service:
        """``env``: the operator process's extra environment; ``pod_env``: every strategy
        pod's (``--pod-env NAME=VALUE``)."""
        n = len(self.operators)
        service = await spawn_baton(
            f"operator-{n}",
            [
                "operator",
                "--gateway",
                self.gateway.ready["grpc_addr"],
                "--namespace",
                self.namespace,
                "--kubeconfig",
                str(self.operator_kubeconfig),
                "--log-level",
                "DEBUG",
                *(f"--pod-env={k}={v}" for k, v in (pod_env or {}).items()),
            ],
            log_dir=self.log_dir,
            env=env,
        )
        self.operators.append(service)
        return service

    async def kill_operator(self) -> None:
        """SIGKILL: no clean-up, as a crashed or evicted operator pod."""
        await self.operator.stop(sig=signal.SIGKILL)

    def apply(self, manifest: str) -> str:
        return self.cluster.kubectl("apply", "-n", self.namespace, "-f", "-", input=manifest).stdout

    def kubectl(self, *args: str, check: bool = True) -> str:
        out = self.cluster.kubectl(*args, "-n", self.namespace, check=check)
        return out.stdout + out.stderr

    async def sv(self, name: str) -> dict[str, Any] | None:
        return await self.kube.get_sv(self.namespace, name)

    async def phase(self, name: str) -> str:
        obj = await self.sv(name)
        return str(((obj or {}).get("status") or {}).get("phase", ""))

    async def wait_phase(self, name: str, *phases: str, timeout_s: float = 60) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            obj = await self.sv(name)
            if obj is not None and (obj.get("status") or {}).get("phase") in phases:
                return obj
            return None

        try:
            return await eventually(probe, timeout_s=timeout_s, what=f"{name} in {phases}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnose()}") from None

    async def pod_gone(self, name: str, timeout_s: float = 30) -> None:
        async def probe() -> bool:
            return await self.kube.get_pod(self.namespace, name) is None

        await eventually(probe, timeout_s=timeout_s, what=f"pod {name} deleted")

    def events(self, name: str) -> list[tuple[str, str, str]]:
        """(type, reason, message) of the Events on one object, oldest first."""
        out = self.cluster.kubectl(
            "get",
            "events",
            "-n",
            self.namespace,
            "--field-selector",
            f"involvedObject.name={name}",
            "-o",
            "json",
        ).stdout
        items = sorted(
            json.loads(out)["items"],
            key=lambda e: (e.get("lastTimestamp") or "", e["metadata"]["name"]),
        )
        return [(e["type"], e["reason"], e["message"]) for e in items]

    def diagnose(self) -> str:
        svs = self.kubectl("get", "sv", "-o", "wide", check=False)
        pods = self.kubectl("get", "pods", "-o", "wide", check=False)
        operator = self.operators[-1].log_tail(40) if self.operators else "(no operator)"
        return f"--- sv\n{svs}\n--- pods\n{pods}\n--- operator log\n{operator}"


async def presence_kept(s: Stack, ticks: int) -> None:
    """A few more ticks, then stop the gateway (its last tick flushed) and read the record:
    every scheduled evaluation of every slot there, each executed by the ACTIVE version."""
    await run_ticks(s.ledger, evaluations(s.ledger) // SLOTS + ticks)
    assert await s.gateway.stop() == 0
    assert_every_scheduled_evaluation_accounted(s.ledger)
    assert not_executed(s.ledger) == []


def operator_rbac(cluster: Cluster, namespace: str) -> Path:
    """Bind the operator's generated Role in ``namespace``; its kubeconfig as that SA."""
    from baton.operator.core.rbac import render

    docs = render(service_account=OPERATOR_SA, namespace=OPERATOR_NS, watch_namespace=namespace)
    # One JSON document, a List: valid input for every kubectl (JSON documents joined by
    # `---` are not YAML documents, and some kubectl versions refuse them).
    cluster.kubectl("apply", "-f", "-", input=json.dumps(as_list(docs)))
    user = f"system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}"
    return cluster.user_kubeconfig(
        user, ["system:serviceaccounts", f"system:serviceaccounts:{OPERATOR_NS}"]
    )


def admin_kube(cluster: Cluster) -> Kube:
    return Kube(load_api_client(str(cluster.kubeconfig)))


# What the ``start_stack`` fixture (conftest.py) gives a test. Here, not in conftest.py: with
# one conftest per test folder, ``import conftest`` would depend on collection order.
StartStack = Callable[..., Awaitable[Stack]]
