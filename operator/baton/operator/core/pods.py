"""The strategy pod the operator creates for a StrategyVersion (a pure manifest builder).

A bare Pod, not a Deployment: each version is exactly one instance with its own identity (the
pod name is the instance's name at the gateway), and the operator itself decides when it goes
away. A version with a hot standby (``spec.standby.mode: Hot``) has two such pods, the same
manifest under two names (``rollout.pod_pair_for``): whichever runs the ACTIVE instance serves,
the other is its standby. ``restartPolicy: OnFailure``: a crash restarts in place (the rollout
counts restarts), while a host that drained after a handoff exits 0 and stays down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from baton.operator.core.spec import GROUP, KIND, VERSION, StrategyVersionSpec

MANAGED_BY = "baton-operator"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_STRATEGY = "baton.dev/strategy"
LABEL_VERSION = "baton.dev/strategy-version"  # the StrategyVersion's name
CONTAINER = "strategy"


@dataclass(frozen=True)
class PodSettings:
    """Operator-wide settings that shape every strategy pod."""

    # HOST:PORT the strategy hosts dial (the gateway Service in a cluster), or each gateway
    # replica's, comma-separated (the host attaches to all and answers the leader).
    gateway_address: str
    extra_env: tuple[tuple[str, str], ...] = ()  # e.g. OTEL_EXPORTER_OTLP_ENDPOINT for all pods
    termination_grace_s: int = 30


def pod_manifest(
    *,
    pod_name: str,
    namespace: str,
    sv_name: str,
    sv_uid: str,
    spec: StrategyVersionSpec,
    settings: PodSettings,
) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "OTEL_SERVICE_NAME", "value": "baton-strategy"},
        *({"name": k, "value": v} for k, v in settings.extra_env),
        *({"name": k, "value": v} for k, v in spec.env),  # the version's own settings win
    ]
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image,
        "args": [
            "strategy",
            "--gateway",
            settings.gateway_address,
            "--entrypoint",
            spec.entrypoint,
            "--config",
            spec.config_json,
            # What keeps the state when the ACTIVE instance dies (sent in its Hello; the
            # ACTIVE instance's policy is the strategy's): every field, as the spec says.
            *standby_args(spec),
            # The strategy's part of the gateway's book (strategy-sdk.md): sent in its Hello.
            *(("--slots", ",".join(spec.slots)) if spec.slots else ()),
            *(("--stake", repr(spec.stake)) if spec.stake is not None else ()),
        ],
        "env": env,
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if spec.resources:
        container["resources"] = {k: dict(v) for k, v in spec.resources.items() if v}
    pod_spec: dict[str, Any] = {
        "restartPolicy": "OnFailure",
        "terminationGracePeriodSeconds": settings.termination_grace_s,
        "automountServiceAccountToken": False,  # strategies never talk to the API
        "enableServiceLinks": False,
        "containers": [container],
    }
    if spec.standby.hot:
        # The version's two pods (the serving one and its hot standby) on different nodes
        # where there are several: one node lost must not take both. Preferred, not required,
        # so a single-node cluster still runs both.
        pod_spec["affinity"] = {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchLabels": {LABEL_VERSION: sv_name}},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }
                ]
            }
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name,
            "namespace": namespace,
            "labels": labels(spec.strategy, sv_name),
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": KIND,
                    "name": sv_name,
                    "uid": sv_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": pod_spec,
    }


def standby_args(spec: StrategyVersionSpec) -> tuple[str, ...]:
    """``spec.standby`` as the strategy host's flags (``baton strategy --standby ...``)."""
    policy = spec.standby.policy()
    return (
        "--standby",
        policy.mode.value,
        "--checkpoint-every",
        str(policy.checkpoint_every_ticks),
        "--checkpoints-kept",
        str(policy.checkpoints_kept),
        "--verify-every",
        str(policy.verify_every_ticks),
    )


def labels(strategy: str, sv_name: str) -> dict[str, str]:
    return {
        LABEL_NAME: "baton-strategy",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_STRATEGY: strategy,
        LABEL_VERSION: sv_name,
    }


def owner_of(pod: Mapping[str, Any]) -> str | None:
    """The StrategyVersion a managed pod belongs to (by label), or None."""
    meta = pod.get("metadata") or {}
    value = (meta.get("labels") or {}).get(LABEL_VERSION)
    return value if isinstance(value, str) else None
