"""A replica's label on its own pod (``gateway/pod_role.py``): the wanted role is patched, a
failed patch is retried with a backoff and counted, a missing pod is told once and not retried;
and the replica's /ready beside /metrics over real HTTP."""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from baton.common.metrics_http import serve_metrics_and_probes
from baton.gateway.pod_role import FOLLOWER, LEADER, NoSuchPod, PodRole


class FakePod:
    def __init__(self, failures: int = 0, missing: bool = False) -> None:
        self.failures = failures
        self.missing = missing
        self.calls: list[str] = []
        self.label: str | None = None
        self.changed = threading.Event()

    def patch(self, role: str) -> None:
        self.calls.append(role)
        if self.missing:
            raise NoSuchPod("pod ns/gw-0")
        if self.failures:
            self.failures -= 1
            raise RuntimeError("HTTP 500 boom")
        self.label = role
        self.changed.set()


def count(registry: CollectorRegistry, role: str, result: str) -> float:
    value = registry.get_sample_value(
        "baton_gateway_pod_label_patches_total", {"role": role, "result": result}
    )
    return value or 0.0


async def until(cond: Callable[[], bool], within_s: float = 5.0) -> None:
    """Poll a condition the patcher's thread changes (a bounded wait, no event to await)."""
    async with asyncio.timeout(within_s):
        while not cond():  # noqa: ASYNC110 - set from a worker thread
            await asyncio.sleep(0.01)


async def test_the_wanted_role_is_patched_and_a_failure_retried() -> None:
    pod, registry = FakePod(failures=2), CollectorRegistry()
    role = PodRole(pod.patch, "gw-0", registry, backoff_s=(0.01, 0.05))
    task = asyncio.create_task(role.run())
    try:
        role.want(FOLLOWER)
        assert not role.shows(FOLLOWER)
        await until(lambda: role.labelled == FOLLOWER)
        assert role.shows(FOLLOWER)
        assert pod.calls == [FOLLOWER] * 3
        assert count(registry, FOLLOWER, "error") == 2
        assert count(registry, FOLLOWER, "ok") == 1
        role.want(LEADER)
        await until(lambda: role.labelled == LEADER)
        assert pod.label == LEADER
        role.want(LEADER)  # already so: no call
        await asyncio.sleep(0.05)
        assert pod.calls == [FOLLOWER] * 3 + [LEADER]
    finally:
        task.cancel()


async def test_a_pod_that_does_not_exist_is_told_once_and_not_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pod, registry = FakePod(missing=True), CollectorRegistry()
    role = PodRole(pod.patch, "gw-0", registry, backoff_s=(0.01, 0.05))
    task = asyncio.create_task(role.run())
    try:
        role.want(FOLLOWER)
        await until(lambda: count(registry, FOLLOWER, "not_found") == 1)
        assert role.shows(FOLLOWER), "no pod to label: nothing to wait for"
        role.want(LEADER)
        await until(lambda: count(registry, LEADER, "not_found") == 1)
        await asyncio.sleep(0.1)
        assert pod.calls == [FOLLOWER, LEADER]
        assert role.labelled is None
        told = [r for r in caplog.records if "no pod of that name" in r.getMessage()]
        assert len(told) == 1
    finally:
        task.cancel()


def test_probes_answer_beside_the_metrics() -> None:
    state = {"ready": False}
    registry = CollectorRegistry()
    addr, httpd, thread = serve_metrics_and_probes(
        registry,
        "127.0.0.1:0",
        "metrics.listen",
        {"/ready": lambda: (state["ready"], "follower gw-b not caught up: position 3, lag 2")},
    )
    try:
        base = f"http://{addr}"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/ready", timeout=5)
        assert refused.value.code == 503
        assert b"not caught up" in refused.value.read()
        state["ready"] = True
        with urllib.request.urlopen(f"{base}/ready", timeout=5) as ok:
            assert ok.status == 200
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as metrics:
            assert metrics.status == 200
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
