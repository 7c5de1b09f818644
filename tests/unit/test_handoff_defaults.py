"""One handoff policy, one set of defaults: ``baton.model.HandoffPolicy``. The gateway's machine
applies it to what a ``Promote`` leaves unset, the operator's ``HandoffSpec`` defaults to it, and
the CRD's schema (``spec.handoff``) states the same values for ``kubectl explain`` and for
objects the API server defaults. A default changed in one place only fails here."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_type_hints

import pytest
import yaml

from baton import wire
from baton.gateway.core.handoff import Phase, Policy
from baton.model import HandoffPhase, HandoffPolicy, Role, StandbyPolicy
from baton.operator.core import rollout
from baton.operator.core.pods import PodSettings, pod_manifest
from baton.operator.core.spec import HandoffMode, HandoffSpec, StandbySpec, parse_spec
from baton.strategy import cli as strategy_cli
from baton.v1 import control_pb2 as ctl

CRD = Path(__file__).resolve().parents[2] / "charts/baton/crds/strategyversions.baton.dev.yaml"
MINIMAL = {
    "strategy": "momentum",
    "version": "v2",
    "image": "baton:dev",
    "entrypoint": "baton.strategy.examples.momentum_v2:MomentumV2",
}


def crd_defaults(section: str) -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = crd["spec"]["versions"]
    props = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][section]
    return {k: v["default"] for k, v in props["properties"].items() if "default" in v}


def crd_handoff_defaults() -> dict[str, Any]:
    return crd_defaults("handoff")


def test_the_gateway_and_the_operator_share_the_models_vocabulary() -> None:
    assert Policy is HandoffPolicy
    assert Phase is HandoffPhase
    # The operator's facts hold the model's enums, not copies of them.
    assert get_type_hints(rollout.HandoffFacts)["phase"] is HandoffPhase
    assert get_type_hints(rollout.InstanceFacts)["role"] is Role


def test_the_crd_states_the_models_defaults() -> None:
    d = HandoffPolicy()
    assert crd_handoff_defaults() == {
        "mode": "Swap" if d.skip_state_transfer else "StateTransfer",
        "shadowTicks": d.shadow_ticks,
        "bakeSeconds": d.bake_ms / 1000,
        "autoRollback": d.auto_rollback,
        "maxBakeFaults": d.max_bake_faults,
        "stepTimeoutSeconds": d.step_timeout_ms / 1000,
    }
    # maxDivergence has no default in the CRD: unset means no limit, as in the model.
    assert d.max_divergence is None
    # The default is at least one whole live tick compared before the flip.
    assert d.shadow_ticks >= 1


def test_the_operators_spec_defaults_to_the_model() -> None:
    assert HandoffSpec().policy() == HandoffPolicy()
    assert parse_spec(MINIMAL).handoff.policy() == HandoffPolicy()
    # What the API server stores once it has applied the CRD's defaults parses the same.
    defaulted = parse_spec({**MINIMAL, "handoff": crd_handoff_defaults()})
    assert defaulted.handoff == HandoffSpec()


def test_an_unset_policy_reaches_the_gateway_as_its_defaults() -> None:
    """`baton handoff` with no flags sends an empty policy; a StrategyVersion without
    spec.handoff is parsed to the defaults and sent whole: both end as ``HandoffPolicy()``."""
    assert wire.policy_from_proto(ctl.HandoffPolicy()) == HandoffPolicy()
    sent = wire.policy_to_proto(parse_spec(MINIMAL).handoff.policy())
    assert wire.policy_from_proto(sent) == HandoffPolicy()


def test_zero_is_a_value_not_the_default() -> None:
    """A spec asking for no bake window gets none (the operator used to send 1 ms, because the
    gateway read 0 as "default: 10 s")."""
    spec = HandoffSpec(bake_s=0, mode=HandoffMode.SWAP, max_divergence=0, max_bake_faults=0)
    got = wire.policy_from_proto(wire.policy_to_proto(spec.policy()))
    assert (got.bake_ms, got.max_divergence, got.skip_state_transfer) == (0, 0, True)
    assert wire.policy_from_proto(ctl.HandoffPolicy(bake_s=0)).bake_ms == 0


def test_every_policy_survives_the_wire() -> None:
    policy = HandoffPolicy(
        shadow_ticks=3,
        max_divergence=7,
        bake_ms=2500,
        auto_rollback=False,
        max_bake_faults=2,
        step_timeout_ms=1500,
        skip_state_transfer=True,
    )
    assert wire.policy_from_proto(wire.policy_to_proto(policy)) == policy


@pytest.mark.parametrize(
    "message",
    [
        ctl.HandoffPolicy(shadow_ticks=0),
        ctl.HandoffPolicy(max_divergence=-1),
        ctl.HandoffPolicy(bake_s=-1),
        ctl.HandoffPolicy(bake_s=float("nan")),
        ctl.HandoffPolicy(step_timeout_s=0),
        ctl.HandoffPolicy(step_timeout_s=float("inf")),
    ],
    ids=[
        "zero-shadow-ticks",
        "negative-divergence",
        "negative-bake",
        "nan-bake",
        "zero-step",
        "inf-step",
    ],
)
def test_out_of_range_policies_are_refused(message: ctl.HandoffPolicy) -> None:
    with pytest.raises(wire.WireError, match="must"):
        wire.policy_from_proto(message)


# -- spec.standby: the same story for the standby policy (baton.model.StandbyPolicy) -----------


def test_the_crd_states_the_models_standby_defaults() -> None:
    d = StandbyPolicy()
    assert crd_defaults("standby") == {
        "mode": d.mode.value.capitalize(),
        "checkpointEveryTicks": d.checkpoint_every_ticks,
        "checkpointsKept": d.checkpoints_kept,
        "verifyEveryTicks": d.verify_every_ticks,
    }


def test_the_operators_standby_defaults_to_the_model() -> None:
    assert StandbySpec().policy() == StandbyPolicy()
    assert parse_spec(MINIMAL).standby.policy() == StandbyPolicy()
    defaulted = parse_spec({**MINIMAL, "standby": crd_defaults("standby")})
    assert defaulted.standby == StandbySpec()


def test_an_unset_standby_reaches_the_host_as_its_defaults() -> None:
    """A StrategyVersion without spec.standby gives its pod the flags of the defaults, and a
    host started with no flags at all has the same: both send ``StandbyPolicy()``."""
    pod = pod_manifest(
        pod_name="p", namespace="ns", sv_name="sv", sv_uid="u", spec=parse_spec(MINIMAL),
        settings=PodSettings(gateway_address="gw:50051"),
    )  # fmt: skip
    args = pod["spec"]["containers"][0]["args"]
    parser = strategy_cli._parser()
    bare = parser.parse_args(["--gateway", "gw:1", "--entrypoint", "m:C"])
    flagged = parser.parse_args(args[1:])
    for key in ("standby", "checkpoint_every", "checkpoints_kept", "verify_every"):
        assert getattr(flagged, key) == getattr(bare, key), key
    assert bare.standby == StandbyPolicy().mode.value
