"""A local pod runner: the test bed's stand-in for kube-scheduler and the kubelet.

The test bed has a real kube-apiserver but no scheduler, no kubelet and no container runtime.
This process fills the gap for the project's own image, as close to Kubernetes as is cheap:

- registers a Node named ``--node`` (Ready) and binds unscheduled pods of its namespace to it
  through ``pods/binding``, as kube-scheduler does;
- runs each container of a pod bound to that node as a host process: the image's entrypoint is
  the ``baton`` CLI, so a container is ``python -m baton [command[1:]] [args]`` with the
  runner's interpreter. Only images whose repository is in ``--image-repo`` run; anything else
  fails the pod with a clear reason (``UnsupportedImage``, ``UnsupportedCommand``, ...);
- gives each pod its own loopback address from ``--pod-cidr`` (its podIP);
- reports the pod status like the kubelet: phase, conditions, containerStatuses (running /
  waiting / terminated, restartCount, lastState, ready, started), restarts with exponential
  backoff (``CrashLoopBackOff``); a running container is ready. Probes are refused
  (``UnsupportedProbe``): the pods it exists for, the operator's strategy pods, have none, and
  real probes run on the real node (tests/node, docs/real-node.md);
- on deletion sends SIGTERM, waits the grace period (capped), sends SIGKILL, then deletes the
  pod with grace 0 and a uid precondition, as the kubelet does.

Usage::

    python tests/e2e/podrunner.py --kubeconfig K --node NODE [--namespace NS] --log-dir DIR

It prints one ready line on stdout once it watches (``{"ready": {"node": ...}}``) and logs
JSON to stderr. Each container's stdout+stderr go to ``DIR/<namespace>_<pod>_<container>.log``
(appended across restarts); each pod runs in its own working directory ``DIR/pods/...``.
On SIGTERM/SIGINT it stops every process it started (SIGTERM, then SIGKILL to the process
group), marks its Node NotReady and exits 0. Each child also gets SIGKILL if the runner dies.

The decisions (what to do with a pod, phases, conditions, statuses, env, backoff) are
pure functions at the top of this file, unit-tested without a server in test_podrunner.py.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import enum
import ipaddress
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import kubernetes.client
import kubernetes.config
import urllib3
from kubernetes.client import (
    ApiException,
    CoreV1Api,
    V1Binding,
    V1DeleteOptions,
    V1Node,
    V1ObjectMeta,
    V1ObjectReference,
    V1Preconditions,
)

from baton.common import announce_ready, parse_ready, setup_logging

Json = dict[str, Any]

log = logging.getLogger("baton.podrunner")

DEFAULT_IMAGE_REPOS = ("baton",)
DEFAULT_POD_CIDR = "127.77.0.0/16"
HOST_IP = "127.0.0.1"
DEFAULT_GRACE_S = 30.0  # Kubernetes' default terminationGracePeriodSeconds
GONE_GRACE_S = 2.0  # a pod deleted under us (grace 0): a short SIGTERM window, then SIGKILL
REQUEST_TIMEOUT_S = 10.0
WATCH_TIMEOUT_S = 60  # server-side: the watch ends and is resumed from the last resourceVersion
WATCH_RETRY_S = 1.0
STATUS_RETRY_S = 0.5
LOCAL_SCHEDULER_NAMES = ("", "default-scheduler")
TERMINAL_PHASES = ("Succeeded", "Failed")
OWNED_CONDITIONS = ("PodScheduled", "Initialized", "ContainersReady", "Ready")
# Passed through from the runner's environment: what the image's own ENV would provide.
PASSTHROUGH_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")
PROBE_FIELDS = ("startupProbe", "readinessProbe", "livenessProbe")
# Container fields with an effect the runner does not reproduce: logged when a pod uses them.
IGNORED_CONTAINER_FIELDS = ("volumeMounts", "lifecycle", "workingDir")


# ============================================================================================
# Pure logic: no I/O below this line until the "I/O" section.


class PodRejected(Exception):
    """The pod can never run here: it is set to phase Failed with this reason and message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class ContainerConfigError(Exception):
    """The container's environment cannot be built yet (a missing ConfigMap, Secret or key).

    As in Kubernetes the container waits with reason CreateContainerConfigError and the runner
    retries with backoff, so creating the object later lets the pod start.
    """


def dig(obj: Any, *path: str) -> Any:
    """``obj[p0][p1]...`` or None as soon as a level is missing or not a mapping."""
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def rfc3339(t: float) -> str:
    """Kubernetes' ``metav1.Time`` format (second precision, UTC)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# ---------------------------------------------------------------------------------- images


def image_repository(image: str) -> str:
    """The repository of an image reference: registry/name without ``:tag`` or ``@digest``.

    >>> image_repository("baton:dev"), image_repository("localhost:5000/baton:1@sha256:ab")
    ('baton', 'localhost:5000/baton')
    """
    name = image.split("@", 1)[0]
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name = name[:colon]
    return name


def check_container(container: Mapping[str, Any], allowed_repos: Iterable[str]) -> None:
    """Raise PodRejected unless the container runs the project image's ``baton`` entrypoint."""
    name = container.get("name", "?")
    image = str(container.get("image") or "")
    allowed = sorted(allowed_repos)
    if image_repository(image) not in allowed:
        raise PodRejected(
            "UnsupportedImage",
            f"container {name!r}: image {image!r} cannot run on the local pod runner; it runs "
            f"only images whose repository is one of {allowed} (e.g. {allowed[0]}:dev)"
            if allowed
            else f"container {name!r}: image {image!r}: no image repository is allowed",
        )
    probes = [p for p in PROBE_FIELDS if container.get(p) is not None]
    if probes:
        raise PodRejected(
            "UnsupportedProbe",
            f"container {name!r}: {', '.join(probes)}: the local pod runner runs baton pods"
            " without probes (the operator's strategy pods have none); probes run on the real"
            " node (tests/node)",
        )
    command = container.get("command") or []
    if command and os.path.basename(str(command[0])) != "baton":
        raise PodRejected(
            "UnsupportedCommand",
            f"container {name!r}: command {list(command)!r} cannot run on the local pod runner;"
            f" the image {image!r} runs only its `baton` entrypoint (command[0] must be"
            " 'baton', or leave command empty and use args)",
        )


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known names are replaced, unknown references and
    unterminated ones stay as written, and ``$$`` is an escaped ``$``."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 == n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end == -1:  # incomplete reference: the rest is literal
                out.append(text[i:])
                break
            var = text[i + 2 : end]
            out.append(env[var] if var in env else text[i : end + 1])
            i = end + 1
        else:
            out.append(ch + nxt)
            i += 2
    return "".join(out)


def container_argv(
    container: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    allowed_repos: Iterable[str],
    python: str,
) -> list[str]:
    """The host command line of a container: ``python -m baton [command[1:]] [args]``."""
    check_container(container, allowed_repos)
    command = [expand(str(c), env) for c in container.get("command") or []]
    args = [expand(str(a), env) for a in container.get("args") or []]
    return [python, "-m", "baton", *command[1:], *args]


# ------------------------------------------------------------------------------- env vars

SourceKind = Literal["ConfigMap", "Secret"]
SourceKey = tuple[SourceKind, str]
_ENV_FROM: tuple[tuple[SourceKind, str], ...] = (
    ("ConfigMap", "configMapRef"),
    ("Secret", "secretRef"),
)
_FIELD_LABEL = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def pod_fields(pod: Mapping[str, Any], *, node: str, pod_ip: str, host_ip: str) -> dict[str, str]:
    """The ``fieldRef`` paths the downward API offers for env vars, with their values here."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    return {
        "metadata.name": str(meta.get("name", "")),
        "metadata.namespace": str(meta.get("namespace", "")),
        "metadata.uid": str(meta.get("uid", "")),
        "spec.nodeName": str(spec.get("nodeName") or node),
        "spec.serviceAccountName": str(spec.get("serviceAccountName") or ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }


def field_value(pod: Mapping[str, Any], fields: Mapping[str, str], path: str) -> str:
    if path in fields:
        return fields[path]
    m = _FIELD_LABEL.match(path)
    if m:
        return str(dig(pod, "metadata", m.group(1), m.group(2)) or "")
    raise PodRejected(
        "UnsupportedFieldRef",
        f"fieldRef {path!r} is not supported by the local pod runner (supported: "
        f"{', '.join(sorted(fields))}, metadata.labels['...'], metadata.annotations['...'])",
    )


def env_sources(container: Mapping[str, Any]) -> set[SourceKey]:
    """The ConfigMaps and Secrets a container's env reads."""
    out: set[SourceKey] = set()
    for src in container.get("envFrom") or []:
        if dig(src, "configMapRef", "name"):
            out.add(("ConfigMap", src["configMapRef"]["name"]))
        if dig(src, "secretRef", "name"):
            out.add(("Secret", src["secretRef"]["name"]))
    for var in container.get("env") or []:
        if dig(var, "valueFrom", "configMapKeyRef", "name"):
            out.add(("ConfigMap", var["valueFrom"]["configMapKeyRef"]["name"]))
        if dig(var, "valueFrom", "secretKeyRef", "name"):
            out.add(("Secret", var["valueFrom"]["secretKeyRef"]["name"]))
    return out


def check_env(container: Mapping[str, Any], fields: Mapping[str, str]) -> None:
    """Raise PodRejected for env sources the runner does not implement."""
    name = container.get("name", "?")
    for var in container.get("env") or []:
        value_from = var.get("valueFrom")
        if not value_from:
            continue
        if "fieldRef" in value_from:
            field_value({}, fields, str(dig(value_from, "fieldRef", "fieldPath")))
        elif not ({"configMapKeyRef", "secretKeyRef"} & value_from.keys()):
            kinds = ", ".join(sorted(value_from))
            raise PodRejected(
                "UnsupportedEnvSource",
                f"container {name!r}: env {var.get('name')!r} uses {kinds}, not supported by the"
                " local pod runner (supported: value, fieldRef, configMapKeyRef, secretKeyRef,"
                " envFrom)",
            )


def resolve_env(
    container: Mapping[str, Any],
    pod: Mapping[str, Any],
    fields: Mapping[str, str],
    sources: Mapping[SourceKey, Mapping[str, str] | None],
) -> dict[str, str]:
    """The container's env vars (envFrom first, then env), as Kubernetes builds them.

    ``sources`` holds each ConfigMap/Secret named by ``env_sources`` (its data, Secrets
    decoded; None if it does not exist). ``$(VAR)`` in a value refers to the variables defined
    before it. Raises ContainerConfigError for a missing non-optional object or key.
    """
    env: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        prefix = str(src.get("prefix") or "")
        for kind, ref_key in _ENV_FROM:
            ref = src.get(ref_key)
            if not ref:
                continue
            data = sources.get((kind, ref["name"]))
            if data is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'{kind.lower()} "{ref["name"]}" not found')
            for k, v in data.items():
                if "=" not in prefix + k:
                    env[prefix + k] = v
    for var in container.get("env") or []:
        name = str(var["name"])
        value_from = var.get("valueFrom")
        if not value_from:
            env[name] = expand(str(var.get("value") or ""), env)
            continue
        if "fieldRef" in value_from:
            env[name] = field_value(pod, fields, str(value_from["fieldRef"]["fieldPath"]))
            continue
        key_kind: SourceKind
        key_kind, ref = (
            ("ConfigMap", value_from["configMapKeyRef"])
            if "configMapKeyRef" in value_from
            else ("Secret", value_from["secretKeyRef"])
        )
        data = sources.get((key_kind, ref["name"]))
        if data is None or ref["key"] not in data:
            if ref.get("optional"):
                continue
            if data is None:
                raise ContainerConfigError(f'{key_kind.lower()} "{ref["name"]}" not found')
            raise ContainerConfigError(
                f"couldn't find key {ref['key']} in {key_kind} {pod_key(pod)[0]}/{ref['name']}"
            )
        env[name] = data[ref["key"]]
    return env


# --------------------------------------------------------------------------- what to do


class Action(enum.Enum):
    IGNORE = "ignore"
    BIND = "bind"  # unscheduled: bind it to this node
    START = "start"  # bound here, not yet run by this runner: start its containers
    UPDATE = "update"  # already run here: pass the new object on (deletion, conditions)
    FINALIZE = "finalize"  # bound here, being deleted, nothing of it runs: delete with grace 0


def pod_key(pod: Mapping[str, Any]) -> tuple[str, str]:
    return str(dig(pod, "metadata", "namespace")), str(dig(pod, "metadata", "name"))


def pod_action(pod: Mapping[str, Any], node: str, *, known: bool) -> Action:
    """What the runner does with a pod it sees (``known``: it has a worker for its uid)."""
    node_name = dig(pod, "spec", "nodeName") or ""
    deleting = bool(dig(pod, "metadata", "deletionTimestamp"))
    if not node_name:
        scheduler = dig(pod, "spec", "schedulerName") or ""
        if deleting or scheduler not in LOCAL_SCHEDULER_NAMES:
            return Action.IGNORE
        return Action.BIND
    if node_name != node:
        return Action.IGNORE
    if known:
        return Action.UPDATE
    if deleting:
        return Action.FINALIZE
    if dig(pod, "status", "phase") in TERMINAL_PHASES:
        return Action.IGNORE
    return Action.START


def termination_grace_s(pod: Mapping[str, Any], cap_s: float) -> float:
    """The deletion's grace period (deletionGracePeriodSeconds, else the spec's), capped."""
    grace = dig(pod, "metadata", "deletionGracePeriodSeconds")
    if grace is None:
        grace = dig(pod, "spec", "terminationGracePeriodSeconds")
    if grace is None:
        grace = DEFAULT_GRACE_S
    return max(0.0, min(float(grace), cap_s))


def restart_wanted(policy: str, exit_code: int) -> bool:
    """Does ``restartPolicy`` restart a container that exited with ``exit_code``?"""
    if policy == "Never":
        return False
    if policy == "OnFailure":
        return exit_code != 0
    return True  # Always (the default)


def backoff_delay_s(restarts: int, base_s: float, max_s: float) -> float:
    """The wait before restart number ``restarts + 1``: base, doubling, capped at max."""
    return float(min(base_s * (2.0 ** min(restarts, 62)), max_s))


def exit_code_of(returncode: int) -> tuple[int, int | None]:
    """(exitCode, signal) as a container runtime reports them: killed by N -> 128+N."""
    if returncode < 0:
        return 128 - returncode, -returncode
    return returncode, None


def allocate_ip(
    cidr: ipaddress.IPv4Network, used: Iterable[str], preferred: str | None = None
) -> str:
    """The lowest free address of ``cidr`` (not the network, first or broadcast address);
    ``preferred`` (a pod's recorded podIP) if it is in the range and free."""
    taken = set(used)
    if preferred and preferred not in taken:
        with contextlib.suppress(ValueError):
            addr = ipaddress.IPv4Address(preferred)
            if addr in cidr and _usable(cidr, addr):
                return preferred
    for addr in cidr.hosts():
        if _usable(cidr, addr) and str(addr) not in taken:
            return str(addr)
    raise RuntimeError(f"pod CIDR {cidr} is exhausted ({len(taken)} addresses in use)")


def _usable(cidr: ipaddress.IPv4Network, addr: ipaddress.IPv4Address) -> bool:
    if cidr.num_addresses <= 2:  # /31 and /32: every address
        return True
    return addr not in (cidr.network_address, cidr.network_address + 1, cidr.broadcast_address)


# ---------------------------------------------------------------------------------- status


@dataclass(frozen=True)
class Running:
    started_at: str


@dataclass(frozen=True)
class Waiting:
    reason: str
    message: str = ""


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str
    finished_at: str
    started_at: str | None = None
    container_id: str | None = None
    signal: int | None = None
    message: str = ""

    @staticmethod
    def from_exit(
        returncode: int, *, started_at: str | None, finished_at: str, container_id: str | None
    ) -> Terminated:
        code, sig = exit_code_of(returncode)
        return Terminated(
            exit_code=code,
            reason="Completed" if code == 0 else "Error",
            finished_at=finished_at,
            started_at=started_at,
            container_id=container_id,
            signal=sig,
        )


ContainerState = Running | Waiting | Terminated


@dataclass(frozen=True)
class ContainerView:
    """What the runner observes of one container: the input of its status."""

    name: str
    image: str
    state: ContainerState
    last_state: Terminated | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    container_id: str | None = None


def state_json(state: ContainerState | None) -> Json:
    if state is None:
        return {}
    if isinstance(state, Running):
        return {"running": {"startedAt": state.started_at}}
    if isinstance(state, Waiting):
        waiting: Json = {"reason": state.reason}
        if state.message:
            waiting["message"] = state.message
        return {"waiting": waiting}
    term: Json = {
        "exitCode": state.exit_code,
        "reason": state.reason,
        "startedAt": state.started_at,
        "finishedAt": state.finished_at,
    }
    if state.container_id:
        term["containerID"] = state.container_id
    if state.signal is not None:
        term["signal"] = state.signal
    if state.message:
        term["message"] = state.message
    return {"terminated": term}


def container_status(view: ContainerView) -> Json:
    out: Json = {
        "name": view.name,
        "image": view.image,
        "imageID": view.image,
        "ready": view.ready,
        "started": view.started,
        "restartCount": view.restart_count,
        "state": state_json(view.state),
        "lastState": state_json(view.last_state),
    }
    if view.container_id:
        out["containerID"] = view.container_id
    return out


def pod_phase(restart_policy: str, views: Sequence[ContainerView], *, terminal: bool) -> str:
    """The kubelet's getPhase for pods without init containers.

    A container waiting after a previous run (CrashLoopBackOff) counts as stopped, not as
    waiting. ``terminal``: the pod is being torn down (deleted), so restartPolicy no longer
    keeps it Running once everything stopped.
    """
    running = waiting = stopped = succeeded = 0
    for v in views:
        if isinstance(v.state, Running):
            running += 1
        elif isinstance(v.state, Terminated):
            stopped += 1
            succeeded += v.state.exit_code == 0
        elif v.last_state is not None:
            stopped += 1
            succeeded += v.last_state.exit_code == 0
        else:
            waiting += 1
    if waiting and not terminal:
        return "Pending"
    if running:
        return "Running"
    if stopped and not waiting:
        if terminal:
            return "Succeeded" if stopped == succeeded else "Failed"
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"  # OnFailure, restarting a failed container
    return "Failed" if terminal else "Pending"


def _condition(
    type_: str,
    status: bool,
    prev: Mapping[str, Mapping[str, Any]],
    now: str,
    reason: str = "",
    message: str = "",
) -> Json:
    value = "True" if status else "False"
    old = prev.get(type_)
    same = old is not None and old.get("status") == value
    ltt = old.get("lastTransitionTime") if old is not None and same else None
    cond: Json = {
        "type": type_,
        "status": value,
        "lastProbeTime": None,
        "lastTransitionTime": ltt or now,
    }
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def pod_status(
    pod: Mapping[str, Any],
    views: Sequence[ContainerView],
    *,
    pod_ip: str | None,
    host_ip: str,
    start_time: str,
    now: str,
    rejected: PodRejected | None = None,
    terminal: bool = False,
    prev_conditions: Sequence[Mapping[str, Any]] = (),
) -> Json:
    """The pod's status (the body of a merge patch of ``pods/status``).

    ``prev_conditions``: the conditions as last known (the server's, then what was last
    sent), for lastTransitionTime and to keep the conditions other writers own.
    """
    policy = str(dig(pod, "spec", "restartPolicy") or "Always")
    phase = "Failed" if rejected is not None else pod_phase(policy, views, terminal=terminal)
    prev = {str(c.get("type")): c for c in prev_conditions}
    unready = [v for v in views if not v.ready]
    names = " ".join(v.name for v in unready)
    ready_message = f"containers with unready status: [{names}]"
    containers_ready = not unready and rejected is None
    gates = [str(g.get("conditionType")) for g in dig(pod, "spec", "readinessGates") or []]
    gates_ok = all(dig(prev.get(g), "status") == "True" for g in gates)
    if phase in TERMINAL_PHASES:
        ready_reason, ready_msg = "PodCompleted", ""
        containers_ready = False
    elif not containers_ready:
        ready_reason, ready_msg = "ContainersNotReady", ready_message
    elif not gates_ok:
        ready_reason = "ReadinessGatesNotReady"
        ready_msg = f"corresponding condition of pod readiness gate {gates!r} does not exist."
    else:
        ready_reason, ready_msg = "", ""
    own = [
        _condition("PodScheduled", True, prev, now),
        _condition("Initialized", True, prev, now),
        _condition(
            "ContainersReady",
            containers_ready,
            prev,
            now,
            *(("", "") if containers_ready else (ready_reason, ready_msg)),
        ),
        _condition("Ready", containers_ready and gates_ok, prev, now, ready_reason, ready_msg),
    ]
    others = [dict(c) for t, c in prev.items() if t not in OWNED_CONDITIONS]
    status: Json = {
        "phase": phase,
        "conditions": own + others,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}] if pod_ip else None,
        "startTime": dig(pod, "status", "startTime") or start_time,
        "containerStatuses": [container_status(v) for v in views],
        "reason": rejected.reason if rejected else None,
        "message": rejected.message if rejected else None,
    }
    return status


# ============================================================================================
# I/O: the API server


class Gone(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


def response_json(resp: object) -> Json:
    """The body of a ``_preload_content=False`` response (a urllib3 response)."""
    assert isinstance(resp, urllib3.HTTPResponse), type(resp)
    try:
        data: Json = json.loads(resp.data or b"{}")
        return data
    finally:
        resp.release_conn()


def _status_of(exc: BaseException) -> int | None:
    return exc.status if isinstance(exc, ApiException) else None


def load_api_client(kubeconfig: Path) -> kubernetes.client.ApiClient:
    api: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig)
    )
    return api


class Kube:
    """The few API calls the runner makes, on raw JSON, blocking (call them in a thread)."""

    def __init__(self, api: kubernetes.client.ApiClient, namespace: str | None) -> None:
        self.core = CoreV1Api(api)
        self.namespace = namespace

    def register_node(self, node: str, *, ready: bool, reason: str, message: str) -> None:
        meta = V1ObjectMeta(
            name=node,
            labels={
                "kubernetes.io/hostname": node,
                "kubernetes.io/os": "linux",
                "baton.dev/podrunner": "true",
            },
        )
        try:
            self.core.create_node(
                V1Node(metadata=meta), _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S
            )
        except ApiException as e:
            if e.status != 409:
                raise
        self.set_node_ready(node, ready=ready, reason=reason, message=message)

    def set_node_ready(self, node: str, *, ready: bool, reason: str, message: str) -> None:
        now = rfc3339(time.time())
        cpus = str(os.cpu_count() or 1)
        status = {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": reason,
                    "message": message,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
            "addresses": [
                {"type": "InternalIP", "address": HOST_IP},
                {"type": "Hostname", "address": node},
            ],
            "capacity": {"cpu": cpus, "memory": "8Gi", "pods": "250"},
            "allocatable": {"cpu": cpus, "memory": "8Gi", "pods": "250"},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": os.uname().release,
                "osImage": "baton local pod runner",
                "containerRuntimeVersion": "baton://local",
                "kubeletVersion": "v0.0.0-podrunner",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": os.uname().machine,
            },
        }
        response_json(
            self.core.patch_node_status(
                node,
                {"status": status},
                _content_type="application/merge-patch+json",
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT_S,
            )
        )

    def list_pods(self) -> tuple[list[Json], str]:
        if self.namespace:
            resp = self.core.list_namespaced_pod(
                self.namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S
            )
        else:
            resp = self.core.list_pod_for_all_namespaces(
                _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S
            )
        body = response_json(resp)
        return list(body.get("items") or []), str(body["metadata"]["resourceVersion"])

    def watch_pods(self, resource_version: str) -> Iterator[Json]:
        """Watch events from ``resource_version`` until the server ends the watch."""
        kwargs: dict[str, Any] = {
            "watch": True,
            "resource_version": resource_version,
            "allow_watch_bookmarks": True,
            "timeout_seconds": WATCH_TIMEOUT_S,
            "_preload_content": False,
            "_request_timeout": (REQUEST_TIMEOUT_S, WATCH_TIMEOUT_S + REQUEST_TIMEOUT_S),
        }
        if self.namespace:
            resp: object = self.core.list_namespaced_pod(self.namespace, **kwargs)
        else:
            resp = self.core.list_pod_for_all_namespaces(**kwargs)
        assert isinstance(resp, urllib3.HTTPResponse)
        try:
            buf = b""
            for chunk in resp.stream(65536):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        event: Json = json.loads(line)
                        yield event
        finally:
            resp.release_conn()
            resp.close()

    def bind(self, namespace: str, name: str, uid: str, node: str) -> None:
        binding = V1Binding(
            metadata=V1ObjectMeta(name=name, uid=uid),
            target=V1ObjectReference(api_version="v1", kind="Node", name=node),
        )
        response_json(
            self.core.create_namespaced_pod_binding(
                name,
                namespace,
                binding,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT_S,
            )
        )

    def patch_pod_status(self, namespace: str, name: str, status: Json) -> None:
        response_json(
            self.core.patch_namespaced_pod_status(
                name,
                namespace,
                {"status": status},
                _content_type="application/merge-patch+json",
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT_S,
            )
        )

    def delete_pod_now(self, namespace: str, name: str, uid: str) -> None:
        """Finish a deletion as the kubelet does: grace 0, only this incarnation (uid)."""
        try:
            response_json(
                self.core.delete_namespaced_pod(
                    name,
                    namespace,
                    body=V1DeleteOptions(
                        grace_period_seconds=0, preconditions=V1Preconditions(uid=uid)
                    ),
                    _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT_S,
                )
            )
        except ApiException as e:
            if e.status not in (404, 409):  # already gone / another pod now has the name
                raise

    def read_source(self, namespace: str, key: SourceKey) -> dict[str, str] | None:
        """A ConfigMap's data or a Secret's decoded data; None if it does not exist."""
        kind, name = key
        try:
            if kind == "ConfigMap":
                body = response_json(
                    self.core.read_namespaced_config_map(
                        name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S
                    )
                )
                return {str(k): str(v) for k, v in (body.get("data") or {}).items()}
            body = response_json(
                self.core.read_namespaced_secret(
                    name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S
                )
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return {str(k): base64.b64decode(v).decode() for k, v in (body.get("data") or {}).items()}


# ============================================================================================
# I/O: processes


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn: the child gets SIGKILL when the runner dies (Linux), even by SIGKILL.

    PR_SET_PDEATHSIG fires when the forking *thread* exits; children are only forked from the
    event loop's thread, which lives as long as the runner.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the runner died before prctl took effect
            os._exit(137)

    return preexec


def _kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a container's whole process group (it is its own session leader)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def spawn(coro: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
    """A task whose failure is logged (not lost); keep a reference to it."""

    async def logged() -> None:
        try:
            await coro
        except Exception:
            log.exception(f"{what} failed")

    return asyncio.create_task(logged())


async def _wait_or(event: asyncio.Event, timeout_s: float) -> bool:
    """Sleep up to ``timeout_s``; True if ``event`` was set (early) instead."""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True


# ============================================================================================
# I/O: workers


@dataclass(frozen=True)
class RunnerConfig:
    node: str
    log_dir: Path
    namespace: str | None = None
    image_repos: frozenset[str] = frozenset(DEFAULT_IMAGE_REPOS)
    pod_cidr: ipaddress.IPv4Network = field(
        default_factory=lambda: ipaddress.IPv4Network(DEFAULT_POD_CIDR)
    )
    backoff_base_s: float = 0.5
    backoff_max_s: float = 5.0
    max_grace_s: float = DEFAULT_GRACE_S
    shutdown_grace_s: float = 5.0
    python: str = sys.executable


class ContainerWorker:
    """Runs one container: start, watch, restart with backoff, stop."""

    def __init__(self, pod: PodWorker, spec: Json) -> None:
        self.pod = pod
        self.spec = spec
        self.name = str(spec["name"])
        self.image = str(spec.get("image") or "")
        self.state: ContainerState = Waiting("ContainerCreating")
        self.last_state: Terminated | None = None
        self.restart_count = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.container_id: str | None = None
        self._backoff_n = 0

    @property
    def log_path(self) -> Path:
        ns, name = pod_key(self.pod.pod)
        return self.pod.runner.config.log_dir / f"{ns}_{name}_{self.name}.log"

    def view(self) -> ContainerView:
        running = isinstance(self.state, Running)  # no probes: running is started and ready
        return ContainerView(
            name=self.name,
            image=self.image,
            state=self.state,
            last_state=self.last_state,
            restart_count=self.restart_count,
            ready=running,
            started=running,
            container_id=self.container_id if running else None,
        )

    def _set(self, state: ContainerState) -> None:
        self.state = state
        self.pod.mark_dirty()

    async def run(self) -> None:
        config = self.pod.runner.config
        policy = str(dig(self.pod.pod, "spec", "restartPolicy") or "Always")
        config_attempts = 0
        while not self.pod.stopping.is_set():
            try:
                env = await self.pod.container_env(self.spec)
                argv = container_argv(
                    self.spec, env, allowed_repos=config.image_repos, python=config.python
                )
            except (ContainerConfigError, ApiException) as e:
                message = str(e) if isinstance(e, ContainerConfigError) else f"reading env: {e}"
                self._set(Waiting("CreateContainerConfigError", message))
                delay = backoff_delay_s(
                    config_attempts, config.backoff_base_s, config.backoff_max_s
                )
                config_attempts += 1
                await _wait_or(self.pod.stopping, delay)
                continue
            t0 = time.monotonic()
            term = await self._run_once(argv, env)
            if self.pod.stopping.is_set() or not restart_wanted(policy, term.exit_code):
                return
            if time.monotonic() - t0 >= 2 * config.backoff_max_s:
                self._backoff_n = 0  # it ran fine for a while: start the backoff over
            delay = backoff_delay_s(self._backoff_n, config.backoff_base_s, config.backoff_max_s)
            self._backoff_n += 1
            self.last_state = term
            ns, name = pod_key(self.pod.pod)
            self._set(
                Waiting(
                    "CrashLoopBackOff",
                    f"back-off {delay:g}s restarting failed container={self.name} "
                    f"pod={name}_{ns}({self.pod.uid})",
                )
            )
            if await _wait_or(self.pod.stopping, delay):
                return
            self.restart_count += 1

    async def _run_once(self, argv: list[str], env: dict[str, str]) -> Terminated:
        started_at = rfc3339(time.time())
        try:
            with self.log_path.open("ab") as logf:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.pod.workdir,
                    start_new_session=True,
                    preexec_fn=_die_with_parent(),
                )
        except OSError as e:
            term = Terminated(
                exit_code=128,
                reason="StartError",
                finished_at=rfc3339(time.time()),
                started_at=started_at,
                message=f"failed to start {argv!r}: {e}",
            )
            self._set(term)
            return term
        self.proc = proc
        if self.pod.stopping.is_set():  # stopped while it was being started
            _kill_group(proc.pid)
        self.container_id = f"baton://{proc.pid}"
        self.pod.runner.pids.add(proc.pid)
        self._set(Running(started_at))
        log.info(
            "container started",
            extra={"pod": self.pod.label, "container": self.name, "pid": proc.pid, "argv": argv},
        )
        returncode = await proc.wait()
        _kill_group(proc.pid)  # like a runtime: the container ends with its main process
        self.pod.runner.pids.discard(proc.pid)
        self.proc = None
        term = Terminated.from_exit(
            returncode,
            started_at=started_at,
            finished_at=rfc3339(time.time()),
            container_id=self.container_id,
        )
        log.info(
            "container exited",
            extra={"pod": self.pod.label, "container": self.name, "exit_code": term.exit_code},
        )
        self._set(term)
        return term

    async def kill(self, grace_s: float) -> None:
        """SIGTERM the main process, SIGKILL its process group after ``grace_s``."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace_s):
                await proc.wait()
        except TimeoutError:
            log.info(
                "grace period over: SIGKILL",
                extra={"pod": self.pod.label, "container": self.name, "pid": proc.pid},
            )
        _kill_group(proc.pid)
        await proc.wait()


class PodWorker:
    """Everything the runner does for one pod (one uid) bound to its node."""

    def __init__(
        self, runner: Runner, pod: Json, pod_ip: str | None, rejected: PodRejected | None = None
    ) -> None:
        self.runner = runner
        self.pod = pod
        self.uid = str(pod["metadata"]["uid"])
        ns, name = pod_key(pod)
        self.label = f"{ns}/{name}"
        self.pod_ip = pod_ip
        self.start_time = rfc3339(time.time())
        self.workdir = runner.config.log_dir / "pods" / f"{ns}_{name}_{self.uid[:8]}"
        self.rejected = rejected
        self.containers = [ContainerWorker(self, c) for c in pod["spec"]["containers"]]
        self.stopping = asyncio.Event()  # deletion or shutdown: no more (re)starts
        self.terminal = False  # deleted: report a terminal phase once everything stopped
        self._dirty = asyncio.Event()
        self._sent: Json | None = None
        self._sent_conditions: list[Json] = []
        self._push_lock = asyncio.Lock()  # one status patch at a time, always the latest
        self._runs: list[asyncio.Task[None]] = []  # one per container
        self._tasks: list[asyncio.Task[None]] = []  # status sync, deletion
        self._deleting = False
        self._gone = False

    def mark_dirty(self) -> None:
        self._dirty.set()

    def start(self) -> None:
        try:
            if self.rejected is not None:
                raise self.rejected
            self._check()
        except PodRejected as e:
            self.rejected = e
            log.warning("pod rejected", extra={"pod": self.label, "reason": e.message})
            for c in self.containers:
                c.state = Waiting(e.reason, e.message)
        else:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._runs = [
                spawn(c.run(), f"container {self.label}/{c.name}") for c in self.containers
            ]
        self._tasks.append(spawn(self._sync_status(), f"status of {self.label}"))
        self.mark_dirty()

    def _check(self) -> None:
        spec = self.pod["spec"]
        if spec.get("initContainers"):
            raise PodRejected(
                "UnsupportedInitContainers",
                "init containers are not supported by the local pod runner",
            )
        fields = self._fields()
        for c in spec["containers"]:
            check_container(c, self.runner.config.image_repos)
            check_env(c, fields)
        ignored = sorted(
            {f for c in spec["containers"] for f in IGNORED_CONTAINER_FIELDS if c.get(f)}
        )
        if ignored:
            log.warning(
                "the local pod runner ignores these container fields",
                extra={"pod": self.label, "fields": ignored},
            )

    def _fields(self) -> dict[str, str]:
        return pod_fields(
            self.pod, node=self.runner.config.node, pod_ip=self.pod_ip or "", host_ip=HOST_IP
        )

    async def container_env(self, container: Json) -> dict[str, str]:
        ns = pod_key(self.pod)[0]
        keys = sorted(env_sources(container))
        found = await asyncio.gather(
            *(asyncio.to_thread(self.runner.kube.read_source, ns, k) for k in keys)
        )
        defined = resolve_env(
            container, self.pod, self._fields(), dict(zip(keys, found, strict=True))
        )
        env = {k: v for k in PASSTHROUGH_ENV if (v := os.environ.get(k)) is not None}
        env.update(
            {"HOME": str(self.workdir), "HOSTNAME": pod_key(self.pod)[1], "PYTHONUNBUFFERED": "1"}
        )
        env.update(defined)
        return env

    def update(self, pod: Json) -> None:
        self.pod = pod
        if dig(pod, "metadata", "deletionTimestamp") and not self._deleting:
            self._deleting = True
            self._tasks.append(spawn(self._delete(), f"deleting {self.label}"))
        self.mark_dirty()

    async def stop(self, grace_s: float) -> None:
        self.stopping.set()
        await asyncio.gather(*(c.kill(grace_s) for c in self.containers))
        # The container loops end on their own once stopping is set and the processes are gone.
        runs = [t for t in self._runs if not t.done()]
        if runs:
            await asyncio.wait(runs, timeout=2.0)

    async def _delete(self) -> None:
        """Graceful deletion: stop the containers within the grace period, report the final
        status, then delete the pod object with grace 0 (uid precondition)."""
        grace = termination_grace_s(self.pod, self.runner.config.max_grace_s)
        log.info("pod deleted: stopping it", extra={"pod": self.label, "grace_s": grace})
        await self.stop(grace)
        self.terminal = True
        with contextlib.suppress(Exception):
            await self._push_status()
        ns, name = pod_key(self.pod)
        for _attempt in range(5):
            try:
                await asyncio.to_thread(self.runner.kube.delete_pod_now, ns, name, self.uid)
                log.info("pod deletion finished", extra={"pod": self.label})
                return
            except Exception:
                log.exception("deleting the pod failed; retrying", extra={"pod": self.label})
                await asyncio.sleep(STATUS_RETRY_S)

    async def gone(self) -> None:
        """The pod object disappeared: kill what still runs, stop reporting."""
        self._gone = True
        await self.stop(termination_grace_s(self.pod, GONE_GRACE_S))
        self.cancel()

    def cancel(self) -> None:
        for task in self._runs + self._tasks:
            if task is not asyncio.current_task():
                task.cancel()

    def status(self) -> Json:
        prev = {str(c.get("type")): c for c in dig(self.pod, "status", "conditions") or []}
        prev.update({str(c["type"]): c for c in self._sent_conditions})
        return pod_status(
            self.pod,
            [c.view() for c in self.containers],
            pod_ip=self.pod_ip,
            host_ip=HOST_IP,
            start_time=self.start_time,
            now=rfc3339(time.time()),
            rejected=self.rejected,
            terminal=self.terminal,
            prev_conditions=list(prev.values()),
        )

    async def _push_status(self) -> None:
        async with self._push_lock:
            status = self.status()
            if status == self._sent:
                return
            ns, name = pod_key(self.pod)
            await asyncio.to_thread(self.runner.kube.patch_pod_status, ns, name, status)
            self._sent = status
            self._sent_conditions = list(status["conditions"])

    async def _sync_status(self) -> None:
        while not self._gone:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._push_status()
            except Exception as e:
                if _status_of(e) == 404:
                    return  # deleted: the DELETED event will follow
                if _status_of(e) == 422:  # invalid: retrying the same status cannot help
                    log.error("status update refused", extra={"pod": self.label, "error": str(e)})
                    self._sent = self.status()
                    continue
                log.warning(
                    "status update failed; retrying", extra={"pod": self.label, "error": str(e)}
                )
                await asyncio.sleep(STATUS_RETRY_S)
                self.mark_dirty()


WatchItem = tuple[Literal["event"], str, Json] | tuple[Literal["sync"], list[Json]] | None


class Runner:
    def __init__(self, config: RunnerConfig, kube: Kube) -> None:
        self.config = config
        self.kube = kube
        self.workers: dict[str, PodWorker] = {}
        self.pids: set[int] = set()  # every live process the runner started
        self._binding: set[str] = set()
        self._finalizing: set[str] = set()
        self._ips: dict[str, str] = {}  # uid -> pod IP
        self._tasks: set[asyncio.Task[None]] = set()
        self._queue: asyncio.Queue[WatchItem] = asyncio.Queue()
        self._stop_watch = threading.Event()

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        task = spawn(coro, what)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._queue.put_nowait, None)
        config = self.config
        await asyncio.to_thread(
            self.kube.register_node,
            config.node,
            ready=True,
            reason="KubeletReady",
            message="baton local pod runner is posting ready status",
        )
        items, rv = await asyncio.to_thread(self.kube.list_pods)
        self._sync(items)

        def post(item: WatchItem) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: we are exiting
                loop.call_soon_threadsafe(self._queue.put_nowait, item)

        watcher = threading.Thread(
            target=self._watch, args=(rv, post), name="pod-watch", daemon=True
        )
        watcher.start()
        announce_ready(
            node=config.node,
            namespace=config.namespace,
            log_dir=str(config.log_dir),
            pod_cidr=str(config.pod_cidr),
            pid=os.getpid(),
        )
        log.info("watching pods", extra={"node": config.node, "namespace": config.namespace})
        try:
            while (item := await self._queue.get()) is not None:
                try:
                    self._handle(item)
                except Exception:
                    log.exception("handling a watch event failed", extra={"item": str(item)[:300]})
        finally:
            self._stop_watch.set()
            await self.shutdown()

    async def shutdown(self) -> None:
        log.info("stopping: killing every container", extra={"pods": len(self.workers)})
        workers = list(self.workers.values())
        await asyncio.gather(
            *(w.stop(self.config.shutdown_grace_s) for w in workers), return_exceptions=True
        )
        for w in workers:
            w.cancel()
        self.kill_all()
        for task in list(self._tasks):
            task.cancel()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                await asyncio.to_thread(
                    self.kube.set_node_ready,
                    self.config.node,
                    ready=False,
                    reason="KubeletStopped",
                    message="baton local pod runner stopped",
                )
        except Exception as e:
            log.warning("could not mark the node NotReady", extra={"error": str(e)})
        log.info("stopped", extra={"node": self.config.node})

    def kill_all(self) -> None:
        """Last resort: SIGKILL every process group the runner started and still tracks."""
        for pid in list(self.pids):
            _kill_group(pid)

    # ----------------------------------------------------------------- watch thread

    def _watch(self, rv: str, post: Callable[[WatchItem], None]) -> None:
        """Blocking: watch from ``rv`` forever; on 410 Gone list again and post a sync."""
        while not self._stop_watch.is_set():
            try:
                for event in self.kube.watch_pods(rv):
                    type_, obj = str(event.get("type")), event.get("object") or {}
                    if type_ == "ERROR":
                        if obj.get("code") == 410:
                            raise Gone(obj.get("message"))
                        raise RuntimeError(f"watch error: {obj}")
                    rv = str(dig(obj, "metadata", "resourceVersion") or rv)
                    if type_ != "BOOKMARK":
                        post(("event", type_, obj))
                    if self._stop_watch.is_set():
                        return
            except Exception as e:
                if self._stop_watch.is_set():
                    return
                if isinstance(e, Gone) or _status_of(e) == 410:
                    log.info("watch expired (410 Gone): listing again")
                    try:
                        items, rv = self.kube.list_pods()
                    except Exception as e2:
                        log.warning("list failed; retrying", extra={"error": str(e2)})
                        self._stop_watch.wait(WATCH_RETRY_S)
                        continue
                    post(("sync", items))
                else:
                    log.warning("watch failed; resuming", extra={"error": str(e)})
                    self._stop_watch.wait(WATCH_RETRY_S)

    # ---------------------------------------------------------------- event handling

    def _handle(self, item: WatchItem) -> None:
        if item is None:
            return
        if item[0] == "sync":
            self._sync(item[1])
            return
        _, type_, obj = item
        if type_ == "DELETED":
            self._on_gone(str(obj["metadata"]["uid"]))
        else:
            self._on_pod(obj)

    def _sync(self, items: list[Json]) -> None:
        seen = {str(p["metadata"]["uid"]) for p in items}
        for uid in [u for u in self.workers if u not in seen]:
            self._on_gone(uid)
        for pod in items:
            self._on_pod(pod)

    def _on_pod(self, pod: Json) -> None:
        uid = str(pod["metadata"]["uid"])
        action = pod_action(pod, self.config.node, known=uid in self.workers)
        ns, name = pod_key(pod)
        if action is Action.BIND and uid not in self._binding:
            self._binding.add(uid)
            self._spawn(self._bind(ns, name, uid), f"binding {ns}/{name}")
        elif action is Action.START:
            ip: str | None = None
            rejected: PodRejected | None = None
            try:
                ip = allocate_ip(
                    self.config.pod_cidr, self._ips.values(), dig(pod, "status", "podIP")
                )
                self._ips[uid] = ip
            except RuntimeError as e:  # the range is exhausted: the pod fails, saying so
                rejected = PodRejected("OutOfPodIPs", str(e))
            worker = PodWorker(self, pod, ip, rejected)
            self.workers[uid] = worker
            log.info("starting pod", extra={"pod": worker.label, "pod_ip": ip})
            worker.start()
        elif action is Action.UPDATE:
            self.workers[uid].update(pod)
        elif action is Action.FINALIZE and uid not in self._finalizing:
            self._finalizing.add(uid)
            self._spawn(self._finalize(ns, name, uid), f"finalizing {ns}/{name}")

    async def _finalize(self, ns: str, name: str, uid: str) -> None:
        await asyncio.to_thread(self.kube.delete_pod_now, ns, name, uid)

    async def _bind(self, ns: str, name: str, uid: str) -> None:
        try:
            await asyncio.to_thread(self.kube.bind, ns, name, uid, self.config.node)
            log.info("pod bound", extra={"pod": f"{ns}/{name}", "node": self.config.node})
        except ApiException as e:
            # 409: bound meanwhile (or a new pod took the name); the next event tells.
            log.warning("binding failed", extra={"pod": f"{ns}/{name}", "status": e.status})
            if e.status != 409:
                self._binding.discard(uid)

    def _on_gone(self, uid: str) -> None:
        self._binding.discard(uid)
        self._finalizing.discard(uid)
        worker = self.workers.pop(uid, None)
        if worker is None:
            self._ips.pop(uid, None)
            return

        async def reap() -> None:
            try:
                await worker.gone()
            finally:
                self._ips.pop(uid, None)

        self._spawn(reap(), f"stopping {worker.label}")


# ============================================================================================
# the process


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="podrunner", description="Run the test bed's pods as local processes."
    )
    p.add_argument("--kubeconfig", required=True, type=Path)
    p.add_argument("--node", required=True, help="the Node to register and run pods for")
    p.add_argument("--namespace", default=None, help="watch only this namespace (default: all)")
    p.add_argument("--log-dir", required=True, type=Path, help="container logs and pod dirs")
    p.add_argument(
        "--image-repo",
        action="extend",
        nargs="+",
        default=None,
        help="image repositories that may run (repeatable; default: baton)",
    )
    p.add_argument("--pod-cidr", default=DEFAULT_POD_CIDR, help="pod IPs (loopback) range")
    p.add_argument("--backoff-base-s", type=float, default=0.5, help="first restart backoff")
    p.add_argument("--backoff-max-s", type=float, default=5.0, help="restart backoff cap")
    p.add_argument(
        "--max-grace-s", type=float, default=DEFAULT_GRACE_S, help="cap of deletion grace"
    )
    p.add_argument(
        "--shutdown-grace-s",
        type=float,
        default=5.0,
        help="on SIGTERM: how long containers get before SIGKILL",
    )
    p.add_argument("--log-level", default="INFO")
    return p


def config_from_args(args: argparse.Namespace) -> RunnerConfig:
    cidr = ipaddress.IPv4Network(args.pod_cidr)
    if not cidr.is_loopback:
        raise SystemExit(f"podrunner: --pod-cidr {cidr} is not a loopback range (127.0.0.0/8)")
    return RunnerConfig(
        node=args.node,
        log_dir=args.log_dir.resolve(),
        namespace=args.namespace,
        image_repos=frozenset(args.image_repo or DEFAULT_IMAGE_REPOS),
        pod_cidr=cidr,
        backoff_base_s=args.backoff_base_s,
        backoff_max_s=args.backoff_max_s,
        max_grace_s=args.max_grace_s,
        shutdown_grace_s=args.shutdown_grace_s,
    )


async def _amain(config: RunnerConfig, kubeconfig: Path) -> None:
    api = load_api_client(kubeconfig)
    runner = Runner(config, Kube(api, config.namespace))
    try:
        await runner.run()
    finally:
        runner.kill_all()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging("podrunner", args.log_level)
    config = config_from_args(args)
    config.log_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(_amain(config, args.kubeconfig))
    return 0


# ============================================================================================
# for tests: the runner as a child process


@dataclass
class PodRunnerProcess:
    """A running ``podrunner.py`` (see ``start``); ``stop()`` is idempotent."""

    node: str
    namespace: str | None
    log_dir: Path
    popen: subprocess.Popen[bytes]
    ready: dict[str, Any] = field(default_factory=dict)
    _reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def log_path(self) -> Path:
        return self.log_dir / "podrunner.log"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no podrunner log)"

    def container_log(self, pod: str, container: str, namespace: str | None = None) -> str:
        path = self.log_dir / f"{namespace or self.namespace}_{pod}_{container}.log"
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM, wait (bounded), SIGKILL. The runner's exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=timeout_s)
        if self._reader is not None:
            self._reader.join(timeout=timeout_s)  # it closes stdout at EOF
        return self.popen.returncode

    @staticmethod
    def start(
        *,
        kubeconfig: Path,
        node: str,
        log_dir: Path,
        namespace: str | None = None,
        extra_args: Sequence[str] = (),
        ready_timeout_s: float = 30.0,
    ) -> PodRunnerProcess:
        log_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            f"--kubeconfig={kubeconfig}",
            f"--node={node}",
            f"--log-dir={log_dir}",
            *([f"--namespace={namespace}"] if namespace else []),
            *extra_args,
        ]
        with (log_dir / "podrunner.log").open("ab") as logf:
            popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=logf
            )
        runner = PodRunnerProcess(node=node, namespace=namespace, log_dir=log_dir, popen=popen)
        try:
            runner.ready, runner._reader = _read_ready(popen, ready_timeout_s, runner.log_tail)
        except BaseException:
            runner.stop(timeout_s=5.0)
            raise
        return runner


def _read_ready(
    popen: subprocess.Popen[bytes], timeout_s: float, tail: Callable[[], str]
) -> tuple[dict[str, Any], threading.Thread]:
    """Wait (bounded) for the ready line; a thread reads stdout to its end, then closes it."""
    assert popen.stdout is not None
    stdout: IO[bytes] = popen.stdout
    found: list[dict[str, Any]] = []
    done = threading.Event()

    def reader() -> None:
        with stdout:
            for line in stdout:
                if not found:
                    fields = parse_ready(line.decode(errors="replace"))
                    if fields is not None:
                        found.append(fields)
                        done.set()
        done.set()

    thread = threading.Thread(target=reader, name="podrunner-stdout", daemon=True)
    thread.start()
    if not done.wait(timeout_s):
        raise RuntimeError(f"podrunner not ready within {timeout_s}s:\n{tail()}")
    if not found:
        raise RuntimeError(f"podrunner exited with {popen.wait()} before it was ready:\n{tail()}")
    return found[0], thread


if __name__ == "__main__":
    raise SystemExit(main())
