"""A gateway restart with a strategy attached: SIGTERM (a clean stop) and SIGKILL (a crash),
then a new gateway process on the same ledger and port. It continues every slot's seqs (never
one reused), the strategy host re-attaches by itself (no ``--exit-on-disconnect``), evaluation
resumes, and the report shows the down time as ``not_scheduled`` ticks between two runs.
Prints the measured gap: restart to the first executed evaluation."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from baton.gateway.report import presence_report
from tests.procs import (
    CADENCE_S,
    SLOTS,
    StartGateway,
    StartStrategy,
    assert_every_scheduled_evaluation_accounted,
    more_ticks_in_run,
    not_executed,
    query,
    run_ticks,
    seqs_by_run,
    wait_until,
)

DOWN_S = 3.0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_gateway_restart_resumes_with_the_same_strategy_and_reports_the_gap(
    start_gateway: StartGateway, start_strategy: StartStrategy, ledger: Path, sig: int
) -> None:
    first = await start_gateway()
    addr = first.ready["grpc_addr"]
    strategy = await start_strategy(first)
    await run_ticks(ledger, 4)

    await first.stop(sig=sig)
    await asyncio.sleep(DOWN_S)  # ticks fall due while no gateway runs
    restarted_at = time.time()
    second = await start_gateway(BATON_GATEWAY__LISTEN=addr)
    ready_s = time.time() - restarted_at

    def first_executed_of_run_2() -> int | None:
        rows = query(
            ledger, "SELECT MIN(decided_ms) FROM evaluations WHERE run_id = 2 AND outcome = ?",
            "executed",
        )  # fmt: skip
        return rows[0][0] if rows and rows[0][0] is not None else None

    await wait_until(
        lambda: first_executed_of_run_2() is not None,
        timeout_s=30,
        what="an executed evaluation after the restart",
    )
    executed_ms = first_executed_of_run_2()
    assert executed_ms is not None
    gap_s = executed_ms / 1000 - restarted_at
    print(
        f"\nrestart ({signal.Signals(sig).name}): ready after {ready_s:.2f} s, first executed "
        f"evaluation {gap_s:.2f} s after the restart (cadence {CADENCE_S:g} s)"
    )
    await more_ticks_in_run(ledger, 2, 3, timeout_s=20)
    assert await second.stop() == 0
    assert strategy.proc.returncode is None, "the strategy host stayed up and re-attached"

    # Seqs: every slot continues where it stopped, never reusing one.
    runs = seqs_by_run(ledger)
    assert sorted(runs) == [1, 2]
    for slot_id, before in runs[1].items():
        after = runs[2][slot_id]
        assert max(before) < min(after), (slot_id, before, after)
        assert after == list(range(after[0], after[0] + len(after))), after
        # A clean stop resolves the tick in flight; a crash may lose it (and the one dispatched
        # with its flush): their seqs were reserved, so they are a hole, never reused.
        assert min(after) - max(before) - 1 <= (0 if sig == signal.SIGTERM else 2)
    if sig == signal.SIGTERM:
        assert_every_scheduled_evaluation_accounted(ledger)
    assert "evaluation seq not after applied_seq" not in strategy.log_path.read_text()
    assert not_executed(ledger) == []

    # The strategy re-attached by itself, to the second run.
    events = query(ledger, "SELECT run_id, event FROM instance_events ORDER BY id")
    assert (2, "attached") in events

    # The report shows the down time honestly: two runs, and the ticks nobody scheduled.
    report = presence_report(ledger)
    assert report.runs == 2
    assert report.missed == 0
    down_ticks = report.not_scheduled / SLOTS
    assert down_ticks >= DOWN_S / CADENCE_S - 1, report.not_scheduled
    assert report.max_gap_ms >= DOWN_S * 1000
    print(
        f"report: not_scheduled {report.not_scheduled} ({down_ticks:g} ticks x {SLOTS} slots), "
        f"unaccounted {report.unaccounted}, max_gap_ms {report.max_gap_ms}"
    )
