"""What the gateway replica tests share (test_gateway_replicas.py, test_gateway_acceptance.py):
the processes of one test (``Pair``: the simulator, replicas following one lease on one
address, strategy hosts), the ``pair`` fixture, and ledger reads about who executed when.

``pair`` is a fixture: a test module takes it with ``from tests.integration.replica_helpers
import pair as pair`` (the alias marks it as used)."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from baton.common import Service
from baton.demo_replicas import free_port
from baton.gateway.core.leadership import Settings
from baton.local import Processes
from tests.procs import CADENCE_S, SLOTS, V1, count, gateway_env, query, wait_until


class Pair:
    """The processes of one test: ``replica(name)`` starts a replica following the lease."""

    def __init__(self, procs: Processes, sim: Service, ledger: Path, port: int) -> None:
        self.procs = procs
        self.sim = sim
        self.ledger = ledger
        self.addr = f"127.0.0.1:{port}"
        self.cadence_s = CADENCE_S
        self.lease: Settings | None = None  # None: the configured defaults (the reference)

    async def replica(
        self,
        name: str,
        lease_path: Path | None = None,
        *,
        own_ledger: Path | None = None,
        bootstrap: bool = False,
    ) -> Service:
        """``own_ledger``: the replica keeps a ledger of its own, a copy of the leader's
        (``leader.replicate_from`` = the address the leader serves)."""
        env = {
            **gateway_env(self.sim, own_ledger or self.ledger),
            "BATON_GATEWAY__LISTEN": self.addr,
            "BATON_LEADER__BACKEND": "local",
            "BATON_LEADER__IDENTITY": name,
            "BATON_GATEWAY__CADENCE_S": str(self.cadence_s),
        }
        if self.lease is not None:
            env["BATON_LEADER__LEASE_DURATION_MS"] = str(self.lease.lease_duration_ms)
            env["BATON_LEADER__RENEW_DEADLINE_MS"] = str(self.lease.renew_deadline_ms)
            env["BATON_LEADER__RETRY_PERIOD_MS"] = str(self.lease.retry_period_ms)
        if lease_path is not None:
            env["BATON_LEADER__LEASE_PATH"] = str(lease_path)
        if own_ledger is not None:
            env["BATON_LEADER__REPLICATE_FROM"] = self.addr
            if lease_path is None:
                env["BATON_LEADER__LEASE_PATH"] = str(self.ledger.with_name("lease"))
            env["BATON_LEADER__BOOTSTRAP"] = "true" if bootstrap else "false"
        return await self.procs.spawn(name, ["gateway"], env=env)

    async def strategy(
        self, name: str = "strategy", entrypoint: str = V1, pod: str = "pod-0"
    ) -> Service:
        args = ["strategy", "--gateway", self.addr, "--entrypoint", entrypoint, "--pod-name", pod]
        return await self.procs.spawn(name, args)


@pytest.fixture
async def pair(sim: Service, ledger: Path, log_dir: Path) -> AsyncIterator[Pair]:
    procs = Processes(log_dir)
    yield Pair(procs, sim, ledger, free_port())
    await procs.close()


def executed_spans(ledger: Path) -> list[tuple[int, int, int]]:
    """(run, first, last decided_ms) of each run's executed evaluations, in run order."""
    rows = query(
        ledger,
        "SELECT run_id, min(decided_ms), max(decided_ms) FROM evaluations"
        " WHERE outcome = 'executed' GROUP BY run_id ORDER BY run_id",
    )
    return [(int(r), int(a), int(b)) for r, a, b in rows]


EXECUTED = "SELECT count(*) FROM evaluations WHERE outcome = 'executed'"


async def executed_ticks(ledger: Path, ticks: int, what: str, timeout_s: float = 30) -> None:
    """``ticks`` more ticks executed from now (the host re-attached to whoever leads)."""
    target = count(ledger, EXECUTED) + ticks * SLOTS
    await wait_until(lambda: count(ledger, EXECUTED) >= target, timeout_s=timeout_s, what=what)


def metrics(service: Service) -> dict[str, float]:
    """A replica's /metrics (it announces ``metrics_addr``), as ``name{labels}`` -> value."""
    addr = service.ready["metrics_addr"]
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?)\s+(\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out
