"""The operator's RBAC rules, in one place: every Kubernetes call it makes, and no more.

``baton operator rbac`` renders them as a Role (one namespace) or a ClusterRole; the Helm chart
and the tests use the same rules. The e2e tests run the operator as a user bound only to these,
so a missing rule fails there, and nothing here is granted "just in case".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from baton.operator.core.spec import GROUP, PLURAL


@dataclass(frozen=True)
class Rule:
    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str

    def to_k8s(self) -> dict[str, Any]:
        return {
            "apiGroups": [self.api_group],
            "resources": list(self.resources),
            "verbs": list(self.verbs),
        }


RULES: tuple[Rule, ...] = (
    Rule(
        GROUP,
        (PLURAL,),
        ("get", "list", "watch", "patch"),
        "watch StrategyVersions; kopf patches its finalizer and annotations",
    ),
    Rule(GROUP, (f"{PLURAL}/status",), ("patch",), "write rollout progress into the status"),
    Rule("", ("pods",), ("get", "list", "watch", "create", "delete"), "run each version's pod"),
    Rule("", ("events",), ("create",), "tell the rollout story in Events"),
)

# Nothing cluster-only: kopf's scanning of CRDs and namespaces is off (handlers.py), and API
# discovery is allowed to every authenticated user.


def render(
    *, service_account: str, namespace: str, watch_namespace: str | None
) -> list[dict[str, Any]]:
    """Role + RoleBinding for one watched namespace, or ClusterRole + ClusterRoleBinding."""
    name = "baton-operator"
    subject = {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
    if watch_namespace is not None:
        role_meta = {"name": name, "namespace": watch_namespace}
        return [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": role_meta,
                "rules": [r.to_k8s() for r in RULES],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": role_meta,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [subject],
            },
        ]
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [r.to_k8s() for r in RULES],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [subject],
        },
    ]
