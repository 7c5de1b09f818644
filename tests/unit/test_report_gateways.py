"""The presence report's gateway leadership changes (report_gateways.py), from a real ledger
file written through the gateway's ``Ledger``: which runs are changes, handover or failover,
missed ticks, pause / takeover."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from baton.gateway.core.records import EvalOutcome, EvaluationRecord
from baton.gateway.ledger import Ledger, RunEnd, open_readonly
from baton.gateway.report import presence_report, report_to_json
from baton.gateway.report_gateways import GatewayChange, gateway_changes
from baton.gateway.timeline import write_html

T0 = 1_700_000_000_000
CADENCE = 1000
SLOTS = ("BTC/5m", "ETH/5m")


def run(path: Path, *, term: int, replica: str, ticks: range, end: RunEnd | None,
        first_late_ms: int = 1, outcome: EvalOutcome = EvalOutcome.EXECUTED) -> None:  # fmt: skip
    """One gateway process on the ledger: its run, its ticks (seq = tick), how it ended."""
    with Ledger(path, term=term) as led:
        config = json.dumps({"leader": {"identity": replica}})
        led.record_run(started_ms=T0, cadence_ms=CADENCE, slots=list(SLOTS), config_json=config)
        for n in ticks:
            at = T0 + n * CADENCE
            late = first_late_ms if n == ticks.start else 1
            done = outcome if n == ticks.start else EvalOutcome.EXECUTED
            for slot in SLOTS:
                led.record_evaluation(
                    EvaluationRecord(
                        slot, n, at, at + CADENCE, done, dispatched_ms=at + late,
                        decided_ms=at + late + 3, instance_id="i1", version="v1", epoch=1,
                        action="UP", reason="", eval_us=10, strategy="momentum",
                    )
                )  # fmt: skip
            led.flush()
        if end is not None:
            led.end_run(ended_ms=T0 + ticks.stop * CADENCE, reason=end.value)


def changes(path: Path) -> tuple[GatewayChange, ...]:
    conn = open_readonly(path)
    try:
        return gateway_changes(conn)
    finally:
        conn.close()


def test_a_handover_a_kill_and_a_deposition_read_back_from_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    run(path, term=1, replica="gw-a", ticks=range(1, 4), end=RunEnd.HANDOVER)
    # The next tick (4), 2 ms late: a handover that missed nothing.
    run(path, term=2, replica="gw-b", ticks=range(4, 7), end=None, first_late_ms=2)  # killed
    # Ticks 7 and 8 nobody scheduled; 9 dispatched 5 ms late: a takeover of 2 cadences + 5 ms.
    run(path, term=3, replica="gw-c", ticks=range(9, 11), end=RunEnd.DEPOSED, first_late_ms=5)
    # Deposed after tick 10; its successor's first tick (12) recorded missed (no ACTIVE yet).
    run(path, term=4, replica="gw-d", ticks=range(12, 14), end=RunEnd.STOPPED,
        outcome=EvalOutcome.NO_ACTIVE)  # fmt: skip
    got = changes(path)
    assert [(c.kind, c.from_replica, c.to_replica, c.term, c.ended) for c in got] == [
        ("handover", "gw-a", "gw-b", 2, "handover"),
        ("failover", "gw-b", "gw-c", 3, ""),
        ("failover", "gw-c", "gw-d", 4, "deposed"),
    ]
    assert [(c.missed_ticks, c.missed, c.pause_ms, c.result) for c in got] == [
        (0, 0, 2, "completed"),
        (2, 2 * len(SLOTS), 2 * CADENCE + 5, "completed"),
        (1, 1 * len(SLOTS) + len(SLOTS), CADENCE + 1, "completed"),
    ]
    report = report_to_json(presence_report(path))
    handovers = report["gateway_handovers"]
    failovers = report["gateway_failovers"]
    assert isinstance(handovers, list)
    assert isinstance(failovers, list)
    assert [h["term"] for h in handovers] == [2]
    assert set(handovers[0]) >= {"from", "to", "term", "pause_ms", "missed", "result"}
    assert [f["takeover_ms"] for f in failovers] == [2005, 1001]


def test_runs_without_an_election_are_restarts_not_changes(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    run(path, term=0, replica="", ticks=range(1, 3), end=RunEnd.STOPPED)
    run(path, term=0, replica="", ticks=range(5, 7), end=None)
    assert changes(path) == ()
    assert presence_report(path).gateway_failovers == ()


def test_a_ledger_before_schema_6_has_no_changes(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, cadence_ms INTEGER, config TEXT)")
    conn.close()
    conn = sqlite3.connect(path)
    try:
        assert gateway_changes(conn) == ()
    finally:
        conn.close()


def test_the_timeline_names_each_runs_term_and_how_it_took_the_lead(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    run(path, term=1, replica="gw-a", ticks=range(1, 4), end=RunEnd.HANDOVER)
    run(path, term=2, replica="gw-b", ticks=range(4, 7), end=None)
    run(path, term=3, replica="gw-c", ticks=range(9, 11), end=RunEnd.STOPPED)
    page = write_html(path, tmp_path / "presence.html").read_text()
    assert "gateway run 1 · term 1</text>" in page
    assert "gateway run 2 · term 2 · handover</text>" in page
    assert "gateway run 3 · term 3 · failover</text>" in page
    assert "took the lead by a failover, 4 evaluations missed by it" in page
