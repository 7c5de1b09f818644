"""Stale evaluations in the ledger and the report: counted per slot, per version and in total,
inside ``evaluated``; a ledger older than the ``stale`` column reads as fresh."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from baton.gateway.core.records import EvalOutcome, EvaluationRecord, Staleness
from baton.gateway.ledger import _MIGRATIONS, SCHEMA_VERSION, Ledger, LedgerReader
from baton.gateway.report import format_report, presence_report, report_to_json

T0 = 1_700_000_000_000
CADENCE = 5000
E, ERR, TO = EvalOutcome.EXECUTED, EvalOutcome.ERROR, EvalOutcome.TIMEOUT
F, NL, NH, OLD = Staleness.FRESH, Staleness.NO_LIVE, Staleness.NO_HISTORY, Staleness.OLD

# (slot, seq, outcome, version, staleness)
ROWS = [
    ("BTC/5m", 1, E, "v1", NH),  # the first tick, answered before the backfill delivered
    ("BTC/5m", 2, E, "v1", F),
    ("BTC/5m", 3, E, "v2", OLD),  # during a feed stall
    ("BTC/5m", 4, TO, "v2", OLD),  # stale and missed: counted missed, not stale
    ("MATIC/5m", 1, E, "v1", NL),  # unknown symbol: never a live candle
    ("MATIC/5m", 2, E, "v1", NL),
    ("MATIC/5m", 3, E, "v2", NL),
    ("MATIC/5m", 4, ERR, "v2", NL),  # an error is not evaluated: not stale either
]


def record(
    slot: str, seq: int, outcome: EvalOutcome, version: str, stale: Staleness
) -> EvaluationRecord:
    t = T0 + seq * CADENCE
    answered = outcome.answered
    return EvaluationRecord(
        slot, seq, t, t + CADENCE, outcome, dispatched_ms=t,
        decided_ms=t + 20 if answered else None, instance_id=f"i-{version}", version=version,
        epoch=1, action="HOLD" if outcome is E else None, stale=stale,
    )  # fmt: skip


def build(path: Path) -> list[EvaluationRecord]:
    records = [record(*row) for row in ROWS]
    with Ledger(path) as led:
        led.record_run(
            started_ms=T0, cadence_ms=CADENCE, slots=["BTC/5m", "MATIC/5m"], config_json="{}"
        )
        for r in records:
            led.record_evaluation(r)
    return records


def test_the_staleness_of_each_evaluation_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    records = build(path)
    with LedgerReader(path) as r:
        assert r.evaluations() == sorted(records, key=lambda e: (e.slot_id, e.seq))


def test_stale_per_slot_per_version_and_in_total(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    build(path)
    r = presence_report(path)
    assert (r.scheduled, r.evaluated, r.stale, r.missed, r.errors) == (8, 6, 5, 1, 1)
    # Every reason is a key, 0 when it never occurred.
    assert r.stale_by_reason == {"no_live": 3, "backfill_pending": 0, "no_history": 1, "old": 1}
    assert [(s.slot_id, s.evaluated, s.stale) for s in r.per_slot] == [
        ("BTC/5m", 3, 2),
        ("MATIC/5m", 3, 3),
    ]
    assert [(v.version, v.evaluated, v.stale) for v in r.per_version] == [
        ("v1", 4, 3),
        ("v2", 2, 2),
    ]
    assert r.stale == sum(s.stale for s in r.per_slot) == sum(v.stale for v in r.per_version)
    data = json.loads(json.dumps(report_to_json(r)))
    assert (data["stale"], data["stale_by_reason"]["no_live"]) == (5, 3)
    assert [s["stale"] for s in data["per_slot"]] == [2, 3]
    assert [v["stale"] for v in data["per_version"]] == [3, 2]
    text = format_report(r)
    assert "stale: 5  (evaluated on data that were not live: no_history=1, no_live=3, old=1)" in (
        text.splitlines()
    )
    header = text.splitlines()[text.splitlines().index("per slot") + 1].split()
    assert header[:4] == ["slot", "scheduled", "evaluated", "stale"]


def _make_schema_2(path: Path) -> EvaluationRecord:
    """A ledger as a gateway before the ``stale`` column wrote it: one evaluation."""
    old = record("BTC/5m", 1, E, "v1", F)
    conn = sqlite3.connect(path, isolation_level=None)
    for statements in _MIGRATIONS[:2]:  # schema 2's statements, as that baton ran them
        for statement in statements:
            conn.execute(statement)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '2')")
    conn.execute(
        "INSERT INTO runs (started_ms, cadence_ms, slots, config) VALUES (?, ?, ?, '{}')",
        (T0, CADENCE, '["BTC/5m"]'),
    )
    conn.execute(
        "INSERT INTO evaluations (run_id, slot_id, seq, scheduled_ms, deadline_ms, "
        "dispatched_ms, decided_ms, outcome, instance_id, version, epoch, action, reason, "
        "error, eval_us, bet_id) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            old.slot_id, old.seq, old.scheduled_ms, old.deadline_ms, old.dispatched_ms,
            old.decided_ms, old.outcome.value, old.instance_id, old.version, old.epoch,
            old.action, old.reason, old.error, old.eval_us, old.bet_id,
        ),
    )  # fmt: skip
    conn.close()
    return old


def _columns(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {row[1] for row in conn.execute("PRAGMA table_info(evaluations)")}
    finally:
        conn.close()


def test_an_old_ledger_reads_as_not_stale_and_is_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = _make_schema_2(path)
    assert "stale" not in _columns(path)
    with LedgerReader(path) as r:
        assert r.schema_version() == 2
        assert r.evaluations() == [old]
    rep = presence_report(path)
    assert (rep.evaluated, rep.stale, rep.per_slot[0].stale, rep.per_version[0].stale) == (
        1,
        0,
        0,
        0,
    )
    assert "stale" not in _columns(path)


@pytest.mark.parametrize("staleness", [NL, OLD])
def test_an_old_ledger_gains_the_column_when_a_gateway_opens_it(
    tmp_path: Path, staleness: Staleness
) -> None:
    path = tmp_path / "old.sqlite"
    old = _make_schema_2(path)
    new = record("BTC/5m", 2, E, "v1", staleness)
    with Ledger(path) as led:
        led.record_evaluation(new)
    with LedgerReader(path) as r:
        assert r.schema_version() == SCHEMA_VERSION
        assert r.evaluations() == [old, new]
    assert (presence_report(path).evaluated, presence_report(path).stale) == (2, 1)


def test_the_timeline_draws_stale_evaluations_in_a_colour_of_their_own(tmp_path: Path) -> None:
    from baton.gateway.core.timeline import Kind
    from baton.gateway.core.timeline_html import COLOURS
    from baton.gateway.timeline import _bucket_cells, read_timeline, write_html

    path = tmp_path / "ledger.sqlite"
    build(path)
    report, timeline = read_timeline(path)
    kinds = {(c.slot_id, c.seq): (c.kind, c.not_live) for c in timeline.cells}
    assert kinds[("BTC/5m", 1)] == (Kind.NOT_LIVE, 1)
    assert kinds[("BTC/5m", 2)] == (Kind.EXECUTED, 0)
    assert kinds[("BTC/5m", 4)] == (Kind.MISSED, 0)  # stale and missed: drawn missed
    assert kinds[("MATIC/5m", 4)] == (Kind.ERROR, 0)
    assert sum(c.not_live for c in timeline.cells) == report.stale == 5
    figures = {f.label: f for f in timeline.headline}
    assert figures["stale (data not live)"].value == "5"
    assert figures["stale (data not live)"].bad
    # Buckets keep the exact count: two ticks a bucket.
    conn = sqlite3.connect(path)
    try:
        buckets = _bucket_cells(conn, T0 + CADENCE, 2 * CADENCE)
    finally:
        conn.close()
    assert sorted((c.slot_id, c.start_ms, c.not_live, c.kind) for c in buckets) == [
        ("BTC/5m", T0 + CADENCE, 1, Kind.NOT_LIVE),
        ("BTC/5m", T0 + 3 * CADENCE, 1, Kind.MISSED),
        ("MATIC/5m", T0 + CADENCE, 2, Kind.NOT_LIVE),
        ("MATIC/5m", T0 + 3 * CADENCE, 1, Kind.ERROR),
    ]
    page = write_html(path, tmp_path / "presence.html").read_text()
    assert 'class="cell not_live"' in page
    assert COLOURS[Kind.NOT_LIVE] in page
