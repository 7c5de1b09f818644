"""Operator settings (validated once, errors name the setting) and its RBAC rendering."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from baton.common import ConfigError
from baton.operator.core.config import build_config
from baton.operator.core.rbac import RULES, render


def test_defaults() -> None:
    c = build_config({"operator.gateway": "gw:50051"})
    assert (c.gateway, c.pod_gateway, c.namespaces, c.pod_env) == ("gw:50051", "gw:50051", (), ())
    assert c.metrics is None, "no metrics endpoint unless asked for"


def test_pod_gateway_may_name_every_gateway_replica() -> None:
    c = build_config(
        {
            "operator.gateway": "baton-gateway.baton.svc:50051",
            "operator.pod_gateway": "gw-0.gw-h.baton.svc:50051, gw-1.gw-h.baton.svc:50051",
        }
    )
    assert c.pod_gateway == "gw-0.gw-h.baton.svc:50051,gw-1.gw-h.baton.svc:50051"


def test_every_setting() -> None:
    c = build_config(
        {
            "operator.gateway": "10.0.0.1:50051",
            "operator.pod_gateway": "baton-gateway.baton.svc:50051",
            "operator.namespaces": "a,b",  # from the environment: comma-separated
            "operator.pod_env": ["OTEL_EXPORTER_OTLP_ENDPOINT=http://j:4317", "X=a=b"],
            "operator.liveness": "http://0.0.0.0:8080/healthz",
            "operator.log_level": "debug",
            "operator.metrics": "0.0.0.0:0",
        }
    )
    assert c.metrics == "0.0.0.0:0"
    assert c.namespaces == ("a", "b")
    assert c.pod_env == (("OTEL_EXPORTER_OTLP_ENDPOINT", "http://j:4317"), ("X", "a=b"))
    assert c.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("flat", "setting"),
    [
        pytest.param({}, "operator.gateway", id="gateway-missing"),
        pytest.param({"operator.gateway": "nohost"}, "operator.gateway", id="gateway-no-port"),
        pytest.param({"operator.gateway": "h:99999"}, "operator.gateway", id="gateway-bad-port"),
        pytest.param(
            {"operator.gateway": "h:1", "operator.pod_gateway": "x"},
            "operator.pod_gateway",
            id="pod-gateway",
        ),
        pytest.param(
            {"operator.gateway": "h:1", "operator.pod_gateway": "a:1,b"},
            "operator.pod_gateway",
            id="pod-gateway-one-of-several-no-port",
        ),
        pytest.param(
            {"operator.gateway": "h:1", "operator.pod_gateway": "a:1,,b:2"},
            "operator.pod_gateway",
            id="pod-gateway-empty-item",
        ),
        pytest.param(
            {"operator.gateway": "h:1", "operator.pod_gateway": "a:1,a:1"},
            "operator.pod_gateway",
            id="pod-gateway-twice",
        ),
        pytest.param(
            {"operator.gateway": "h:1", "operator.namespaces": ["Bad_NS"]},
            "operator.namespaces",
            id="namespace-not-dns",
        ),
        pytest.param(
            {"operator.gateway": "h:1", "operator.pod_env": ["NOEQUALS"]},
            "operator.pod_env",
            id="pod-env-no-value",
        ),
        pytest.param(
            {"operator.gateway": "h:1", "operator.liveness": "tcp://x"},
            "operator.liveness",
            id="liveness-not-http",
        ),
        pytest.param(
            {"operator.gateway": "h:1", "operator.metrics": "9465"},
            "operator.metrics",
            id="metrics-no-host",
        ),
        pytest.param(
            {"operator.gateway": "h:1", "operator.metrics": "h:70000"},
            "operator.metrics",
            id="metrics-bad-port",
        ),
        pytest.param(
            {"operator.gateway": "h:1", "operator.log_level": "LOUD"},
            "operator.log_level",
            id="log-level",
        ),
        pytest.param(
            {"operator.gateway": "h:1", "operator.gatway": "typo:1"},
            "operator.gatway",
            id="unknown-key",
        ),
    ],
)
def test_bad_settings_name_the_setting(flat: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_config(flat)
    assert err.value.setting == setting


def test_cli_bad_setting_exits_2_naming_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "baton", "operator", "--gateway", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "invalid setting operator.gateway" in done.stderr


@pytest.mark.parametrize(
    ("watch", "kinds"),
    [
        pytest.param("team-a", ["Role", "RoleBinding"], id="one-namespace"),
        pytest.param(None, ["ClusterRole", "ClusterRoleBinding"], id="cluster-wide"),
    ],
)
def test_rbac_renders_exactly_the_rules(watch: str | None, kinds: list[str]) -> None:
    docs = render(service_account="op", namespace="baton", watch_namespace=watch)
    assert [d["kind"] for d in docs] == kinds
    assert docs[0]["rules"] == [r.to_k8s() for r in RULES]
    assert docs[1]["subjects"] == [{"kind": "ServiceAccount", "name": "op", "namespace": "baton"}]
    verbs = {v for r in RULES for v in r.verbs}
    assert "*" not in verbs
    assert not verbs & {"update", "deletecollection", "escalate", "bind", "impersonate"}
