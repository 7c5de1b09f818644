"""The ledger on a full disk (a real SQLite file whose growth is capped with
``PRAGMA max_page_count``: SQLite then fails writes with SQLITE_FULL, as on a full disk):
flushes fail without touching what is written, rows wait in memory up to a bound, seqs are
never reused, and everything kept lands once there is space again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from baton.gateway.core.records import EvalOutcome, EvaluationRecord
from baton.gateway.ledger import Ledger, LedgerReader, LedgerWriteError

T0 = 1_700_000_000_000
SLOTS = ("BTC/5m", "ETH/5m")
# Big rows so that a few ticks need new pages.
REASON = "x" * 2000


def tick(ledger: Ledger, seq: int) -> None:
    for slot_id in SLOTS:
        ledger.record_evaluation(
            EvaluationRecord(
                slot_id, seq, T0 + seq * 1000, T0 + (seq + 1) * 1000, EvalOutcome.EXECUTED,
                dispatched_ms=T0 + seq * 1000, decided_ms=T0 + seq * 1000 + 5,
                instance_id="i1", version="v1", epoch=1, action="HOLD", reason=REASON,
            )
        )  # fmt: skip
        ledger.record_dropped_decision(
            slot_id=slot_id, seq=seq, instance_id="i2", epoch=1, received_ms=T0, action="UP",
            reason="shadow",
        )  # fmt: skip


def fill_disk(ledger: Ledger) -> None:
    """No page beyond those the file has: every flush that needs one fails (SQLITE_FULL)."""
    conn = ledger._conn
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {pages}")


def free_disk(ledger: Ledger) -> None:
    ledger._conn.execute("PRAGMA max_page_count = 1073741823")


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        (result,) = conn.execute("PRAGMA integrity_check").fetchone()
        return str(result)
    finally:
        conn.close()


def seqs(path: Path) -> dict[str, list[int]]:
    with LedgerReader(path) as reader:
        out: dict[str, list[int]] = {}
        for e in reader.evaluations():
            out.setdefault(e.slot_id, []).append(e.seq)
        return out


def test_failed_flushes_keep_rows_then_write_them_all_when_space_is_back(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    for seq in range(1, 4):
        tick(ledger, seq)
        ledger.flush()
    with LedgerReader(path) as reader:
        written = reader.evaluations()

    fill_disk(ledger)
    for seq in range(4, 10):
        tick(ledger, seq)
        with pytest.raises(LedgerWriteError, match="kept for the next flush") as info:
            ledger.flush()
        assert info.value.retryable
    assert ledger.pending_rows == 6 * 2 * len(SLOTS)
    assert ledger.discarded_rows == 0
    assert ledger.last_seqs() == dict.fromkeys(SLOTS, 9)  # a restart would continue at 10
    # Nothing written before the disk filled up was touched.
    assert integrity(path) == "ok"
    with LedgerReader(path) as reader:
        assert reader.evaluations() == written

    free_disk(ledger)
    tick(ledger, 10)
    ledger.flush()
    assert ledger.pending_rows == 0
    ledger.close()
    assert integrity(path) == "ok"
    assert seqs(path) == {s: list(range(1, 11)) for s in SLOTS}
    with LedgerReader(path) as reader:
        assert reader.evaluations()[:3] == written[:3]
        assert len(reader.dropped_decisions()) == 10 * len(SLOTS)


def test_the_buffer_is_bounded_the_oldest_rows_go_and_their_seqs_are_never_reused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path, max_pending_rows=10)
    tick(ledger, 1)
    ledger.flush()
    fill_disk(ledger)
    for seq in range(2, 8):  # 6 ticks x 4 rows = 24 rows, bound 10
        tick(ledger, seq)
        with pytest.raises(LedgerWriteError):
            ledger.flush()
        assert ledger.pending_rows <= 10
    assert ledger.discarded_rows == 24 - 10
    # Dropped decisions go first; then the oldest evaluations. The newest are kept.
    assert ledger.pending_rows == 10
    assert ledger.last_seqs() == dict.fromkeys(SLOTS, 7)

    free_disk(ledger)
    ledger.close()
    assert integrity(path) == "ok"
    kept = seqs(path)
    assert kept == {s: [1, 3, 4, 5, 6, 7] for s in SLOTS}, kept  # seq 2 is the hole reported
    with LedgerReader(path) as reader:
        dropped = {(d.slot_id, d.seq) for d in reader.dropped_decisions()}
    assert dropped == {(s, 1) for s in SLOTS}  # those of the disk-full ticks were shed first
    # A gateway opening it continues after the newest seq, discarded or not.
    again = Ledger(path)
    assert again.last_seqs() == dict.fromkeys(SLOTS, 7)
    again.close()


def test_reserved_seqs_survive_a_crash_without_rows(tmp_path: Path) -> None:
    """A tick in flight: its seqs are reserved and flushed before its answers exist; the
    process dies; the next gateway continues after them (the hole is reported)."""
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    tick(ledger, 1)
    ledger.reserve_seqs(dict.fromkeys(SLOTS, 2))
    ledger.flush()
    assert ledger.abandon() == 0  # the crash: nothing buffered is lost
    again = Ledger(path)
    assert again.last_seqs() == dict.fromkeys(SLOTS, 2)
    again.close()
