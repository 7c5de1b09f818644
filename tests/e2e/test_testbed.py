"""The test bed itself: a real kube-apiserver with RBAC on, and the fixtures around it."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import kubernetes.client
import pytest
from kubernetes.client import ApiException

from tests.e2e.testbed import Cluster, TestbedError, namespace_name, require_bins, start_cluster

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_server_is_kubernetes_v1_36(cluster: Cluster) -> None:
    with cluster.api_client() as api:
        version = kubernetes.client.VersionApi(api).get_code()
    assert version.git_version.startswith("v1.36."), version.git_version

    out = json.loads(cluster.kubectl("version", "--output=json").stdout)
    assert out["serverVersion"]["gitVersion"] == version.git_version


def test_admin_is_system_masters(cluster: Cluster) -> None:
    review = json.loads(cluster.kubectl("auth", "whoami", "--output=json").stdout)
    assert review["status"]["userInfo"]["username"] == "admin"
    assert "system:masters" in review["status"]["userInfo"]["groups"]


def test_admin_can_create_and_get_a_configmap(cluster: Cluster, namespace: str) -> None:
    manifest = f"""
apiVersion: v1
kind: ConfigMap
metadata:
  name: greeting
  namespace: {namespace}
data:
  hello: world
"""
    cluster.kubectl("apply", "-f", "-", input=manifest)
    got = json.loads(
        cluster.kubectl("get", "configmap", "greeting", "-n", namespace, "-o", "json").stdout
    )
    assert got["data"] == {"hello": "world"}

    with cluster.api_client() as api:
        cm = kubernetes.client.CoreV1Api(api).read_namespaced_config_map("greeting", namespace)
    assert cm.data == {"hello": "world"}


def test_a_user_without_bindings_is_forbidden(cluster: Cluster) -> None:
    alice = cluster.user_kubeconfig("alice")

    result = cluster.kubectl("get", "pods", "--all-namespaces", kubeconfig=alice, check=False)
    assert result.returncode != 0
    assert "Forbidden" in result.stderr
    assert 'User "alice" cannot list resource "pods"' in result.stderr

    with cluster.api_client(alice) as api, pytest.raises(ApiException) as err:
        kubernetes.client.CoreV1Api(api).list_pod_for_all_namespaces()
    assert err.value.status == 403


def test_client_cert_groups_are_the_users_groups(cluster: Cluster) -> None:
    bob = cluster.user_kubeconfig("bob", ["system:masters", "baton-admins"])
    assert cluster.user_kubeconfig("bob", ["system:masters", "baton-admins"]) == bob  # reused

    info = json.loads(cluster.kubectl("auth", "whoami", "-o", "json", kubeconfig=bob).stdout)
    assert info["status"]["userInfo"]["username"] == "bob"
    assert set(info["status"]["userInfo"]["groups"]) == {
        "system:masters",
        "baton-admins",
        "system:authenticated",
    }
    cluster.kubectl("get", "pods", "--all-namespaces", kubeconfig=bob)


def test_a_service_account_user_gets_exactly_its_role(cluster: Cluster, namespace: str) -> None:
    """The least-privilege pattern the operator tests use: a Role bound to a ServiceAccount
    subject, exercised with a client cert whose CN is the service account's user name."""
    rbac = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: read-configmaps, namespace: {namespace}}}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: operator-reads-configmaps, namespace: {namespace}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-configmaps}}
subjects:
- {{kind: ServiceAccount, name: baton-operator, namespace: {namespace}}}
"""
    cluster.kubectl("apply", "-f", "-", input=rbac)
    operator = cluster.user_kubeconfig(
        f"system:serviceaccount:{namespace}:baton-operator",
        ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
    )

    # The user name is longer than X.509's 64-character CN cap; both clients still work.
    assert len(f"system:serviceaccount:{namespace}:baton-operator") > 64
    cluster.kubectl("get", "configmaps", "-n", namespace, kubeconfig=operator)
    with cluster.api_client(operator) as api:
        kubernetes.client.CoreV1Api(api).list_namespaced_config_map(namespace)

    for forbidden in (
        ("get", "pods", "-n", namespace),
        ("get", "configmaps", "-n", "default"),
        ("create", "configmap", "x", "-n", namespace),
    ):
        result = cluster.kubectl(*forbidden, kubeconfig=operator, check=False)
        assert result.returncode != 0, forbidden
        user = f'User "system:serviceaccount:{namespace}:baton-operator"'
        assert f"is forbidden: {user} cannot" in result.stderr, (forbidden, result.stderr)


def test_a_pod_is_admitted_and_stays_pending(cluster: Cluster, namespace: str) -> None:
    """No `default` ServiceAccount exists (no controller manager), so this passes only because
    the ServiceAccount admission plugin is disabled; no scheduler or kubelet, so it stays
    Pending with no node."""
    pod = kubernetes.client.V1Pod(
        metadata=kubernetes.client.V1ObjectMeta(name="idle"),
        spec=kubernetes.client.V1PodSpec(
            containers=[kubernetes.client.V1Container(name="main", image="baton/strategy:dev")]
        ),
    )
    with cluster.api_client() as api:
        core = kubernetes.client.CoreV1Api(api)
        core.create_namespaced_pod(namespace, pod)
        got = core.read_namespaced_pod("idle", namespace)
        with pytest.raises(ApiException) as err:
            core.read_namespaced_service_account("default", namespace)
    assert err.value.status == 404
    assert got.status is not None
    assert got.status.phase == "Pending"
    assert got.spec is not None
    assert not got.spec.node_name
    assert not got.spec.volumes  # no projected service-account token was injected


def test_the_namespace_fixture_makes_a_fresh_dns_label(cluster: Cluster, namespace: str) -> None:
    assert DNS1123_LABEL.match(namespace)
    assert namespace.startswith("test-the-namespace-fixture-makes-a-fresh-")
    phase = cluster.kubectl("get", "namespace", namespace, "-o", "jsonpath={.status.phase}")
    assert phase.stdout == "Active"


@pytest.mark.parametrize(
    ("test_name", "prefix"),
    [
        pytest.param("test_x", "test-x-", id="plain"),
        pytest.param("test_crd[missing-image]", "test-crd-missing-image-", id="param-id"),
        pytest.param("test_" + "a" * 100, "test-" + "a" * 52 + "-", id="truncated"),
        pytest.param("___", "test-", id="nothing-left"),
        pytest.param("test_A/B::C", "test-a-b-c-", id="upper-and-punctuation"),
    ],
)
def test_namespace_names_are_dns_labels(test_name: str, prefix: str) -> None:
    names = {namespace_name(test_name) for _ in range(5)}
    assert len(names) == 5  # random suffix
    for name in names:
        assert DNS1123_LABEL.match(name), name
        assert len(name) <= 63
        assert name.startswith(prefix)
        assert len(name) == len(prefix) + 5


def test_a_dying_apiserver_fails_fast_with_its_log_tail(tmp_path: Path) -> None:
    t0 = time.monotonic()
    with (
        pytest.raises(TestbedError, match="kube-apiserver exited") as err,
        start_cluster(tmp_path, extra_apiserver_flags=["--no-such-flag"]),
    ):
        pass  # pragma: no cover - never started
    assert time.monotonic() - t0 < 20
    assert "unknown flag: --no-such-flag" in str(err.value)
    assert not (tmp_path / "etcd-data").exists()  # etcd stopped and its store removed


def test_missing_binaries_name_the_make_target(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BATON_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(TestbedError, match="make testbed-bins") as err:
        require_bins()
    assert "etcd, kube-apiserver, kubectl" in str(err.value)
