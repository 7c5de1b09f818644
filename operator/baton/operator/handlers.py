"""The kopf side: handlers that observe, call the rollout machine, and carry out its decision.

One daemon per StrategyVersion runs the reconcile loop (observe -> ``rollout.decide`` -> execute
-> sleep until woken or the requeue delay). Pod and StrategyVersion events wake the loops that
care, so a change is acted on at once; the requeue delay only bounds how stale a gateway-side
fact can get. Deletion goes through a finalizer: the delete handler runs the same machine with
``deleting`` set and keeps the object until the machine releases it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kopf

from baton.common import announce_ready
from baton.control import ControlClient
from baton.operator.core.config import OperatorConfig
from baton.operator.core.pods import LABEL_MANAGED_BY, MANAGED_BY, PodSettings, owner_of
from baton.operator.core.rollout import Decision, decide
from baton.operator.core.spec import GROUP, PLURAL, VERSION
from baton.operator.executor import Executor
from baton.operator.kube import Kube, KubeError
from baton.operator.metrics import OperatorMetrics
from baton.operator.observe import observe

log = logging.getLogger(__name__)

FINALIZER = "baton.dev/operator"
ERROR_BACKOFF_S = 2.0


@dataclass
class Runtime:
    """What the handlers share, kept in kopf's memo (no module-level state)."""

    kube: Kube
    control: ControlClient
    executor: Executor
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    wakeups: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)

    def wakeup(self, namespace: str, name: str) -> asyncio.Event:
        return self.wakeups.setdefault((namespace, name), asyncio.Event())

    def wake_namespace(self, namespace: str) -> None:
        for (ns, _), event in self.wakeups.items():
            if ns == namespace:
                event.set()


async def reconcile_once(rt: Runtime, namespace: str, name: str) -> tuple[Decision | None, float]:
    """One round; (None, _) when the object is gone."""
    now = time.time()
    world = await observe(rt.kube, rt.control, namespace, name, now)
    if world is None:
        rt.metrics.forgotten(namespace, name)
        return None, 0.0
    rt.metrics.observed(namespace, world.observed)
    decision = decide(world.observed)
    requeue = await rt.executor.carry_out(world, decision, now)
    return decision, requeue


def build_registry(
    config: OperatorConfig,
    make_runtime: Callable[[], Runtime],
    *,
    metrics_addr: str | None = None,
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        # Progress lives in our own status; kopf keeps its bookkeeping in annotations so it
        # never writes into the CRD's (structural) status.
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="baton.dev")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="baton.dev", key="last-handled-configuration"
        )
        # The CRD is installed before the operator (the chart's crds/), and the namespaces are
        # given: no need to watch CRDs and namespaces, so no RBAC for them either.
        settings.scanning.disabled = True
        # Our Events tell the rollout story; kopf's own only when something is wrong.
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 120
        settings.watching.client_timeout = 150
        memo["runtime"] = make_runtime()
        announce_ready(
            gateway=config.gateway,
            pod_gateway=config.pod_gateway,
            namespaces=list(config.namespaces) or "*",
            metrics_addr=metrics_addr,
        )

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A registry of our own gets no default login: use the client library's (in-cluster
        # service account, else $KUBECONFIG), the same credentials `kube.py` loads.
        return kopf.login_via_client(**kwargs)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        rt: Runtime | None = memo.get("runtime")
        if rt is not None:
            await rt.control.close()

    @kopf.daemon(
        GROUP,
        VERSION,
        PLURAL,
        registry=registry,
        cancellation_timeout=5.0,
    )
    async def reconcile(
        namespace: str | None, name: str, stopped: kopf.DaemonStopped, memo: Any, **_: Any
    ) -> None:
        assert namespace is not None  # the CRD is namespaced
        rt: Runtime = memo["runtime"]
        wake = rt.wakeup(namespace, name)
        try:
            while not stopped:
                wake.clear()
                try:
                    decision, delay = await reconcile_once(rt, namespace, name)
                except (KubeError, OSError) as exc:
                    log.warning("reconcile failed", extra={"sv": name, "error": str(exc)})
                    rt.metrics.reconcile_failed()
                    decision, delay = None, ERROR_BACKOFF_S
                else:
                    if decision is None:
                        return
                # Our own status write comes back as an SV event and sets `wake` again; that
                # costs one extra round, which also confirms the write.
                try:
                    async with asyncio.timeout(delay):
                        await wake.wait()
                except TimeoutError:
                    pass
        finally:
            rt.wakeups.pop((namespace, name), None)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    async def deleted(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
        assert namespace is not None
        rt: Runtime = memo["runtime"]
        decision, delay = await reconcile_once(rt, namespace, name)
        if decision is not None and not decision.release:
            raise kopf.TemporaryError(decision.progress.message or "waiting", delay=delay)
        rt.wake_namespace(namespace)

    @kopf.on.event("v1", "pods", labels={LABEL_MANAGED_BY: MANAGED_BY}, registry=registry)
    async def pod_changed(body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
        rt: Runtime | None = memo.get("runtime")
        owner = owner_of(body)
        if rt is not None and namespace and owner and (namespace, owner) in rt.wakeups:
            rt.wakeups[(namespace, owner)].set()

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def sv_changed(namespace: str | None, memo: Any, **_: Any) -> None:
        rt: Runtime | None = memo.get("runtime")
        if rt is not None and namespace is not None:
            rt.wake_namespace(namespace)

    return registry


def make_runtime_factory(
    config: OperatorConfig, kubeconfig: str | None, metrics: OperatorMetrics | None = None
) -> Callable[[], Runtime]:
    from baton.operator.kube import load_api_client

    def make() -> Runtime:
        kube = Kube(load_api_client(kubeconfig))
        control = ControlClient(config.gateway, timeout_s=config.control_timeout_s)
        pods = PodSettings(gateway_address=config.pod_gateway, extra_env=config.pod_env)
        return Runtime(kube, control, Executor(kube, control, pods), metrics or OperatorMetrics())

    return make
