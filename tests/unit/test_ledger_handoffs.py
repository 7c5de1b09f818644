"""Handoffs in the presence ledger (schema 2) on real SQLite files: exact round trips, one row
per handoff, and the migration of a schema-1 ledger."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path

import pytest

from baton.gateway.core import handoff as hm
from baton.gateway.core.records import EvalOutcome, EvaluationRecord
from baton.gateway.ledger import (
    _MIGRATIONS,
    SCHEMA_VERSION,
    DuplicateRecordError,
    HandoffRow,
    Ledger,
    LedgerConflictError,
    LedgerReader,
)

T0 = 1_700_000_000_000
POLICY = hm.Policy(shadow_ticks=2, max_divergence=3, bake_ms=2000, max_bake_faults=1)


def completed(handoff_id: str = "h-1", t0: int = T0) -> hm.Handoff:
    """A handoff driven through the real machine from start to COMPLETED: every field set."""
    t = hm.start(
        handoff_id=handoff_id, strategy="momentum", blue="i1-blue", green="i2-green",
        from_version="v1", to_version="v2", policy=POLICY, epoch=4, now_ms=t0,
    )  # fmt: skip
    h = t.handoff
    for event in (
        hm.Exported(t0 + 10, 10_240, "sha256:aa"),
        hm.Imported(t0 + 25, True, "sha256:aa", migrated_digest="sha256:bb"),
        hm.Boundary(t0 + 500, green_caught_up=False),  # live shadowing starts
        hm.Compared(t0 + 900, "BTC/5m", 7, "UP", "UP"),
        hm.Compared(t0 + 901, "ETH/5m", 7, "UP", "DOWN"),
        hm.Boundary(t0 + 1000, green_caught_up=True),
        hm.Boundary(t0 + 2000, green_caught_up=True),
        hm.FirstGreenTick(0.734),
        hm.GreenFault(t0 + 2500, "timeout at BTC/5m#9"),
        hm.Boundary(t0 + 4000, green_caught_up=True),
        hm.Drained(t0 + 4100),
    ):
        h = hm.transition(h, event).handoff
    assert h.phase is hm.Phase.COMPLETED
    return h


def aborted(handoff_id: str = "h-2", t0: int = T0 + 10_000) -> hm.Handoff:
    t = hm.start(
        handoff_id=handoff_id, strategy="momentum", blue="i2-green", green="i3-blue",
        from_version="v2", to_version="v1", policy=hm.Policy(), epoch=5, now_ms=t0,
    )  # fmt: skip
    h = hm.transition(t.handoff, hm.Exported(t0 + 5, 2048, "sha256:cc")).handoff
    h = hm.transition(h, hm.Imported(t0 + 9, False, "", error="ImportError: boom")).handoff
    assert h.phase is hm.Phase.ABORTED
    return h


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger" / "baton.sqlite"


@pytest.fixture
def ledger(path: Path) -> Iterator[Ledger]:
    led = Ledger(path)
    yield led
    led.abandon()


def test_a_finished_handoff_round_trips_exactly(ledger: Ledger, path: Path) -> None:
    run_id = ledger.record_run(started_ms=T0, cadence_ms=1000, slots=[], config_json="{}")
    h1, h2 = completed(), aborted()
    # A rich value: nothing left at its default that a lost column could hide behind.
    assert (h1.pause_ms, h1.bake_faults, h1.divergences, h1.migrated_digest) == (
        0.734,
        1,
        1,
        "sha256:bb",
    )
    assert (h1.imported_ms, h1.caught_up_boundaries, len(h1.steps)) == (T0 + 25, 2, 10)
    ledger.record_handoff(h1, missed=0)
    ledger.record_handoff(h2, missed=3)
    ledger.flush()
    with LedgerReader(path) as r:
        assert r.handoffs() == [
            HandoffRow(h1, missed=0, run_id=run_id),
            HandoffRow(h2, missed=3, run_id=run_id),
        ]


def test_the_table_has_a_column_for_every_field_of_a_handoff(ledger: Ledger, path: Path) -> None:
    conn = sqlite3.connect(path)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(handoffs)")}
    conn.close()
    stored = {"result" if f.name == "phase" else f.name for f in fields(hm.Handoff)}
    assert stored <= columns
    assert columns - stored == {"id", "run_id", "missed"}


def test_handoffs_are_read_in_the_order_they_started(ledger: Ledger, path: Path) -> None:
    later, earlier = completed("h-late", T0 + 50_000), completed("h-early", T0)
    ledger.record_handoff(later, missed=0)
    ledger.record_handoff(earlier, missed=0)
    ledger.flush()
    with LedgerReader(path) as r:
        assert [row.handoff.handoff_id for row in r.handoffs()] == ["h-early", "h-late"]


def test_a_handoff_reaches_the_file_only_on_flush(ledger: Ledger, path: Path) -> None:
    ledger.record_handoff(completed(), missed=0)
    assert ledger.pending_rows == 1
    with LedgerReader(path) as r:
        assert r.handoffs() == []
        ledger.flush()
        assert len(r.handoffs()) == 1
    assert ledger.pending_rows == 0


def test_pause_and_flip_are_null_for_a_handoff_that_never_flipped(
    ledger: Ledger, path: Path
) -> None:
    ledger.record_handoff(aborted(), missed=0)
    ledger.flush()
    conn = sqlite3.connect(path)
    row = conn.execute(
        "SELECT result, flipped_ms, pause_ms, typeof(started_ms), missed FROM handoffs"
    ).fetchone()
    conn.close()
    assert row == ("aborted", None, None, "integer", 0)


@pytest.mark.parametrize("flush_between", [False, True], ids=["both buffered", "first written"])
def test_a_handoff_is_recorded_once(ledger: Ledger, path: Path, flush_between: bool) -> None:
    ledger.record_handoff(completed("h-7"), missed=0)
    if flush_between:
        ledger.flush()
    again = replace(aborted("h-7"), message="a second ending")
    with pytest.raises(DuplicateRecordError, match="h-7 already recorded") as err:
        ledger.record_handoff(again, missed=1)
    assert err.value.keys == ("h-7",)
    ledger.record_handoff(aborted("h-8"), missed=0)  # another id: fine
    ledger.flush()
    with LedgerReader(path) as r:
        assert [(row.handoff.handoff_id, row.handoff.phase) for row in r.handoffs()] == [
            ("h-7", hm.Phase.COMPLETED),
            ("h-8", hm.Phase.ABORTED),
        ]


def test_a_duplicate_from_another_writer_is_a_conflict_not_a_second_row(path: Path) -> None:
    first, second = Ledger(path), Ledger(path)
    try:
        first.record_handoff(completed("h-9"), missed=0)
        second.record_handoff(completed("h-9"), missed=0)  # neither has written it yet
        first.flush()
        with pytest.raises(LedgerConflictError, match="another gateway"):
            second.flush()
    finally:
        first.close()
        second.abandon()
    with LedgerReader(path) as r:
        assert len(r.handoffs()) == 1


@pytest.mark.parametrize(
    ("handoff", "missed", "match"),
    [
        (completed(), -1, "missed must be >= 0"),
        (replace(completed(), phase=hm.Phase.BAKING, finished_ms=None), 0, "still baking"),
        (replace(completed(), phase=hm.Phase.SHADOWING), 0, "still shadowing"),
    ],
    ids=["negative missed", "baking", "shadowing"],
)
def test_only_a_finished_handoff_with_a_count_is_recorded(
    ledger: Ledger, handoff: hm.Handoff, missed: int, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        ledger.record_handoff(handoff, missed=missed)
    assert ledger.pending_rows == 0


def test_a_policy_field_unknown_to_this_baton_is_ignored_when_reading(
    ledger: Ledger, path: Path
) -> None:
    ledger.record_handoff(completed(), missed=0)
    ledger.flush()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE handoffs SET policy = json_set(policy, '$.from_the_future', 1)")
    conn.execute("UPDATE handoffs SET policy = json_remove(policy, '$.bake_ms')")
    conn.close()
    with LedgerReader(path) as r:
        (row,) = r.handoffs()
    assert row.handoff.policy == replace(POLICY, bake_ms=hm.Policy().bake_ms)


def test_a_row_written_when_no_limit_was_minus_one_reads_as_no_limit(
    ledger: Ledger, path: Path
) -> None:
    """Before the policy's optional fields, ``max_divergence: -1`` meant "no limit"."""
    ledger.record_handoff(completed(), missed=0)
    ledger.flush()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE handoffs SET policy = json_set(policy, '$.max_divergence', -1)")
    conn.close()
    with LedgerReader(path) as r:
        (row,) = r.handoffs()
    assert row.handoff.policy == replace(POLICY, max_divergence=None)


# -- schema 1 -> 2 ----------------------------------------------------------------------------


def make_schema_1_ledger(path: Path) -> EvaluationRecord:
    """A ledger as the schema-1 baton wrote it (its statements, its version), with rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for statement in _MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    conn.execute(
        "INSERT INTO runs (started_ms, cadence_ms, slots, config) "
        """VALUES (?, 1000, '["BTC/5m"]', '{}')""",
        (T0,),
    )
    conn.execute(
        "INSERT INTO evaluations (run_id, slot_id, seq, scheduled_ms, deadline_ms, "
        "dispatched_ms, decided_ms, outcome, instance_id, version, epoch, action, reason, "
        "error, eval_us, bet_id) VALUES (1, 'BTC/5m', 3, ?, ?, ?, ?, 'executed', 'i1-blue', "
        "'v1', 1, 'UP', 'momentum up', '', 120, NULL)",
        (T0, T0 + 1000, T0 + 1, T0 + 30),
    )
    conn.execute("INSERT INTO slot_seqs (slot_id, last_seq) VALUES ('BTC/5m', 3)")
    conn.close()
    return EvaluationRecord(
        "BTC/5m", 3, T0, T0 + 1000, EvalOutcome.EXECUTED, dispatched_ms=T0 + 1,
        decided_ms=T0 + 30, instance_id="i1-blue", version="v1", epoch=1, action="UP",
        reason="momentum up", eval_us=120,
    )  # fmt: skip


def tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def test_a_schema_1_ledger_is_migrated_when_the_gateway_opens_it(path: Path) -> None:
    old = make_schema_1_ledger(path)
    assert "handoffs" not in tables(path)
    with Ledger(path) as led:
        assert led.last_seqs() == {"BTC/5m": 3}
        led.record_handoff(completed(), missed=0)
    assert "handoffs" in tables(path)
    with LedgerReader(path) as r:
        assert r.schema_version() == SCHEMA_VERSION
        assert r.evaluations() == [old]
        assert [(run.run_id, run.started_ms, run.slots) for run in r.runs()] == [
            (1, T0, ("BTC/5m",))
        ]
        assert [row.handoff for row in r.handoffs()] == [completed()]
    with Ledger(path):  # opening a current ledger again migrates nothing
        pass
    with LedgerReader(path) as r:
        assert (r.schema_version(), len(r.evaluations()), len(r.handoffs())) == (
            SCHEMA_VERSION,
            1,
            1,
        )


def test_a_reader_leaves_a_schema_1_ledger_as_it_is_and_sees_no_handoffs(path: Path) -> None:
    old = make_schema_1_ledger(path)
    with LedgerReader(path) as r:
        assert r.schema_version() == 1
        assert r.handoffs() == []
        assert r.evaluations() == [old]
    assert "handoffs" not in tables(path)
