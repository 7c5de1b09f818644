"""Schema 6 on real SQLite files: every commit's position and term, the commit hook, runs'
terms, the migration of a schema-5 ledger and its readers, installing a snapshot."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from baton.gateway.core.replication import ORIGIN, LedgerBatch, Position, Statement
from baton.gateway.ledger import (
    _MIGRATIONS,
    SCHEMA_VERSION,
    Ledger,
    LedgerOpenError,
    LedgerReader,
    LedgerWriteError,
    RunEnd,
    install_snapshot,
    snapshot_ledger,
)
from baton.gateway.report import presence_report
from tests.ledger_workload import T0, slot_ids, start_run, tables, tick

SLOTS = slot_ids(2)


def positions(path: Path) -> list[tuple[int, int]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT position, term FROM replication ORDER BY position").fetchall()
    finally:
        conn.close()


def test_every_commit_takes_the_next_position_with_the_ledgers_term(tmp_path: Path) -> None:
    seen: list[LedgerBatch] = []
    with Ledger(tmp_path / "l.sqlite", on_commit=seen.append) as led:
        assert led.last_commit == ORIGIN
        start_run(led, SLOTS)  # a run and a strategy: two commits
        led.flush()  # nothing buffered: no commit
        led.term = 3
        tick(led, 1, SLOTS)
        led.retire_strategy("momentum", retired_ms=T0)
        assert led.last_commit == Position(4, 3)
    assert positions(tmp_path / "l.sqlite") == [(1, 0), (2, 0), (3, 3), (4, 3)]
    assert [(b.position, b.term) for b in seen] == [(1, 0), (2, 0), (3, 3), (4, 3)]
    assert [[w.statement for w in b.writes] for b in seen] == [
        [Statement.RUNS],
        [Statement.STRATEGIES],
        [Statement.EVALUATIONS, Statement.DROPPED_DECISIONS, Statement.BETS, Statement.CANDLES,
         Statement.INSTANCE_EVENTS, Statement.CONNECTION_EVENTS, Statement.SLOT_SEQS],
        [Statement.RETIRE_STRATEGY],
    ]  # fmt: skip
    run_row = seen[0].writes[0].rows[0]
    assert run_row[0] == 1  # the run's id travels with it
    assert run_row[-1] is None  # no election: no term


def test_a_run_names_the_term_it_ran_under(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    with Ledger(path) as led:
        start_run(led, SLOTS)
        led.term = 4
        start_run(led, SLOTS, started_ms=T0 + 1)
    with LedgerReader(path) as r:
        assert [run.term for run in r.runs()] == [None, 4]
        assert r.last_commit() == Position(4, 4)


def test_a_failed_flush_takes_no_position(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    seen: list[LedgerBatch] = []
    with Ledger(path, on_commit=seen.append, busy_timeout_ms=10) as led:
        start_run(led, SLOTS)
        tick(led, 1, SLOTS, flush=False)
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(LedgerWriteError):
            led.flush()
        assert led.last_commit == Position(2, 0)
        blocker.execute("ROLLBACK")
        blocker.close()
        led.flush()
        assert led.last_commit == Position(3, 0)
    assert [b.position for b in seen] == [1, 2, 3]
    assert positions(path) == [(1, 0), (2, 0), (3, 0)]


def test_a_failing_commit_hook_is_logged_and_the_rows_stay_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(batch: LedgerBatch) -> None:
        raise RuntimeError("replicator bug")

    path = tmp_path / "l.sqlite"
    with caplog.at_level(logging.ERROR), Ledger(path, on_commit=broken) as led:
        start_run(led, SLOTS)
    assert "ledger commit hook failed" in caplog.text
    with LedgerReader(path) as r:
        assert len(r.runs()) == 1


def _schema_5_ledger(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    for statements in _MIGRATIONS[:5]:
        for statement in statements:
            conn.execute(statement)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '5')")
    conn.execute(
        "INSERT INTO runs (started_ms, cadence_ms, slots, config) VALUES (?, 1000, '[]', '{}')",
        (T0,),
    )
    conn.close()


def test_a_schema_5_ledger_is_read_as_it_is_and_migrated_by_a_gateway(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    _schema_5_ledger(path)
    with LedgerReader(path) as r:  # a reader never migrates
        assert r.schema_version() == 5
        assert [(run.run_id, run.term) for run in r.runs()] == [(1, None)]
        assert r.last_commit() == ORIGIN
    assert presence_report(path).runs == 1
    with Ledger(path, term=2) as led:
        # Its rows are a history of its own: position 1, term 0. A new standby is sent a
        # snapshot of it, never the batches after it alone.
        assert led.last_commit == Position(1, 0)
        start_run(led, SLOTS)
    with LedgerReader(path) as r:
        assert r.schema_version() == SCHEMA_VERSION == 7
        assert [run.term for run in r.runs()] == [None, 2]
        assert r.last_commit() == Position(3, 2)


def test_a_run_says_how_it_ended_and_the_end_is_replicated(tmp_path: Path) -> None:
    """Schema 7: ``end_run`` is a commit of its own, applied by a follower like any other; a
    run that never says (killed) reads as None, which the report takes for a failover."""
    batches: list[LedgerBatch] = []
    leader = tmp_path / "leader.sqlite"
    with Ledger(leader, term=3, on_commit=batches.append) as led:
        start_run(led, SLOTS)
        tick(led, 1, SLOTS)
        led.end_run(ended_ms=T0 + 5_000, reason=RunEnd.HANDOVER.value)
        with pytest.raises(ValueError, match="handed_over"):
            led.end_run(ended_ms=T0 + 5_001, reason="handed_over")
    with Ledger(tmp_path / "follower.sqlite") as follower:
        for batch in batches:
            follower.apply(batch)
    for path in (leader, tmp_path / "follower.sqlite"):
        with LedgerReader(path) as r:
            (run,) = r.runs()
            assert (run.term, run.ended_ms, run.end_reason) == (3, T0 + 5_000, "handover")
    with Ledger(tmp_path / "fresh.sqlite") as led, pytest.raises(ValueError, match="no run"):
        led.end_run(ended_ms=T0, reason=RunEnd.STOPPED.value)


def test_a_new_ledger_starts_with_no_commit(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite") as led:
        assert led.last_commit == ORIGIN
        assert led.term_at(0) == 0
        assert led.term_at(1) is None


def test_a_snapshot_installed_over_a_ledger_keeps_the_old_one_aside(tmp_path: Path) -> None:
    leader, follower = tmp_path / "leader.sqlite", tmp_path / "follower.sqlite"
    with Ledger(leader, term=2) as led:
        start_run(led, SLOTS)
        for n in range(1, 4):
            tick(led, n, SLOTS)
        at, image = snapshot_ledger(leader)  # while it is open, as a leader serves it
        assert at == led.last_commit
    with Ledger(follower, term=1) as own:
        start_run(own, SLOTS)
    old = tables(follower)
    kept = tmp_path / "follower.sqlite.diverged-1-2"
    assert install_snapshot(follower, image, keep_as=kept) == at
    assert tables(kept) == old
    assert tables(follower) == tables(leader)
    assert not Path(f"{follower}-wal").exists()
    with Ledger(follower) as reopened:  # WAL again, at the leader's position
        assert reopened.last_commit == at
        assert reopened.path.read_bytes()[18:20] == b"\x02\x02"


def test_an_image_that_is_not_a_ledger_is_not_installed(tmp_path: Path) -> None:
    follower = tmp_path / "follower.sqlite"
    with Ledger(follower) as own:
        start_run(own, SLOTS)
    before = tables(follower)
    with pytest.raises(LedgerOpenError, match="not a readable ledger"):
        install_snapshot(follower, b"\x00" * 4096, keep_as=None)
    assert tables(follower) == before
    assert not (tmp_path / "follower.sqlite.snapshot-tmp").exists()
