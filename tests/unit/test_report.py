"""The presence report over a ledger built with known rows: every figure exact."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from baton.gateway.core.records import EvalOutcome, EvaluationRecord
from baton.gateway.ledger import Ledger, LedgerOpenError
from baton.gateway.report import (
    PresenceReport,
    SlotCoverage,
    VersionRow,
    format_report,
    presence_report,
    report_to_json,
)
from baton.model import Action, Candle, Fill, Settlement

T0 = 1_700_000_000_000
CADENCE = 5000

E, ERR, TO, NA, GL = (
    EvalOutcome.EXECUTED,
    EvalOutcome.ERROR,
    EvalOutcome.TIMEOUT,
    EvalOutcome.NO_ACTIVE,
    EvalOutcome.GATEWAY_LATE,
)

# (slot, seq, outcome, version, decision latency ms). Scheduled at T0 + seq * CADENCE.
ROWS = [
    ("BTC/5m", 1, E, "v1", 40),
    ("BTC/5m", 2, E, "v1", 40),
    ("BTC/5m", 3, TO, "v1", 0),
    ("BTC/5m", 4, TO, "v1", 0),
    ("BTC/5m", 5, E, "v1", 900),  # answered 15 s + 860 ms after seq 2: the longest gap
    ("BTC/5m", 6, ERR, "v2", 10),
    ("ETH/5m", 1, NA, "", 0),
    ("ETH/5m", 2, E, "v1", 40),
    # ETH/5m seq 3 has no record at all: unaccounted
    ("ETH/5m", 4, E, "v2", 40),
    ("ETH/5m", 5, GL, "", 0),
]


def sched(seq: int) -> int:
    return T0 + seq * CADENCE


def record(
    slot: str, seq: int, outcome: EvalOutcome, version: str, latency: int
) -> EvaluationRecord:
    answered = outcome.answered
    return EvaluationRecord(
        slot, seq, sched(seq), sched(seq + 1), outcome,
        dispatched_ms=sched(seq) if outcome is not NA else None,
        decided_ms=sched(seq) + latency if answered else None,
        instance_id=f"i-{version}" if version else "", version=version, epoch=1,
        action="UP" if answered else None,
    )  # fmt: skip


def fill(slot: str, seq: int) -> Fill:
    return Fill(f"{slot}@{T0}#{seq}", slot, seq, Action.UP, 5.0, 0.5, 10.0, 0.1, T0, T0 + 300_000)


def settle(f: Fill, won: bool) -> Settlement:
    payout = 10.0 if won else 0.0
    outcome = Action.UP if won else Action.DOWN
    return Settlement(
        f.bet_id, f.slot_id, f.side, f.window_start_ms, f.window_end_ms, 1.0, 2.0, outcome, won,
        payout, payout - 5.0 - 0.1,
    )  # fmt: skip


def build(path: Path) -> None:
    with Ledger(path) as led:
        led.record_run(started_ms=T0 - 9000, cadence_ms=1000, slots=["BTC/5m"], config_json="{}")
    with Ledger(path) as led:
        led.record_run(
            started_ms=T0,
            cadence_ms=CADENCE,
            slots=["BTC/5m", "ETH/5m", "SOL/5m"],
            config_json="{}",
        )
        for row in ROWS:
            led.record_evaluation(record(*row))
        bets = [fill("BTC/5m", 1), fill("BTC/5m", 2), fill("BTC/5m", 5), fill("ETH/5m", 4)]
        for f, version in zip(bets, ["v1", "v1", "v1", "v2"], strict=True):
            led.record_bet(f, instance_id=f"i-{version}", version=version, epoch=1, placed_ms=T0)
        for f, won in zip(bets[:3], [True, True, False], strict=True):
            led.record_settlement(settle(f, won), settled_ms=T0)
        for reason in ("late", "fenced"):
            led.record_dropped_decision(
                slot_id="BTC/5m", seq=3, instance_id="i-v1", epoch=1, received_ms=T0,
                action="UP", reason=reason,
            )  # fmt: skip
        for start in (T0, T0 + 300_000):
            c = Candle("BTCUSDT", "5m", start, start + 299_999, 1, 1, 1, 1, closed=True)
            led.record_candle(c, source="ws", observed_ms=start)


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.sqlite"
    build(path)
    return path


def test_headline_figures(ledger_path: Path) -> None:
    r = presence_report(ledger_path)
    assert (r.slots, r.scheduled, r.evaluated, r.missed, r.errors) == (3, 10, 5, 4, 1)
    assert r.missed_by_reason == {"timeout": 2, "no_active": 1, "gateway_late": 1, "undelivered": 0}
    assert r.unaccounted == 1
    assert r.max_gap_ms == (sched(5) + 900) - (sched(2) + 40)
    assert r.cadence_ms == CADENCE  # of the latest run
    assert r.runs == 2
    assert (r.bets, r.settled, r.wins, r.losses) == (4, 3, 2, 1)
    assert r.win_rate == pytest.approx(2 / 3)
    assert r.pnl == pytest.approx(4.9 + 4.9 - 5.1)
    assert (r.dropped_decisions, r.candles) == (2, 2)
    assert (r.first_scheduled_ms, r.last_scheduled_ms) == (sched(1), sched(6))


def test_coverage_per_slot_in_configured_order_with_a_row_for_an_idle_slot(
    ledger_path: Path,
) -> None:
    assert presence_report(ledger_path).per_slot == (
        SlotCoverage("BTC/5m", 6, 3, 2, 1, max_gap_ms=15_860, unaccounted=0),
        SlotCoverage("ETH/5m", 4, 2, 2, 0, max_gap_ms=sched(4) - sched(2), unaccounted=1),
        SlotCoverage("SOL/5m", 0, 0, 0, 0, max_gap_ms=0, unaccounted=0),
    )


def test_per_version_in_the_order_deployments_served(ledger_path: Path) -> None:
    assert presence_report(ledger_path).per_version == (
        VersionRow("v1", 6, 4, 2, 0, bets=3, first_ms=sched(1), last_ms=sched(5)),
        VersionRow("v2", 2, 1, 0, 1, bets=1, first_ms=sched(4), last_ms=sched(6)),
        VersionRow("", 2, 0, 2, 0, bets=0, first_ms=sched(1), last_ms=sched(5)),
    )


def test_the_figures_add_up(ledger_path: Path) -> None:
    r = presence_report(ledger_path)
    assert r.scheduled == r.evaluated + r.errors + r.missed
    assert r.missed == sum(r.missed_by_reason.values())
    assert r.scheduled == sum(v.scheduled for v in r.per_version)
    assert r.bets == sum(v.bets for v in r.per_version)


def test_an_empty_ledger(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    Ledger(path).close()
    r = presence_report(path)
    assert (r.slots, r.scheduled, r.missed, r.max_gap_ms, r.cadence_ms) == (0, 0, 0, 0, 0)
    assert (r.win_rate, r.pnl, r.first_scheduled_ms, r.per_slot) == (None, 0.0, None, ())
    assert "missed: 0" in format_report(r).splitlines()


def test_a_single_answer_has_no_gap(tmp_path: Path) -> None:
    path = tmp_path / "one.sqlite"
    with Ledger(path) as led:
        led.record_evaluation(record("BTC/5m", 1, E, "v1", 40))
        led.record_evaluation(record("BTC/5m", 2, TO, "v1", 0))
    assert presence_report(path).max_gap_ms == 0


def test_the_report_reads_committed_rows_while_the_gateway_writes(tmp_path: Path) -> None:
    path = tmp_path / "live.sqlite"
    led = Ledger(path)
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        led.record_evaluation(record("BTC/5m", 1, E, "v1", 40))
        led.flush()
        led.record_evaluation(record("BTC/5m", 2, E, "v1", 40))  # buffered, not yet written
        writer.execute("BEGIN IMMEDIATE")  # another transaction in flight, uncommitted
        writer.execute("DELETE FROM evaluations")
        assert presence_report(path).scheduled == 1
        writer.execute("ROLLBACK")
        led.flush()
        assert presence_report(path).scheduled == 2
    finally:
        writer.close()
        led.close()


def test_a_missing_ledger_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LedgerOpenError, match="no such file"):
        presence_report(tmp_path / "nope.sqlite")


# -- output -----------------------------------------------------------------------------------


def test_json_has_the_demo_keys_and_round_trips(ledger_path: Path) -> None:
    data = json.loads(json.dumps(report_to_json(presence_report(ledger_path))))
    for key in ("slots", "scheduled", "evaluated", "missed", "max_gap_ms", "bets", "settled"):
        assert isinstance(data[key], int), key
    assert data["win_rate"] == pytest.approx(2 / 3)
    assert data["missed_by_reason"]["timeout"] == 2
    assert data["per_slot"][1] == {
        "slot_id": "ETH/5m",
        "scheduled": 4,
        "evaluated": 2,
        "missed": 2,
        "errors": 0,
        "max_gap_ms": 10_000,
        "unaccounted": 1,
        "stale": 0,
    }
    assert [v["version"] for v in data["per_version"]] == ["v1", "v2", ""]


def test_json_win_rate_is_null_without_settlements(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    Ledger(path).close()
    assert report_to_json(presence_report(path))["win_rate"] is None


def test_the_human_report_starts_with_the_headline_figures(ledger_path: Path) -> None:
    lines = format_report(presence_report(ledger_path)).splitlines()
    assert lines[:8] == [
        "slots: 3",
        "scheduled: 10",
        "evaluated: 5",
        "missed: 4  (gateway_late=1, no_active=1, timeout=2)",
        "errors: 1",
        "stale: 0  (evaluated on data that were not live)",
        "unaccounted: 1",
        "max_gap_ms: 15860  (cadence 5000 ms)",
    ]
    assert "win_rate: 66.7%" in lines
    assert "pnl: +4.70" in lines


def _section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(title) + 1
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return lines[start:end]


@pytest.mark.parametrize("title", ["per slot", "per version"], ids=["slots", "versions"])
def test_the_human_tables_are_aligned(ledger_path: Path, title: str) -> None:
    table = _section(format_report(presence_report(ledger_path)), title)
    assert len(table) == 4  # header + 3 rows
    assert len({len(line) for line in table}) == 1  # figures right-aligned to one edge
    header = table[0].split()
    assert header[0] in ("slot", "version")


def test_the_unattributed_version_row_is_labelled(ledger_path: Path) -> None:
    table = _section(format_report(presence_report(ledger_path)), "per version")
    assert table[-1].startswith("(no active)")


def test_a_report_is_a_value(ledger_path: Path) -> None:
    assert presence_report(ledger_path) == presence_report(ledger_path)
    assert isinstance(presence_report(ledger_path), PresenceReport)
