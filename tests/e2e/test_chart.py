"""The Helm chart (charts/baton): linted, rendered, validated by a real kube-apiserver.

- `helm lint --strict` with the default values (kind) and the non-default ones under
  charts/baton/ci/ (a production-like install; a two-namespace operator).
- `helm template`, and facts asserted on what it renders: non-root everywhere, probes, the
  ledger's volume, the gateway's settings read by the gateway's own config loader, the operator's
  arguments by its own parser, RBAC equal to `baton.operator.core.rbac.RULES`, NetworkPolicies that
  select what the operator creates, NodePorts that kind-config.yaml maps.
- values.schema.json and the chart's cross-field checks refuse bad values with a clear message.
- Every rendered manifest applied with `kubectl apply --dry-run=server` to the test bed's
  kube-apiserver, so the API itself validates each object (no scheduler or kubelet needed).
- The README's kind walk-through only uses names, ports and files that exist.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from baton.common import load_settings
from baton.gateway.config import gateway_config_from
from baton.gateway.core.lease_rbac import ROLE_LABEL, pod_names
from baton.gateway.core.lease_rbac import rules as lease_rules
from baton.operator.core import pods
from baton.operator.core.config import build_config
from baton.operator.core.rbac import RULES
from baton.operator.core.spec import GROUP, PLURAL
from tests.e2e.testbed import REPO, Cluster, bin_dir, namespace_name

CHART = REPO / "charts" / "baton"
CI_VALUES = CHART / "ci"
KIND_CONFIG = REPO / "kind-config.yaml"
EXAMPLES = REPO / "examples"
HELM_TIMEOUT_S = 60.0
RELEASE = "baton"
NAMESPACE = "baton"

Manifest = dict[str, Any]

# The value sets every check runs with: the defaults (kind) and the non-default examples.
VALUE_SETS: dict[str, tuple[Path, ...]] = {
    "default": (),
    "production": (CI_VALUES / "production-values.yaml",),
    "namespaced": (CI_VALUES / "namespaced-values.yaml",),
}
# The registry-less node of hack/cluster.sh (docs/real-node.md): the defaults with every image
# local and never pulled; tests/node installs the chart with it.
REAL_NODE_VALUES = REPO / "hack" / "cluster-values.yaml"


# --------------------------------------------------------------------------------------------
# helm


def helm_bin() -> Path:
    path = bin_dir() / "helm"
    if not os.access(path, os.X_OK):
        pytest.fail(f"no helm in {bin_dir()}: build it with `make testbed-bins`")
    return path


@pytest.fixture(scope="session")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-home")


@cache
def _helm_env(home: Path) -> dict[str, str]:
    # Helm's own config, cache and data in a throwaway dir: nothing read from or written to ~.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HELM_", "KUBECONFIG"))}
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[var] = str(home / var.lower())
    return env


def helm(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            [str(helm_bin()), *args],
            capture_output=True,
            text=True,
            timeout=HELM_TIMEOUT_S,
            env=_helm_env(home),
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"helm {' '.join(args)} timed out after {HELM_TIMEOUT_S}s") from e
    if check and result.returncode != 0:
        raise AssertionError(
            f"helm {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def value_args(files: Sequence[Path] = (), sets: Sequence[str] = ()) -> list[str]:
    return [*(f"--values={f}" for f in files), *(f"--set={s}" for s in sets)]


def template_text(
    home: Path,
    files: Sequence[Path] = (),
    sets: Sequence[str] = (),
    *,
    namespace: str = NAMESPACE,
) -> str:
    args = ["template", RELEASE, str(CHART), f"--namespace={namespace}", *value_args(files, sets)]
    return helm(home, *args).stdout


def parse(text: str) -> list[Manifest]:
    return [d for d in yaml.safe_load_all(text) if d]


@dataclass(frozen=True)
class Rendered:
    manifests: list[Manifest]

    def all(self, kind: str) -> list[Manifest]:
        return [m for m in self.manifests if m["kind"] == kind]

    def get(self, kind: str, name: str, namespace: str | None = None) -> Manifest:
        found = [
            m
            for m in self.all(kind)
            if m["metadata"]["name"] == name
            and (namespace is None or m["metadata"].get("namespace") == namespace)
        ]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
        return found[0]

    def names(self, kind: str) -> set[str]:
        return {m["metadata"]["name"] for m in self.all(kind)}


@pytest.fixture(scope="module")
def rendered(helm_home: Path) -> dict[str, Rendered]:
    return {
        name: Rendered(parse(template_text(helm_home, files))) for name, files in VALUE_SETS.items()
    }


def workloads(r: Rendered) -> Iterator[Manifest]:
    for kind in ("Deployment", "StatefulSet"):
        yield from r.all(kind)


def container(workload: Manifest, name: str | None = None) -> Manifest:
    containers: list[Manifest] = workload["spec"]["template"]["spec"]["containers"]
    if name is None:
        assert len(containers) == 1
        return containers[0]
    return next(c for c in containers if c["name"] == name)


def env_of(c: Manifest) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def gateway_name() -> str:
    return f"{RELEASE}-gateway"


def operator_args(r: Rendered) -> list[str]:
    args: list[str] = container(r.get("Deployment", f"{RELEASE}-operator"))["args"]
    return args


def flag_values(args: Sequence[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


# --------------------------------------------------------------------------------------------
# lint


def test_chart_app_version_is_the_project_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]
    assert chart["name"] == "baton"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint_strict(helm_home: Path, value_set: str) -> None:
    result = helm(helm_home, "lint", "--strict", str(CHART), *value_args(VALUE_SETS[value_set]))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout, result.stdout
    assert "[ERROR]" not in result.stdout, result.stdout


# --------------------------------------------------------------------------------------------
# what renders: every value set


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_pod_runs_non_root_read_only_with_probes_and_resources(
    rendered: dict[str, Rendered], value_set: str
) -> None:
    r = rendered[value_set]
    assert list(workloads(r))
    for w in workloads(r):
        where = f"{value_set}: {w['kind']}/{w['metadata']['name']}"
        spec = w["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] == 10001, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["enableServiceLinks"] is False, (
            f"{where}: Service link variables would sit next to the BATON_* settings"
        )
        # Only the operator and the gateway's replicas (their Lease, their pods' label) talk
        # to the API.
        talks = w["metadata"]["name"] in (f"{RELEASE}-operator", gateway_name())
        assert spec["automountServiceAccountToken"] is talks, where
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, where
            assert sc["runAsUser"] == 10001, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert "livenessProbe" in c, where
            assert "readinessProbe" in c, where
            assert c["resources"]["requests"]["memory"]
            assert c["resources"]["limits"]["memory"]
            # Probes name ports the container has.
            ports = {p["name"] for p in c["ports"]}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if probe in c:
                    action = c[probe].get("tcpSocket") or c[probe].get("httpGet")
                    assert action["port"] in ports, f"{where}: {probe} on {action['port']}"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_services_select_their_pods_and_ports(
    rendered: dict[str, Rendered], value_set: str
) -> None:
    r = rendered[value_set]
    for svc in r.all("Service"):
        selector = dict(svc["spec"]["selector"])
        if selector.get(ROLE_LABEL) == "leader":
            # The gateway's pods start as followers; the leader relabels its own pod.
            del selector[ROLE_LABEL]
            assert svc["metadata"]["name"].startswith(gateway_name())
        matches = [
            w
            for w in workloads(r)
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matches) == 1, f"Service {svc['metadata']['name']} selects {len(matches)}"
        names = {
            p["name"]
            for c in matches[0]["spec"]["template"]["spec"]["containers"]
            for p in c["ports"]
        }
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in names
    for w in workloads(r):
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert w["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_gateway_is_two_pods_each_with_its_ledger_on_a_volume(
    rendered: dict[str, Rendered], value_set: str
) -> None:
    r = rendered[value_set]
    sts = r.get("StatefulSet", gateway_name())
    assert sts["spec"]["replicas"] == 2
    assert sts["spec"]["updateStrategy"] == {"type": "RollingUpdate"}
    assert sts["spec"]["serviceName"] in r.names("Service")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    c = container(sts)
    assert c["args"] == ["gateway"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/data"] == "data"
    assert env_of(c)["BATON_LEDGER__PATH"] == "/data/ledger.sqlite"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": 50051, "metrics": 9464}
    # A follower serves no gRPC: every probe is on the metrics server, Ready from /ready.
    assert c["startupProbe"]["tcpSocket"] == {"port": "metrics"}
    assert c["livenessProbe"]["tcpSocket"] == {"port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
    svc = r.get("Service", gateway_name())
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == ports
    # The Service reaches the leader only: the pod its replica labelled so.
    assert svc["spec"]["selector"][ROLE_LABEL] == "leader"
    assert sts["spec"]["template"]["metadata"]["labels"][ROLE_LABEL] == "follower"
    spec = sts["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == r.get("ServiceAccount", gateway_name())["metadata"]["name"]
    cadence = float(env_of(c)["BATON_GATEWAY__CADENCE_S"])
    assert spec["terminationGracePeriodSeconds"] >= 2 * cadence + 15
    # Strategy pods dial each pod by its DNS name: a replaced pod is Ready for longer than the
    # DNS cache's TTL (CoreDNS: 30 s) before the leader's pod is replaced and hands over to it.
    assert sts["spec"]["minReadySeconds"] > 30


def test_one_gateway_pod_runs_without_election(helm_home: Path) -> None:
    """gateway.replicas=1: the single gateway of before, no Lease, no token, probes on gRPC."""
    r = Rendered(parse(template_text(helm_home, sets=["gateway.replicas=1"])))
    sts = r.get("StatefulSet", gateway_name())
    assert sts["spec"]["replicas"] == 1
    c = container(sts)
    assert not [k for k in env_of(c) if k.startswith("BATON_LEADER__")]
    assert sts["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["tcpSocket"] == {"port": "grpc"}
    assert ROLE_LABEL not in r.get("Service", gateway_name())["spec"]["selector"]
    assert f"{RELEASE}-gateway-leader" not in r.names("Role")
    assert "minReadySeconds" not in sts["spec"], "no rolling hand-over to wait for"
    # Strategy pods dial the Service, as the operator does (no --pod-gateway: its default).
    assert "--pod-gateway" not in operator_args(r)


def test_one_gateway_pod_may_still_take_the_lease(helm_home: Path) -> None:
    """replicas=1 with leaderElection.enabled: a replica on the Lease, sharing no ledger with
    anyone (no replicate_from: a lone replica restarted must not wait for a leader)."""
    sets = ["gateway.replicas=1", "gateway.leaderElection.enabled=true"]
    r = Rendered(parse(template_text(helm_home, sets=sets)))
    env = env_of(container(r.get("StatefulSet", gateway_name())))
    assert env["BATON_LEADER__BACKEND"] == "kube"
    assert "BATON_LEADER__REPLICATE_FROM" not in env
    assert r.get("Role", f"{RELEASE}-gateway-leader")["rules"] == [
        rule.to_k8s() for rule in lease_rules(pods=pod_names(gateway_name(), 1))
    ]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_gateway_settings_are_what_the_gateway_reads(
    rendered: dict[str, Rendered], value_set: str
) -> None:
    """The BATON_* env, through the gateway's own loader: an unknown or bad key fails here."""
    r = rendered[value_set]
    env = env_of(container(r.get("StatefulSet", gateway_name())))
    plain = {k: v for k, v in env.items() if k.startswith("BATON_")}
    assert all(isinstance(v, str) for v in plain.values()), "settings are plain values"
    config = gateway_config_from(load_settings(None, plain))
    assert config.listen == "0.0.0.0:50051"
    assert config.metrics_listen == "0.0.0.0:9464"
    assert str(config.ledger_path) == "/data/ledger.sqlite"
    sim = f"{RELEASE}-sim"
    if value_set == "production":
        assert config.exchange.ws_url == "wss://data-stream.binance.vision"
        assert config.exchange.rest_url == "https://data-api.binance.vision"
        assert config.cadence_s == 2.5
        assert config.exchange.stall_timeout_s == 20  # from gateway.extraEnv
        assert sim not in r.names("Service")
    else:
        # The simulator's Service, same namespace, its port.
        assert config.exchange.ws_url == f"ws://{sim}:8765"
        assert config.exchange.rest_url == f"http://{sim}:8765"
        port = r.get("Service", sim)["spec"]["ports"][0]["port"]
        assert port == 8765
    if value_set == "default":
        assert [m.name for m in config.markets] == [
            "BTC",
            "ETH",
            "SOL",
            "XRP",
            "DOGE",
            "AVAX",
            "LINK",
            "MATIC",
        ]
        assert len(config.slots) == 16
        assert config.cadence_s == 5.0
    if value_set == "namespaced":
        assert [s.slot_id for s in config.slots][:2] == ["BTC/1m", "BTC/5m"]
    # Two replicas on the Lease; the follower replicates from the gateway Service (the leader),
    # fully qualified; the identity is the pod's name (POD_NAME, downward API) plus a suffix.
    assert config.leader.backend.value == "kube"
    assert config.leader.lease_name == "baton-gateway-leader"
    assert config.leader.replicate_from == f"{gateway_name()}.{NAMESPACE}.svc:50051"
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


@pytest.mark.parametrize("value_set", ["default", "namespaced"])
def test_simulator_lists_the_gateways_symbols(
    rendered: dict[str, Rendered], value_set: str
) -> None:
    from baton.exchange_sim.cli import _parser, config_from_args

    r = rendered[value_set]
    c = container(r.get("Deployment", f"{RELEASE}-sim"))
    assert c["args"][0] == "sim"
    sim = config_from_args(_parser().parse_args(c["args"][1:]))
    gateway_env = env_of(container(r.get("StatefulSet", gateway_name())))
    config = gateway_config_from(
        load_settings(None, {k: v for k, v in gateway_env.items() if k.startswith("BATON_")})
    )
    assert set(sim.symbols) == {m.symbol for m in config.markets}
    assert sim.host == "0.0.0.0"
    assert sim.port == 8765
    assert sim.time_scale == (60.0 if value_set == "namespaced" else 1.0)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_operator_arguments_are_what_the_operator_reads(
    rendered: dict[str, Rendered], value_set: str
) -> None:
    from baton.operator.cli import _parser

    r = rendered[value_set]
    dep = r.get("Deployment", f"{RELEASE}-operator")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}, "kopf standalone: one at a time"
    c = container(dep)
    assert c["args"][0] == "operator"
    args = _parser().parse_args(c["args"][1:])
    flat: dict[str, Any] = {
        "operator.gateway": args.gateway,
        "operator.liveness": args.liveness,
        "operator.log_level": args.log_level,
        "operator.metrics": args.metrics,
    }
    if args.namespace is not None:
        flat["operator.namespaces"] = args.namespace
    if args.pod_env is not None:
        flat["operator.pod_env"] = args.pod_env
    if args.pod_gateway is not None:
        flat["operator.pod_gateway"] = args.pod_gateway
    config = build_config(flat)
    # Control calls: the gateway's Service (the leader), fully qualified (strategy pods may
    # live in other namespaces).
    assert config.gateway == f"{gateway_name()}.{NAMESPACE}.svc:50051"
    # Strategy pods: every gateway pod by its own name under the StatefulSet's governing
    # (headless) Service, which publishes a pod's address before it is Ready (a new leader is
    # dialled at once), not the Service, whose endpoint may still be a killed leader's.
    sts = r.get("StatefulSet", gateway_name())
    headless = r.get("Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert (
        headless["spec"]["selector"].items() <= pod_labels(r, "StatefulSet", gateway_name()).items()
    )
    assert ROLE_LABEL not in headless["spec"]["selector"], "both pods, whichever leads"
    assert {p["name"]: p["port"] for p in headless["spec"]["ports"]} == {"grpc": 50051}
    governing = headless["metadata"]["name"]
    assert config.pod_gateway.split(",") == [
        f"{pod}.{governing}.{NAMESPACE}.svc:50051"
        for pod in pod_names(gateway_name(), sts["spec"]["replicas"])
    ]
    assert config.liveness == "http://0.0.0.0:8080/healthz"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"healthz": 8080, "metrics": 9465}
    assert config.metrics == "0.0.0.0:9465"
    # Its metrics Service (Prometheus scrapes it) selects the operator's pod, on that port.
    svc = r.get("Service", f"{RELEASE}-operator")
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("metrics", 9465, "metrics")
    ]
    watched = {"default": (NAMESPACE,), "production": (), "namespaced": ("team-a", "team-b")}
    assert config.namespaces == watched[value_set]
    pod_env = dict(config.pod_env)
    otlp = env_of(c).get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if value_set == "default":
        jaeger = r.get("Service", f"{RELEASE}-jaeger")
        assert 4317 in {p["port"] for p in jaeger["spec"]["ports"]}
        assert otlp == f"http://{RELEASE}-jaeger.{NAMESPACE}.svc:4317"
        assert pod_env == {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp}
    elif value_set == "production":
        assert otlp is None, "tracing is off"
        assert pod_env == {}, "tracing is off"
        assert f"{RELEASE}-jaeger" not in r.names("Deployment")
    else:
        assert otlp == "http://otel-collector.observability.svc:4317"
        assert pod_env == {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp, "STRATEGY_MODE": "paper"}
    # Every component traces to the same place, or none does.
    for w in workloads(r):
        if w["metadata"]["name"] != f"{RELEASE}-jaeger" and "sim" not in w["metadata"]["name"]:
            assert env_of(container(w)).get("OTEL_EXPORTER_OTLP_ENDPOINT") == otlp


# --------------------------------------------------------------------------------------------
# RBAC: baton.operator.core.rbac.RULES, nothing else


def rbac_rules() -> list[dict[str, Any]]:
    return [r.to_k8s() for r in RULES]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_rbac_is_rbac_py_rules(rendered: dict[str, Rendered], value_set: str) -> None:
    r = rendered[value_set]
    sa = r.get("ServiceAccount", f"{RELEASE}-operator")
    sa_name = r.get("Deployment", f"{RELEASE}-operator")["spec"]["template"]["spec"][
        "serviceAccountName"
    ]
    assert sa_name == sa["metadata"]["name"]
    subject = {"kind": "ServiceAccount", "name": sa_name, "namespace": NAMESPACE}
    # The operator's (the gateway's own Role, on its Lease, is checked below).
    gateway_rbac = f"{RELEASE}-gateway-leader"
    operator_roles = [m for m in r.all("Role") if m["metadata"]["name"] != gateway_rbac]
    operator_bindings = [m for m in r.all("RoleBinding") if m["metadata"]["name"] != gateway_rbac]
    if value_set == "production":
        assert not operator_roles
        assert not operator_bindings
        (role,) = r.all("ClusterRole")
        (binding,) = r.all("ClusterRoleBinding")
        roles = [role]
        bindings = [binding]
    else:
        assert not r.all("ClusterRole")
        assert not r.all("ClusterRoleBinding")
        roles, bindings = operator_roles, operator_bindings
        namespaces = [m["metadata"]["namespace"] for m in roles]
        assert namespaces == [m["metadata"]["namespace"] for m in bindings]
        assert tuple(namespaces) == tuple(flag_values(operator_args(r), "--namespace"))
    for role in roles:
        assert role["rules"] == rbac_rules()
    for binding, role in zip(bindings, roles, strict=True):
        assert binding["subjects"] == [subject]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role["kind"],
            "name": role["metadata"]["name"],
        }
    # RULES themselves: the StrategyVersion group, pods, events; no wildcard.
    assert {g for rule in rbac_rules() for g in rule["apiGroups"]} == {GROUP, ""}
    assert PLURAL in rbac_rules()[0]["resources"]
    assert not any("*" in rule["verbs"] or "*" in rule["resources"] for rule in rbac_rules())


# The gateway's leadership Lease (issue 15): baton.gateway.core.lease_rbac's rules, with the
# StatefulSet's own pods for the role label.


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_the_gateway_has_lease_rbac_with_its_replicas(
    rendered: dict[str, Rendered], value_set: str
) -> None:
    role = rendered[value_set].get("Role", f"{RELEASE}-gateway-leader")
    assert role["rules"] == [
        rule.to_k8s() for rule in lease_rules(pods=pod_names(gateway_name(), 2))
    ]


def test_the_gateways_lease_rbac_is_lease_rbac_py_rules(helm_home: Path) -> None:
    r = Rendered(
        parse(
            template_text(
                helm_home,
                sets=["gateway.leaderElection.enabled=true", "gateway.leaderElection.leaseName=gl"],
            )
        )
    )
    sa = r.get("ServiceAccount", f"{RELEASE}-gateway")
    role = r.get("Role", f"{RELEASE}-gateway-leader")
    binding = r.get("RoleBinding", f"{RELEASE}-gateway-leader")
    assert role["rules"] == [
        rule.to_k8s() for rule in lease_rules("gl", pod_names(gateway_name(), 2))
    ]
    (pods_rule,) = [rule for rule in role["rules"] if rule["resources"] == ["pods"]]
    assert pods_rule == {
        "apiGroups": [""],
        "resources": ["pods"],
        "verbs": ["patch"],
        "resourceNames": [f"{gateway_name()}-0", f"{gateway_name()}-1"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


# --------------------------------------------------------------------------------------------
# NetworkPolicies


def strategy_pod_labels() -> dict[str, str]:
    return pods.labels("momentum", "mom-v1")


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, selector
    return dict(selector.get("matchLabels") or {}).items() <= labels.items()


def pod_labels(r: Rendered, kind: str, name: str) -> dict[str, str]:
    labels: dict[str, str] = r.get(kind, name)["spec"]["template"]["metadata"]["labels"]
    return labels


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_strategy_pods_may_reach_only_the_gateway_dns_and_tracing(
    rendered: dict[str, Rendered], value_set: str
) -> None:
    r = rendered[value_set]
    gateway_labels = pod_labels(r, "StatefulSet", gateway_name())
    policies = [
        p
        for p in r.all("NetworkPolicy")
        if selects(p["spec"]["podSelector"], strategy_pod_labels())
    ]
    expected_ns = {
        "default": [NAMESPACE],
        "production": [NAMESPACE],
        "namespaced": ["team-a", "team-b"],
    }[value_set]
    assert [p["metadata"]["namespace"] for p in policies] == expected_ns
    for p in policies:
        spec = p["spec"]
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        assert spec["ingress"] == [], "nothing connects to a strategy pod"
        # Selects no Baton component: only what the operator creates.
        for w in workloads(r):
            assert not selects(spec["podSelector"], w["spec"]["template"]["metadata"]["labels"])
        egress = spec["egress"]
        to_gateway, dns = egress[0], egress[1]
        (peer,) = to_gateway["to"]
        assert selects(peer["podSelector"], gateway_labels)
        assert peer["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}
        }
        assert to_gateway["ports"] == [{"port": 50051, "protocol": "TCP"}]
        assert {(q["port"], q["protocol"]) for q in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
        rest = egress[2:]
        if value_set == "default":
            (jaeger,) = rest
            (jpeer,) = jaeger["to"]
            assert selects(jpeer["podSelector"], pod_labels(r, "Deployment", f"{RELEASE}-jaeger"))
            assert jaeger["ports"] == [{"port": 4317, "protocol": "TCP"}]
        elif value_set == "production":
            assert rest == []
        else:
            assert rest == [
                {
                    "to": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "observability"}
                            }
                        }
                    ],
                    "ports": [{"port": 4317, "protocol": "TCP"}],
                }
            ]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_gateway_admits_grpc_from_strategies_and_the_operator_only(
    rendered: dict[str, Rendered], value_set: str
) -> None:
    r = rendered[value_set]
    policy = r.get("NetworkPolicy", gateway_name())
    spec = policy["spec"]
    assert selects(spec["podSelector"], pod_labels(r, "StatefulSet", gateway_name()))
    assert spec["policyTypes"] == ["Ingress"]
    grpc, *metrics = spec["ingress"]
    assert grpc["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    strategies, operator, gateway = grpc["from"]
    # The follower's replication stream from the other gateway pod.
    assert gateway == {"podSelector": spec["podSelector"]}
    assert selects(strategies["podSelector"], strategy_pod_labels())
    if value_set == "production":
        assert strategies["namespaceSelector"] == {}, "cluster-wide: any namespace"
    else:
        watched = flag_values(operator_args(r), "--namespace")
        assert strategies["namespaceSelector"] == {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": watched}
            ]
        }
    assert set(operator) == {"podSelector"}, "the operator: this namespace"
    assert selects(operator["podSelector"], pod_labels(r, "Deployment", f"{RELEASE}-operator"))
    assert not selects(operator["podSelector"], strategy_pod_labels())
    (rule,) = metrics
    assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    if value_set == "default":
        assert "from" not in rule, "metrics on a NodePort: any source"
    elif value_set == "production":
        assert rule["from"] == [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            }
        ]
    else:
        assert rule["from"] == [{"podSelector": {}}], "the release namespace"


# --------------------------------------------------------------------------------------------
# credentials: the gateway's alone


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_only_the_gateway_holds_exchange_credentials(
    rendered: dict[str, Rendered], value_set: str
) -> None:
    r = rendered[value_set]
    secret_refs = {
        w["metadata"]["name"]: [
            e for e in container(w).get("env", []) if "secretKeyRef" in e.get("valueFrom", {})
        ]
        for w in workloads(r)
    }
    gateway_refs = secret_refs.pop(gateway_name())
    assert not any(secret_refs.values()), "only the gateway reads a Secret"
    # What the operator hands every strategy pod (--pod-env) names no credential.
    pod_env = [v.partition("=")[0] for v in flag_values(operator_args(r), "--pod-env")]
    assert not [name for name in pod_env if re.search("KEY|SECRET|TOKEN|PASSWORD", name)]
    # The values themselves appear in the Secret only.
    others = json.dumps([m for m in r.manifests if m["kind"] != "Secret"])
    assert "test-key" not in others
    assert "test-secret" not in others
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in gateway_refs}
    if value_set == "default":
        assert refs == {}
        assert not r.all("Secret")
    elif value_set == "production":
        assert not r.all("Secret"), "existingSecret: the chart creates none"
        assert refs == {
            "BINANCE_API_KEY": {"name": "baton-exchange-credentials", "key": "apiKey"},
            "BINANCE_API_SECRET": {"name": "baton-exchange-credentials", "key": "apiSecret"},
        }
    else:
        secret = r.get("Secret", f"{RELEASE}-exchange")
        data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert data == {"apiKey": "test-key", "apiSecret": "test-secret"}
        assert {ref["name"] for ref in refs.values()} == {f"{RELEASE}-exchange"}


# --------------------------------------------------------------------------------------------
# kind: NodePorts, images, the walk-through


def kind_port_mappings() -> dict[int, int]:
    config = yaml.safe_load(KIND_CONFIG.read_text())
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    (node,) = config["nodes"]
    assert node["role"] == "control-plane"
    return {m["containerPort"]: m["hostPort"] for m in node["extraPortMappings"]}


def test_kind_maps_the_charts_node_ports(rendered: dict[str, Rendered]) -> None:
    r = rendered["default"]
    node_ports = {
        svc["metadata"]["name"]: {p["name"]: p["nodePort"] for p in svc["spec"]["ports"]}
        for svc in r.all("Service")
        if svc["spec"].get("type") == "NodePort"
    }
    assert node_ports == {
        f"{RELEASE}-jaeger-ui": {"ui": 30686},
        f"{gateway_name()}-metrics": {"metrics": 30464},
    }
    assert kind_port_mappings() == {30686: 16686, 30464: 9464}
    assert yaml.safe_load(KIND_CONFIG.read_text())["name"] == "baton"
    for value_set in ("production", "namespaced"):
        types = {s["spec"].get("type", "ClusterIP") for s in rendered[value_set].all("Service")}
        assert types == {"ClusterIP"}, f"{value_set}: no NodePort"


def test_images(rendered: dict[str, Rendered]) -> None:
    images = {w["metadata"]["name"]: container(w)["image"] for w in workloads(rendered["default"])}
    assert images == {
        f"{RELEASE}-operator": "baton:dev",
        f"{RELEASE}-sim": "baton:dev",
        f"{RELEASE}-jaeger": "jaegertracing/jaeger:2.15.0",
        gateway_name(): "baton:dev",
    }
    for w in workloads(rendered["production"]):
        spec = w["spec"]["template"]["spec"]
        assert container(w)["image"] == "registry.example.com/baton:0.1.0"
        assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}]


def test_the_real_node_values_pull_nothing(helm_home: Path) -> None:
    """hack/cluster-values.yaml lints strictly, and every workload runs a local image with
    pullPolicy Never: the default chart's images, Jaeger's the one hack/cluster.sh imports."""
    lint = helm(helm_home, "lint", "--strict", str(CHART), *value_args((REAL_NODE_VALUES,)))
    assert "1 chart(s) linted, 0 chart(s) failed" in lint.stdout
    assert "[WARNING]" not in lint.stdout, lint.stdout
    r = Rendered(parse(template_text(helm_home, (REAL_NODE_VALUES,))))
    node = {w["metadata"]["name"]: container(w) for w in workloads(r)}
    assert {n: (c["image"], c["imagePullPolicy"]) for n, c in node.items()} == {
        f"{RELEASE}-operator": ("baton:dev", "Never"),
        f"{RELEASE}-sim": ("baton:dev", "Never"),
        f"{RELEASE}-jaeger": ("localhost/baton-jaeger:v2.13.0", "Never"),
        gateway_name(): ("baton:dev", "Never"),
    }
    # ... of the jaeger the lock pins, by the name hack/cluster.sh gives it.
    lock = (REPO / "hack" / "testbed-bins.lock").read_text().splitlines()
    (pinned,) = {line.split()[1] for line in lock if line.startswith("jaeger ")}
    assert pinned == "v2.13.0"
    assert "JAEGER_REF=localhost/baton-jaeger:v2.13.0" in (REPO / "hack" / "cluster.sh").read_text()


def examples() -> list[Manifest]:
    return [yaml.safe_load(p.read_text()) for p in sorted(EXAMPLES.glob("strategyversion-*.yaml"))]


def test_examples_run_the_chart_image_and_real_strategy_classes() -> None:
    import importlib

    found = examples()
    assert [m["metadata"]["name"] for m in found] == ["mom-v2-hot", "rev-v1", "mom-v1", "mom-v2"]
    for m in found:
        spec = m["spec"]
        assert m["kind"] == "StrategyVersion"
        assert m["apiVersion"] == f"{GROUP}/v1alpha1"
        assert spec["image"] == "baton:dev"
        module, _, cls_name = spec["entrypoint"].partition(":")
        cls = getattr(importlib.import_module(module), cls_name)
        assert (cls.name, cls.version) == (spec["strategy"], spec["version"])
    assert [m["spec"]["version"] for m in found] == ["v2", "v1", "v1", "v2"]
    # The book's example: a second strategy on a subset of the slots, with its own stake.
    assert found[1]["spec"]["strategy"] == "reversion"
    assert found[1]["spec"]["slots"] == ["BTC/5m", "BTC/15m", "ETH/5m", "ETH/15m"]
    assert found[1]["spec"]["stake"] == 2.0
    # The hot standby's example: the same code as mom-v2, handed off to with a standby.
    assert found[0]["spec"]["standby"]["mode"] == "Hot"
    assert found[0]["spec"]["entrypoint"] == found[3]["spec"]["entrypoint"]


def readme_walkthrough() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(r"^## Try it on kind\n(.*?)(?=^## )", text, re.M | re.S)
    assert match, "README.md has a section 'Try it on kind'"
    return match.group(1)


def test_readme_walkthrough_uses_what_exists(rendered: dict[str, Rendered]) -> None:
    section = readme_walkthrough()
    r = rendered["default"]
    for command in (
        "kind create cluster --config kind-config.yaml",
        "make image kind-load",
        f"helm install {RELEASE} charts/baton -n {NAMESPACE} --create-namespace",
        f"kubectl apply -n {NAMESPACE} -f examples/strategyversion-v1.yaml",
        f"kubectl apply -n {NAMESPACE} -f examples/strategyversion-v2.yaml",
        f"kubectl get sv -n {NAMESPACE} -w",
        "kind delete cluster --name baton",
    ):
        assert command in section, command
    kinds = {"statefulset": "StatefulSet", "deployment": "Deployment", "svc": "Service"}
    refs = re.findall(r"\b(statefulset|deployment|svc|pvc)/([a-z0-9-]+)", section)
    assert len(refs) >= 5
    for kind, name in refs:
        if kind == "pvc":
            claim, _, ordinal = name.removeprefix("data-").rpartition("-")
            sts = r.get("StatefulSet", claim)
            assert int(ordinal) < sts["spec"]["replicas"], name  # a pod the StatefulSet has
            assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
        else:
            assert name in r.names(kinds[kind]), f"{kind}/{name}"
    for path in re.findall(r"\b((?:examples|charts/baton)/[\w./-]+\.yaml)\b", section):
        assert (REPO / path).is_file(), path
    assert f"exec {gateway_name()}-0 -- baton presence --ledger /data/ledger.sqlite" in section
    host_ports = set(kind_port_mappings().values())
    for port in re.findall(r"http://localhost:(\d+)", section):
        assert int(port) in host_ports, f"localhost:{port} is not mapped by kind-config.yaml"
    assert "http://localhost:9464/metrics" in section
    assert "http://localhost:16686" in section
    for name in re.findall(r"\b(mom-v[12])\b", section):
        assert name in {m["metadata"]["name"] for m in examples()}


# --------------------------------------------------------------------------------------------
# Grafana dashboards: off by default, one ConfigMap per charts/baton/dashboards/*.json when on

DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))


def dashboard_maps(r: Rendered) -> list[Manifest]:
    return [m for m in r.all("ConfigMap") if "grafana_dashboard" in m["metadata"]["labels"]]


def test_dashboards_are_off_unless_asked_for(rendered: dict[str, Rendered]) -> None:
    assert DASHBOARDS
    assert dashboard_maps(rendered["default"]) == []
    assert dashboard_maps(rendered["namespaced"]) == []
    assert len(dashboard_maps(rendered["production"])) == len(DASHBOARDS)


@pytest.mark.parametrize(
    ("sets", "namespace", "folder"),
    [
        (["dashboards.enabled=true"], NAMESPACE, None),
        (
            ["dashboards.enabled=true", "dashboards.namespace=monitoring",
             "dashboards.folder=Trading bots", "dashboards.labelValue=yes"],
            "monitoring",
            "Trading bots",
        ),
    ],
    ids=["defaults", "namespace and folder"],
)  # fmt: skip
def test_dashboards_are_config_maps_for_grafanas_sidecar(
    helm_home: Path, sets: list[str], namespace: str, folder: str | None
) -> None:
    maps = dashboard_maps(Rendered(parse(template_text(helm_home, sets=sets))))
    by_file = {next(iter(m["data"])): m for m in maps}
    assert sorted(by_file) == [p.name for p in DASHBOARDS]
    for path in DASHBOARDS:
        m = by_file[path.name]
        meta = m["metadata"]
        assert meta["name"] == f"{RELEASE}-dashboard-{path.stem.removeprefix('baton-')}"
        assert meta["namespace"] == namespace
        value = "yes" if "dashboards.labelValue=yes" in sets else "1"
        assert meta["labels"]["grafana_dashboard"] == value
        assert meta["labels"]["app.kubernetes.io/component"] == "dashboards"
        assert meta.get("annotations", {}).get("grafana_folder") == folder
        # The dashboard itself, byte for byte as in the chart (the sidecar reads it as is).
        assert m["data"][path.name] == path.read_text().rstrip("\n")
        assert json.loads(m["data"][path.name])["uid"] == path.stem


def test_operator_metrics_can_be_off(helm_home: Path) -> None:
    """operator.metrics.port null (from a values file; `--set ...=null` drops the key): no
    endpoint, no port, no Service."""
    r = Rendered(parse(template_text(helm_home, sets=["operator.metrics.port=null"])))
    c = container(r.get("Deployment", f"{RELEASE}-operator"))
    assert "--metrics" not in c["args"]
    assert [p["name"] for p in c["ports"]] == ["healthz"]
    assert f"{RELEASE}-operator" not in r.names("Service")


def test_helm_lint_strict_with_the_dashboards_on(helm_home: Path) -> None:
    result = helm(helm_home, "lint", "--strict", str(CHART), "--set=dashboards.enabled=true")
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout, result.stdout


# --------------------------------------------------------------------------------------------
# bad values are refused, with a message naming them


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["gateway.cadenceSeconds=-1"], "at '/gateway/cadenceSeconds': minimum: got -1"),
        (["gateway.replicas=3"], "at '/gateway/replicas': maximum: got 3, want 2"),
        (["gateway.leaderElection.enabled=maybe"], "at '/gateway/leaderElection/enabled'"),
        (["gatway.cadenceSeconds=1"], "additional properties 'gatway' not allowed"),
        (["image.tag=null", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy'"),
        (["gateway.metrics.nodePort=80"], "at '/gateway/metrics/nodePort': minimum: got 80"),
        (["gateway.timeframes={5m,7x}"], "at '/gateway/timeframes/1'"),
        (["gateway.markets=null"], "at '/gateway': missing property 'markets'"),
        (["gateway.clockStart=later"], "at '/gateway/clockStart'"),
        (["operator.watchNamespaces=team-a"], "at '/operator/watchNamespaces': got string"),
        (["operator.watchNamespaces={Team_A}"], "at '/operator/watchNamespaces/0'"),
        (["operator.logLevel=LOUD"], "at '/operator/logLevel'"),
        (["exchange.wsUrl=http://example.com"], "at '/exchange/wsUrl'"),
        (["simulator.enabled=yes"], "at '/simulator/enabled': got string, want boolean"),
        (["gateway.persistence.size=lots"], "at '/gateway/persistence/size'"),
        (["tracing.otlpEndpoint=collector:4317"], "at '/tracing/otlpEndpoint'"),
        (["dashboards.enabled=yes"], "at '/dashboards/enabled': got string, want boolean"),
        (["operator.metrics.port=0"], "at '/operator/metrics/port': minimum: got 0"),
        (["dashboards.namespace=Monitoring"], "at '/dashboards/namespace'"),
        (["dashboards.label=bad label"], "at '/dashboards/label'"),
    ],
)
def test_schema_refuses_bad_values(helm_home: Path, sets: list[str], message: str) -> None:
    args = ["template", RELEASE, str(CHART), *value_args(sets=sets)]
    result = helm(helm_home, *args, check=False)
    assert result.returncode != 0, f"accepted: {sets}"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            ["operator.clusterWide=true", "operator.watchNamespaces={team-a}"],
            "operator.watchNamespaces must be empty when operator.clusterWide is true",
        ),
        (
            ["exchange.credentials.existingSecret=s", "exchange.credentials.apiKey=k"],
            "give either existingSecret or apiKey/apiSecret, not both",
        ),
        (["exchange.credentials.apiKey=k"], "apiKey and apiSecret go together"),
        (["jaeger.service.nodePort=30464"], "must differ"),
        (
            ["operator.metrics.port=8080"],
            "operator.metrics.port and operator.livenessPort must differ",
        ),
        (
            ["gateway.leaderElection.enabled=false"],
            "gateway.replicas is 2 but gateway.leaderElection.enabled is false",
        ),
        (
            ["gateway.cadenceSeconds=10"],
            "gateway.terminationGracePeriodSeconds is 30: a leader's SIGTERM hands over",
        ),
    ],
)
def test_chart_refuses_conflicting_values(helm_home: Path, sets: list[str], message: str) -> None:
    result = helm(helm_home, "template", RELEASE, str(CHART), *value_args(sets=sets), check=False)
    assert result.returncode != 0, f"accepted: {sets}"
    assert message in result.stderr, result.stderr


# --------------------------------------------------------------------------------------------
# the API server validates every object


def watched_overrides(value_set: str, cluster: Cluster, namespace: str) -> list[str]:
    """The namespaced value set watches team-a and team-b: real, fresh namespaces here."""
    if value_set != "namespaced":
        return []
    teams = [namespace_name(f"{namespace}-{t}") for t in ("team-a", "team-b")]
    for team in teams:
        cluster.kubectl("create", "namespace", team)
    return [f"operator.watchNamespaces={{{','.join(teams)}}}"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_the_api_server_accepts_every_rendered_object(
    cluster: Cluster, namespace: str, helm_home: Path, value_set: str
) -> None:
    sets = watched_overrides(value_set, cluster, namespace)
    text = template_text(helm_home, VALUE_SETS[value_set], sets, namespace=namespace)
    manifests = parse(text)
    result = cluster.kubectl(
        "apply", "--dry-run=server", "--output=json", "--filename=-", input=text, timeout=60
    )
    applied = json.loads(result.stdout)
    items = applied["items"] if applied.get("kind") == "List" else [applied]
    assert sorted((i["kind"], i["metadata"]["name"]) for i in items) == sorted(
        (m["kind"], m["metadata"]["name"]) for m in manifests
    )
    # Defaults were applied by the API (proof it is the server's object, not our text).
    for item in items:
        if item["kind"] == "StatefulSet":
            assert item["spec"]["template"]["spec"]["restartPolicy"] == "Always"
            assert item["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"] == "Filesystem"


def test_the_api_server_accepts_the_example_strategy_versions(
    cluster: Cluster, namespace: str
) -> None:
    for path in sorted(EXAMPLES.glob("strategyversion-*.yaml")):
        result = cluster.kubectl(
            "apply",
            "--dry-run=server",
            f"--namespace={namespace}",
            "--output=json",
            f"--filename={path}",
        )
        applied = json.loads(result.stdout)
        # The CRD's defaults came back: the handoff policy is complete.
        assert applied["spec"]["handoff"]["mode"] == "StateTransfer"
        assert applied["spec"]["deletionPolicy"] == "Protect"
        assert applied["spec"]["standby"]["checkpointEveryTicks"] == 12


def test_install_notes_name_what_was_installed(
    cluster: Cluster, namespace: str, helm_home: Path
) -> None:
    """`helm install --dry-run=server` against the test bed renders NOTES.txt."""
    result = helm(
        helm_home,
        "install",
        RELEASE,
        str(CHART),
        f"--namespace={namespace}",
        f"--kubeconfig={cluster.kubeconfig}",
        "--dry-run=server",
    )
    notes = result.stdout.split("NOTES:", 1)[1]
    for expected in (
        f"statefulset/{gateway_name()}",
        f"deployment/{RELEASE}-operator",
        f"{gateway_name()}.{namespace}.svc:50051",
        f"kubectl -n {namespace} apply -f examples/strategyversion-v1.yaml",
        "http://localhost:16686",
        "http://localhost:9464/metrics",
        f"OTLP to http://{RELEASE}-jaeger.{namespace}.svc:4317",
    ):
        assert expected in notes, f"{expected!r} not in NOTES:\n{notes}"
