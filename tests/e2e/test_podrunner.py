"""The local pod runner (podrunner.py): its pure decisions, then the real thing.

The first half needs no server: table tests of the functions that decide what the runner does.
The second half runs the runner against the test bed's real kube-apiserver with real `baton`
processes: `baton sim` is the long-running container (it listens and prints a ready line),
`baton bogus` exits 2 and `baton --help` exits 0 within milliseconds.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiException, CoreV1Api

from baton.common import parse_ready
from tests.e2e.podrunner import (
    Action,
    ContainerConfigError,
    ContainerView,
    Kube,
    PodRejected,
    PodRunnerProcess,
    Runner,
    RunnerConfig,
    Running,
    Terminated,
    Waiting,
    allocate_ip,
    backoff_delay_s,
    container_argv,
    exit_code_of,
    expand,
    image_repository,
    pod_action,
    pod_fields,
    pod_phase,
    pod_status,
    resolve_env,
    response_json,
    restart_wanted,
    termination_grace_s,
)
from tests.e2e.testbed import Cluster

Json = dict[str, Any]

PY = "/venv/bin/python"
T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:00:05Z"

# ============================================================================================
# pure decisions (no server)


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        pytest.param("baton", "baton", id="bare"),
        pytest.param("baton:dev", "baton", id="tag"),
        pytest.param("baton@sha256:abc", "baton", id="digest"),
        pytest.param("baton:0.1.0@sha256:abc", "baton", id="tag-and-digest"),
        pytest.param("localhost:5000/baton:1", "localhost:5000/baton", id="registry-with-port"),
        pytest.param("ghcr.io/acme/baton", "ghcr.io/acme/baton", id="registry-no-tag"),
    ],
)
def test_image_repository(image: str, repository: str) -> None:
    assert image_repository(image) == repository


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        pytest.param("$(A)", "1", id="known"),
        pytest.param("x$(A)y$(B)z", "x1y2z", id="several"),
        pytest.param("$(NOPE)", "$(NOPE)", id="unknown-kept"),
        pytest.param("$$(A)", "$(A)", id="escaped"),
        pytest.param("$$$(A)", "$1", id="escaped-dollar-then-ref"),
        pytest.param("a$$b", "a$b", id="double-dollar-is-one"),
        pytest.param("$(A", "$(A", id="unterminated-kept"),
        pytest.param("$A", "$A", id="no-parens-literal"),
        pytest.param("cost $", "cost $", id="trailing-dollar"),
        pytest.param("$()", "$()", id="empty-name"),
    ],
)
def test_expand_follows_kubernetes_rules(text: str, expanded: str) -> None:
    assert expand(text, {"A": "1", "B": "2"}) == expanded


@pytest.mark.parametrize(
    ("container", "argv"),
    [
        pytest.param(
            {"image": "baton:dev", "args": ["sim"]}, [PY, "-m", "baton", "sim"], id="args"
        ),
        pytest.param(
            {"image": "baton", "command": ["baton"], "args": ["sim", "--port", "$(PORT)"]},
            [PY, "-m", "baton", "sim", "--port", "8080"],
            id="command-baton-args-expanded",
        ),
        pytest.param(
            {"image": "baton:1", "command": ["/usr/local/bin/baton", "gateway"], "args": ["-v"]},
            [PY, "-m", "baton", "gateway", "-v"],
            id="command-path-to-baton",
        ),
        pytest.param({"image": "baton:dev"}, [PY, "-m", "baton"], id="entrypoint-only"),
    ],
)
def test_container_argv(container: Json, argv: list[str]) -> None:
    spec = {"name": "c", **container}
    assert container_argv(spec, {"PORT": "8080"}, allowed_repos={"baton"}, python=PY) == argv


@pytest.mark.parametrize(
    ("container", "reason", "mentions"),
    [
        pytest.param({"image": "busybox:1.36"}, "UnsupportedImage", "busybox:1.36", id="foreign"),
        pytest.param(
            {"image": "acme/baton:dev"}, "UnsupportedImage", "acme/baton", id="other-repo"
        ),
        pytest.param({"image": ""}, "UnsupportedImage", "''", id="no-image"),
        pytest.param(
            {"image": "baton:dev", "command": ["sh", "-c", "baton sim"]},
            "UnsupportedCommand",
            "'sh'",
            id="shell-command",
        ),
        pytest.param(
            {"image": "baton:dev", "readinessProbe": {"tcpSocket": {"port": 1}}},
            "UnsupportedProbe",
            "readinessProbe",
            id="probe",
        ),
    ],
)
def test_container_argv_refuses_what_cannot_run(
    container: Json, reason: str, mentions: str
) -> None:
    with pytest.raises(PodRejected) as info:
        container_argv({"name": "c", **container}, {}, allowed_repos={"baton"}, python=PY)
    assert info.value.reason == reason
    assert mentions in info.value.message
    assert "baton" in info.value.message


POD: Json = {
    "metadata": {
        "name": "p",
        "namespace": "ns",
        "uid": "u-1",
        "labels": {"app": "green"},
        "annotations": {"a/b": "c"},
    },
    "spec": {"nodeName": "n1", "containers": []},
}
FIELDS = pod_fields(POD, node="n1", pod_ip="127.77.0.2", host_ip="127.0.0.1")


def _env(*entries: Json, env_from: list[Json] | None = None) -> Json:
    return {"name": "c", "env": list(entries), "envFrom": env_from or []}


def _field(name: str, path: str) -> Json:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _key(name: str, kind: str, obj: str, key: str, optional: bool = False) -> Json:
    ref = "configMapKeyRef" if kind == "ConfigMap" else "secretKeyRef"
    return {"name": name, "valueFrom": {ref: {"name": obj, "key": key, "optional": optional}}}


SOURCES: dict[Any, Mapping[str, str] | None] = {
    ("ConfigMap", "cfg"): {"mode": "paper", "level": "debug"},
    ("Secret", "creds"): {"token": "s3cret"},
    ("ConfigMap", "missing"): None,
}


@pytest.mark.parametrize(
    ("container", "env"),
    [
        pytest.param(
            _env(
                _field("N", "metadata.name"),
                _field("NS", "metadata.namespace"),
                _field("UID", "metadata.uid"),
                _field("NODE", "spec.nodeName"),
                _field("IP", "status.podIP"),
                _field("HOST", "status.hostIP"),
            ),
            {
                "N": "p",
                "NS": "ns",
                "UID": "u-1",
                "NODE": "n1",
                "IP": "127.77.0.2",
                "HOST": "127.0.0.1",
            },
            id="field-refs",
        ),
        pytest.param(
            _env(
                _field("APP", "metadata.labels['app']"),
                _field("ANN", "metadata.annotations['a/b']"),
            ),
            {"APP": "green", "ANN": "c"},
            id="label-and-annotation",
        ),
        pytest.param(
            _env(
                {"name": "A", "value": "1"},
                {"name": "B", "value": "$(A)-$(C)-$$(A)"},
                {"name": "C", "value": "3"},
            ),
            {"A": "1", "B": "1-$(C)-$(A)", "C": "3"},
            id="expansion-sees-only-earlier-vars",
        ),
        pytest.param(
            _env(
                _key("MODE", "ConfigMap", "cfg", "mode"), _key("TOKEN", "Secret", "creds", "token")
            ),
            {"MODE": "paper", "TOKEN": "s3cret"},
            id="config-map-and-secret-keys",
        ),
        pytest.param(
            _env(
                _key("X", "ConfigMap", "missing", "x", optional=True),
                _key("Y", "ConfigMap", "cfg", "nope", optional=True),
            ),
            {},
            id="optional-missing-skipped",
        ),
        pytest.param(
            _env(
                {"name": "mode", "value": "live"},
                env_from=[
                    {"configMapRef": {"name": "cfg"}},
                    {"secretRef": {"name": "creds"}, "prefix": "S_"},
                ],
            ),
            {"mode": "live", "level": "debug", "S_token": "s3cret"},
            id="env-from-then-env-overrides",
        ),
    ],
)
def test_resolve_env(container: Json, env: dict[str, str]) -> None:
    assert resolve_env(container, POD, FIELDS, SOURCES) == env


@pytest.mark.parametrize(
    ("container", "message"),
    [
        pytest.param(
            _env(_key("X", "ConfigMap", "missing", "x")), 'configmap "missing" not found', id="obj"
        ),
        pytest.param(
            _env(_key("X", "ConfigMap", "cfg", "nope")), "couldn't find key nope", id="key"
        ),
        pytest.param(
            _env(env_from=[{"configMapRef": {"name": "missing"}}]),
            'configmap "missing" not found',
            id="env-from",
        ),
    ],
)
def test_resolve_env_missing_source_is_a_config_error(container: Json, message: str) -> None:
    with pytest.raises(ContainerConfigError, match=message):
        resolve_env(container, POD, FIELDS, SOURCES)


def test_unsupported_field_ref_rejects_the_pod() -> None:
    with pytest.raises(PodRejected) as info:
        resolve_env(_env(_field("X", "spec.schedulerName")), POD, FIELDS, SOURCES)
    assert info.value.reason == "UnsupportedFieldRef"


def _pod(node: str = "", *, phase: str = "", deleting: bool = False, scheduler: str = "") -> Json:
    meta: Json = {"name": "p", "namespace": "ns", "uid": "u"}
    if deleting:
        meta["deletionTimestamp"] = T0
    spec: Json = {"containers": [], "nodeName": node, "schedulerName": scheduler}
    return {"metadata": meta, "spec": spec, "status": {"phase": phase} if phase else {}}


@pytest.mark.parametrize(
    ("pod", "known", "action"),
    [
        pytest.param(_pod(), False, Action.BIND, id="unscheduled-bind"),
        pytest.param(_pod(scheduler="default-scheduler"), False, Action.BIND, id="default-sched"),
        pytest.param(_pod(scheduler="other"), False, Action.IGNORE, id="other-scheduler"),
        pytest.param(_pod(deleting=True), False, Action.IGNORE, id="unscheduled-deleting"),
        pytest.param(_pod("n2"), False, Action.IGNORE, id="other-node"),
        pytest.param(_pod("n1"), False, Action.START, id="bound-here-start"),
        pytest.param(_pod("n1", phase="Running"), False, Action.START, id="adopt-after-restart"),
        pytest.param(_pod("n1"), True, Action.UPDATE, id="known-update"),
        pytest.param(_pod("n1", deleting=True), True, Action.UPDATE, id="known-deleting"),
        pytest.param(_pod("n1", deleting=True), False, Action.FINALIZE, id="unknown-deleting"),
        pytest.param(_pod("n1", phase="Failed"), False, Action.IGNORE, id="terminal-not-rerun"),
        pytest.param(_pod("n1", phase="Succeeded"), False, Action.IGNORE, id="succeeded"),
    ],
)
def test_pod_action(pod: Json, known: bool, action: Action) -> None:
    assert pod_action(pod, "n1", known=known) is action


@pytest.mark.parametrize(
    ("policy", "exit_code", "restart"),
    [
        pytest.param("Always", 0, True, id="always-0"),
        pytest.param("Always", 2, True, id="always-2"),
        pytest.param("OnFailure", 0, False, id="onfailure-0"),
        pytest.param("OnFailure", 137, True, id="onfailure-137"),
        pytest.param("Never", 1, False, id="never-1"),
    ],
)
def test_restart_wanted(policy: str, exit_code: int, restart: bool) -> None:
    assert restart_wanted(policy, exit_code) is restart


def test_backoff_doubles_from_base_to_max() -> None:
    assert [backoff_delay_s(n, 0.5, 5.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff_delay_s(10_000, 0.5, 5.0) == 5.0


@pytest.mark.parametrize(
    ("returncode", "reported"),
    [
        pytest.param(0, (0, None), id="ok"),
        pytest.param(2, (2, None), id="error"),
        pytest.param(-9, (137, 9), id="sigkill"),
        pytest.param(-15, (143, 15), id="sigterm"),
    ],
)
def test_exit_code_of(returncode: int, reported: tuple[int, int | None]) -> None:
    assert exit_code_of(returncode) == reported


@pytest.mark.parametrize(
    ("meta", "spec", "grace"),
    [
        pytest.param({}, {}, 30.0, id="default-30"),
        pytest.param({}, {"terminationGracePeriodSeconds": 3}, 3.0, id="spec"),
        pytest.param(
            {"deletionGracePeriodSeconds": 0},
            {"terminationGracePeriodSeconds": 9},
            0.0,
            id="deletion-overrides",
        ),
        pytest.param({}, {"terminationGracePeriodSeconds": 600}, 30.0, id="capped"),
    ],
)
def test_termination_grace(meta: Json, spec: Json, grace: float) -> None:
    assert termination_grace_s({"metadata": meta, "spec": spec}, 30.0) == grace


def test_allocate_ip_skips_network_gateway_and_used() -> None:
    cidr = ipaddress.IPv4Network("127.77.3.0/24")
    assert allocate_ip(cidr, []) == "127.77.3.2"
    assert allocate_ip(cidr, ["127.77.3.2", "127.77.3.3"]) == "127.77.3.4"
    assert allocate_ip(cidr, ["127.77.3.2"], preferred="127.77.3.9") == "127.77.3.9"
    assert allocate_ip(cidr, ["127.77.3.9"], preferred="127.77.3.9") == "127.77.3.2"
    assert allocate_ip(cidr, [], preferred="127.0.0.5") == "127.77.3.2"  # outside: ignored
    with pytest.raises(RuntimeError, match="exhausted"):
        allocate_ip(ipaddress.IPv4Network("127.77.4.0/30"), ["127.77.4.2"])


def _c(state: Any, last: Terminated | None = None, ready: bool = False) -> ContainerView:
    return ContainerView("c", "baton:dev", state, last_state=last, ready=ready)


EXIT0 = Terminated(0, "Completed", T0)
EXIT2 = Terminated(2, "Error", T0)
CRASH = Waiting("CrashLoopBackOff")


@pytest.mark.parametrize(
    ("policy", "states", "terminal", "phase"),
    [
        pytest.param("Always", [_c(Waiting("ContainerCreating"))], False, "Pending", id="creating"),
        pytest.param(
            "Always",
            [_c(Running(T0)), _c(Waiting("X"))],
            False,
            "Pending",
            id="one-not-started-yet",
        ),
        pytest.param("Always", [_c(Running(T0))], False, "Running", id="running"),
        pytest.param("Always", [_c(CRASH, EXIT2)], False, "Running", id="crashloop-is-running"),
        pytest.param("Always", [_c(EXIT0)], False, "Running", id="always-exited-restarting"),
        pytest.param("Never", [_c(EXIT2)], False, "Failed", id="never-failed"),
        pytest.param("Never", [_c(EXIT0)], False, "Succeeded", id="never-succeeded"),
        pytest.param("Never", [_c(EXIT0), _c(Running(T0))], False, "Running", id="never-one-left"),
        pytest.param("OnFailure", [_c(EXIT0)], False, "Succeeded", id="onfailure-succeeded"),
        pytest.param("OnFailure", [_c(CRASH, EXIT2)], False, "Running", id="onfailure-backoff"),
        pytest.param("Always", [_c(EXIT0)], True, "Succeeded", id="deleted-all-exit-0"),
        pytest.param(
            "Always", [_c(Terminated(143, "Error", T0))], True, "Failed", id="deleted-sigterm-143"
        ),
        pytest.param(
            "Always",
            [_c(Waiting("CreateContainerConfigError"))],
            True,
            "Failed",
            id="deleted-never-started",
        ),
    ],
)
def test_pod_phase(policy: str, states: list[ContainerView], terminal: bool, phase: str) -> None:
    assert pod_phase(policy, states, terminal=terminal) == phase


def _conditions(status: Json) -> dict[str, Json]:
    return {c["type"]: c for c in status["conditions"]}


def test_pod_status_running_and_ready() -> None:
    pod = {**POD, "spec": {"restartPolicy": "Always", "containers": [{"name": "c"}]}}
    view = ContainerView(
        "c", "baton:dev", Running(T0), ready=True, started=True, container_id="baton://42"
    )
    status = pod_status(
        pod, [view], pod_ip="127.77.0.2", host_ip="127.0.0.1", start_time=T0, now=T1
    )
    assert status["phase"] == "Running"
    assert status["podIP"] == "127.77.0.2"
    assert status["podIPs"] == [{"ip": "127.77.0.2"}]
    assert status["hostIP"] == "127.0.0.1"
    assert status["startTime"] == T0
    conds = _conditions(status)
    assert {t: c["status"] for t, c in conds.items()} == {
        "PodScheduled": "True",
        "Initialized": "True",
        "ContainersReady": "True",
        "Ready": "True",
    }
    assert status["containerStatuses"] == [
        {
            "name": "c",
            "image": "baton:dev",
            "imageID": "baton:dev",
            "ready": True,
            "started": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": T0}},
            "lastState": {},
            "containerID": "baton://42",
        }
    ]


def test_pod_status_crash_loop_keeps_transition_time_and_other_conditions() -> None:
    pod = {**POD, "spec": {"containers": [{"name": "c"}]}}
    view = ContainerView(
        "c",
        "baton:dev",
        Waiting("CrashLoopBackOff", "back-off 1s"),
        last_state=EXIT2,
        restart_count=3,
    )
    prev = [
        {"type": "Ready", "status": "False", "lastTransitionTime": T0},
        {"type": "example.com/gate", "status": "True", "lastTransitionTime": T0},
    ]
    status = pod_status(
        pod,
        [view],
        pod_ip="127.77.0.2",
        host_ip="127.0.0.1",
        start_time=T0,
        now=T1,
        prev_conditions=prev,
    )
    conds = _conditions(status)
    assert conds["Ready"]["status"] == "False"
    assert conds["Ready"]["lastTransitionTime"] == T0  # unchanged status: time kept
    assert conds["ContainersReady"]["lastTransitionTime"] == T1
    assert conds["Ready"]["message"] == "containers with unready status: [c]"
    assert conds["example.com/gate"]["status"] == "True"  # someone else's condition kept
    cs = status["containerStatuses"][0]
    assert cs["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1s"}}
    assert cs["lastState"]["terminated"]["exitCode"] == 2
    assert cs["restartCount"] == 3


def test_pod_status_readiness_gate_holds_ready() -> None:
    pod = {
        **POD,
        "spec": {
            "readinessGates": [{"conditionType": "example.com/gate"}],
            "containers": [{"name": "c"}],
        },
    }
    view = ContainerView("c", "baton:dev", Running(T0), ready=True, started=True)
    status = pod_status(
        pod, [view], pod_ip="127.77.0.2", host_ip="127.0.0.1", start_time=T0, now=T1
    )
    conds = _conditions(status)
    assert conds["ContainersReady"]["status"] == "True"
    assert conds["Ready"]["status"] == "False"
    assert conds["Ready"]["reason"] == "ReadinessGatesNotReady"


def test_pod_status_rejected_pod_failed_with_reason() -> None:
    pod = {**POD, "spec": {"containers": [{"name": "c"}]}}
    rejected = PodRejected("UnsupportedImage", "image 'busybox' cannot run")
    view = ContainerView("c", "busybox", Waiting("UnsupportedImage", rejected.message))
    status = pod_status(
        pod, [view], pod_ip=None, host_ip="127.0.0.1", start_time=T0, now=T1, rejected=rejected
    )
    assert (status["phase"], status["reason"]) == ("Failed", "UnsupportedImage")
    assert status["message"] == "image 'busybox' cannot run"
    assert _conditions(status)["Ready"]["reason"] == "PodCompleted"


class FakeKube(Kube):
    """Scripted watch streams; each ends with an exception or normally (server timeout).
    When they run out it stops the runner's watch loop."""

    def __init__(self, streams: list[list[Json | Exception]]) -> None:
        self.streams = streams
        self.stop = threading.Event()
        self.watched_from: list[str] = []
        self.lists = 0

    def watch_pods(self, resource_version: str) -> Iterator[Json]:
        self.watched_from.append(resource_version)
        if not self.streams:
            self.stop.set()
            return
        for item in self.streams.pop(0):
            if isinstance(item, Exception):
                raise item
            yield item

    def list_pods(self) -> tuple[list[Json], str]:
        self.lists += 1
        return [_pod("n1")], "500"


def _event(type_: str, rv: str) -> Json:
    return {"type": type_, "object": {"metadata": {"uid": "u", "resourceVersion": rv}}}


GONE_EVENT = {"type": "ERROR", "object": {"code": 410, "message": "too old resource version"}}


@pytest.mark.parametrize(
    "expiry",
    [
        pytest.param(GONE_EVENT, id="410-error-event"),
        pytest.param(ApiException(status=410, reason="Gone"), id="410-http-status"),
    ],
)
def test_watch_resumes_from_last_version_and_relists_on_410(expiry: Json | Exception) -> None:
    kube = FakeKube(
        [
            [_event("ADDED", "11"), _event("BOOKMARK", "12")],  # ends: resume from 12
            [_event("MODIFIED", "13"), expiry],  # expired: list again (rv 500), post a sync
            [_event("DELETED", "501")],
        ]
    )
    runner = Runner(RunnerConfig(node="n1", log_dir=Path("/nonexistent")), kube)
    kube.stop = runner._stop_watch
    posted: list[Any] = []
    runner._watch("10", posted.append)
    assert kube.watched_from == ["10", "12", "500", "501"]
    assert kube.lists == 1
    assert [p[0] if p[0] == "sync" else p[1] for p in posted] == [
        "ADDED",
        "MODIFIED",
        "sync",
        "DELETED",
    ]


# ============================================================================================
# against the real apiserver, with real processes

WAIT_S = 30.0
POLL_S = 0.05


@pytest.fixture
def core(cluster: Cluster) -> Iterator[CoreV1Api]:
    with cluster.api_client() as api:
        yield CoreV1Api(api)


def pod_manifest(
    name: str,
    args: list[str],
    *,
    image: str = "baton:dev",
    restart: str = "Always",
    command: list[str] | None = None,
    env: list[Json] | None = None,
    **container: Any,
) -> Json:
    c: Json = {"name": "main", "image": image, "args": args, "env": env or [], **container}
    if command is not None:
        c["command"] = command
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": 10, "containers": [c]},
    }


POD_IP_ENV = [_field("POD_IP", "status.podIP")]


def sim_manifest(name: str, *, port: int = 0, env: list[Json] | None = None, **extra: Any) -> Json:
    """A long-running pod: the exchange simulator listening on its pod IP."""
    args = ["sim", "--port", str(port), "--host", "$(POD_IP)", "--push-interval-s", "5"]
    return pod_manifest(name, args, env=[*POD_IP_ENV, *(env or [])], **extra)


def create(cluster: Cluster, namespace: str, *manifests: Json) -> None:
    for m in manifests:
        cluster.kubectl("create", f"--namespace={namespace}", "-f", "-", input=json.dumps(m))


def read_pod(core: CoreV1Api, namespace: str, name: str) -> Json | None:
    try:
        return response_json(core.read_namespaced_pod(name, namespace, _preload_content=False))
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def wait_pod(
    core: CoreV1Api,
    runner: PodRunnerProcess,
    name: str,
    what: str,
    predicate: Callable[[Json], bool],
    timeout_s: float = WAIT_S,
) -> Json:
    """Poll the pod until ``predicate`` holds (bounded); fail with its status and the runner's
    log tail."""
    assert runner.namespace is not None
    deadline = time.monotonic() + timeout_s
    while True:
        pod = read_pod(core, runner.namespace, name)
        if pod is not None and predicate(pod):
            return pod
        if time.monotonic() > deadline:
            status = json.dumps(pod["status"], indent=1) if pod else "(no pod)"
            raise AssertionError(
                f"pod {name} not {what} after {timeout_s}s; status:\n{status}\n"
                f"podrunner log:\n{runner.log_tail()}"
            )
        time.sleep(POLL_S)


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(POLL_S)


def condition(pod: Json, type_: str) -> Json:
    return next((c for c in pod["status"].get("conditions") or [] if c["type"] == type_), {})


def container(pod: Json) -> Json:
    statuses: list[Json] = pod["status"].get("containerStatuses") or [{}]
    return statuses[0]


def is_ready(pod: Json) -> bool:
    return bool(condition(pod, "Ready").get("status") == "True")


def is_running(pod: Json) -> bool:
    return pod["status"].get("phase") == "Running" and "running" in container(pod).get("state", {})


def pid_of(pod: Json) -> int:
    return int(container(pod)["containerID"].removeprefix("baton://"))


def alive(pid: int) -> bool:
    """A live process (a zombie no one reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def proc_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def proc_argv(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def ready_line(runner: PodRunnerProcess, pod: str) -> Json:
    found: list[Json] = []

    def seen() -> bool:
        for line in runner.container_log(pod, "main").splitlines():
            fields = parse_ready(line)
            if fields is not None:
                found.append(fields)
                return True
        return False

    wait_until(seen, f"the ready line of {pod} in its log")
    return found[0]


def test_long_running_pod_is_bound_runs_ready_and_serves_on_its_pod_ip(
    cluster: Cluster, core: CoreV1Api, namespace: str, pod_runner: PodRunnerProcess
) -> None:
    node = response_json(core.read_node(pod_runner.node, _preload_content=False))
    assert condition(node, "Ready")["status"] == "True"
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == pod_runner.node

    create(cluster, namespace, sim_manifest("sim"))
    pod = wait_pod(core, pod_runner, "sim", "Running and Ready", lambda p: is_ready(p))

    assert pod["spec"]["nodeName"] == pod_runner.node
    status = pod["status"]
    assert status["phase"] == "Running"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "PodScheduled": "True",
        "Initialized": "True",
        "ContainersReady": "True",
        "Ready": "True",
    }
    pod_ip = ipaddress.IPv4Address(status["podIP"])
    assert pod_ip in ipaddress.IPv4Network("127.77.0.0/16")
    assert status["podIPs"] == [{"ip": status["podIP"]}]
    assert status["hostIP"] == "127.0.0.1"
    cs = container(pod)
    assert cs["name"] == "main"
    assert cs["image"] == "baton:dev"
    assert (cs["ready"], cs["started"], cs["restartCount"]) == (True, True, 0)
    assert "startedAt" in cs["state"]["running"]
    assert alive(pid_of(pod))

    # The process bound port 0 on its pod IP; its ready line says where, and it answers there.
    ready = ready_line(pod_runner, "sim")
    assert ready["rest_url"].startswith(f"http://{pod_ip}:")
    with urllib.request.urlopen(ready["rest_url"] + "/api/v3/ping", timeout=5) as resp:
        assert resp.status == 200


def test_env_field_refs_config_and_expansion_reach_the_process(
    cluster: Cluster, core: CoreV1Api, namespace: str, pod_runner: PodRunnerProcess
) -> None:
    cluster.kubectl(
        "create", f"--namespace={namespace}", "configmap", "cfg", "--from-literal=mode=paper"
    )
    cluster.kubectl(
        "create",
        f"--namespace={namespace}",
        "secret",
        "generic",
        "creds",
        "--from-literal=token=s3cret",
    )
    env = [
        _field("POD_NAME", "metadata.name"),
        _field("POD_NS", "metadata.namespace"),
        _field("POD_UID", "metadata.uid"),
        _field("NODE", "spec.nodeName"),
        _field("HOST_IP", "status.hostIP"),
        _field("APP", "metadata.labels['app']"),
        _key("MODE", "ConfigMap", "cfg", "mode"),
        _key("TOKEN", "Secret", "creds", "token"),
        {"name": "SEED", "value": "7"},
        {"name": "GREETING", "value": "$(POD_NAME) on $(NODE), $$(POD_NAME), $(NOPE)"},
    ]
    manifest = sim_manifest("envy", env=env)
    manifest["spec"]["containers"][0]["args"] += ["--seed", "$(SEED)"]
    create(cluster, namespace, manifest)
    pod = wait_pod(core, pod_runner, "envy", "Running", is_running)

    pid = pid_of(pod)
    got = proc_env(pid)
    expected = {
        "POD_NAME": "envy",
        "POD_NS": namespace,
        "POD_UID": pod["metadata"]["uid"],
        "NODE": pod_runner.node,
        "POD_IP": pod["status"]["podIP"],
        "HOST_IP": "127.0.0.1",
        "APP": "envy",
        "MODE": "paper",
        "TOKEN": "s3cret",
        "GREETING": f"envy on {pod_runner.node}, $(POD_NAME), $(NOPE)",
        "HOSTNAME": "envy",
    }
    assert {k: got.get(k) for k in expected} == expected
    argv = proc_argv(pid)
    assert argv[1:] == [
        "-m",
        "baton",
        "sim",
        "--port",
        "0",
        "--host",
        pod["status"]["podIP"],
        "--push-interval-s",
        "5",
        "--seed",
        "7",
    ]


def test_missing_config_map_waits_then_the_container_starts(
    cluster: Cluster, core: CoreV1Api, namespace: str, pod_runner: PodRunnerProcess
) -> None:
    create(
        cluster, namespace, sim_manifest("later", env=[_key("MODE", "ConfigMap", "late", "mode")])
    )
    pod = wait_pod(
        core,
        pod_runner,
        "later",
        "waiting for its ConfigMap",
        lambda p: (
            container(p).get("state", {}).get("waiting", {}).get("reason")
            == "CreateContainerConfigError"
        ),
    )
    assert pod["status"]["phase"] == "Pending"
    assert 'configmap "late" not found' in container(pod)["state"]["waiting"]["message"]

    cluster.kubectl(
        "create", f"--namespace={namespace}", "configmap", "late", "--from-literal=mode=x"
    )
    pod = wait_pod(core, pod_runner, "later", "Running", is_running)
    assert proc_env(pid_of(pod))["MODE"] == "x"


def test_crash_looping_container_reports_restarts_and_crash_loop_back_off(
    cluster: Cluster, core: CoreV1Api, namespace: str, pod_runner: PodRunnerProcess
) -> None:
    create(cluster, namespace, pod_manifest("crashy", ["bogus"]))

    def backing_off(restarts: int) -> Callable[[Json], bool]:
        def check(p: Json) -> bool:
            cs = container(p)
            waiting = cs.get("state", {}).get("waiting", {})
            return bool(
                cs.get("restartCount", 0) >= restarts
                and waiting.get("reason") == "CrashLoopBackOff"
            )

        return check

    first = wait_pod(core, pod_runner, "crashy", "in CrashLoopBackOff", backing_off(0))
    pod = wait_pod(core, pod_runner, "crashy", "restarted twice, backing off", backing_off(2))
    cs = container(pod)
    assert cs["restartCount"] > container(first)["restartCount"]
    assert "back-off" in cs["state"]["waiting"]["message"]
    term = cs["lastState"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (2, "Error")
    assert term["containerID"].startswith("baton://")
    assert cs["ready"] is False
    assert pod["status"]["phase"] == "Running"  # restartPolicy Always keeps it Running
    assert condition(pod, "Ready")["status"] == "False"
    assert "unknown command 'bogus'" in pod_runner.container_log("crashy", "main")


@pytest.mark.parametrize(
    ("policy", "args", "phase", "exit_code", "reason"),
    [
        pytest.param("Never", ["bogus"], "Failed", 2, "Error", id="never-exit-2-failed"),
        pytest.param("Never", ["--help"], "Succeeded", 0, "Completed", id="never-exit-0"),
        pytest.param("OnFailure", ["--help"], "Succeeded", 0, "Completed", id="onfailure-exit-0"),
    ],
)
def test_restart_policy_decides_the_final_phase(
    cluster: Cluster,
    core: CoreV1Api,
    namespace: str,
    pod_runner: PodRunnerProcess,
    policy: str,
    args: list[str],
    phase: str,
    exit_code: int,
    reason: str,
) -> None:
    create(cluster, namespace, pod_manifest("once", args, restart=policy))
    pod = wait_pod(core, pod_runner, "once", phase, lambda p: p["status"].get("phase") == phase)
    cs = container(pod)
    term = cs["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (exit_code, reason)
    assert cs["restartCount"] == 0
    assert cs["ready"] is False
    assert condition(pod, "Ready")["reason"] == "PodCompleted"


@pytest.mark.parametrize(
    ("image", "command", "reason", "mentions"),
    [
        pytest.param("busybox:1.36", None, "UnsupportedImage", "busybox:1.36", id="foreign-image"),
        pytest.param(
            "baton:dev", ["sh", "-c", "baton sim"], "UnsupportedCommand", "'sh'", id="shell-command"
        ),
    ],
)
def test_pod_the_runner_cannot_run_fails_with_a_clear_reason(
    cluster: Cluster,
    core: CoreV1Api,
    namespace: str,
    pod_runner: PodRunnerProcess,
    image: str,
    command: list[str] | None,
    reason: str,
    mentions: str,
) -> None:
    create(
        cluster,
        namespace,
        pod_manifest("alien", ["x"], image=image, command=command),
    )
    pod = wait_pod(
        core, pod_runner, "alien", "Failed", lambda p: p["status"].get("phase") == "Failed"
    )
    assert pod["status"]["reason"] == reason
    assert mentions in pod["status"]["message"]
    assert "baton" in pod["status"]["message"]
    assert container(pod)["state"]["waiting"]["reason"] == reason


@pytest.mark.parametrize(
    "force", [pytest.param(False, id="graceful"), pytest.param(True, id="grace-0")]
)
def test_deleting_a_pod_stops_its_process_and_the_pod_goes(
    cluster: Cluster, core: CoreV1Api, namespace: str, pod_runner: PodRunnerProcess, force: bool
) -> None:
    create(cluster, namespace, sim_manifest("doomed"))
    pid = pid_of(wait_pod(core, pod_runner, "doomed", "Running", is_running))
    assert alive(pid)

    flags = ["--grace-period=0", "--force"] if force else []
    t0 = time.monotonic()
    cluster.kubectl("delete", f"--namespace={namespace}", "pod", "doomed", "--wait=false", *flags)
    wait_until(lambda: read_pod(core, namespace, "doomed") is None, "the pod object to disappear")
    wait_until(lambda: not alive(pid), f"process {pid} to exit")
    # sim exits on SIGTERM: well within the 10 s grace period, no SIGKILL needed.
    assert time.monotonic() - t0 < 10


def test_stopping_the_runner_kills_its_containers(
    cluster: Cluster, core: CoreV1Api, namespace: str, pod_runner: PodRunnerProcess
) -> None:
    create(cluster, namespace, sim_manifest("a"), sim_manifest("b"))
    pids = [pid_of(wait_pod(core, pod_runner, n, "Running", is_running)) for n in ("a", "b")]
    assert all(alive(p) for p in pids)

    assert pod_runner.stop() == 0
    assert [p for p in pids if alive(p)] == []
    node = response_json(core.read_node(pod_runner.node, _preload_content=False))
    assert condition(node, "Ready")["status"] == "False"


def test_a_killed_runner_takes_its_containers_with_it(
    cluster: Cluster, core: CoreV1Api, namespace: str, pod_runner: PodRunnerProcess
) -> None:
    """SIGKILL leaves the runner no time to clean up: the kernel kills its children
    (PR_SET_PDEATHSIG)."""
    create(cluster, namespace, sim_manifest("orphan"))
    pid = pid_of(wait_pod(core, pod_runner, "orphan", "Running", is_running))
    pod_runner.popen.kill()
    pod_runner.popen.wait(timeout=10)
    wait_until(lambda: not alive(pid), f"process {pid} to die with the runner", timeout_s=10)
