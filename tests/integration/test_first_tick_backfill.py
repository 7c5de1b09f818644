"""The clock's first tick waits for the exchange backfill (docs/gateway.md, "The first tick
waits for the backfill"), with real processes: the simulator over a real WebSocket (its REST
made slow), the gateway, and a strategy host running a probe that logs what each request
carried."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from baton.common import Service
from baton.gateway.report import presence_report
from baton.local import Processes
from tests.integration.history_probe import ENTRYPOINT, LOG_MSG
from tests.integration.test_stale_evaluations import UNKNOWN_MATIC, metric
from tests.procs import (
    SLOTS,
    StartGateway,
    count,
    log_entries,
    query,
    run_ticks,
    sim_fault,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]
HISTORY = 30  # gateway.history's default: closed candles in every request
STARTED = "backfill finished: the clock starts"
UNFINISHED = "backfill unfinished: the clock starts without it"


def first_requests(probe: Service) -> dict[str, dict[str, Any]]:
    """Per slot, what the probe's first request (lowest seq) carried."""
    first: dict[str, dict[str, Any]] = {}
    for entry in log_entries(probe, LOG_MSG):
        seen = first.get(entry["slot_id"])
        if seen is None or entry["seq"] < seen["seq"]:
            first[entry["slot_id"]] = entry
    return first


@pytest.fixture
async def start_probe(log_dir: Path) -> AsyncIterator[Any]:
    procs = Processes(log_dir)

    async def start(gateway: Service) -> Service:
        # The probe lives in tests/: the host imports it from the repository.
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        return await procs.strategy(
            "probe", gateway, ENTRYPOINT, pod_name="probe-0", env={"PYTHONPATH": path}
        )

    yield start
    await procs.close()


async def test_the_first_evaluation_carries_the_full_history_when_rest_is_slow(
    sim: Service, start_gateway: StartGateway, start_probe: Any, ledger: Path
) -> None:
    # 16 streams, 4 REST requests in flight, each answered 1.5 s late: the backfill takes 6 s
    # or more, far longer than the strategy takes to become ACTIVE (what starts the clock).
    sim_fault(sim, "/_sim/faults/rest_delay?seconds=1.5")
    gateway = await start_gateway(BATON_GATEWAY__BACKFILL_WAIT_S="30")
    probe = await start_probe(gateway)
    await run_ticks(ledger, 2)

    (started,) = log_entries(gateway, STARTED)
    print(f"\nclock waited {started['waited_s']} s for the backfill (REST 1.5 s per call)")
    assert (started["outcome"], started["pending"], started["refused"]) == ("backfilled", 0, 0)
    # The clock was told to start while the backfill still ran, and waited for it.
    assert started["waited_s"] > 0.5, started
    assert not log_entries(gateway, UNFINISHED)

    await wait_until(
        lambda: len(first_requests(probe)) == SLOTS,
        timeout_s=10,
        what="the probe's log of a request of every slot",
    )
    for slot_id, first in first_requests(probe).items():
        assert (first["seq"], first["history"], first["live"]) == (1, HISTORY, True), slot_id

    # Every evaluation fresh, from the first tick on; nothing missed while the clock waited.
    assert count(ledger, "SELECT count(*) FROM evaluations WHERE stale != ''") == 0
    assert {str(o) for (o,) in query(ledger, "SELECT DISTINCT outcome FROM evaluations")} == {
        "executed"
    }
    assert count(ledger, "SELECT count(DISTINCT slot_id) FROM evaluations WHERE seq = 1") == SLOTS
    report = presence_report(ledger)
    assert (report.missed, report.stale, report.not_scheduled) == (0, 0, 0)
    assert metric(gateway, "baton_backfill_wait_seconds") == pytest.approx(
        started["waited_s"], abs=0.01
    )
    assert metric(gateway, "baton_backfill_pending_streams") == 0


async def test_an_unknown_symbol_does_not_hold_the_clock(
    sim: Service, start_gateway: StartGateway, start_probe: Any, ledger: Path
) -> None:
    # Plain MATIC: REST answers -1121 for MATICUSDT, a refusal for good. The bound is far away:
    # the clock must start because the refusal finishes that stream's backfill, not the bound.
    # REST answers 1 s late (4 s or more for 16 streams): the clock is waiting when it comes.
    sim_fault(sim, "/_sim/faults/rest_delay?seconds=1")
    gateway = await start_gateway(
        BATON_GATEWAY__MARKETS=UNKNOWN_MATIC, BATON_GATEWAY__BACKFILL_WAIT_S="60"
    )
    await start_probe(gateway)
    await run_ticks(ledger, 2)

    (started,) = log_entries(gateway, STARTED)
    print(f"\nclock waited {started['waited_s']} s with MATICUSDT refused")
    assert (started["outcome"], started["pending"], started["refused"]) == ("backfilled", 0, 2)
    assert sorted(started["refused_streams"]) == ["MATICUSDT@15m", "MATICUSDT@5m"]
    assert 0.3 < started["waited_s"] < 10, started

    rows = query(ledger, "SELECT slot_id, stale FROM evaluations WHERE seq = 1")
    first = {str(slot): str(stale) for slot, stale in rows}
    assert len(first) == SLOTS
    # The unknown symbol's evaluations are stale with their reason; every other slot's first
    # evaluation is fresh (the clock waited for their backfill).
    assert {s: v for s, v in first.items() if s.startswith("MATIC/")} == {
        "MATIC/5m": "no_live",
        "MATIC/15m": "no_live",
    }
    assert {v for s, v in first.items() if not s.startswith("MATIC/")} == {""}


async def test_past_the_bound_the_clock_starts_and_counts_the_pending_streams_stale(
    sim: Service, start_gateway: StartGateway, start_probe: Any, ledger: Path
) -> None:
    # REST 3 s per call (16 calls, 4 at once: 12 s or more), the clock waits 1 s at most.
    sim_fault(sim, "/_sim/faults/rest_delay?seconds=3")
    gateway = await start_gateway(BATON_GATEWAY__BACKFILL_WAIT_S="1")
    await start_probe(gateway)
    await run_ticks(ledger, 1)

    (late,) = log_entries(gateway, UNFINISHED)
    print(f"\nclock waited {late['waited_s']} s, started with {late['pending']} streams pending")
    assert late["level"] == "warning"
    assert late["outcome"] == "timed_out"
    assert 0.9 <= late["waited_s"] < 3.0, late
    assert 0 < late["pending"] <= SLOTS
    assert not log_entries(gateway, STARTED)
    assert metric(gateway, "baton_backfill_pending_streams") == late["pending"]

    # The streams not yet backfilled are evaluated on time and counted stale with the reason;
    # once their backfill lands, they are fresh.
    await wait_until(
        lambda: (
            count(ledger, "SELECT count(DISTINCT slot_id) FROM evaluations WHERE stale = ''")
            == SLOTS
        ),
        timeout_s=40,
        what="a fresh evaluation of every slot once the slow backfill finished",
    )
    reasons = {str(r) for (r,) in query(ledger, "SELECT DISTINCT stale FROM evaluations")}
    assert reasons == {"", "backfill_pending"}, reasons
    report = presence_report(ledger)
    assert report.missed == 0
    assert report.stale_by_reason["backfill_pending"] >= late["pending"]
    assert report.stale == report.stale_by_reason["backfill_pending"]
    stale_logs = log_entries(gateway, "market data stale: evaluations counted stale")
    assert {e["why"] for e in stale_logs} == {"backfill_pending"}, stale_logs
