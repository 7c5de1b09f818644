"""A replica's label on its own pod, ``baton.dev/gateway-role: leader | follower``: the chart's
gateway Service selects the leader by it, so strategy hosts, the operator and the standby's
replication stream reach whichever pod leads (Patroni labels its pods the same way).

Best effort, at the edge. The label only routes: who leads is the Lease's, and what executes is
the term's (docs/gateway-standby.md). So a failed patch never deposes a leader and never stops a
follower; it is logged and counted (``baton_gateway_pod_label_patches_total{role,result}``) and
retried with a backoff until the label is what the replica wants (a leader whose label does not
land is a leader nobody reaches: its misses show in the ledger). A pod of that name that does not
exist (a replica run outside Kubernetes with a kubeconfig, as the e2e tests do) is logged once,
and nothing more is tried until the wanted role changes.

A replica wants ``follower`` from its start (a container restarted in a once-leader pod must not
keep the Service pointed at it) and ``leader`` once its gateway serves.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter

from baton.gateway.config import GatewayConfig, LeaderBackend
from baton.gateway.core.lease_rbac import ROLE_LABEL

if TYPE_CHECKING:
    import kubernetes.client as k8s

log = logging.getLogger(__name__)

LEADER = "leader"
FOLLOWER = "follower"


class NoSuchPod(Exception):
    """The pod to label does not exist (404)."""


# Blocking: patch the label of the pod to the role; raises NoSuchPod or anything else on failure.
Patch = Callable[[str], None]


class PodRole:
    """Keeps ``ROLE_LABEL`` on one pod equal to the wanted role (``want``); ``run`` patches."""

    def __init__(
        self,
        patch: Patch,
        pod: str,
        registry: CollectorRegistry,
        *,
        backoff_s: tuple[float, float] = (0.2, 5.0),
    ) -> None:
        self.pod = pod
        self._patch = patch
        self._backoff = backoff_s
        self._wanted: str | None = None
        self.labelled: str | None = None  # the role the last successful patch set
        self._missing_told = False
        self._changed = asyncio.Event()
        self._patches = Counter(
            "baton_gateway_pod_label_patches",
            f"Patches of this replica's pod label {ROLE_LABEL}, by role and result "
            "(ok, not_found, error).",
            ["role", "result"],
            registry=registry,
        )

    def shows(self, role: str) -> bool:
        """The pod is labelled ``role`` (or there is no pod to label): a follower is Ready only
        then, so that a stale ``leader`` label never puts a follower behind the Service."""
        return self.labelled == role or self._missing_told

    def want(self, role: str) -> None:
        if role != self._wanted:
            self._wanted = role
            self._changed.set()

    async def run(self) -> None:
        """Until cancelled: patch whenever the wanted role is not the labelled one."""
        delay = self._backoff[0]
        failing = False
        while True:
            await self._changed.wait()
            self._changed.clear()
            role = self._wanted
            if role is None or role == self.labelled:
                continue
            try:
                await asyncio.to_thread(self._patch, role)
            except NoSuchPod:
                self._patches.labels(role, "not_found").inc()
                if not self._missing_told:
                    self._missing_told = True
                    log.warning(
                        "gateway replica cannot label its pod: no pod of that name",
                        extra={"pod": self.pod, "role": role},
                    )
                continue  # nothing to retry: only a new wanted role tries again
            except Exception as exc:  # the edge: a failed patch never touches the leadership
                self._patches.labels(role, "error").inc()
                if not failing:
                    log.warning(
                        "gateway replica pod label patch failed; retrying",
                        extra={"pod": self.pod, "role": role, "error": f"{exc}"[:300]},
                    )
                failing = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff[1])
                self._changed.set()  # try again (or the newer role)
                continue
            self._patches.labels(role, "ok").inc()
            self.labelled = role
            delay, failing = self._backoff[0], False
            log.info(
                "gateway replica labelled its pod",
                extra={"pod": self.pod, "label": f"{ROLE_LABEL}={role}"},
            )


def kube_patch(api: k8s.ApiClient, namespace: str, pod: str, *, timeout_s: float = 5.0) -> Patch:
    """A merge patch of the pod's role label through ``api`` (RBAC: ``patch`` on the pod)."""
    import kubernetes.client as k8s_client
    from kubernetes.client import ApiException

    core = k8s_client.CoreV1Api(api)

    def patch(role: str) -> None:
        body = {"metadata": {"labels": {ROLE_LABEL: role}}}
        try:
            core.patch_namespaced_pod(pod, namespace, body, _request_timeout=timeout_s)
        except ApiException as exc:
            if exc.status == 404:
                raise NoSuchPod(f"pod {namespace}/{pod}") from exc
            raise RuntimeError(
                f"patch pod {namespace}/{pod}: HTTP {exc.status} {exc.reason}"
            ) from exc

    return patch


def pod_role_for(config: GatewayConfig, registry: CollectorRegistry) -> PodRole | None:
    """The label keeper of a replica on the Kubernetes Lease that knows its pod (``POD_NAME``,
    the chart's downward API); None otherwise. The client's configuration is the one
    ``replica.lease_store`` loaded (in-cluster, else the kubeconfig)."""
    if config.leader.backend is not LeaderBackend.KUBE:
        return None
    pod = os.environ.get("POD_NAME", "").strip()
    if not pod:
        log.info("gateway replica has no POD_NAME: its pod is not labelled")
        return None
    import kubernetes.client as k8s_client

    patch = kube_patch(k8s_client.ApiClient(), config.leader.namespace, pod)
    return PodRole(patch, pod, registry)
