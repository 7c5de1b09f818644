"""What the election tests share, for the local lease and the Kubernetes Lease alike: a store
wrapper that fails or hangs on demand (faults injected at the store's edge), and a pair of
electors that record when each was elected and deposed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from baton.gateway.core.leadership import LeaseRecord, Settings
from baton.gateway.election import Elector, monotonic_ms
from baton.gateway.lease import LeaseStore, LeaseUnavailable
from baton.gateway.metrics import LeaderMetrics

STOP_TIMEOUT_S = 5.0


class FaultyStore:
    """``inner``, until told otherwise: ``fail()`` makes every call raise at once (the store
    refuses), ``hang()`` makes every call wait for ever (a partition: no answer), ``heal()``
    goes back. Records when the last acquire or renew that succeeded was sent."""

    def __init__(self, inner: LeaseStore) -> None:
        self.inner = inner
        self.mode = ""
        self.last_write_sent_ms: int | None = None
        self.cut_at_ms: int | None = None
        self._healed = asyncio.Event()

    @property
    def where(self) -> str:
        return self.inner.where

    def fail(self) -> None:
        self.mode, self.cut_at_ms = "fail", monotonic_ms()

    def hang(self) -> None:
        self.mode, self.cut_at_ms = "hang", monotonic_ms()

    def heal(self) -> None:
        self.mode = ""
        self._healed.set()  # calls that hung answer now (their elector may have given up)

    async def _gate(self) -> None:
        if self.mode == "fail":
            raise LeaseUnavailable("injected: the store refuses")
        if self.mode == "hang":
            self._healed.clear()
            await self._healed.wait()

    async def read(self) -> LeaseRecord | None:
        await self._gate()
        return await self.inner.read()

    async def try_acquire(self, record: LeaseRecord, expected_version: str | None) -> LeaseRecord:
        await self._gate()
        sent = monotonic_ms()
        stored = await self.inner.try_acquire(record, expected_version)
        self.last_write_sent_ms = sent
        return stored

    async def renew(self, record: LeaseRecord, expected_version: str) -> LeaseRecord:
        await self._gate()
        sent = monotonic_ms()
        stored = await self.inner.renew(record, expected_version)
        self.last_write_sent_ms = sent
        return stored

    async def release(self, record: LeaseRecord, expected_version: str) -> LeaseRecord:
        await self._gate()
        return await self.inner.release(record, expected_version)


@dataclass
class Replica:
    """An elector and what happened to it, on the machine's monotonic clock."""

    name: str
    store: FaultyStore
    elector: Elector
    elected: list[tuple[int, int]] = field(default_factory=list)  # (t_ms, term)
    deposed: list[tuple[int, str]] = field(default_factory=list)  # (t_ms, reason)
    task: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        """Cancel the elector's task, as a crash would (no release); bounded."""
        self.store.heal()
        if self.task is not None and not self.task.done():
            self.task.cancel()
            done, _ = await asyncio.wait({self.task}, timeout=STOP_TIMEOUT_S)
            assert done, f"{self.name}'s elector did not stop within {STOP_TIMEOUT_S} s"


def replica(
    name: str,
    store: LeaseStore,
    settings: Settings,
    *,
    eligible: bool = True,
    metrics: LeaderMetrics | None = None,
) -> Replica:
    """An elector named ``name`` on ``store`` (wrapped in a ``FaultyStore``), running."""
    faulty = FaultyStore(store)
    elected: list[tuple[int, int]] = []
    deposed: list[tuple[int, str]] = []
    elector = Elector(
        faulty,
        name,
        settings,
        on_elected=lambda term: elected.append((monotonic_ms(), term)),
        on_deposed=lambda reason: deposed.append((monotonic_ms(), reason)),
        metrics=metrics,
        eligible=eligible,
    )
    r = Replica(name, faulty, elector, elected, deposed)
    r.task = asyncio.create_task(elector.run(), name=f"elector-{name}")
    return r


@contextlib.asynccontextmanager
async def replicas(*rs: Replica) -> AsyncIterator[tuple[Replica, ...]]:
    try:
        yield rs
    finally:
        for r in rs:
            await r.stop()


async def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> int:
    """Poll ``predicate`` every 5 ms (bounded); the monotonic ms it first held."""
    deadline = monotonic_ms() + int(timeout_s * 1000)
    while not predicate():
        if monotonic_ms() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.005)
    return monotonic_ms()


def leader_of(*rs: Replica) -> Replica:
    leaders = [r for r in rs if r.elector.executing()]
    assert len(leaders) == 1, [r.name for r in leaders]
    return leaders[0]


async def takeover_after_sigkill(
    args: Sequence[str], store: LeaseStore, settings: Settings, *, cwd: Path, timeout_s: float
) -> int:
    """Start an elector process (``args``), wait for it to lead, let a replica on ``store`` see
    its lease, SIGKILL it at a moment that falls anywhere in its renewal cycle: ms from the kill
    to the replica's election (checked to take the next term)."""
    child = await asyncio.create_subprocess_exec(*args, cwd=cwd, stdout=asyncio.subprocess.PIPE)
    try:
        assert child.stdout is not None
        while True:
            line = json.loads(await asyncio.wait_for(child.stdout.readline(), timeout_s))
            if line["event"] == "elected":
                break
        b = replica("gw-b", store, settings)
        async with replicas(b):
            await asyncio.sleep(1.3)  # b has seen the child's lease; the kill falls anywhere
            os.kill(child.pid, signal.SIGKILL)
            killed = monotonic_ms()
            await wait_for(lambda: bool(b.elected), timeout_s, "gw-b elected")
            assert b.elected[0][1] == line["term"] + 1
            return b.elected[0][0] - killed
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()
