"""The gateway's RBAC for its leadership Lease, in one place: every Kubernetes call
``kube_lease.KubeLease`` makes, and no more (the same shape as the operator's
``baton.operator.core.rbac``). The chart's ``gateway-rbac.yaml`` states the same rules; the
e2e test runs the Lease store as a user bound only to these.

A Role cannot limit ``create`` to one name (the name is not known before the object exists), so
creating any Lease in the namespace is allowed; reading and replacing only the gateway's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GROUP = "coordination.k8s.io"
DEFAULT_LEASE_NAME = "baton-gateway-leader"


@dataclass(frozen=True)
class Rule:
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str
    resource_names: tuple[str, ...] = ()

    def to_k8s(self) -> dict[str, Any]:
        rule: dict[str, Any] = {
            "apiGroups": [GROUP],
            "resources": list(self.resources),
            "verbs": list(self.verbs),
        }
        if self.resource_names:
            rule["resourceNames"] = list(self.resource_names)
        return rule


def rules(lease_name: str = DEFAULT_LEASE_NAME) -> tuple[Rule, ...]:
    return (
        Rule(("leases",), ("create",), "the first replica creates the Lease"),
        Rule(
            ("leases",),
            ("get", "update"),
            "read the Lease, acquire, renew and release it (replace with its resourceVersion)",
            resource_names=(lease_name,),
        ),
    )


def render(
    *, service_account: str, namespace: str, lease_name: str = DEFAULT_LEASE_NAME
) -> list[dict[str, Any]]:
    """A Role and RoleBinding in ``namespace`` for the gateway's ServiceAccount."""
    name = "baton-gateway-leader"
    meta = {"name": name, "namespace": namespace}
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": [r.to_k8s() for r in rules(lease_name)],
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
