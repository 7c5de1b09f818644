"""The gateway's RBAC for its leadership Lease, in one place: every Kubernetes call
``kube_lease.KubeLease`` makes, and no more (the same shape as the operator's
``baton.operator.core.rbac``), and the label a replica puts on its own pod
(``pod_role.PodRole``: the Patroni pattern, the chart's gateway Service selects the leader by
it). The chart's ``gateway-rbac.yaml`` states the same rules; the e2e test runs the replicas as
a user bound only to these.

A Role cannot limit ``create`` to one name (the name is not known before the object exists), so
creating any Lease in the namespace is allowed; reading and replacing only the gateway's.
Pods: ``patch`` only, and only the StatefulSet's own pods by name (a merge patch of one label
needs no ``get``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GROUP = "coordination.k8s.io"
DEFAULT_LEASE_NAME = "baton-gateway-leader"
# The label a replica sets on its own pod: ``leader`` while it serves as the leader,
# ``follower`` from its start (a restarted container in a once-leader pod clears it).
ROLE_LABEL = "baton.dev/gateway-role"


@dataclass(frozen=True)
class Rule:
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str
    resource_names: tuple[str, ...] = ()
    group: str = GROUP

    def to_k8s(self) -> dict[str, Any]:
        rule: dict[str, Any] = {
            "apiGroups": [self.group],
            "resources": list(self.resources),
            "verbs": list(self.verbs),
        }
        if self.resource_names:
            rule["resourceNames"] = list(self.resource_names)
        return rule


def pod_names(statefulset: str, replicas: int) -> tuple[str, ...]:
    """The StatefulSet's pods: ``<name>-0`` .. ``<name>-<replicas - 1>``."""
    return tuple(f"{statefulset}-{i}" for i in range(replicas))


def rules(lease_name: str = DEFAULT_LEASE_NAME, pods: tuple[str, ...] = ()) -> tuple[Rule, ...]:
    """The Lease's rules, and with ``pods`` the label patch on those pods (none: no pod rule)."""
    lease = (
        Rule(("leases",), ("create",), "the first replica creates the Lease"),
        Rule(
            ("leases",),
            ("get", "update"),
            "read the Lease, acquire, renew and release it (replace with its resourceVersion)",
            resource_names=(lease_name,),
        ),
    )
    if not pods:
        return lease
    return (
        *lease,
        Rule(
            ("pods",),
            ("patch",),
            f"label its own pod {ROLE_LABEL}=leader|follower (the Service to the leader)",
            resource_names=pods,
            group="",
        ),
    )


def render(
    *,
    service_account: str,
    namespace: str,
    lease_name: str = DEFAULT_LEASE_NAME,
    pods: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """A Role and RoleBinding in ``namespace`` for the gateway's ServiceAccount."""
    name = "baton-gateway-leader"
    meta = {"name": name, "namespace": namespace}
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": [r.to_k8s() for r in rules(lease_name, pods)],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [
                {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
            ],
        },
    ]
