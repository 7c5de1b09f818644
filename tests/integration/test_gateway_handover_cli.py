"""``baton gateway handover`` (``ControlService.Handover``, docs/gateway-standby.md "Planned
handover"), as real processes: two replicas on addresses of their own, a shared ledger and a
local lease, a strategy host on both addresses, the clock running.

The leader asked hands over at its next tick boundary exactly as on a SIGTERM, answers once the
lease is released and exits 0; the other replica leads the next term with 0 missed. A second
request while one is under way is refused and starts nothing; a gateway that is not a replica
refuses with a clear reason.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from baton.common import Service
from baton.control.client import ControlClient, ControlError
from baton.gateway.report import presence_report
from baton.local import Processes
from tests.integration.test_gateway_hosts_both import Both, executed_ticks, first_tick_outcomes
from tests.procs import StartGateway, log_entries


@pytest.fixture
async def both(sim: Service, ledger: Path, log_dir: Path) -> AsyncIterator[Both]:
    procs = Processes(log_dir)
    yield Both(procs, sim, ledger)
    await procs.close()


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "baton", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_handover_by_the_cli_then_asked_twice_at_once_under_a_running_clock(
    both: Both,
) -> None:
    both.cadence_s = 2.0  # room for the handover under CI's load, as test_gateway_replicas
    a, b, host = await both.first_term()

    # 1. The CLI asks gw-a (term 1): it hands over, answers after the release, exits 0.
    code, out, err = await cli(
        "gateway", "handover", "--gateway", both.addr_a, "--json", "--reason", "test"
    )
    assert code == 0, err
    answer = json.loads(out)
    print(f"\nbaton gateway handover --json: {answer}")
    assert answer["from"].startswith("gw-a")
    assert answer["term"] == 1
    assert answer["last_tick_ms"] > 0
    assert answer["released_ms"] >= answer["asked_ms"] > 0
    assert answer["to"] is None or answer["to"].startswith("gw-b")
    assert answer["new_term"] in (None, 2)
    async with asyncio.timeout(15):
        assert await a.proc.wait() == 0  # one term per process: its supervisor restarts it
    led = await b.wait_announced("role", "leader", timeout_s=10)
    assert led["term"] == 2
    await executed_ticks(both.ledger, 2, "two ticks executed by gw-b")

    # 2. gw-a's address gets a new follower; two requests to gw-b at once: one hands over.
    c = await both.replica("gw-c", both.addr_a)
    assert c.ready["role"] == "follower"
    async with ControlClient(both.addr_b, timeout_s=30) as client:
        results = await asyncio.gather(
            client.handover("first"), client.handover("second"), return_exceptions=True
        )
    done = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, ControlError)]
    assert (len(done), len(refused)) == (1, 1), results
    assert refused[0].code == "FAILED_PRECONDITION"
    assert "already under way" in str(refused[0])
    assert (done[0].from_replica[:4], done[0].term) == ("gw-b", 2)
    async with asyncio.timeout(15):
        assert await b.proc.wait() == 0
    led = await c.wait_announced("role", "leader", timeout_s=10)
    assert led["term"] == 3
    await executed_ticks(both.ledger, 2, "two ticks executed by gw-c")
    assert await both.procs.reap(c) == 0
    assert await both.procs.reap(host) == 0

    report = presence_report(both.ledger)
    assert report.runs == 3
    assert report.missed == 0
    handovers = report.gateway_handovers
    assert [(h.term, h.from_replica[:4], h.to_replica[:4]) for h in handovers] == [
        (2, "gw-a", "gw-b"),
        (3, "gw-b", "gw-c"),
    ]
    for h in handovers:
        assert (h.missed, h.missed_ticks, h.result) == (0, 0, "completed"), h
        assert h.pause_ms is not None
        assert 0 <= h.pause_ms < both.cadence_s * 1000
    for run_id in (2, 3):
        assert set(first_tick_outcomes(both.ledger, run_id)) == {"executed"}
    assert not report.gateway_failovers
    assert [e["why"] for e in log_entries(b, "gateway handover refused")] == [
        str(refused[0]).removeprefix("FAILED_PRECONDITION: ")
    ]
    print(f"handovers: {[(h.term, h.pause_ms, h.missed) for h in handovers]}")


async def test_a_gateway_that_is_not_a_replica_refuses_a_handover(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway()
    addr = gateway.ready["grpc_addr"]
    code, out, err = await cli("gateway", "handover", "--gateway", addr)
    print(f"\nnot a replica: exit {code}: {err.strip()}")
    assert code == 1
    assert out == ""
    assert "FAILED_PRECONDITION" in err
    assert "not a replica (leader.backend = off)" in err
    assert gateway.proc.returncode is None  # it goes on serving
