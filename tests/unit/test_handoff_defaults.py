"""One handoff policy, three places that default it: the CRD (``spec.handoff``), the operator's
``HandoffSpec`` and the gateway's ``Policy`` (also what an empty ``HandoffPolicy`` from
``baton handoff`` gets). A default changed in one place only fails here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from baton.gateway.core.handoff import Policy
from baton.gateway.server import policy_from_proto
from baton.operator.core.spec import HandoffSpec, parse_spec
from baton.operator.executor import policy_proto
from baton.v1 import control_pb2 as ctl

CRD = Path(__file__).resolve().parents[2] / "charts/baton/crds/strategyversions.baton.dev.yaml"


def crd_handoff_defaults() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = crd["spec"]["versions"]
    handoff = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["handoff"]
    return {k: v["default"] for k, v in handoff["properties"].items() if "default" in v}


def test_the_crd_the_operator_and_the_gateway_default_alike() -> None:
    crd = crd_handoff_defaults()
    spec = HandoffSpec()
    gateway = Policy()
    assert crd == {
        "mode": "StateTransfer",
        "shadowTicks": spec.shadow_ticks,
        "bakeSeconds": spec.bake_s,
        "autoRollback": spec.auto_rollback,
        "maxBakeFaults": spec.max_bake_faults,
        "stepTimeoutSeconds": spec.step_timeout_s,
    }
    assert (spec.shadow_ticks, spec.bake_s * 1000, spec.step_timeout_s * 1000) == (
        gateway.shadow_ticks,
        gateway.bake_ms,
        gateway.step_timeout_ms,
    )
    assert (spec.auto_rollback, spec.max_bake_faults) == (
        gateway.auto_rollback,
        gateway.max_bake_faults,
    )
    assert (spec.max_divergence is None) == (gateway.max_divergence < 0)
    # The default is at least one whole live tick compared before the flip.
    assert gateway.shadow_ticks >= 1


def test_an_unset_policy_reaches_the_gateway_as_its_defaults() -> None:
    """`baton handoff` with no flags sends zeros; a StrategyVersion without spec.handoff is
    parsed to the CRD's defaults and sent through policy_proto: both end as ``Policy()``."""
    assert policy_from_proto(ctl.HandoffPolicy()) == Policy()
    minimal = parse_spec(
        {
            "strategy": "momentum",
            "version": "v2",
            "image": "baton:dev",
            "entrypoint": "baton.strategy.examples.momentum_v2:MomentumV2",
        }
    )
    assert policy_from_proto(policy_proto(minimal.handoff)) == Policy()
