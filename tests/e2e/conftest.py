"""Fixtures for the end-to-end tests: a real etcd + kube-apiserver (testbed.py), the local pod
runner (podrunner.py), Jaeger (jaeger.py) and the whole Baton stack on them (stack.py)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest

from tests.e2e.jaeger import Jaeger, start_jaeger
from tests.e2e.podrunner import PodRunnerProcess
from tests.e2e.stack import Stack, StartStack, admin_kube, operator_rbac
from tests.e2e.testbed import Cluster, chart_crds, install_crds, namespace_name, start_cluster
from tests.procs import StartGateway


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One test bed per session, with the chart's CRDs installed and Established.

    Certificates, kubeconfigs and the etcd / kube-apiserver logs stay in the session's pytest
    temp dir (``testbed0/``); etcd's data dir is removed on exit.
    """
    with start_cluster(tmp_path_factory.mktemp("testbed")) as c:
        install_crds(c, chart_crds())
        yield c


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test. Deleted without waiting at teardown: with no
    kube-controller-manager a namespace never finishes Terminating."""
    name = namespace_name(request.node.name)
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


# --------------------------------------------------------------------------------------------
# The local pod runner (podrunner.py): the test bed's scheduler + kubelet stand-in.


POD_RUNNER_READY_TIMEOUT_S = 30.0
POD_RUNNER_STOP_TIMEOUT_S = 15.0
_pod_subnets = itertools.count()


@pytest.fixture
def pod_runner(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[PodRunnerProcess]:
    """A pod runner for the test's namespace, on a Node named after the namespace.

    It binds the namespace's unscheduled pods to its node and runs their `baton` containers as
    local processes, each pod on its own loopback IP from a /24 no other runner of the session
    uses (127.77.N.0/24). Yields the running process: ``.node``, ``.namespace``, ``.log_dir``
    (container logs: ``<namespace>_<pod>_<container>.log``; the runner's own: ``podrunner.log``),
    ``.log_tail()``, ``.container_log(pod, container)``, ``.stop()``. Stopped at teardown
    (SIGTERM, bounded wait, SIGKILL); the runner kills every process it started.
    """
    subnet = next(_pod_subnets) % 256
    runner = PodRunnerProcess.start(
        kubeconfig=cluster.kubeconfig,
        node=namespace,
        namespace=namespace,
        log_dir=tmp_path / "podrunner",
        extra_args=[f"--pod-cidr=127.77.{subnet}.0/24"],
        ready_timeout_s=POD_RUNNER_READY_TIMEOUT_S,
    )
    try:
        yield runner
    finally:
        runner.stop(timeout_s=POD_RUNNER_STOP_TIMEOUT_S)


# --------------------------------------------------------------------------------------------
# Jaeger v2 (jaeger.py): a real trace store for the tracing tests.


@pytest.fixture
def jaeger(tmp_path: Path) -> Iterator[Jaeger]:
    """A Jaeger v2 of the test's own, built by `make testbed-bins`: OTLP gRPC on a free
    loopback port (``.otlp_endpoint``, for OTEL_EXPORTER_OTLP_ENDPOINT), memory storage, the
    query API at ``.query_url``. Config and log in ``tmp_path / "jaeger"``."""
    with start_jaeger(tmp_path / "jaeger") as j:
        yield j


@pytest.fixture
async def start_stack(
    cluster: Cluster,
    namespace: str,
    pod_runner: PodRunnerProcess,
    start_gateway: StartGateway,
    ledger: Path,
    log_dir: Path,
) -> AsyncIterator[StartStack]:
    """Start the stack in the test's namespace: a gateway, the pod runner, and the operator as
    a ServiceAccount bound only to its generated Role. ``gateway_env``, ``operator_env`` and
    ``pod_env`` add environment (e.g. OTEL_*). Operators started are stopped at teardown."""
    stacks: list[Stack] = []

    async def start(
        *,
        gateway_env: Mapping[str, str] | None = None,
        operator_env: Mapping[str, str] | None = None,
        pod_env: Mapping[str, str] | None = None,
    ) -> Stack:
        gateway = await start_gateway(**(gateway_env or {}))
        s = Stack(
            cluster=cluster,
            namespace=namespace,
            gateway=gateway,
            ledger=ledger,
            log_dir=log_dir,
            operator_kubeconfig=operator_rbac(cluster, namespace),
            kube=admin_kube(cluster),
        )
        await s.start_operator(env=operator_env, pod_env=pod_env)
        stacks.append(s)
        return s

    yield start
    for s in stacks:
        for op in s.operators:
            await op.stop()
