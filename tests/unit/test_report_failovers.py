"""Failovers in the ledger and the presence report: checkpoints kept and pruned, a failover
recorded (and recorded again once verified), and the report's figures over a ledger built with
known deaths and the evaluations around them: every figure exact, in the value, JSON and table."""

from __future__ import annotations

from pathlib import Path

from baton.gateway.core.records import EvalOutcome, EvaluationRecord
from baton.gateway.ledger import FailoverRow, Ledger, LedgerReader, StoredCheckpoint
from baton.gateway.report import format_report, presence_report, report_to_json

T0 = 1_700_000_000_000
CADENCE = 1000
SLOTS = ("BTC/1m", "ETH/1m")


def sched(tick: int) -> int:
    return T0 + tick * CADENCE


def checkpoint(n: int, strategy: str = "momentum") -> StoredCheckpoint:
    return StoredCheckpoint(
        strategy, f"ckpt-{n}", "i1", "v1", 1, n, sched(n), f"sha256:{n}", {"BTC/1m": n}, b"x" * n
    )


def test_only_the_last_checkpoints_of_each_strategy_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as led:
        for n in range(1, 6):
            led.record_checkpoint(checkpoint(n), kept=3)
            led.record_checkpoint(checkpoint(n, "reversion"), kept=2)
            led.flush()
        # Several buffered before a flush: only the newest waits (each can be MBs).
        led.record_checkpoint(checkpoint(6), kept=3)
        led.record_checkpoint(checkpoint(7), kept=3)
        assert led.pending_rows == 1
    with LedgerReader(path) as r:
        assert [c.checkpoint_id for c in r.checkpoints("momentum")] == [
            "ckpt-7",
            "ckpt-5",
            "ckpt-4",
        ]
        assert [c.checkpoint_id for c in r.checkpoints("reversion")] == ["ckpt-5", "ckpt-4"]
        newest = r.checkpoints("momentum")[0]
        assert newest == checkpoint(7)  # bytes, digest and applied_seq as exported


def failover(n: int, died: int, took: int | None, state: str = "exact") -> FailoverRow:
    return FailoverRow(
        f"f-{n}", "momentum", "checkpoint", f"i{n}", "v1", f"i{n + 1}", "v1", died, took,
        "ckpt-1", "dig-1", state, "completed" if took is not None else "running", "",
    )  # fmt: skip


def evaluation(tick: int, slot: str, outcome: EvalOutcome) -> EvaluationRecord:
    return EvaluationRecord(
        slot, tick, sched(tick), sched(tick + 1), outcome,
        instance_id="i", version="v1", epoch=1, strategy="momentum",
    )  # fmt: skip


def test_the_report_counts_what_each_failover_left_unanswered(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    # Ticks 1-3 answered; the ACTIVE dies at 3.4 s: tick 3 was answered already, ticks 4-5 have
    # nobody (no_active), the successor takes over at the boundary of tick 6. A second death
    # (hot) at 8.5 s: tick 8's evaluations the standby answered, one timed out.
    outcomes = {t: EvalOutcome.EXECUTED for t in range(1, 11)}
    outcomes[4] = outcomes[5] = EvalOutcome.NO_ACTIVE
    with Ledger(path) as led:
        led.record_run(started_ms=T0, cadence_ms=CADENCE, slots=list(SLOTS), config_json="{}")
        for tick, outcome in outcomes.items():
            for slot in SLOTS:
                late = tick == 8 and slot == "ETH/1m"
                led.record_evaluation(
                    evaluation(tick, slot, EvalOutcome.TIMEOUT if late else outcome)
                )
        led.record_failover(failover(1, sched(3) + 400, None, "pending"))
        led.record_failover(failover(1, sched(3) + 400, sched(6)))  # verified: the row again
        led.record_failover(failover(2, sched(8) + 500, sched(8) + 500))
    report = presence_report(path)
    first, second = report.failovers
    assert (first.takeover_ms, first.missed, first.state, first.result) == (
        2600,
        4,
        "exact",
        "completed",
    )
    assert (second.takeover_ms, second.missed) == (0, 1)
    assert report.missed == 5
    as_json = report_to_json(report)["failovers"]
    assert isinstance(as_json, list)
    assert [(f["failover_id"], f["missed"], f["takeover_ms"]) for f in as_json] == [
        ("f-1", 4, 2600),
        ("f-2", 1, 0),
    ]
    table = format_report(report)
    assert "failovers" in table
    assert "i1 -> i2" in table
