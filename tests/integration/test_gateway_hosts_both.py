"""Strategy hosts attached to both gateway replicas (``baton strategy --gateway A,B``,
docs/gateway-standby.md "Strategy hosts on both replicas"), as real processes: the simulator,
two ``baton gateway`` replicas on a shared ledger and a local lease, each on an address of its
own (two pods), a strategy host given both addresses.

Only the leader listens; the host is attached to it and dials the other all along, so when the
other is elected the host attaches to it within an attempt: a planned handover misses nothing,
a SIGKILL misses at most ceil(takeover / cadence) ticks and the new leader's first tick is
answered. A host process that restarts while a deposed leader is still alive hears the
leader's term from the leader's stream and refuses the deposed one.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from baton.common import Service
from baton.demo_replicas import free_port
from baton.gateway.core.leadership import Settings
from baton.gateway.report import presence_report
from baton.gateway.report_gateways import GatewayChange
from baton.local import Processes
from tests.procs import (
    CADENCE_S,
    SLOTS,
    V1,
    count,
    gateway_env,
    log_entries,
    query,
    run_ticks,
    wait_until,
)

S = Settings()  # lease 4 s, renew deadline 3 s, retry 0.5 s
LATE_MS = 1500  # how late a process may notice something under CI's load (2 cores)
EXECUTED = "SELECT count(*) FROM evaluations WHERE outcome = 'executed'"


class Both:
    """Two replicas, ``a`` at ``addr_a`` and ``b`` at ``addr_b``, one ledger, one lease."""

    def __init__(self, procs: Processes, sim: Service, ledger: Path) -> None:
        self.procs = procs
        self.sim = sim
        self.ledger = ledger
        self.addr_a = f"127.0.0.1:{free_port()}"
        self.addr_b = f"127.0.0.1:{free_port()}"
        self.cadence_s = CADENCE_S

    async def replica(self, name: str, addr: str) -> Service:
        env = {
            **gateway_env(self.sim, self.ledger),
            "BATON_GATEWAY__LISTEN": addr,
            "BATON_LEADER__BACKEND": "local",
            "BATON_LEADER__IDENTITY": name,
            "BATON_GATEWAY__CADENCE_S": str(self.cadence_s),
        }
        return await self.procs.spawn(name, ["gateway"], env=env)

    async def strategy(self, name: str = "strategy") -> Service:
        args = [
            "strategy", "--gateway", f"{self.addr_a},{self.addr_b}", "--entrypoint", V1,
            "--pod-name", "pod-0",
        ]  # fmt: skip
        return await self.procs.spawn(name, args)

    async def first_term(self) -> tuple[Service, Service, Service]:
        a = await self.replica("gw-a", self.addr_a)
        led = await a.wait_announced("role", "leader", timeout_s=10)
        assert led["term"] == 1
        b = await self.replica("gw-b", self.addr_b)
        assert b.ready["role"] == "follower"
        host = await self.strategy()
        await run_ticks(self.ledger, 3)
        return a, b, host


@pytest.fixture
async def both(sim: Service, ledger: Path, log_dir: Path) -> AsyncIterator[Both]:
    procs = Processes(log_dir)
    yield Both(procs, sim, ledger)
    await procs.close()


async def executed_ticks(ledger: Path, ticks: int, what: str) -> None:
    target = count(ledger, EXECUTED) + ticks * SLOTS
    await wait_until(lambda: count(ledger, EXECUTED) >= target, timeout_s=30, what=what)


def the_change(ledger: Path) -> GatewayChange:
    report = presence_report(ledger)
    assert report.runs == 2
    assert report.missed == 0
    changes = (*report.gateway_handovers, *report.gateway_failovers)
    assert len(changes) == 1, changes
    (change,) = changes
    assert (change.term, change.from_run, change.to_run) == (2, 1, 2)
    assert change.result == "completed"
    return change


def first_tick_outcomes(ledger: Path, run_id: int) -> list[str]:
    """The outcomes of the first tick ``run_id`` dispatched (its lowest seq, every slot)."""
    rows = query(
        ledger,
        "SELECT e.outcome FROM evaluations e JOIN"
        " (SELECT slot_id, min(seq) AS seq FROM evaluations WHERE run_id = ? GROUP BY slot_id) f"
        " ON e.slot_id = f.slot_id AND e.seq = f.seq",
        run_id,
    )
    return [str(r[0]) for r in rows]


def attached_to(host: Service, addr: str) -> list[dict[str, object]]:
    return [
        e
        for msg in ("attached to gateway", "attached to gateway again")
        for e in log_entries(host, msg)
        if e.get("gateway") == addr
    ]


async def test_a_handover_the_host_dials_both_and_misses_nothing(both: Both) -> None:
    both.cadence_s = 2.0  # room for the handover under CI's load, as test_gateway_replicas
    a, b, host = await both.first_term()
    assert [e["term"] for e in attached_to(host, both.addr_a)] == [1]
    assert await both.procs.reap(a) == 0  # SIGTERM: a handover at a tick boundary
    led = await b.wait_announced("role", "leader", timeout_s=10)
    assert led["term"] == 2
    await executed_ticks(both.ledger, 3, "three ticks executed by gw-b")
    on_b = attached_to(host, both.addr_b)
    assert [e["term"] for e in on_b] == [2], on_b
    assert await both.procs.reap(b) == 0
    change = the_change(both.ledger)
    assert (change.kind, change.ended) == ("handover", "handover")
    assert (change.missed, change.missed_ticks) == (0, 0)
    assert change.pause_ms is not None
    assert 0 <= change.pause_ms < both.cadence_s * 1000
    assert set(first_tick_outcomes(both.ledger, 2)) == {"executed"}
    reattached = log_entries(host, "re-attached to gateway")
    print(
        f"\nhandover, host on both: pause {change.pause_ms} ms, host detached"
        f" {[e['detached_ms'] for e in reattached]} ms"
    )
    assert await both.procs.reap(host) == 0


async def test_a_sigkilled_leader_the_host_answers_the_new_leaders_first_tick(both: Both) -> None:
    a, b, host = await both.first_term()
    killed = time.monotonic()
    assert await both.procs.kill(a) == -9
    led = await b.wait_announced("role", "leader", timeout_s=15)
    elected_ms = (time.monotonic() - killed) * 1000
    assert led["term"] == 2
    assert elected_ms <= S.failover_bound_ms + LATE_MS
    await executed_ticks(both.ledger, 3, "three ticks executed by gw-b")
    assert await both.procs.reap(b) == 0
    change = the_change(both.ledger)
    assert change.kind == "failover"
    assert change.pause_ms is not None  # the takeover, as the report measures it
    cadence_ms = both.cadence_s * 1000
    # Misses within ceil(takeover / cadence); the takeover itself within the lease's bound,
    # the new gateway's start and the host's re-attach (it was dialling gw-b all along).
    assert change.missed_ticks <= math.ceil(change.pause_ms / cadence_ms), change
    assert change.missed == change.missed_ticks * SLOTS
    assert change.pause_ms <= S.failover_bound_ms + 2 * cadence_ms + LATE_MS, change
    # The new leader's very first tick is answered by the host.
    assert set(first_tick_outcomes(both.ledger, 2)) == {"executed"}
    on_b = attached_to(host, both.addr_b)
    assert [e["term"] for e in on_b] == [2], on_b
    reattached = log_entries(host, "re-attached to gateway")
    print(
        f"\nSIGKILL, host on both: elected after {elected_ms:.0f} ms, takeover"
        f" {change.pause_ms} ms, missed {change.missed_ticks} ticks, host detached"
        f" {[e['detached_ms'] for e in reattached]} ms"
    )
    assert await both.procs.reap(host) == 0


async def test_a_restarted_host_hears_the_leaders_term_and_refuses_a_deposed_leader(
    both: Both,
) -> None:
    """The gap a host on one address had: a host process that restarts has seen no term and
    would obey the first gateway that welcomes it, a deposed leader included. On both
    addresses it attaches to the leader too, and the leader's term fences the deposed one."""
    a, b, host = await both.first_term()
    os.kill(a.pid, signal.SIGSTOP)  # paused past its deadline: it does not know it is deposed
    stopped = True
    try:
        led = await b.wait_announced("role", "leader", timeout_s=15)
        assert led["term"] == 2
        # The host had both streams: gw-a's (hung) and gw-b's, which carries the newer term.
        await wait_until(
            lambda: bool(log_entries(host, "obeying another gateway: its term is newer")),
            timeout_s=15,
            what="the first host switching to gw-b's stream",
        )
        assert await both.procs.kill(host) == -9
        restarted = await both.strategy("strategy-restarted")
        await wait_until(
            lambda: bool(attached_to(restarted, both.addr_b)),
            timeout_s=15,
            what="the restarted host attached to the leader",
        )
        os.kill(a.pid, signal.SIGCONT)  # the deposed leader wakes, the restarted host dials it
        stopped = False
        assert await a.proc.wait() == 3  # deposed: it exits, its supervisor starts a follower
        await executed_ticks(both.ledger, 2, "two more ticks executed by gw-b")
    finally:
        if stopped:
            os.kill(a.pid, signal.SIGCONT)
    # One leader at a time: gw-a executed nothing once gw-b had started executing.
    spans = query(
        both.ledger,
        "SELECT run_id, min(decided_ms), max(decided_ms) FROM evaluations"
        " WHERE outcome = 'executed' GROUP BY run_id ORDER BY run_id",
    )
    assert [int(r[0]) for r in spans] == [1, 2], spans
    assert spans[0][2] < spans[1][1], f"two replicas executed at once: {spans}"
    refused = log_entries(restarted, "gateway message of an older term refused")
    terms = [e["term"] for e in attached_to(restarted, both.addr_b)]
    print(
        f"\nrestarted host: attached to gw-b at term {terms}; gw-a's messages refused:"
        f" {[(e['what'], e['term'], e['current_term']) for e in refused]}"
    )
    assert terms == [2]
    assert not attached_to(restarted, both.addr_a), "the restarted host obeyed the deposed leader"
    assert await both.procs.reap(restarted) == 0
    assert await both.procs.reap(b) == 0
