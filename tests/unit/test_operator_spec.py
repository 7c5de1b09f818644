"""The operator's own validation of a StrategyVersion spec (defence behind the CRD schema)."""

from __future__ import annotations

from typing import Any

import pytest

from baton.operator.core.spec import DeletionPolicy, HandoffMode, SpecError, parse_spec

GOOD: dict[str, Any] = {
    "strategy": "momentum",
    "version": "2",
    "image": "baton:dev",
    "entrypoint": "baton.strategy.examples.momentum_v2:MomentumV2",
}


def test_defaults_match_the_crd() -> None:
    spec = parse_spec(GOOD)
    assert spec.handoff.mode is HandoffMode.STATE_TRANSFER
    assert (spec.handoff.shadow_ticks, spec.handoff.bake_s, spec.handoff.step_timeout_s) == (
        1,
        10,
        30,
    )
    assert spec.handoff.auto_rollback
    assert spec.handoff.max_divergence is None
    assert (spec.startup.timeout_s, spec.startup.max_restarts) == (120, 2)
    assert spec.deletion_policy is DeletionPolicy.PROTECT
    assert spec.config_json == "{}"


def test_full_spec() -> None:
    spec = parse_spec(
        {
            **GOOD,
            "config": {"b": 1, "a": [1, 2]},
            "env": [{"name": "OTEL_X", "value": "1"}],
            "resources": {"requests": {"cpu": "100m", "memory": 64}},
            "handoff": {
                "mode": "Swap",
                "maxDivergence": 0,
                "bakeSeconds": 0,
                "autoRollback": False,
            },
            "deletionPolicy": "Allow",
        }
    )
    assert spec.config_json == '{"a":[1,2],"b":1}'  # canonical: same config, same bytes
    assert spec.env == (("OTEL_X", "1"),)
    assert spec.resources == {"requests": {"cpu": "100m", "memory": "64"}, "limits": {}}
    assert spec.handoff.mode is HandoffMode.SWAP
    assert spec.handoff.max_divergence == 0
    assert spec.handoff.bake_s == 0
    assert not spec.handoff.auto_rollback
    assert spec.deletion_policy is DeletionPolicy.ALLOW


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"image": None}, "spec.image: required", id="missing-image"),
        pytest.param({"image": 5}, "spec.image: must be a string", id="image-not-string"),
        pytest.param(
            {"strategy": "Mom_1"},
            "spec.strategy: 'Mom_1' must be a DNS label",
            id="strategy-not-label",
        ),
        pytest.param(
            {"entrypoint": "baton.strategy"}, "must be MODULE:CLASS", id="entrypoint-no-class"
        ),
        pytest.param({"entrypoint": "a b:C"}, "must be MODULE:CLASS", id="entrypoint-space"),
        pytest.param(
            {"handoff": {"mode": "Teleport"}},
            "spec.handoff.mode: unknown value 'Teleport'",
            id="unknown-mode",
        ),
        pytest.param(
            {"handoff": {"bakeSeconds": -1}},
            "spec.handoff.bakeSeconds: must be >= 0",
            id="negative-bake",
        ),
        pytest.param(
            {"handoff": {"stepTimeoutSeconds": 0}},
            "stepTimeoutSeconds: must be > 0",
            id="zero-step-timeout",
        ),
        pytest.param(
            {"handoff": {"shadowTicks": 0}}, "shadowTicks: must be >= 1", id="zero-shadow-ticks"
        ),
        pytest.param(
            {"handoff": {"shadowTicks": True}}, "shadowTicks: must be an integer", id="bool-as-int"
        ),
        pytest.param(
            {"handoff": {"autoRollback": "yes"}},
            "autoRollback: must be true or false",
            id="rollback-not-bool",
        ),
        pytest.param(
            {"startup": {"timeoutSeconds": -5}},
            "spec.startup.timeoutSeconds: must be > 0",
            id="negative-startup",
        ),
        pytest.param(
            {"startup": {"maxRestarts": -1}}, "maxRestarts: must be >= 0", id="negative-restarts"
        ),
        pytest.param({"config": [1]}, "spec.config: must be an object", id="config-not-object"),
        pytest.param({"env": [{"name": "1X"}]}, "not a valid variable name", id="bad-env-name"),
        pytest.param(
            {"deletionPolicy": "Never"},
            "spec.deletionPolicy: unknown value",
            id="bad-deletion-policy",
        ),
        pytest.param(
            {"handoff": "fast"}, "spec.handoff: must be an object", id="handoff-not-object"
        ),
    ],
)
def test_bad_specs_name_the_field(change: dict[str, Any], message: str) -> None:
    raw = {**GOOD, **change}
    with pytest.raises(SpecError) as err:
        parse_spec({k: v for k, v in raw.items() if v is not None})
    assert message in str(err.value)
