"""The StrategyVersion CRD's schema, enforced by a real kube-apiserver at `kubectl apply` time."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from baton.model import SLOT_ID_PATTERN
from baton.operator.core.spec import parse_spec
from tests.e2e.testbed import CRD_DIR, Cluster

CRD_FILE = CRD_DIR / "strategyversions.baton.dev.yaml"
CRD_NAME = "strategyversions.baton.dev"
API_VERSION = "baton.dev/v1alpha1"
IMMUTABLE = "is immutable; apply a new StrategyVersion instead"
MODULE_CLASS = "must be MODULE:CLASS, e.g. baton.strategy.examples.momentum_v1:MomentumV1"
QUANTITY_ERROR = "must be a non-negative quantity, e.g. 250m, 1.5, 512Mi or 2Gi"
SLOT_PATTERN_ERROR = f"in body should match '{SLOT_ID_PATTERN}'"  # after the field's path
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

Spec = Mapping[str, Any]

VALID: Spec = {
    "strategy": "momentum",
    "version": "v2",
    "image": "baton:dev",
    "entrypoint": "baton.strategy.examples.momentum_v2:MomentumV2",
    "config": {"lookback": 12},
    "handoff": {"mode": "StateTransfer", "bakeSeconds": 2.5, "shadowTicks": 3},
}


def entrypoint_error(value: str) -> str:
    return f"spec.entrypoint: Invalid value: {json.dumps(value)}: {MODULE_CLASS}"


def with_(spec: Spec, **changes: Any) -> dict[str, Any]:
    """``spec`` with top-level fields replaced (a dict value is merged one level deep)."""
    out = dict(spec)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def without(spec: Spec, *keys: str) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in keys}


def _yaml(value: Mapping[str, Any], indent: int) -> str:
    pad = " " * indent
    lines = []
    for key, item in value.items():
        if isinstance(item, Mapping):
            lines.append(f"{pad}{key}:\n{_yaml(item, indent + 2)}")
        else:
            lines.append(f"{pad}{key}: {json.dumps(item)}\n")  # a JSON scalar is a YAML scalar
    return "".join(lines)


def manifest(name: str, namespace: str, spec: Spec) -> str:
    return (
        f"apiVersion: {API_VERSION}\n"
        "kind: StrategyVersion\n"
        "metadata:\n"
        f"  name: {json.dumps(name)}\n"
        f"  namespace: {json.dumps(namespace)}\n"  # quoted: `y` or `no` would be a YAML bool
        f"spec:\n{_yaml(spec, 2)}"
    )


@pytest.fixture(scope="module")
def crd(cluster: Cluster) -> dict[str, Any]:
    """The StrategyVersion CRD as the apiserver serves it (the `cluster` fixture installed it)."""
    assert CRD_FILE.is_file(), f"{CRD_FILE} is missing: the chart must ship the CRD"
    got: dict[str, Any] = json.loads(cluster.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    return got


def test_a_valid_strategy_version_is_accepted_listed_and_defaulted(
    cluster: Cluster, namespace: str, crd: dict[str, Any]
) -> None:
    applied = cluster.kubectl("apply", "-f", "-", input=manifest("momentum-v2", namespace, VALID))
    assert "strategyversion.baton.dev/momentum-v2 created" in applied.stdout

    # The printer columns, by the short name, as the CRD declares them.
    (version,) = crd["spec"]["versions"]
    columns = [c["name"].upper() for c in version["additionalPrinterColumns"]]
    default_columns = [
        c["name"].upper() for c in version["additionalPrinterColumns"] if not c.get("priority")
    ]
    assert default_columns == [
        "STRATEGY",
        "VERSION",
        "PHASE",
        "ACTIVE",
        "PAUSE-MS",
        "STANDBY",
        "AGE",
    ]
    header, row = cluster.kubectl("get", "sv", "-n", namespace).stdout.splitlines()
    assert header.split() == ["NAME", *default_columns]
    assert row.split()[:3] == ["momentum-v2", "momentum", "v2"]

    # Status columns show what the operator writes through the status subresource.
    status = {
        "phase": "Active",
        "active": True,
        "message": "serving",
        "handoff": {"pauseMs": 3.4},
        "standby": {"state": "Ready", "pod": "p-standby", "failovers": 2},
    }
    cluster.kubectl(
        "patch",
        "sv",
        "momentum-v2",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    header, row = cluster.kubectl("get", "sv", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert header.split() == ["NAME", *columns]
    assert row.split()[:9] == [
        "momentum-v2",
        "momentum",
        "v2",
        "Active",
        "true",
        "3.4",
        "Ready",
        "2",
        "serving",
    ]

    # The schema's defaults are filled in; what was given is kept.
    got = json.loads(cluster.kubectl("get", "sv", "momentum-v2", "-n", namespace, "-o=json").stdout)
    assert got["spec"]["handoff"] == {
        "mode": "StateTransfer",
        "shadowTicks": 3,
        "bakeSeconds": 2.5,
        "autoRollback": True,
        "maxBakeFaults": 0,
        "stepTimeoutSeconds": 30,
    }
    assert got["spec"]["startup"] == {"timeoutSeconds": 120, "maxRestarts": 2}
    assert got["spec"]["standby"] == {
        "mode": "Checkpoint",
        "checkpointEveryTicks": 12,
        "checkpointsKept": 3,
        "verifyEveryTicks": 1,
    }
    assert got["spec"]["deletionPolicy"] == "Protect"
    assert got["spec"]["config"] == {"lookback": 12}

    # Re-applying the same object is not a change (the immutability rules allow it).
    again = cluster.kubectl("apply", "-f", "-", input=manifest("momentum-v2", namespace, VALID))
    assert "unchanged" in again.stdout


@pytest.mark.parametrize(
    ("existing", "spec", "messages"),
    [
        pytest.param(
            None,
            without(VALID, "image"),
            ["spec.image: Required value"],
            id="missing-image",
        ),
        pytest.param(
            None,
            with_(VALID, image=""),
            ["spec.image in body should be at least 1 chars long"],
            id="empty-image",
        ),
        pytest.param(
            None,
            with_(VALID, entrypoint="baton.strategy.examples.momentum_v2.MomentumV2"),
            [entrypoint_error("baton.strategy.examples.momentum_v2.MomentumV2")],
            id="entrypoint-without-class",
        ),
        pytest.param(
            None,
            with_(VALID, entrypoint="baton/strategy/examples/momentum_v2.py:MomentumV2"),
            [entrypoint_error("baton/strategy/examples/momentum_v2.py:MomentumV2")],
            id="entrypoint-is-a-file-path",
        ),
        pytest.param(
            None,
            with_(VALID, entrypoint="baton.strategy:momentum:MomentumV2"),
            [entrypoint_error("baton.strategy:momentum:MomentumV2")],
            id="entrypoint-with-two-colons",
        ),
        pytest.param(
            None,
            with_(VALID, handoff={"bakeSeconds": -1}),
            [
                "spec.handoff.bakeSeconds: Invalid value: -1: "
                "spec.handoff.bakeSeconds in body should be greater than or equal to 0"
            ],
            id="negative-bake-seconds",
        ),
        pytest.param(
            None,
            with_(VALID, handoff={"stepTimeoutSeconds": -0.5}),
            ["spec.handoff.stepTimeoutSeconds in body should be greater than 0"],
            id="negative-step-timeout",
        ),
        pytest.param(
            None,
            with_(VALID, handoff={"stepTimeoutSeconds": 0}),
            ["spec.handoff.stepTimeoutSeconds in body should be greater than 0"],
            id="zero-step-timeout",
        ),
        pytest.param(
            None,
            with_(VALID, startup={"timeoutSeconds": -5}),
            ["spec.startup.timeoutSeconds in body should be greater than 0"],
            id="negative-startup-timeout",
        ),
        pytest.param(
            None,
            with_(VALID, handoff={"bakeSeconds": -1}, startup={"timeoutSeconds": -5}),
            [
                "spec.handoff.bakeSeconds in body should be greater than or equal to 0",
                "spec.startup.timeoutSeconds in body should be greater than 0",
            ],
            id="every-negative-duration-is-reported",
        ),
        pytest.param(
            None,
            with_(VALID, handoff={"mode": "Canary"}),
            [
                'spec.handoff.mode: Unsupported value: "Canary": '
                'supported values: "StateTransfer", "Swap"'
            ],
            id="unknown-handoff-mode",
        ),
        pytest.param(
            None,
            with_(VALID, handoff={"mode": "statetransfer"}),
            ['spec.handoff.mode: Unsupported value: "statetransfer"'],
            id="handoff-mode-is-case-sensitive",
        ),
        pytest.param(
            None,
            with_(VALID, version="v 1"),
            ['spec.version: Invalid value: "v 1": must be a version label'],
            id="version-with-a-space",
        ),
        pytest.param(
            None,
            with_(VALID, version="-v2"),
            ['spec.version: Invalid value: "-v2": must be a version label'],
            id="version-starting-with-a-dash",
        ),
        pytest.param(
            None,
            with_(VALID, version="v2+build.5"),
            ['spec.version: Invalid value: "v2+build.5": must be a version label'],
            id="version-with-a-plus",
        ),
        pytest.param(
            None,
            with_(VALID, resources={"limits": {"cpu": "lots"}}),
            [f'spec.resources.limits[cpu]: Invalid value: "lots": {QUANTITY_ERROR}'],
            id="limit-not-a-quantity",
        ),
        pytest.param(
            None,
            with_(VALID, resources={"requests": {"memory": "512 Mi"}}),
            [f'spec.resources.requests[memory]: Invalid value: "512 Mi": {QUANTITY_ERROR}'],
            id="request-quantity-with-a-space",
        ),
        pytest.param(
            None,
            with_(VALID, resources={"requests": {"cpu": "-250m"}}),
            [f'spec.resources.requests[cpu]: Invalid value: "-250m": {QUANTITY_ERROR}'],
            id="negative-request",
        ),
        pytest.param(
            None,
            with_(VALID, resources={"limits": {"cpu": -1}}),
            [f"spec.resources.limits[cpu]: Invalid value: -1: {QUANTITY_ERROR}"],
            id="negative-integer-limit",
        ),
        pytest.param(
            None,
            with_(VALID, slots=["BTC/5m", "btc/15m"]),
            [f'spec.slots[1]: Invalid value: "btc/15m": spec.slots[1] {SLOT_PATTERN_ERROR}'],
            id="slot-with-a-lower-case-market",
        ),
        pytest.param(
            None,
            with_(VALID, slots=["BTCUSDT@kline_5m"]),
            [
                'spec.slots[0]: Invalid value: "BTCUSDT@kline_5m": spec.slots[0] '
                + SLOT_PATTERN_ERROR
            ],
            id="slot-is-a-stream-name",
        ),
        pytest.param(
            None,
            with_(VALID, slots=["BTC/5m", "ETH/5m", "BTC/5m"]),
            ['spec.slots[2]: Duplicate value: "BTC/5m"'],
            id="slot-listed-twice",
        ),
        pytest.param(
            None,
            with_(VALID, slots="BTC/5m"),
            ['spec.slots: Invalid value: "string": spec.slots in body must be of type array'],
            id="slots-not-a-list",
        ),
        pytest.param(
            None,
            with_(VALID, stake=0),
            ["spec.stake: Invalid value: 0: spec.stake in body should be greater than 0"],
            id="zero-stake",
        ),
        pytest.param(
            None,
            with_(VALID, stake=-2.5),
            ["spec.stake in body should be greater than 0"],
            id="negative-stake",
        ),
        pytest.param(
            None,
            with_(VALID, stake=1_000_001),
            ["spec.stake in body should be less than or equal to 1000000"],
            id="stake-over-the-limit",
        ),
        pytest.param(
            None,
            with_(VALID, stake="5"),
            ['spec.stake: Invalid value: "string": spec.stake in body must be of type number'],
            id="stake-as-a-string",
        ),
        pytest.param(
            None,
            with_(VALID, standby={"mode": "Warm"}),
            [
                'spec.standby.mode: Unsupported value: "Warm": '
                'supported values: "Hot", "Checkpoint", "None"'
            ],
            id="unknown-standby-mode",
        ),
        pytest.param(
            None,
            with_(VALID, standby={"mode": "hot"}),
            ['spec.standby.mode: Unsupported value: "hot"'],
            id="standby-mode-is-case-sensitive",
        ),
        pytest.param(
            None,
            with_(VALID, standby={"checkpointEveryTicks": 0, "verifyEveryTicks": -1}),
            [
                "spec.standby.checkpointEveryTicks in body should be greater than or equal to 1",
                "spec.standby.verifyEveryTicks in body should be greater than or equal to 0",
            ],
            id="standby-intervals-out-of-range",
        ),
        pytest.param(
            None,
            with_(VALID, standby={"checkpointsKept": 101}),
            ["spec.standby.checkpointsKept in body should be less than or equal to 100"],
            id="too-many-checkpoints-kept",
        ),
        pytest.param(
            VALID,
            with_(VALID, standby={"mode": "Hot"}),
            [f"spec.standby: Invalid value: {IMMUTABLE}"],
            id="immutable-standby",
        ),
        pytest.param(
            VALID,
            with_(VALID, image="baton:v2-hotfix"),
            [f'spec.image: Invalid value: "baton:v2-hotfix": {IMMUTABLE}'],
            id="immutable-image",
        ),
        pytest.param(
            VALID,
            with_(VALID, entrypoint="baton.strategy.examples.momentum_v1:MomentumV1"),
            [
                'spec.entrypoint: Invalid value: "baton.strategy.examples.momentum_v1:MomentumV1": '
                f"{IMMUTABLE}"
            ],
            id="immutable-entrypoint",
        ),
        pytest.param(
            VALID,
            with_(VALID, version="v3"),
            [f'spec.version: Invalid value: "v3": {IMMUTABLE}'],
            id="immutable-version",
        ),
        pytest.param(
            VALID,
            with_(VALID, strategy="momentum-fast"),
            [f'spec.strategy: Invalid value: "momentum-fast": {IMMUTABLE}'],
            id="immutable-strategy",
        ),
    ],
)
def test_an_invalid_strategy_version_is_rejected(
    cluster: Cluster,
    namespace: str,
    crd: dict[str, Any],
    existing: Spec | None,
    spec: Spec,
    messages: list[str],
) -> None:
    name = "momentum-v2"
    if existing is not None:
        cluster.kubectl("apply", "-f", "-", input=manifest(name, namespace, existing))

    result = cluster.kubectl("apply", "-f", "-", input=manifest(name, namespace, spec), check=False)

    assert result.returncode != 0, result.stdout
    assert f'The StrategyVersion "{name}" is invalid' in result.stderr, result.stderr
    for message in messages:
        assert message in result.stderr
    stored = cluster.kubectl("get", "sv", name, "-n", namespace, "-o", "json", check=False)
    if existing is None:
        assert "NotFound" in stored.stderr, stored.stdout
    else:
        kept = json.loads(stored.stdout)["spec"]
        assert {k: kept[k] for k in ("strategy", "version", "image", "entrypoint")} == {
            k: existing[k] for k in ("strategy", "version", "image", "entrypoint")
        }


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"version": "1.4.0-rc.1"}, id="semver-version"),
        pytest.param({"version": "2026_12_03.build7"}, id="dotted-underscored-version"),
        pytest.param({"version": "V2"}, id="upper-case-version"),
        pytest.param(
            {"resources": {"requests": {"cpu": "250m", "memory": "512Mi"}}},
            id="suffixed-quantities",
        ),
        pytest.param(
            {"resources": {"requests": {"cpu": 1, "memory": "1e9"}, "limits": {"cpu": "1.5"}}},
            id="integer-exponent-and-decimal-quantities",
        ),
        pytest.param(
            {"resources": {"limits": {"cpu": "0", "example.com/gpu": 2}}},
            id="zero-and-an-extended-resource",
        ),
    ],
)
def test_valid_versions_and_quantities_are_accepted(
    cluster: Cluster, namespace: str, crd: dict[str, Any], changes: dict[str, Any]
) -> None:
    """The rules refuse what a pod would refuse, not more: every shape Kubernetes takes passes."""
    spec = with_(VALID, **changes)
    applied = cluster.kubectl("apply", "-f", "-", input=manifest("momentum-x", namespace, spec))
    assert "strategyversion.baton.dev/momentum-x created" in applied.stdout
    got = json.loads(cluster.kubectl("get", "sv", "momentum-x", "-n", namespace, "-o=json").stdout)
    assert got["spec"]["version"] == spec["version"]
    assert got["spec"].get("resources") == spec.get("resources")


@pytest.mark.parametrize(
    ("changes", "slots", "stake"),
    [
        pytest.param({}, None, None, id="neither-all-slots-gateway-stake"),
        pytest.param({"slots": []}, [], None, id="empty-slots"),
        pytest.param(
            {"slots": ["BTC/5m", "MATIC/15m", "1INCH/1h"], "stake": 2},
            ["BTC/5m", "MATIC/15m", "1INCH/1h"],
            2,
            id="slots-and-an-integer-stake",
        ),
        pytest.param({"stake": 0.01}, None, 0.01, id="small-stake"),
        pytest.param({"stake": 1_000_000}, None, 1_000_000, id="largest-stake"),
    ],
)
def test_a_strategys_slots_and_stake_are_accepted_and_shown(
    cluster: Cluster,
    namespace: str,
    crd: dict[str, Any],
    changes: dict[str, Any],
    slots: list[str] | None,
    stake: float | None,
) -> None:
    """The book's fields: stored as given (no default: unset means all the gateway's slots and
    its venue.stake), read by the operator the same way, shown by `kubectl get sv -o wide`."""
    spec = with_(VALID, **changes)
    applied = cluster.kubectl("apply", "-f", "-", input=manifest("momentum-x", namespace, spec))
    assert "strategyversion.baton.dev/momentum-x created" in applied.stdout
    got = json.loads(cluster.kubectl("get", "sv", "momentum-x", "-n", namespace, "-o=json").stdout)
    assert got["spec"].get("slots") == slots
    assert got["spec"].get("stake") == stake
    parsed = parse_spec(got["spec"])
    assert parsed.slots == tuple(slots or ())
    assert parsed.stake == stake

    (version,) = crd["spec"]["versions"]
    by_name = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert (by_name["Stake"]["jsonPath"], by_name["Slots"]["jsonPath"]) == (
        ".spec.stake",
        ".spec.slots",
    )
    header, row = cluster.kubectl("get", "sv", "-n", namespace, "-o", "wide").stdout.splitlines()
    columns = header.split()
    assert columns.index("STAKE") < columns.index("SLOTS") < columns.index("MESSAGE")
    if stake is not None:
        assert format(stake, "f").rstrip("0").rstrip(".") in row.split()
    for slot in slots or ():
        assert f'"{slot}"' in row  # the list, as JSON


def test_the_book_example_manifest_is_accepted(cluster: Cluster, namespace: str) -> None:
    """examples/strategyversion-reversion-v1.yaml, as the docs tell users to apply it."""
    path = EXAMPLES / "strategyversion-reversion-v1.yaml"
    applied = cluster.kubectl("apply", "-n", namespace, "-f", str(path))
    assert "strategyversion.baton.dev/rev-v1 created" in applied.stdout
    got = json.loads(cluster.kubectl("get", "sv", "rev-v1", "-n", namespace, "-o=json").stdout)
    spec = parse_spec(got["spec"])
    assert (spec.strategy, spec.version, spec.stake) == ("reversion", "v1", 2.0)
    assert spec.slots == ("BTC/5m", "BTC/15m", "ETH/5m", "ETH/15m")


def test_a_hot_standby_is_accepted_as_users_write_it(cluster: Cluster, namespace: str) -> None:
    """``mode: None`` unquoted is the string None in YAML (not null), and a hot standby keeps
    the other defaults."""
    for name, mode in (("momentum-none", "None"), ("momentum-hot", "Hot")):
        text = manifest(name, namespace, VALID) + f"  standby:\n    mode: {mode}\n"
        applied = cluster.kubectl("apply", "-f", "-", input=text)
        assert f"strategyversion.baton.dev/{name} created" in applied.stdout
        got = json.loads(cluster.kubectl("get", "sv", name, "-n", namespace, "-o=json").stdout)
        assert got["spec"]["standby"]["mode"] == mode
        assert parse_spec(got["spec"]).standby.mode.value == mode
        assert got["spec"]["standby"]["checkpointEveryTicks"] == 12


def test_the_hot_standby_example_manifest_is_accepted(cluster: Cluster, namespace: str) -> None:
    """examples/strategyversion-hot.yaml, as NOTES.txt and the docs tell users to apply it."""
    path = EXAMPLES / "strategyversion-hot.yaml"
    applied = cluster.kubectl("apply", "-n", namespace, "-f", str(path))
    assert "strategyversion.baton.dev/mom-v2-hot created" in applied.stdout
    got = json.loads(cluster.kubectl("get", "sv", "mom-v2-hot", "-n", namespace, "-o=json").stdout)
    spec = parse_spec(got["spec"])
    assert spec.standby.hot
    assert (spec.strategy, spec.version) == ("momentum", "v2")
