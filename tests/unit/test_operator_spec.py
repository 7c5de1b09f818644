"""The operator's own validation of a StrategyVersion spec (defence behind the CRD schema)."""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from baton.gateway import config as gateway_config
from baton.model import SLOT_ID_PATTERN, StandbyMode, StandbyPolicy
from baton.operator.core.pods import LABEL_VERSION, PodSettings, pod_manifest
from baton.operator.core.spec import (
    MAX_CHECKPOINT_EVERY_TICKS,
    MAX_CHECKPOINTS_KEPT,
    MAX_SLOTS,
    MAX_STAKE,
    MAX_VERIFY_EVERY_TICKS,
    DeletionPolicy,
    HandoffMode,
    SpecError,
    StandbyKind,
    StandbySpec,
    parse_spec,
)
from baton.strategy import cli as strategy_cli

GOOD: dict[str, Any] = {
    "strategy": "momentum",
    "version": "2",
    "image": "baton:dev",
    "entrypoint": "baton.strategy.examples.momentum_v2:MomentumV2",
}


CRD = Path(__file__).resolve().parents[2] / "charts/baton/crds/strategyversions.baton.dev.yaml"


def crd_spec_schema() -> dict[str, Any]:
    """The ``spec`` schema of the CRD's storage version, as the chart installs it."""
    crd = yaml.safe_load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def attribute(name: str) -> str:
    """The spec dataclass field of a CRD property: ``bakeSeconds`` -> ``bake_s``."""
    snake = re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()
    return re.sub(r"_seconds$", "_s", snake)


def code_value(value: object) -> object:
    return value.value if isinstance(value, enum.Enum) else value


def test_defaults_match_the_crd() -> None:
    """Every default the CRD schema applies at `kubectl apply` is the one the operator applies
    to a spec that omits the field (a CR written before the field existed), and a field the
    CRD leaves without a default (maxDivergence: no limit) is None in the code."""
    spec = parse_spec(GOOD)
    schema = crd_spec_schema()
    checked = []
    for name, prop in schema["properties"].items():
        if prop.get("type") == "object" and name in ("handoff", "standby", "startup"):
            assert prop.get("default") == {}, f"spec.{name}: defaulted as a whole"
            section = getattr(spec, name)
            for sub, sub_prop in prop["properties"].items():
                got = code_value(getattr(section, attribute(sub)))
                want = sub_prop.get("default")
                assert got == want, f"spec.{name}.{sub}: CRD default {want!r}, code {got!r}"
                checked.append(f"{name}.{sub}")
        elif "default" in prop:
            got = code_value(getattr(spec, attribute(name)))
            want = prop["default"]
            assert got == want, f"spec.{name}: CRD default {want!r}, code {got!r}"
            checked.append(name)
    # The ones this test was written for are among them (the CRD was read, not skipped).
    assert {
        "handoff.mode", "handoff.shadowTicks", "handoff.bakeSeconds", "handoff.autoRollback",
        "handoff.maxDivergence", "handoff.stepTimeoutSeconds", "startup.timeoutSeconds",
        "startup.maxRestarts", "deletionPolicy", "standby.mode", "standby.checkpointEveryTicks",
        "standby.checkpointsKept", "standby.verifyEveryTicks",
    } <= set(checked)  # fmt: skip
    assert spec.handoff.max_divergence is None
    # A CR without config (the CRD defaults none) hands the strategy an empty object.
    assert "default" not in schema["properties"]["config"]
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
        pytest.param(
            {"version": "v 1"}, "spec.version: 'v 1' must be a version label", id="version-space"
        ),
        pytest.param(
            {"version": "v2+build"}, "spec.version: 'v2+build' must be a version", id="version-plus"
        ),
        pytest.param(
            {"version": "v2-"}, "spec.version: 'v2-' must be a version", id="version-ends-in-dash"
        ),
        pytest.param(
            {"resources": {"limits": {"cpu": "lots"}}},
            "spec.resources.limits[cpu]: 'lots' must be a non-negative quantity",
            id="limit-not-a-quantity",
        ),
        pytest.param(
            {"resources": {"requests": {"memory": "512 Mi"}}},
            "spec.resources.requests[memory]: '512 Mi' must be a non-negative quantity",
            id="quantity-with-a-space",
        ),
        pytest.param(
            {"resources": {"requests": {"cpu": "-1"}}},
            "spec.resources.requests[cpu]: '-1' must be a non-negative quantity",
            id="negative-quantity",
        ),
        pytest.param(
            {"resources": {"requests": {"cpu": -2}}},
            "spec.resources.requests[cpu]: -2 must be a non-negative quantity",
            id="negative-integer",
        ),
        pytest.param(
            {"resources": {"limits": {"cpu": 1.5}}},
            "spec.resources.limits[cpu]: 1.5 must be a non-negative quantity",
            id="float-is-not-int-or-string",
        ),
        pytest.param(
            {"resources": {"limits": {"memory": True}}},
            "spec.resources.limits[memory]: True must be a non-negative quantity",
            id="bool-quantity",
        ),
        pytest.param(
            {"resources": {"limits": {"memory": "1Mb"}}},
            "spec.resources.limits[memory]: '1Mb' must be a non-negative quantity",
            id="unknown-suffix",
        ),
    ],
)
def test_bad_specs_name_the_field(change: dict[str, Any], message: str) -> None:
    raw = {**GOOD, **change}
    with pytest.raises(SpecError) as err:
        parse_spec({k: v for k, v in raw.items() if v is not None})
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("version", "quantity"),
    [
        pytest.param("v2", "250m", id="milli"),
        pytest.param("1.4.0-rc.1", "512Mi", id="binary-suffix"),
        pytest.param("V2_final", "1.5", id="decimal"),
        pytest.param("7", "1e9", id="exponent"),
        pytest.param("2026.12.03", ".5", id="leading-dot"),
        pytest.param("a", "+2Gi", id="explicit-plus"),
        pytest.param("x" * 63, "0", id="longest-version-zero"),
    ],
)
def test_what_a_pod_takes_is_accepted(version: str, quantity: str) -> None:
    """The same shapes the CRD accepts (tests/e2e/test_crd.py): no stricter than Kubernetes."""
    spec = parse_spec({**GOOD, "version": version, "resources": {"limits": {"cpu": quantity}}})
    assert spec.version == version
    assert spec.resources == {"requests": {}, "limits": {"cpu": quantity}}


# -- the book: spec.slots and spec.stake --------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "slots", "stake"),
    [
        pytest.param({}, (), None, id="neither-all-slots-gateway-stake"),
        pytest.param({"slots": None, "stake": None}, (), None, id="explicit-nulls"),
        pytest.param({"slots": []}, (), None, id="empty-list-all-slots"),
        pytest.param(
            {"slots": ["ETH/15m", "BTC/5m"]}, ("ETH/15m", "BTC/5m"), None, id="order-kept"
        ),
        pytest.param({"slots": ["MATIC/15m"], "stake": 2}, ("MATIC/15m",), 2.0, id="int-stake"),
        pytest.param({"stake": 0.25}, (), 0.25, id="fractional-stake"),
        pytest.param({"stake": 1_000_000}, (), 1_000_000.0, id="largest-stake"),
    ],
)
def test_slots_and_stake(
    change: dict[str, Any], slots: tuple[str, ...], stake: float | None
) -> None:
    spec = parse_spec({**GOOD, **change})
    assert spec.slots == slots
    assert spec.stake == stake
    assert spec.stake is None or isinstance(spec.stake, float)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            {"slots": "BTC/5m"}, "spec.slots: must be a list of slot ids, got str", id="not-a-list"
        ),
        pytest.param(
            {"slots": ["BTC/5m", "btc/15m"]},
            "spec.slots[1]: 'btc/15m' must be MARKET/TIMEFRAME, e.g. BTC/5m",
            id="lower-case-market",
        ),
        pytest.param(
            {"slots": ["BTCUSDT@kline_5m"]},
            "spec.slots[0]: 'BTCUSDT@kline_5m' must be MARKET/TIMEFRAME",
            id="a-stream-name",
        ),
        pytest.param({"slots": [5]}, "spec.slots[0]: 5 must be MARKET/TIMEFRAME", id="a-number"),
        pytest.param(
            {"slots": ["BTC/5m", "ETH/5m", "BTC/5m"]},
            "spec.slots: 'BTC/5m' is listed twice",
            id="repeated",
        ),
        pytest.param(
            {"slots": [f"M{i}/5m" for i in range(20_001)]},
            "spec.slots: more than 20000 slots",
            id="more-than-a-gateway-has",
        ),
        pytest.param({"stake": 0}, "spec.stake: must be > 0, got 0", id="zero-stake"),
        pytest.param({"stake": -5.0}, "spec.stake: must be > 0, got -5.0", id="negative-stake"),
        pytest.param({"stake": "5"}, "spec.stake: must be a number, got '5'", id="string-stake"),
        pytest.param({"stake": True}, "spec.stake: must be a number, got True", id="bool-stake"),
        pytest.param(
            {"stake": float("inf")}, "spec.stake: must be a number, got inf", id="infinite-stake"
        ),
        pytest.param(
            {"stake": 1_000_001}, "spec.stake: must be <= 1e+06, got 1000001", id="huge-stake"
        ),
    ],
)
def test_bad_slots_or_stake_name_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec({**GOOD, **change})
    assert message in str(err.value)


def test_the_crd_states_the_same_limits() -> None:
    """The schema's bounds of spec.slots and spec.stake are the code's (and its pattern is the
    model's slot-id shape), so the CRD and parse_spec refuse the same specs."""
    props = crd_spec_schema()["properties"]
    assert MAX_SLOTS == gateway_config.MAX_SLOTS  # no more than a gateway can have
    assert props["slots"]["maxItems"] == MAX_SLOTS
    assert props["slots"]["x-kubernetes-list-type"] == "set"  # unique items
    assert props["slots"]["items"]["pattern"] == SLOT_ID_PATTERN
    assert props["stake"]["maximum"] == MAX_STAKE
    assert (props["stake"]["minimum"], props["stake"]["exclusiveMinimum"]) == (0, True)
    assert "default" not in props["slots"]
    assert "default" not in props["stake"]


@pytest.mark.parametrize(
    ("change", "flags"),
    [
        pytest.param({}, [], id="neither"),
        pytest.param(
            {"slots": ["BTC/5m", "ETH/15m"], "stake": 2.5},
            ["--slots", "BTC/5m,ETH/15m", "--stake", "2.5"],
            id="both",
        ),
        pytest.param({"stake": 0.1}, ["--stake", "0.1"], id="stake-only"),
    ],
)
def test_the_pod_passes_slots_and_stake_to_the_host(
    change: dict[str, Any], flags: list[str]
) -> None:
    """The pod's args carry them as the host's flags, and the host's own parser reads back
    exactly the spec's values (what it then sends in its Hello)."""
    spec = parse_spec({**GOOD, **change})
    pod = pod_manifest(
        pod_name="p", namespace="ns", sv_name="sv", sv_uid="u", spec=spec,
        settings=PodSettings(gateway_address="gw:50051"),
    )  # fmt: skip
    (container,) = pod["spec"]["containers"]
    args = container["args"]
    assert args[0] == "strategy"
    assert args[len(args) - len(flags) :] == flags
    parsed = strategy_cli._parser().parse_args(args[1:])
    assert strategy_cli.parse_slots(parsed.slots) == spec.slots
    assert parsed.stake == spec.stake


# -- spec.standby -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("standby", "policy"),
    [
        pytest.param({}, StandbyPolicy(), id="unset-the-models-defaults"),
        pytest.param({"mode": "Hot"}, StandbyPolicy(mode=StandbyMode.HOT), id="hot"),
        pytest.param({"mode": "None"}, StandbyPolicy(mode=StandbyMode.NONE), id="none"),
        pytest.param(
            {
                "mode": "Checkpoint",
                "checkpointEveryTicks": 60,
                "checkpointsKept": 1,
                "verifyEveryTicks": 0,
            },
            StandbyPolicy(checkpoint_every_ticks=60, checkpoints_kept=1, verify_every_ticks=0),
            id="every-field",
        ),
        pytest.param(
            {
                "checkpointEveryTicks": MAX_CHECKPOINT_EVERY_TICKS,
                "checkpointsKept": MAX_CHECKPOINTS_KEPT,
                "verifyEveryTicks": MAX_VERIFY_EVERY_TICKS,
            },
            StandbyPolicy(
                checkpoint_every_ticks=MAX_CHECKPOINT_EVERY_TICKS,
                checkpoints_kept=MAX_CHECKPOINTS_KEPT,
                verify_every_ticks=MAX_VERIFY_EVERY_TICKS,
            ),
            id="the-largest",
        ),
    ],
)
def test_standby(standby: dict[str, Any], policy: StandbyPolicy) -> None:
    spec = parse_spec({**GOOD, "standby": standby})
    assert spec.standby.policy() == policy
    assert spec.standby.hot is (policy.mode is StandbyMode.HOT)


def test_the_crds_standby_modes_are_the_models() -> None:
    """Hot/Checkpoint/None in the CRD, hot/checkpoint/none in the model and on the host's
    command line: one to one, none left out."""
    modes = crd_spec_schema()["properties"]["standby"]["properties"]["mode"]["enum"]
    assert modes == [k.value for k in StandbyKind]
    assert {StandbyKind(m).mode for m in modes} == set(StandbyMode)
    assert all(StandbyKind.of(StandbyKind(m).mode) is StandbyKind(m) for m in modes)
    assert StandbySpec().mode.mode is StandbyPolicy().mode


@pytest.mark.parametrize(
    ("standby", "message"),
    [
        pytest.param("hot", "spec.standby: must be an object", id="not-an-object"),
        pytest.param(
            {"mode": "hot"},
            "spec.standby.mode: unknown value 'hot' (supported: 'Hot', 'Checkpoint', 'None')",
            id="lower-case-mode",
        ),
        pytest.param({"mode": "Warm"}, "spec.standby.mode: unknown value 'Warm'", id="warm"),
        pytest.param({"mode": None}, "spec.standby.mode: unknown value None", id="null-mode"),
        pytest.param(
            {"checkpointEveryTicks": 0},
            "spec.standby.checkpointEveryTicks: must be >= 1, got 0",
            id="zero-checkpoint-interval",
        ),
        pytest.param(
            {"checkpointEveryTicks": 1.5},
            "spec.standby.checkpointEveryTicks: must be an integer, got 1.5",
            id="fractional-interval",
        ),
        pytest.param(
            {"checkpointEveryTicks": MAX_CHECKPOINT_EVERY_TICKS + 1},
            f"spec.standby.checkpointEveryTicks: must be <= {MAX_CHECKPOINT_EVERY_TICKS}",
            id="huge-interval",
        ),
        pytest.param(
            {"checkpointsKept": 0},
            "spec.standby.checkpointsKept: must be >= 1, got 0",
            id="no-checkpoint-kept",
        ),
        pytest.param(
            {"checkpointsKept": "3"},
            "spec.standby.checkpointsKept: must be an integer, got '3'",
            id="kept-as-string",
        ),
        pytest.param(
            {"checkpointsKept": MAX_CHECKPOINTS_KEPT + 1},
            f"spec.standby.checkpointsKept: must be <= {MAX_CHECKPOINTS_KEPT}",
            id="too-many-kept",
        ),
        pytest.param(
            {"verifyEveryTicks": -1},
            "spec.standby.verifyEveryTicks: must be >= 0, got -1",
            id="negative-verify",
        ),
        pytest.param(
            {"verifyEveryTicks": True},
            "spec.standby.verifyEveryTicks: must be an integer, got True",
            id="bool-verify",
        ),
    ],
)
def test_bad_standby_names_the_field(standby: Any, message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec({**GOOD, "standby": standby})
    assert message in str(err.value)


def test_the_crd_states_the_same_standby_limits() -> None:
    props = crd_spec_schema()["properties"]["standby"]["properties"]
    assert (props["checkpointEveryTicks"]["minimum"], props["checkpointEveryTicks"]["maximum"]) == (
        1,
        MAX_CHECKPOINT_EVERY_TICKS,
    )
    assert (props["checkpointsKept"]["minimum"], props["checkpointsKept"]["maximum"]) == (
        1,
        MAX_CHECKPOINTS_KEPT,
    )
    assert (props["verifyEveryTicks"]["minimum"], props["verifyEveryTicks"]["maximum"]) == (
        0,
        MAX_VERIFY_EVERY_TICKS,
    )
    # kubectl explain has something to say about each.
    for name, prop in {"standby": crd_spec_schema()["properties"]["standby"], **props}.items():
        assert len(prop.get("description", "")) > 20, name


@pytest.mark.parametrize(
    "standby",
    [
        pytest.param({}, id="defaults"),
        pytest.param({"mode": "Hot"}, id="hot"),
        pytest.param({"mode": "None", "verifyEveryTicks": 0}, id="none"),
        pytest.param(
            {
                "mode": "Checkpoint",
                "checkpointEveryTicks": 5,
                "checkpointsKept": 7,
                "verifyEveryTicks": 4,
            },
            id="every-field",
        ),
    ],
)
def test_the_pod_passes_the_standby_policy_to_the_host(standby: dict[str, Any]) -> None:
    """Every field, always (the spec's or its default): the host's own parser reads back exactly
    the spec's policy, which it sends in its Hello."""
    spec = parse_spec({**GOOD, "standby": standby, "slots": ["BTC/5m"], "stake": 2})
    pod = pod_manifest(
        pod_name="p", namespace="ns", sv_name="sv", sv_uid="u", spec=spec,
        settings=PodSettings(gateway_address="gw:50051"),
    )  # fmt: skip
    (container,) = pod["spec"]["containers"]
    args = container["args"]
    for flag in ("--standby", "--checkpoint-every", "--checkpoints-kept", "--verify-every"):
        assert args.count(flag) == 1, flag
    parsed = strategy_cli._parser().parse_args(args[1:])
    got = StandbyPolicy(
        mode=StandbyMode(parsed.standby),
        checkpoint_every_ticks=parsed.checkpoint_every,
        checkpoints_kept=parsed.checkpoints_kept,
        verify_every_ticks=parsed.verify_every,
    )
    assert got == spec.standby.policy()
    # Only a hot standby's pods (two of them) ask to be spread over nodes; preferred, so a
    # single node still runs both.
    affinity = pod["spec"].get("affinity")
    if not spec.standby.hot:
        assert affinity is None
    else:
        (term,) = affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        assert term["podAffinityTerm"]["labelSelector"] == {"matchLabels": {LABEL_VERSION: "sv"}}
        assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
        assert "requiredDuringSchedulingIgnoredDuringExecution" not in affinity["podAntiAffinity"]


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(
    "path", sorted(EXAMPLES.glob("strategyversion-*.yaml")), ids=lambda p: p.name
)
def test_every_example_is_a_valid_spec(path: Path) -> None:
    """The examples users apply parse as the operator parses them; only the hot one is hot,
    and one spells out the standby defaults."""
    spec = parse_spec(yaml.safe_load(path.read_text())["spec"])
    assert spec.standby.hot is (path.name == "strategyversion-hot.yaml")
    if path.name == "strategyversion-v2.yaml":
        assert spec.standby == StandbySpec()
