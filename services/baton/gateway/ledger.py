"""The presence ledger: every fact the gateway observes, appended to SQLite (WAL).

The gateway records into memory on its hot path and calls ``flush()`` once per tick, which
writes everything buffered in ONE transaction: a tick is on disk entirely or not at all. A
failed flush raises ``LedgerWriteError`` and keeps the rows, so the next flush retries them.
While flushes keep failing (a full disk), the buffer is bounded by ``max_pending_rows``: past
it, the oldest evaluation rows (dropped decisions first) are discarded and counted in
``discarded_rows``. Their seqs stay reserved (never reused); the report shows them as
``unaccounted``.

Readers (``baton presence``, tests) open the file read-only with ``open_readonly`` or
``LedgerReader``; WAL lets them read a consistent snapshot while the gateway writes.

The schema is versioned in the ``meta`` table. Opening a ledger applies the migrations it is
missing (in one transaction); a ledger written by a newer baton is refused, never modified.
A read-only open never migrates: readers treat a table an older schema lacks as empty.

Every commit (a flush, a run, a change of the book) gets the next **position** and the
ledger's **term**, written in the same transaction to the ``replication`` table, and is handed
to ``on_commit`` as a ``LedgerBatch`` (core/replication.py): what a standby's ledger applies
(``apply``) to hold exactly the leader's rows (docs/gateway-standby.md, "Replication").
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import Any

from baton.gateway.core.handoff import Handoff, Phase, Policy, Step
from baton.gateway.core.records import (
    ConnectionEvent,
    DroppedDecision,
    EvalOutcome,
    EvaluationRecord,
    InstanceEvent,
    Staleness,
)
from baton.gateway.core.replication import (
    ORIGIN,
    BatchRefused,
    LedgerBatch,
    Position,
    Row,
    Statement,
    Write,
    check_batch,
)
from baton.model import Action, Candle, Fill, Settlement

log = logging.getLogger(__name__)

SCHEMA_VERSION = 7
# The one strategy a pre-book ledger (schema < 4) served: the first one that attached.
_FIRST_STRATEGY = "COALESCE((SELECT strategy FROM instance_events ORDER BY id LIMIT 1), '')"

# _MIGRATIONS[n] takes a ledger from schema version n to n + 1. Append only; never edit one
# that shipped. Statements run one by one inside the opening transaction (executescript would
# commit halfway).
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
        # One row per gateway process start.
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            started_ms INTEGER NOT NULL,
            cadence_ms INTEGER NOT NULL,
            slots TEXT NOT NULL,
            config TEXT NOT NULL)""",
        # One row per scheduled (slot, seq), written once it is resolved. The unique key is G1:
        # a second outcome for the same evaluation is an error, not an update. Its order is
        # (seq, slot_id) because a tick writes the same seq for every slot: each flush appends
        # at the end of the index instead of touching one page per slot (8x faster at 1000
        # slots). Per-slot reads use slot_seqs below or a sort in the report.
        """CREATE TABLE evaluations (
            id INTEGER PRIMARY KEY,
            run_id INTEGER,
            slot_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            scheduled_ms INTEGER NOT NULL,
            deadline_ms INTEGER NOT NULL,
            dispatched_ms INTEGER,
            decided_ms INTEGER,
            outcome TEXT NOT NULL,
            instance_id TEXT NOT NULL,
            version TEXT NOT NULL,
            epoch INTEGER NOT NULL,
            action TEXT,
            reason TEXT NOT NULL,
            error TEXT NOT NULL,
            eval_us INTEGER NOT NULL,
            bet_id TEXT,
            UNIQUE (seq, slot_id))""",
        # The report's per-deployment and per-outcome counts (one covering scan); appended to
        # in time order within each (version, outcome), so cheap to maintain.
        "CREATE INDEX evaluations_version ON evaluations (version, outcome, scheduled_ms)",
        # Highest seq recorded per slot, kept by every flush: a restarting gateway continues
        # each slot's seqs without scanning the evaluations.
        """CREATE TABLE slot_seqs (
            slot_id TEXT PRIMARY KEY,
            last_seq INTEGER NOT NULL) WITHOUT ROWID""",
        # Answers that were recorded and never executed (late, fenced, shadow, unknown).
        """CREATE TABLE dropped_decisions (
            id INTEGER PRIMARY KEY,
            run_id INTEGER,
            slot_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            instance_id TEXT NOT NULL,
            epoch INTEGER NOT NULL,
            received_ms INTEGER NOT NULL,
            action TEXT,
            reason TEXT NOT NULL)""",
        "CREATE INDEX dropped_decisions_seq ON dropped_decisions (seq, slot_id)",
        """CREATE TABLE bets (
            id INTEGER PRIMARY KEY,
            run_id INTEGER,
            bet_id TEXT NOT NULL UNIQUE,
            slot_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            side TEXT NOT NULL,
            stake REAL NOT NULL,
            price REAL NOT NULL,
            shares REAL NOT NULL,
            fee REAL NOT NULL,
            window_start_ms INTEGER NOT NULL,
            window_end_ms INTEGER NOT NULL,
            instance_id TEXT NOT NULL,
            version TEXT NOT NULL,
            epoch INTEGER NOT NULL,
            placed_ms INTEGER NOT NULL)""",
        "CREATE INDEX bets_version ON bets (version)",
        # At most one settlement per bet; the unique index also serves open_bets().
        """CREATE TABLE settlements (
            id INTEGER PRIMARY KEY,
            run_id INTEGER,
            bet_id TEXT NOT NULL UNIQUE,
            slot_id TEXT NOT NULL,
            side TEXT NOT NULL,
            window_start_ms INTEGER NOT NULL,
            window_end_ms INTEGER NOT NULL,
            open_price REAL NOT NULL,
            close_price REAL NOT NULL,
            outcome TEXT NOT NULL,
            won INTEGER NOT NULL,
            payout REAL NOT NULL,
            pnl REAL NOT NULL,
            settled_ms INTEGER NOT NULL)""",
        # Closed candles only, one per window: a backfilled repeat of a streamed one is ignored.
        """CREATE TABLE candles (
            symbol TEXT NOT NULL,
            interval TEXT NOT NULL,
            open_time_ms INTEGER NOT NULL,
            close_time_ms INTEGER NOT NULL,
            open REAL NOT NULL,
            high REAL NOT NULL,
            low REAL NOT NULL,
            close REAL NOT NULL,
            volume REAL NOT NULL,
            trades INTEGER NOT NULL,
            source TEXT NOT NULL,
            observed_ms INTEGER NOT NULL,
            PRIMARY KEY (symbol, interval, open_time_ms)) WITHOUT ROWID""",
        """CREATE TABLE instance_events (
            id INTEGER PRIMARY KEY,
            run_id INTEGER,
            t_ms INTEGER NOT NULL,
            instance_id TEXT NOT NULL,
            event TEXT NOT NULL,
            pod_name TEXT NOT NULL,
            strategy TEXT NOT NULL,
            version TEXT NOT NULL,
            role TEXT NOT NULL,
            epoch INTEGER NOT NULL,
            detail TEXT NOT NULL)""",
        """CREATE TABLE connection_events (
            id INTEGER PRIMARY KEY,
            run_id INTEGER,
            t_ms INTEGER NOT NULL,
            event TEXT NOT NULL,
            detail TEXT NOT NULL)""",
    ),
    # 1 -> 2: handoffs (issue 3). One row per finished handoff, written when it ends: every
    # field of the machine's final value, so the row rebuilds it exactly. Policy, divergence
    # examples and steps are JSON (read whole, never queried by part).
    (
        """CREATE TABLE handoffs (
            id INTEGER PRIMARY KEY,
            run_id INTEGER,
            handoff_id TEXT NOT NULL UNIQUE,
            strategy TEXT NOT NULL,
            blue TEXT NOT NULL,
            green TEXT NOT NULL,
            from_version TEXT NOT NULL,
            to_version TEXT NOT NULL,
            policy TEXT NOT NULL,
            result TEXT NOT NULL,
            started_ms INTEGER NOT NULL,
            phase_since_ms INTEGER NOT NULL,
            epoch_before INTEGER NOT NULL,
            epoch_after INTEGER NOT NULL,
            state_bytes INTEGER NOT NULL,
            export_digest TEXT NOT NULL,
            import_digest TEXT NOT NULL,
            migrated_digest TEXT NOT NULL,
            export_requested_ms INTEGER NOT NULL,
            imported_ms INTEGER,
            caught_up_boundaries INTEGER NOT NULL,
            compared INTEGER NOT NULL,
            divergences INTEGER NOT NULL,
            divergence_examples TEXT NOT NULL,
            bake_faults INTEGER NOT NULL,
            flipped_ms INTEGER,
            pause_ms REAL,
            blue_gone INTEGER NOT NULL,
            finished_ms INTEGER NOT NULL,
            message TEXT NOT NULL,
            steps TEXT NOT NULL,
            missed INTEGER NOT NULL)""",
    ),
    (
        # Whether the evaluation's market data were live at dispatch ('' fresh, else why not:
        # a Staleness value). Rows of older ledgers read as fresh. The partial index holds only
        # stale rows: the report counts them per version without a scan, the writer of fresh
        # rows pays nothing.
        "ALTER TABLE evaluations ADD COLUMN stale TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX evaluations_stale ON evaluations (version, outcome, stale) WHERE stale != ''",
    ),
    # 3 -> 4: a book of strategies on one gateway (issue 16). Every evaluation, bet and
    # dropped decision names its strategy; (seq, slot_id) is unique per strategy, so the
    # evaluations table is rebuilt (SQLite cannot change a table's UNIQUE constraint). Rows of
    # an older ledger, written by a gateway that served one strategy, take that strategy's name
    # (the first one attached; '' if none ever was). `strategies` is the book: a restarted
    # gateway schedules every strategy in it. Bets also name the pricing model that priced them.
    (
        """CREATE TABLE evaluations_v4 (
            id INTEGER PRIMARY KEY,
            run_id INTEGER,
            slot_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            scheduled_ms INTEGER NOT NULL,
            deadline_ms INTEGER NOT NULL,
            dispatched_ms INTEGER,
            decided_ms INTEGER,
            outcome TEXT NOT NULL,
            instance_id TEXT NOT NULL,
            version TEXT NOT NULL,
            epoch INTEGER NOT NULL,
            action TEXT,
            reason TEXT NOT NULL,
            error TEXT NOT NULL,
            eval_us INTEGER NOT NULL,
            bet_id TEXT,
            stale TEXT NOT NULL DEFAULT '',
            strategy TEXT NOT NULL DEFAULT '',
            UNIQUE (seq, slot_id, strategy))""",
        f"""INSERT INTO evaluations_v4 (id, run_id, slot_id, seq, scheduled_ms, deadline_ms,
            dispatched_ms, decided_ms, outcome, instance_id, version, epoch, action, reason,
            error, eval_us, bet_id, stale, strategy)
            SELECT id, run_id, slot_id, seq, scheduled_ms, deadline_ms, dispatched_ms,
            decided_ms, outcome, instance_id, version, epoch, action, reason, error, eval_us,
            bet_id, stale, {_FIRST_STRATEGY} FROM evaluations""",
        "DROP TABLE evaluations",
        "ALTER TABLE evaluations_v4 RENAME TO evaluations",
        """CREATE INDEX evaluations_version
            ON evaluations (strategy, version, outcome, scheduled_ms)""",
        """CREATE INDEX evaluations_stale ON evaluations (strategy, version, outcome, stale)
            WHERE stale != ''""",
        "ALTER TABLE dropped_decisions ADD COLUMN strategy TEXT NOT NULL DEFAULT ''",
        f"UPDATE dropped_decisions SET strategy = {_FIRST_STRATEGY}",
        "ALTER TABLE bets ADD COLUMN strategy TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE bets ADD COLUMN pricing TEXT NOT NULL DEFAULT ''",
        f"UPDATE bets SET strategy = {_FIRST_STRATEGY}",
        # stake: as its instances ask (NULL: the gateway's venue.stake, whatever it is then).
        # retired_ms: taken out of the book then (RetireStrategy); NULL while in it.
        """CREATE TABLE strategies (
            name TEXT PRIMARY KEY,
            slots TEXT NOT NULL,
            stake REAL,
            added_ms INTEGER NOT NULL,
            run_id INTEGER,
            retired_ms INTEGER) WITHOUT ROWID""",
        # A pre-book gateway's one strategy is its book: every slot, the default stake.
        """INSERT INTO strategies (name, slots, stake, added_ms, run_id)
            SELECT strategy, '[]', NULL, t_ms, run_id FROM instance_events
            ORDER BY id LIMIT 1""",
    ),
    # 4 -> 5: what keeps a strategy's state when its ACTIVE dies (docs/standby.md). The last
    # checkpoints of each strategy's ACTIVE (the snapshot as exported: bytes, digest,
    # applied_seq), and every take-over after a death.
    (
        """CREATE TABLE checkpoints (
            strategy TEXT NOT NULL,
            checkpoint_id TEXT NOT NULL,
            run_id INTEGER,
            instance_id TEXT NOT NULL,
            version TEXT NOT NULL,
            state_schema INTEGER NOT NULL,
            tick_index INTEGER NOT NULL,
            taken_ms INTEGER NOT NULL,
            digest TEXT NOT NULL,
            applied_seq TEXT NOT NULL,
            state BLOB NOT NULL,
            PRIMARY KEY (strategy, checkpoint_id))""",
        """CREATE TABLE failovers (
            failover_id TEXT PRIMARY KEY,
            run_id INTEGER,
            strategy TEXT NOT NULL,
            mode TEXT NOT NULL,
            dead TEXT NOT NULL,
            dead_version TEXT NOT NULL,
            to_instance TEXT NOT NULL,
            to_version TEXT NOT NULL,
            died_ms INTEGER NOT NULL,
            took_over_ms INTEGER,
            checkpoint_id TEXT NOT NULL,
            verify_probe TEXT NOT NULL,
            state TEXT NOT NULL,
            result TEXT NOT NULL,
            message TEXT NOT NULL) WITHOUT ROWID""",
    ),
    # 5 -> 6: replication (docs/gateway-standby.md). One row per commit: its position (1, 2,
    # 3...), the term of the leader that wrote it (0: no election) and when. A run names the
    # term it ran under (NULL: a gateway that took no part in an election, as every run before
    # schema 6). A ledger that already holds rows gets position 1, term 0 for them: they are a
    # history no other ledger shares, so a new standby is sent a snapshot of them, never
    # batches after them.
    (
        """CREATE TABLE replication (
            position INTEGER PRIMARY KEY,
            term INTEGER NOT NULL,
            committed_ms INTEGER NOT NULL)""",
        "ALTER TABLE runs ADD COLUMN term INTEGER",
        """INSERT INTO replication (position, term, committed_ms)
            SELECT 1, 0, CAST(strftime('%s', 'now') AS INTEGER) * 1000
            WHERE EXISTS (SELECT 1 FROM runs)""",
    ),
    # 6 -> 7: how a run ended, written by the gateway on its way out (docs/gateway-standby.md):
    # "stopped" (asked to), "handover" (a replica that handed its leadership over at a tick
    # boundary), "deposed" (a replica that lost it). NULL: it never said (killed, crashed, or
    # a run before schema 7). The report tells a gateway handover from a failover by it.
    (
        "ALTER TABLE runs ADD COLUMN ended_ms INTEGER",
        "ALTER TABLE runs ADD COLUMN end_reason TEXT",
    ),
)
assert len(_MIGRATIONS) == SCHEMA_VERSION

# Buffered tables in flush order, with their insert statement (columns in record order).
_INSERTS: dict[str, str] = {
    "evaluations": """INSERT INTO evaluations (run_id, slot_id, seq, scheduled_ms, deadline_ms,
        dispatched_ms, decided_ms, outcome, instance_id, version, epoch, action, reason, error,
        eval_us, bet_id, stale, strategy)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
    "dropped_decisions": """INSERT INTO dropped_decisions (run_id, slot_id, seq, instance_id,
        epoch, received_ms, action, reason, strategy) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
    "bets": """INSERT INTO bets (run_id, bet_id, slot_id, seq, side, stake, price, shares, fee,
        window_start_ms, window_end_ms, instance_id, version, epoch, placed_ms, strategy,
        pricing) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
    "settlements": """INSERT INTO settlements (run_id, bet_id, slot_id, side, window_start_ms,
        window_end_ms, open_price, close_price, outcome, won, payout, pnl, settled_ms)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
    "candles": """INSERT OR IGNORE INTO candles (symbol, interval, open_time_ms, close_time_ms,
        open, high, low, close, volume, trades, source, observed_ms)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
    "instance_events": """INSERT INTO instance_events (run_id, t_ms, instance_id, event,
        pod_name, strategy, version, role, epoch, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
    "connection_events": """INSERT INTO connection_events (run_id, t_ms, event, detail)
        VALUES (?, ?, ?, ?)""",
    "handoffs": """INSERT INTO handoffs (run_id, handoff_id, strategy, blue, green,
        from_version, to_version, policy, result, started_ms, phase_since_ms, epoch_before,
        epoch_after, state_bytes, export_digest, import_digest, migrated_digest,
        export_requested_ms, imported_ms, caught_up_boundaries, compared, divergences,
        divergence_examples, bake_faults, flipped_ms, pause_ms, blue_gone, finished_ms, message,
        steps, missed)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
        ?, ?, ?)""",
    "checkpoints": """INSERT OR REPLACE INTO checkpoints (strategy, checkpoint_id, run_id,
        instance_id, version, state_schema, tick_index, taken_ms, digest, applied_seq, state)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
    "failovers": """INSERT OR REPLACE INTO failovers (failover_id, run_id, strategy, mode, dead,
        dead_version, to_instance, to_version, died_ms, took_over_ms, checkpoint_id,
        verify_probe, state, result, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
        ?)""",
}

# After a flush that wrote checkpoints: only each strategy's last ``kept`` stay.
_PRUNE_CHECKPOINTS = """DELETE FROM checkpoints WHERE strategy = ?1 AND checkpoint_id NOT IN (
    SELECT checkpoint_id FROM checkpoints WHERE strategy = ?1 ORDER BY taken_ms DESC LIMIT ?2)"""

_UPSERT_SLOT_SEQ = """INSERT INTO slot_seqs (slot_id, last_seq) VALUES (?, ?)
    ON CONFLICT (slot_id) DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)"""

_RECORD_STRATEGY = """INSERT INTO strategies (name, slots, stake, added_ms, run_id)
    VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET slots = excluded.slots,
    stake = excluded.stake, added_ms = excluded.added_ms, run_id = excluded.run_id,
    retired_ms = NULL WHERE retired_ms IS NOT NULL"""

# Every statement a commit runs, by the name a LedgerBatch gives it: the leader runs it on its
# rows, a follower runs the same on the same rows (``apply``). The runs row carries its id on
# the follower, so run ids are the leader's; every other id is the next rowid, which the same
# inserts into the same rows make the same.
_STATEMENTS: dict[Statement, str] = {
    Statement.RUNS: """INSERT INTO runs (id, started_ms, cadence_ms, slots, config, term)
        VALUES (?, ?, ?, ?, ?, ?)""",
    Statement.STRATEGIES: _RECORD_STRATEGY,
    Statement.RETIRE_STRATEGY: "UPDATE strategies SET retired_ms = ? WHERE name = ?",
    Statement.END_RUN: "UPDATE runs SET ended_ms = ?, end_reason = ? WHERE id = ?",
    **{Statement(table): sql for table, sql in _INSERTS.items()},
    Statement.SLOT_SEQS: _UPSERT_SLOT_SEQ,
    Statement.PRUNE_CHECKPOINTS: _PRUNE_CHECKPOINTS,
}
assert set(_STATEMENTS) == set(Statement)

_INSERT_REPLICATION = "INSERT INTO replication (position, term, committed_ms) VALUES (?, ?, ?)"

_Row = tuple[Any, ...]

# Rows kept in memory while flushes fail (~400 bytes each: ~200 MB). Reference workload (16
# slots, 5 s): 43 hours of a full disk; 20,000 slots at 5 s: 2 minutes.
DEFAULT_MAX_PENDING_ROWS = 500_000
# The tables a failing ledger sheds rows from, first to last: one row per slot and tick. The
# others (bets, settlements, candles, events, handoffs) are few and always kept.
_SHED_ORDER = ("dropped_decisions", "evaluations")


# -- errors -------------------------------------------------------------------------------------


class LedgerError(Exception):
    """Base of the ledger's errors. ``retryable``: the same call may succeed later."""

    retryable = False


class LedgerWriteError(LedgerError):
    """A flush failed (disk full, I/O error, database locked...). Nothing of it was written;
    the rows stay buffered and the next flush retries them."""

    retryable = True


class LedgerConflictError(LedgerWriteError):
    """A flush collided with rows another writer put in the file. Nothing was written and the
    rows stay buffered, but retrying cannot help until the other writer is gone."""

    retryable = False


class DuplicateRecordError(LedgerError):
    """A second record for an evaluation (slot, seq), a bet, a settlement or a handoff. Never
    written: each scheduled evaluation has exactly one outcome (G1), no bet is placed twice
    (G2), and a handoff ends once."""

    def __init__(self, message: str, keys: Sequence[str]) -> None:
        super().__init__(message)
        self.keys = tuple(keys)


class LedgerOpenError(LedgerError):
    """The file is missing, not a SQLite database, or not a baton ledger."""


class LedgerSchemaError(LedgerOpenError):
    """The ledger's schema is newer than this baton understands."""


class ReplicationRefused(LedgerError):
    """``apply`` refused a batch (out of order, of an older term, or from a newer baton):
    nothing of it was written."""


# -- schema -------------------------------------------------------------------------------------


def _schema_version(conn: sqlite3.Connection, path: Path) -> int:
    """The ledger's schema version; 0 for an empty database (a new ledger)."""
    tables = {
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }
    if not tables:
        return 0
    row = None
    if "meta" in tables:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        raise LedgerOpenError(f"{path} is a SQLite database but not a baton ledger")
    try:
        version = int(row[0])
    except ValueError:
        raise LedgerOpenError(f"{path} has an unreadable schema version {row[0]!r}") from None
    if version > SCHEMA_VERSION:
        raise LedgerSchemaError(
            f"ledger {path} has schema version {version}; this baton understands up to "
            f"{SCHEMA_VERSION}: use a newer baton to read it"
        )
    return version


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    # IMMEDIATE: two processes opening a new ledger at once must not both create it.
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _schema_version(conn, path)
        for statements in _MIGRATIONS[version:]:
            for statement in statements:
                conn.execute(statement)
        if version < SCHEMA_VERSION:
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _last_seqs(keys: Iterable[tuple[str, int]]) -> dict[str, int]:
    """slot_id -> the highest seq among ``keys``."""
    out: dict[str, int] = {}
    for slot_id, seq in keys:
        if seq > out.get(slot_id, seq - 1):
            out[slot_id] = seq
    return out


def _rollback(conn: sqlite3.Connection) -> None:
    # Some errors (SQLITE_FULL, SQLITE_IOERR) already rolled the transaction back.
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to an existing ledger (safe while a gateway writes it).

    Raises ``LedgerOpenError`` (missing file, not a ledger) or ``LedgerSchemaError``.
    """
    p = Path(path)
    if not p.is_file():
        raise LedgerOpenError(f"no ledger at {p}: no such file")
    conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        if _schema_version(conn, p) == 0:
            raise LedgerOpenError(f"{p} is an empty database, not a baton ledger")
    except sqlite3.Error as exc:
        conn.close()
        raise LedgerOpenError(f"{p} is not a readable ledger: {exc}") from exc
    except LedgerError:
        conn.close()
        raise
    return conn


def read_last_commit(conn: sqlite3.Connection) -> Position:
    """A ledger's last commit ((0, 0): none, or a ledger before schema 6)."""
    if not _has_table(conn, "replication"):
        return ORIGIN
    row = conn.execute(
        "SELECT position, term FROM replication ORDER BY position DESC LIMIT 1"
    ).fetchone()
    return ORIGIN if row is None else Position(row[0], row[1])


def snapshot_ledger(path: str | Path) -> tuple[Position, bytes]:
    """The whole ledger as one SQLite image (``serialize``), and its last commit, both read in
    one read transaction on a connection of its own (WAL: the writer is not held up)."""
    p = Path(path)
    conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("BEGIN")
        at = read_last_commit(conn)
        data = conn.serialize()
        conn.execute("COMMIT")
    finally:
        conn.close()
    return at, data


def install_snapshot(path: str | Path, image: bytes, *, keep_as: Path | None) -> Position:
    """Put a leader's ledger image in place of the ledger at ``path`` (closed by the caller);
    the image's last commit. The old file, if ``keep_as``, stays there (a hard link); its
    ``-wal``/``-shm`` are removed so that they are never read as the new file's.

    The image is written beside the ledger, synced, checked to be a ledger, then renamed over
    it: a crash leaves the old ledger or the new one, never a mix.
    """
    p = Path(path)
    tmp = p.with_name(p.name + ".snapshot-tmp")
    data = bytearray(image)
    # The image's header says WAL (bytes 18-19 = 2). Without its -wal and -shm next to it a
    # WAL file is opened fine, but a rollback-journal header (1) makes the file
    # self-contained on its own; the Ledger that opens it sets WAL again.
    data[18:20] = b"\x01\x01"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        check = sqlite3.connect(tmp, isolation_level=None)
        try:
            _schema_version(check, tmp)
            at = read_last_commit(check)
        finally:
            check.close()
    except (sqlite3.Error, LedgerError) as exc:
        tmp.unlink(missing_ok=True)
        raise LedgerOpenError(f"the snapshot for {p} is not a readable ledger: {exc}") from exc
    if keep_as is not None and p.exists():
        keep_as.unlink(missing_ok=True)
        os.link(p, keep_as)
    for suffix in ("-wal", "-shm"):
        Path(f"{p}{suffix}").unlink(missing_ok=True)
    os.replace(tmp, p)
    dir_fd = os.open(p.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return at


# -- rows <-> records ---------------------------------------------------------------------------

_EVALUATION_COLUMNS = (
    "slot_id, seq, scheduled_ms, deadline_ms, outcome, dispatched_ms, decided_ms, instance_id, "
    "version, epoch, action, reason, error, eval_us, bet_id"
)
_FILL_COLUMNS = (
    "bet_id, slot_id, seq, side, stake, price, shares, fee, window_start_ms, window_end_ms"
)
_SETTLEMENT_COLUMNS = (
    "bet_id, slot_id, side, window_start_ms, window_end_ms, open_price, close_price, outcome, "
    "won, payout, pnl"
)
_CANDLE_COLUMNS = (
    "symbol, interval, open_time_ms, close_time_ms, open, high, low, close, volume, trades"
)


def _evaluation_row(run_id: int | None, r: EvaluationRecord) -> _Row:
    return (
        run_id, r.slot_id, r.seq, r.scheduled_ms, r.deadline_ms, r.dispatched_ms, r.decided_ms,
        r.outcome.value, r.instance_id, r.version, r.epoch, r.action, r.reason, r.error,
        r.eval_us, r.bet_id, r.stale.value, r.strategy,
    )  # fmt: skip


def _evaluation_from_row(row: _Row) -> EvaluationRecord:
    return EvaluationRecord(
        row[0], row[1], row[2], row[3], EvalOutcome(row[4]), dispatched_ms=row[5],
        decided_ms=row[6], instance_id=row[7], version=row[8], epoch=row[9], action=row[10],
        reason=row[11], error=row[12], eval_us=row[13], bet_id=row[14], stale=Staleness(row[15]),
        strategy=row[16],
    )  # fmt: skip


def stale_column(conn: sqlite3.Connection) -> str:
    """The SQL for an evaluation's ``stale`` value: the column, or ``''`` (fresh) in a ledger
    older than schema 3 that a reader leaves as it is."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(evaluations)")}
    return "stale" if "stale" in columns else "''"


def strategy_column(conn: sqlite3.Connection, table: str = "evaluations") -> str:
    """The SQL for a row's strategy: the column, or, in a ledger older than schema 4 that a
    reader leaves as it is, the one strategy that ledger's gateway served."""
    columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    return "strategy" if "strategy" in columns else _FIRST_STRATEGY


def _fill_from_row(row: _Row) -> Fill:
    return Fill(row[0], row[1], row[2], Action(row[3]), *row[4:])


def _settlement_from_row(row: _Row) -> Settlement:
    return Settlement(
        row[0], row[1], Action(row[2]), row[3], row[4], row[5], row[6], Action(row[7]),
        bool(row[8]), row[9], row[10],
    )  # fmt: skip


_HANDOFF_COLUMNS = (
    "handoff_id, strategy, blue, green, from_version, to_version, policy, result, started_ms, "
    "phase_since_ms, epoch_before, epoch_after, state_bytes, export_digest, import_digest, "
    "migrated_digest, export_requested_ms, imported_ms, caught_up_boundaries, compared, "
    "divergences, divergence_examples, bake_faults, flipped_ms, pause_ms, blue_gone, "
    "finished_ms, message, steps, missed, run_id"
)


def _handoff_row(run_id: int | None, h: Handoff, missed: int) -> _Row:
    steps = [{"name": s.name, "t_ms": s.t_ms, "detail": s.detail} for s in h.steps]
    return (
        run_id, h.handoff_id, h.strategy, h.blue, h.green, h.from_version, h.to_version,
        json.dumps(asdict(h.policy)), h.phase.value, h.started_ms, h.phase_since_ms,
        h.epoch_before, h.epoch_after, h.state_bytes, h.export_digest, h.import_digest,
        h.migrated_digest, h.export_requested_ms, h.imported_ms, h.caught_up_boundaries,
        h.compared, h.divergences, json.dumps(list(h.divergence_examples)), h.bake_faults,
        h.flipped_ms, h.pause_ms, int(h.blue_gone), h.finished_ms, h.message, json.dumps(steps),
        missed,
    )  # fmt: skip


def _policy_from_json(text: str) -> Policy:
    # Only the fields this baton knows: a policy field added or dropped later must not make
    # older rows unreadable (missing ones take their defaults).
    known = {f.name for f in fields(Policy)}
    stored = {k: v for k, v in json.loads(text).items() if k in known}
    # Rows written before the policy's optional fields said "no limit" with -1.
    if isinstance(stored.get("max_divergence"), int) and stored["max_divergence"] < 0:
        stored["max_divergence"] = None
    return Policy(**stored)


def _handoff_from_row(row: _Row) -> HandoffRow:
    (
        handoff_id, strategy, blue, green, from_version, to_version, policy, result, started_ms,
        phase_since_ms, epoch_before, epoch_after, state_bytes, export_digest, import_digest,
        migrated_digest, export_requested_ms, imported_ms, caught_up_boundaries, compared,
        divergences, divergence_examples, bake_faults, flipped_ms, pause_ms, blue_gone,
        finished_ms, message, steps, missed, run_id,
    ) = row  # fmt: skip
    h = Handoff(
        handoff_id=handoff_id,
        strategy=strategy,
        blue=blue,
        green=green,
        from_version=from_version,
        to_version=to_version,
        policy=_policy_from_json(policy),
        phase=Phase(result),
        started_ms=started_ms,
        phase_since_ms=phase_since_ms,
        epoch_before=epoch_before,
        epoch_after=epoch_after,
        state_bytes=state_bytes,
        export_digest=export_digest,
        import_digest=import_digest,
        migrated_digest=migrated_digest,
        export_requested_ms=export_requested_ms,
        imported_ms=imported_ms,
        caught_up_boundaries=caught_up_boundaries,
        compared=compared,
        divergences=divergences,
        divergence_examples=tuple(json.loads(divergence_examples)),
        bake_faults=bake_faults,
        flipped_ms=flipped_ms,
        pause_ms=pause_ms,
        blue_gone=bool(blue_gone),
        finished_ms=finished_ms,
        message=message,
        steps=tuple(Step(s["name"], s["t_ms"], s["detail"]) for s in json.loads(steps)),
    )
    return HandoffRow(h, missed=missed, run_id=run_id)


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


def read_handoffs(conn: sqlite3.Connection) -> list[HandoffRow]:
    """Every recorded handoff in the order they started; none on a schema-1 ledger opened
    read-only (it has no handoffs table, and a reader never migrates)."""
    if not _has_table(conn, "handoffs"):
        return []
    rows = conn.execute(f"SELECT {_HANDOFF_COLUMNS} FROM handoffs ORDER BY started_ms, id")
    return [_handoff_from_row(r) for r in rows]


def _candle_from_row(row: _Row) -> Candle:
    symbol, interval, open_ms, close_ms, o, h, low, c, volume, trades = row
    return Candle(symbol, interval, open_ms, close_ms, o, h, low, c, volume, trades, closed=True)


# -- the writer ---------------------------------------------------------------------------------


class RunEnd(enum.Enum):
    """How a gateway run ended (``runs.end_reason``, schema 7)."""

    STOPPED = "stopped"  # asked to stop
    HANDOVER = "handover"  # a replica handed its leadership over at a tick boundary
    DEPOSED = "deposed"  # a replica lost its leadership (and stopped)


class Ledger:
    """The gateway's writer. One per ledger file; not thread-safe (the gateway is one loop)."""

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout_ms: int = 1000,
        max_pending_rows: int = DEFAULT_MAX_PENDING_ROWS,
        on_commit: Callable[[LedgerBatch], None] | None = None,
        term: int = 0,
        now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        if max_pending_rows < 1:
            raise ValueError(f"max_pending_rows must be >= 1, got {max_pending_rows}")
        self.path = Path(path)
        self.max_pending_rows = max_pending_rows
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per flush.
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=busy_timeout_ms / 1000)
        except sqlite3.Error as exc:
            raise LedgerOpenError(f"cannot open ledger {self.path}: {exc}") from exc
        try:
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if str(mode).lower() != "wal":
                raise LedgerOpenError(f"ledger {self.path} cannot use WAL (journal mode {mode})")
            # NORMAL in WAL: a power loss may lose the last flushes, never corrupt the file.
            conn.execute("PRAGMA synchronous = NORMAL")
            _migrate(conn, self.path)
        except sqlite3.Error as exc:
            conn.close()
            raise LedgerOpenError(f"cannot open ledger {self.path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._run_id: int | None = None
        self._buffer: dict[str, list[_Row]] = {table: [] for table in _INSERTS}
        # Keys buffered since the last flush, to refuse a duplicate before it is written.
        self._eval_keys: set[tuple[str, int, str]] = set()  # (slot_id, seq, strategy)
        self._bet_ids: set[str] = set()
        self._settled_ids: set[str] = set()
        self._handoff_ids: set[str] = set()
        self._checkpoints_kept: dict[str, int] = {}  # strategy -> how many checkpoints stay
        # slot_id -> a seq to write into slot_seqs at the next flush although it has no row
        # (yet): seqs dispatched and still pending, and those of discarded rows.
        self._reserved: dict[str, int] = {}
        self.discarded_rows = 0  # rows discarded since open because flushes kept failing
        # Called after every commit with what it wrote (the leader's replicator); on the
        # thread that commits. An error of it is logged, never raised: the rows are written.
        self.on_commit = on_commit
        # The leader's term, given to every commit from now on (0: no election).
        self.term = term
        self._now_ms = now_ms
        row = conn.execute(
            "SELECT position, term FROM replication ORDER BY position DESC LIMIT 1"
        ).fetchone()
        self._last = ORIGIN if row is None else Position(row[0], row[1])

    # -- recording (memory only) ------------------------------------------------------------------

    @property
    def run_id(self) -> int | None:
        return self._run_id

    @property
    def last_commit(self) -> Position:
        """The position and term of the last commit, written or applied ((0, 0): none)."""
        return self._last

    def term_at(self, position: int) -> int | None:
        """The term of the commit at ``position`` (0 for position 0); None if there is none."""
        if position == 0:
            return 0
        row = self._conn.execute(
            "SELECT term FROM replication WHERE position = ?", (position,)
        ).fetchone()
        return None if row is None else int(row[0])

    @property
    def pending_rows(self) -> int:
        """Rows recorded and not yet flushed (grows while flushes fail)."""
        return sum(len(rows) for rows in self._buffer.values())

    def record_run(
        self, *, started_ms: int, cadence_ms: int, slots: Sequence[str], config_json: str
    ) -> int:
        """Start a run (one per gateway process start), written at once. Later records
        reference it."""
        # NULL: this gateway takes no part in an election (schema 6).
        params = (started_ms, cadence_ms, json.dumps(list(slots)), config_json, self.term or None)

        def insert(conn: sqlite3.Connection) -> list[Write]:
            cur = conn.execute(
                "INSERT INTO runs (started_ms, cadence_ms, slots, config, term) "
                "VALUES (?, ?, ?, ?, ?)",
                params,
            )
            return [Write(Statement.RUNS, ((cur.lastrowid, *params),))]

        try:
            batch = self._commit(insert)
        except sqlite3.Error as exc:
            raise LedgerWriteError(f"cannot record run in {self.path}: {exc}") from exc
        run_id = batch.writes[0].rows[0][0]  # once committed: a rolled-back id is no run
        assert isinstance(run_id, int)
        self._run_id = run_id
        self._published(batch)
        return run_id

    def reserve_seqs(self, seqs: Mapping[str, int]) -> None:
        """Seqs in use though not yet resolved (a tick in flight): the next flush writes them
        to ``slot_seqs`` too, so a gateway restarting after a crash never reuses one."""
        reserved = self._reserved
        for slot_id, seq in seqs.items():
            if seq > reserved.get(slot_id, seq - 1):
                reserved[slot_id] = seq

    def record_evaluation(self, rec: EvaluationRecord) -> None:
        """Record a resolved evaluation. Raises ``DuplicateRecordError`` if (slot, seq)
        already has an outcome, buffered or written."""
        key = (rec.slot_id, rec.seq, rec.strategy)
        if key in self._eval_keys or self._exists(
            "SELECT 1 FROM evaluations WHERE slot_id = ? AND seq = ? AND strategy = ?", key
        ):
            name = f"{rec.strategy + ':' if rec.strategy else ''}{rec.slot_id}#{rec.seq}"
            raise DuplicateRecordError(
                f"evaluation {name} already has an outcome; refusing a second "
                f"one ({rec.outcome.value})",
                [name],
            )
        self._eval_keys.add(key)
        self._buffer["evaluations"].append(_evaluation_row(self._run_id, rec))

    def record_dropped_decision(
        self,
        *,
        slot_id: str,
        seq: int,
        instance_id: str,
        epoch: int,
        received_ms: int,
        action: str | None,
        reason: str,
        strategy: str = "",
    ) -> None:
        """A decision received and never executed (late, fenced, shadow, duplicate)."""
        self._buffer["dropped_decisions"].append(
            (self._run_id, slot_id, seq, instance_id, epoch, received_ms, action, reason, strategy)
        )

    def record_bet(
        self,
        fill: Fill,
        *,
        instance_id: str,
        version: str,
        epoch: int,
        placed_ms: int,
        strategy: str = "",
        pricing: str = "",
    ) -> None:
        if fill.bet_id in self._bet_ids or self._exists(
            "SELECT 1 FROM bets WHERE bet_id = ?", (fill.bet_id,)
        ):
            raise DuplicateRecordError(f"bet {fill.bet_id} already recorded", [fill.bet_id])
        self._bet_ids.add(fill.bet_id)
        self._buffer["bets"].append(
            (
                self._run_id, fill.bet_id, fill.slot_id, fill.seq, fill.side.value, fill.stake,
                fill.price, fill.shares, fill.fee, fill.window_start_ms, fill.window_end_ms,
                instance_id, version, epoch, placed_ms, strategy, pricing,
            )
        )  # fmt: skip

    def record_settlement(self, s: Settlement, *, settled_ms: int) -> None:
        if s.bet_id in self._settled_ids or self._exists(
            "SELECT 1 FROM settlements WHERE bet_id = ?", (s.bet_id,)
        ):
            raise DuplicateRecordError(f"bet {s.bet_id} already settled", [s.bet_id])
        self._settled_ids.add(s.bet_id)
        self._buffer["settlements"].append(
            (
                self._run_id, s.bet_id, s.slot_id, s.side.value, s.window_start_ms,
                s.window_end_ms, s.open_price, s.close_price, s.outcome.value, int(s.won),
                s.payout, s.pnl, settled_ms,
            )
        )  # fmt: skip

    def record_candle(self, c: Candle, *, source: str, observed_ms: int) -> None:
        """A closed candle. Recording the same window again (e.g. backfilled) is a no-op."""
        if not c.closed:
            raise ValueError(f"only closed candles are recorded: {c.symbol} {c.open_time_ms}")
        self._buffer["candles"].append(
            (
                c.symbol, c.interval, c.open_time_ms, c.close_time_ms, c.open, c.high, c.low,
                c.close, c.volume, c.trades, source, observed_ms,
            )
        )  # fmt: skip

    def record_instance_event(self, ev: InstanceEvent) -> None:
        self._buffer["instance_events"].append(
            (
                self._run_id, ev.t_ms, ev.instance_id, ev.event, ev.pod_name, ev.strategy,
                ev.version, ev.role, ev.epoch, ev.detail,
            )
        )  # fmt: skip

    def record_connection_event(self, ev: ConnectionEvent) -> None:
        self._buffer["connection_events"].append((self._run_id, ev.t_ms, ev.event, ev.detail))

    def record_handoff(self, h: Handoff, *, missed: int) -> None:
        """A finished handoff and the evaluations missed while it ran. Raises ``ValueError``
        for one still running (its row would never be completed: rows are written once) and
        ``DuplicateRecordError`` if ``h.handoff_id`` is already recorded, buffered or written."""
        if not h.phase.terminal or h.finished_ms is None:
            raise ValueError(
                f"handoff {h.handoff_id} is still {h.phase.value}: only a finished one is recorded"
            )
        if missed < 0:
            raise ValueError(f"handoff {h.handoff_id}: missed must be >= 0, got {missed}")
        if h.handoff_id in self._handoff_ids or self._exists(
            "SELECT 1 FROM handoffs WHERE handoff_id = ?", (h.handoff_id,)
        ):
            raise DuplicateRecordError(
                f"handoff {h.handoff_id} already recorded; refusing a second record "
                f"({h.phase.value})",
                [h.handoff_id],
            )
        self._handoff_ids.add(h.handoff_id)
        self._buffer["handoffs"].append(_handoff_row(self._run_id, h, missed))

    def record_checkpoint(self, c: StoredCheckpoint, *, kept: int) -> None:
        """A strategy's ACTIVE's state, to keep beside the ledger; its ``kept`` latest stay.
        While flushes fail only the newest one per strategy waits in memory (each can be MBs)."""
        if kept < 1:
            raise ValueError(f"kept must be >= 1, got {kept}")
        rows = self._buffer["checkpoints"]
        rows[:] = [row for row in rows if row[0] != c.strategy]
        rows.append(
            (
                c.strategy, c.checkpoint_id, self._run_id, c.instance_id, c.version,
                c.state_schema, c.tick_index, c.taken_ms, c.digest,
                json.dumps(dict(sorted(c.applied_seq.items()))), c.state,
            )
        )  # fmt: skip
        self._checkpoints_kept[c.strategy] = kept

    def record_failover(self, f: FailoverRow) -> None:
        """A take-over after an ACTIVE's death (written again if recorded again: it may be
        recorded when decided and once more when its state is verified)."""
        self._buffer["failovers"].append(
            (
                f.failover_id, self._run_id, f.strategy, f.mode, f.dead, f.dead_version,
                f.to_instance, f.to_version, f.died_ms, f.took_over_ms, f.checkpoint_id,
                f.verify_probe, f.state, f.result, f.message,
            )
        )  # fmt: skip

    def checkpoints(self, strategy: str) -> list[StoredCheckpoint]:
        """The strategy's kept checkpoints, newest first (written ones only)."""
        return read_checkpoints(self._conn, strategy)

    # -- writing ----------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write everything recorded since the last flush in one transaction.

        On failure nothing is written and ``LedgerWriteError`` is raised; the rows stay
        buffered for the next flush.
        """
        if not self.pending_rows and not self._reserved:
            return
        conn = self._conn
        try:
            batch = self._commit(self._write_buffer)
        except sqlite3.IntegrityError as exc:
            # record_* refused duplicates already: only another writer on the file gets here.
            _rollback(conn)
            raise LedgerConflictError(
                f"ledger {self.path} flush of {self.pending_rows} rows conflicts with rows "
                f"already written (is another gateway writing this ledger?): {exc}"
            ) from exc
        except sqlite3.Error as exc:
            _rollback(conn)
            pending = self.pending_rows
            discarded = self._shed()
            note = f"; discarded the oldest {discarded} (bound {self.max_pending_rows})"
            raise LedgerWriteError(
                f"ledger {self.path} flush of {pending} rows failed, "
                f"kept for the next flush{note if discarded else ''}: {exc}"
            ) from exc
        self._reserved.clear()
        for rows in self._buffer.values():
            rows.clear()
        self._eval_keys.clear()
        self._bet_ids.clear()
        self._settled_ids.clear()
        self._handoff_ids.clear()
        self._published(batch)

    def _write_buffer(self, conn: sqlite3.Connection) -> list[Write]:
        """Run the flush's statements; what they wrote, in order (rows as bound)."""
        writes: list[Write] = []

        def run(statement: Statement, rows: Sequence[Row]) -> None:
            conn.executemany(_STATEMENTS[statement], rows)
            writes.append(Write(statement, tuple(rows)))

        for table in _INSERTS:
            if rows := self._buffer[table]:
                run(Statement(table), rows)
        if last_seqs := self._buffered_last_seqs():
            run(Statement.SLOT_SEQS, list(last_seqs.items()))
        if strategies := sorted({row[0] for row in self._buffer["checkpoints"]}):
            prunes = [(s, self._checkpoints_kept.get(s, 1)) for s in strategies]
            run(Statement.PRUNE_CHECKPOINTS, prunes)
        return writes

    def _commit(self, write: Callable[[sqlite3.Connection], list[Write]]) -> LedgerBatch:
        """One transaction: ``write``'s statements and the commit's replication row (the next
        position, this ledger's term). Raises what SQLite raises, with nothing written."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            writes = write(conn)
            at = Position(self._last.position + 1, self.term)
            committed_ms = self._now_ms()
            conn.execute(_INSERT_REPLICATION, (at.position, at.term, committed_ms))
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        self._last = at
        return LedgerBatch(at.position, at.term, committed_ms, tuple(writes))

    def _published(self, batch: LedgerBatch) -> None:
        if self.on_commit is None:
            return
        try:
            self.on_commit(batch)
        except Exception:  # the rows are on disk; the replicator's fault must not undo that
            log.exception(
                "ledger commit hook failed", extra={"position": batch.position, "term": batch.term}
            )

    # -- a follower's ledger ----------------------------------------------------------------------

    def apply(self, batch: LedgerBatch) -> None:
        """Write a leader's commit verbatim, in one transaction, with its position and term.

        Raises ``ReplicationRefused`` (nothing written) unless it is the next position of no
        older term, or when this ledger has rows of its own waiting (a follower records
        nothing itself); ``LedgerWriteError`` if SQLite fails (nothing written).
        """
        try:
            check_batch(self._last, batch.at)
        except BatchRefused as exc:
            raise ReplicationRefused(f"ledger {self.path}: {exc}") from None
        if self.pending_rows or self._reserved:
            raise ReplicationRefused(
                f"ledger {self.path} has {self.pending_rows} rows of its own waiting: a "
                "follower's ledger only applies its leader's batches"
            )
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for w in batch.writes:
                conn.executemany(_STATEMENTS[w.statement], w.rows)
            conn.execute(_INSERT_REPLICATION, (batch.position, batch.term, batch.committed_ms))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            raise LedgerWriteError(
                f"ledger {self.path}: applying batch {batch.position} (term {batch.term}) "
                f"failed, nothing written: {exc}"
            ) from exc
        except BaseException:
            _rollback(conn)
            raise
        self._last = batch.at

    def snapshot(self) -> tuple[Position, bytes]:
        """The whole ledger as one SQLite image, and the last commit it holds; read on a
        connection of its own (callable from another thread while this one writes)."""
        return snapshot_ledger(self.path)

    def _shed(self) -> int:
        """Past ``max_pending_rows``, discard the oldest per-tick rows; how many. A discarded
        evaluation's seq stays reserved (written to ``slot_seqs`` by the next flush)."""
        excess = self.pending_rows - self.max_pending_rows
        discarded = 0
        for table in _SHED_ORDER:
            if excess <= 0:
                break
            rows = self._buffer[table]
            n = min(excess, len(rows))
            if table == "evaluations":
                gone = {(row[1], row[2], row[17]) for row in rows[:n]}
                self.reserve_seqs(_last_seqs((k[0], k[1]) for k in gone))
                self._eval_keys -= gone
            del rows[:n]
            excess -= n
            discarded += n
        self.discarded_rows += discarded
        return discarded

    def close(self) -> None:
        """Flush, then close. If the flush fails the ledger stays open (rows kept) and the
        error is raised, so the caller can retry or knowingly give up with ``abandon``."""
        self.flush()
        self._conn.close()

    def abandon(self) -> int:
        """Close without flushing; returns how many buffered rows were discarded."""
        lost = self.pending_rows
        self._conn.close()
        return lost

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- reading back (for a restart) -------------------------------------------------------------

    def last_seqs(self) -> dict[str, int]:
        """slot_id -> highest seq recorded, buffered or written (seqs survive restarts)."""
        out: dict[str, int] = dict(self._conn.execute("SELECT slot_id, last_seq FROM slot_seqs"))
        for slot_id, seq in self._buffered_last_seqs().items():
            out[slot_id] = max(out.get(slot_id, seq), seq)
        return out

    def _buffered_last_seqs(self) -> dict[str, int]:
        out = _last_seqs((k[0], k[1]) for k in self._eval_keys)
        for slot_id, seq in self._reserved.items():
            if seq > out.get(slot_id, seq - 1):
                out[slot_id] = seq
        return out

    def open_bets(self, strategy: str | None = None) -> list[Fill]:
        """Bets without a settlement, buffered or written, in the order they were placed; of
        one strategy, or of all."""
        sql = (
            f"SELECT {_FILL_COLUMNS} FROM bets b WHERE NOT EXISTS "
            "(SELECT 1 FROM settlements s WHERE s.bet_id = b.bet_id)"
        )
        params: tuple[str, ...] = ()
        if strategy is not None:
            sql, params = sql + " AND b.strategy = ?", (strategy,)
        rows = self._conn.execute(sql + " ORDER BY b.id", params).fetchall()
        # Buffered bets: drop run_id and the placement metadata to get the Fill columns.
        rows += [
            row[1:11] for row in self._buffer["bets"] if strategy is None or row[15] == strategy
        ]
        return [_fill_from_row(r) for r in rows if r[0] not in self._settled_ids]

    # -- the book -----------------------------------------------------------------------------

    def record_strategy(
        self, *, name: str, slot_ids: Sequence[str], stake: float | None, added_ms: int
    ) -> None:
        """A strategy entered the book: written at once (like a run), so a gateway restarted
        right after still schedules it. Once per name; the first shape stays."""
        # A retired strategy that attaches again enters the book anew, with the new shape.
        row = (name, json.dumps(list(slot_ids)), stake, added_ms, self._run_id)
        try:
            batch = self._commit(self._run_one(Statement.STRATEGIES, row))
        except sqlite3.Error as exc:
            raise LedgerWriteError(f"cannot record strategy in {self.path}: {exc}") from exc
        self._published(batch)

    def end_run(self, *, ended_ms: int, reason: str) -> None:
        """This run ends, and why (``RunEnd``): written at once, replicated like a run."""
        if self._run_id is None:
            raise ValueError("no run to end: record_run first")
        row = (ended_ms, RunEnd(reason).value, self._run_id)
        try:
            batch = self._commit(self._run_one(Statement.END_RUN, row))
        except sqlite3.Error as exc:
            raise LedgerWriteError(f"cannot end run in {self.path}: {exc}") from exc
        self._published(batch)

    def retire_strategy(self, name: str, *, retired_ms: int) -> None:
        """A strategy left the book: written at once, so a restart does not schedule it."""
        try:
            batch = self._commit(self._run_one(Statement.RETIRE_STRATEGY, (retired_ms, name)))
        except sqlite3.Error as exc:
            raise LedgerWriteError(f"cannot retire strategy in {self.path}: {exc}") from exc
        self._published(batch)

    @staticmethod
    def _run_one(statement: Statement, row: Row) -> Callable[[sqlite3.Connection], list[Write]]:
        def run(conn: sqlite3.Connection) -> list[Write]:
            conn.execute(_STATEMENTS[statement], row)
            return [Write(statement, (row,))]

        return run

    def strategies(self, *, retired: bool = False) -> list[BookRow]:
        """The book, in the order strategies entered it; with ``retired`` also those taken
        out of it."""
        return read_book(self._conn, retired=retired)

    def last_active_pod(self, strategy: str) -> str | None:
        """The pod of the strategy's instance last made ACTIVE (attached as ACTIVE, or
        flipped to it), as written: the one holding the strategy's state when the gateway
        that wrote it went away. None: never any."""
        row = self._conn.execute(
            "SELECT a.pod_name FROM instance_events e JOIN instance_events a"
            " ON a.instance_id = e.instance_id AND a.event = 'attached'"
            " WHERE e.role = 'ACTIVE' AND e.event IN ('attached', 'role') AND a.strategy = ?"
            " ORDER BY e.id DESC, a.id DESC LIMIT 1",
            (strategy,),
        ).fetchone()
        return str(row[0]) if row is not None else None

    def _exists(self, sql: str, params: tuple[Any, ...]) -> bool:
        return self._conn.execute(sql, params).fetchone() is not None


# -- the reader ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BookRow:
    """A strategy of the book as the ledger keeps it."""

    name: str
    slot_ids: tuple[str, ...]  # as its instances name them; () = all the gateway's slots
    stake: float | None  # as its instances ask; None: the gateway's venue.stake
    added_ms: int
    retired_ms: int | None = None  # taken out of the book then


def read_book(conn: sqlite3.Connection, *, retired: bool = False) -> list[BookRow]:
    """The book (none before schema 4), in the order strategies entered it; with ``retired``
    also the strategies taken out of it."""
    if not _has_table(conn, "strategies"):
        return []
    where = "" if retired else " WHERE retired_ms IS NULL"
    rows = conn.execute(
        f"SELECT name, slots, stake, added_ms, retired_ms FROM strategies{where} ORDER BY added_ms"
    )
    return [BookRow(r[0], tuple(json.loads(r[1])), r[2], r[3], r[4]) for r in rows]


@dataclass(frozen=True, slots=True)
class Run:
    run_id: int
    started_ms: int
    cadence_ms: int
    slots: tuple[str, ...]
    config_json: str
    term: int | None = None  # the term it ran under; None: no election (or before schema 6)
    ended_ms: int | None = None  # when it said it ended (schema 7); None: it never said
    end_reason: str | None = None  # a RunEnd value


@dataclass(frozen=True, slots=True)
class HandoffRow:
    """A handoff as the ledger holds it: the machine's final value (rebuilt exactly), the
    evaluations missed while it ran, and the gateway run that recorded it."""

    handoff: Handoff
    missed: int
    run_id: int | None


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A strategy's state as its ACTIVE exported it, kept to rebuild it after a death."""

    strategy: str
    checkpoint_id: str
    instance_id: str
    version: str
    state_schema: int
    tick_index: int
    taken_ms: int
    digest: str
    applied_seq: Mapping[str, int]
    state: bytes


@dataclass(frozen=True, slots=True)
class FailoverRow:
    """A take-over after an ACTIVE's death, as the ledger holds it (core/standby.Failover)."""

    failover_id: str
    strategy: str
    mode: str
    dead: str
    dead_version: str
    to_instance: str
    to_version: str
    died_ms: int
    took_over_ms: int | None
    checkpoint_id: str
    verify_probe: str
    state: str
    result: str
    message: str


def read_checkpoints(conn: sqlite3.Connection, strategy: str) -> list[StoredCheckpoint]:
    if not _has_table(conn, "checkpoints"):
        return []
    rows = conn.execute(
        """SELECT strategy, checkpoint_id, instance_id, version, state_schema, tick_index,
            taken_ms, digest, applied_seq, state FROM checkpoints WHERE strategy = ?
            ORDER BY taken_ms DESC""",
        (strategy,),
    )
    out: list[StoredCheckpoint] = []
    for row in rows:
        name, checkpoint_id, instance_id, version, schema, tick, taken, digest, applied, state = row
        out.append(
            StoredCheckpoint(
                name, checkpoint_id, instance_id, version, schema, tick, taken, digest,
                json.loads(applied), bytes(state),
            )
        )  # fmt: skip
    return out


def read_failovers(conn: sqlite3.Connection) -> list[FailoverRow]:
    """Take-overs in the order the deaths happened (none before schema 5)."""
    if not _has_table(conn, "failovers"):
        return []
    rows = conn.execute(
        """SELECT failover_id, strategy, mode, dead, dead_version, to_instance, to_version,
            died_ms, took_over_ms, checkpoint_id, verify_probe, state, result, message
            FROM failovers ORDER BY died_ms, failover_id"""
    )
    return [FailoverRow(*row) for row in rows]


@dataclass(frozen=True, slots=True)
class PlacedBet:
    """A bet as the ledger holds it: the fill and who placed it when."""

    fill: Fill
    instance_id: str
    version: str
    epoch: int
    placed_ms: int
    strategy: str = ""
    pricing: str = ""  # the model that priced it ('' before schema 4)


class LedgerReader:
    """Typed, read-only access to a ledger file; usable while the gateway writes it.

    Each method reads the latest committed state. For several reads from one snapshot, use
    ``snapshot()``: ``with reader.snapshot(): ...``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.conn = open_readonly(self.path)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> LedgerReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[LedgerReader]:
        self.conn.execute("BEGIN")
        try:
            yield self
        finally:
            self.conn.execute("COMMIT")

    def schema_version(self) -> int:
        return _schema_version(self.conn, self.path)

    def runs(self) -> list[Run]:
        columns = {row[1] for row in self.conn.execute("PRAGMA table_info(runs)")}
        extra = ", ".join(c if c in columns else "NULL" for c in ("term", "ended_ms", "end_reason"))
        rows = self.conn.execute(
            f"SELECT id, started_ms, cadence_ms, slots, config, {extra} FROM runs ORDER BY id"
        )
        return [Run(r[0], r[1], r[2], tuple(json.loads(r[3])), r[4], *r[5:]) for r in rows]

    def last_commit(self) -> Position:
        """The last commit's position and term ((0, 0): none, or a ledger before schema 6)."""
        return read_last_commit(self.conn)

    def evaluations(
        self, slot_id: str | None = None, *, strategy: str | None = None
    ) -> list[EvaluationRecord]:
        """By strategy, slot, then seq; optionally of one slot and/or one strategy."""
        strategy_sql = strategy_column(self.conn)
        sql = (
            f"SELECT {_EVALUATION_COLUMNS}, {stale_column(self.conn)}, {strategy_sql} "
            "FROM evaluations"
        )
        where, params = [], []
        if slot_id is not None:
            where.append("slot_id = ?")
            params.append(slot_id)
        if strategy is not None:
            where.append(f"{strategy_sql} = ?")
            params.append(strategy)
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self.conn.execute(sql + f" ORDER BY {strategy_sql}, slot_id, seq", params)
        return [_evaluation_from_row(r) for r in rows]

    def evaluation_runs(self) -> dict[tuple[str, int], int | None]:
        """(slot_id, seq) -> the run that recorded it (of any strategy: a run is the
        gateway's, so every strategy's evaluation of one (slot, seq) has the same)."""
        rows = self.conn.execute("SELECT slot_id, seq, run_id FROM evaluations")
        return {(r[0], r[1]): r[2] for r in rows}

    def strategies(self, *, retired: bool = False) -> list[BookRow]:
        return read_book(self.conn, retired=retired)

    def dropped_decisions(self) -> list[DroppedDecision]:
        rows = self.conn.execute(
            "SELECT slot_id, seq, instance_id, epoch, received_ms, action, reason "
            "FROM dropped_decisions ORDER BY id"
        )
        return [DroppedDecision(*r) for r in rows]

    def bets(self) -> list[PlacedBet]:
        columns = {row[1] for row in self.conn.execute("PRAGMA table_info(bets)")}
        pricing = "pricing" if "pricing" in columns else "''"
        rows = self.conn.execute(
            f"SELECT {_FILL_COLUMNS}, instance_id, version, epoch, placed_ms, "
            f"{strategy_column(self.conn, 'bets')}, {pricing} FROM bets ORDER BY id"
        )
        return [PlacedBet(_fill_from_row(r[:10]), *r[10:]) for r in rows]

    def settlements(self) -> list[Settlement]:
        rows = self.conn.execute(f"SELECT {_SETTLEMENT_COLUMNS} FROM settlements ORDER BY id")
        return [_settlement_from_row(r) for r in rows]

    def candles(self, symbol: str | None = None, interval: str | None = None) -> list[Candle]:
        """Closed candles by symbol, interval, open time; optionally of one stream."""
        sql = f"SELECT {_CANDLE_COLUMNS} FROM candles"
        where, params = [], []
        if symbol is not None:
            where.append("symbol = ?")
            params.append(symbol)
        if interval is not None:
            where.append("interval = ?")
            params.append(interval)
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self.conn.execute(sql + " ORDER BY symbol, interval, open_time_ms", params)
        return [_candle_from_row(r) for r in rows]

    def instance_events(self) -> list[InstanceEvent]:
        rows = self.conn.execute(
            "SELECT t_ms, instance_id, event, pod_name, strategy, version, role, epoch, detail "
            "FROM instance_events ORDER BY id"
        )
        return [InstanceEvent(*r) for r in rows]

    def connection_events(self) -> list[ConnectionEvent]:
        rows = self.conn.execute("SELECT t_ms, event, detail FROM connection_events ORDER BY id")
        return [ConnectionEvent(*r) for r in rows]

    def handoffs(self) -> list[HandoffRow]:
        """Finished handoffs in the order they started (none before schema 2)."""
        return read_handoffs(self.conn)

    def failovers(self) -> list[FailoverRow]:
        return read_failovers(self.conn)

    def checkpoints(self, strategy: str) -> list[StoredCheckpoint]:
        return read_checkpoints(self.conn, strategy)
