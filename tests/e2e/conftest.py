"""Fixtures for the end-to-end tests: a real etcd + kube-apiserver (see testbed.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from testbed import Cluster, chart_crds, install_crds, namespace_name, start_cluster


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

import itertools  # noqa: E402
from pathlib import Path  # noqa: E402

from podrunner import PodRunnerProcess  # noqa: E402

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
