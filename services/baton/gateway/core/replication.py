"""Ledger replication, the pure part: what a commit wrote, and what leader and follower decide.

The standby's ledger is a copy of the leader's, replicated by commit (docs/gateway-standby.md,
"Replication"). Every commit of the leader's ``Ledger`` (a flush, a run, a change of the book)
is one ``LedgerBatch``: the statements it ran, each with the rows it ran them with, exactly as
bound (so the follower runs the same statements on the same rows and ends with the same rows
and the same row ids), and its **position** (1, 2, 3... per ledger, durable in the
``replication`` table) and **term** (the leader's; 0 without an election).

A ledger's history is its sequence of (position, term). Two ledgers that hold the same term at
the same position hold the same batches up to it: a term has one leader, and a leader writes
each position once (Raft's log matching). So the leader decides what a follower needs from
the (position, term) of the follower's last batch alone (``plan_follow``), and the follower
takes only the next position, of no older term (``check_batch``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# What a row may hold: what SQLite stores (NULL, INTEGER, REAL, TEXT, BLOB).
Value = None | int | float | str | bytes
Row = tuple[Value, ...]


class Statement(enum.Enum):
    """A statement a commit ran; the value names it on the wire. The ledger owns the SQL
    (``ledger._STATEMENTS``); an unknown name from a newer leader is refused, never guessed."""

    RUNS = "runs"  # the runs row with its id, so run ids are the leader's
    STRATEGIES = "strategies"  # a strategy entered the book (upsert)
    RETIRE_STRATEGY = "retire_strategy"  # (retired_ms, name)
    END_RUN = "end_run"  # (ended_ms, end_reason, run id): how a run ended (schema 7)
    EVALUATIONS = "evaluations"
    DROPPED_DECISIONS = "dropped_decisions"
    BETS = "bets"
    SETTLEMENTS = "settlements"
    CANDLES = "candles"
    INSTANCE_EVENTS = "instance_events"
    CONNECTION_EVENTS = "connection_events"
    HANDOFFS = "handoffs"
    CHECKPOINTS = "checkpoints"
    FAILOVERS = "failovers"
    SLOT_SEQS = "slot_seqs"  # (slot_id, last_seq) upserts
    PRUNE_CHECKPOINTS = "prune_checkpoints"  # (strategy, kept)


@dataclass(frozen=True, slots=True)
class Write:
    """One statement of a commit and the rows it was run with, in order."""

    statement: Statement
    rows: tuple[Row, ...]


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A point of a ledger's history: its last batch's position and term; (0, 0) is the
    empty ledger, which every ledger's history starts from."""

    position: int
    term: int


ORIGIN = Position(0, 0)


@dataclass(frozen=True, slots=True)
class LedgerBatch:
    """What one commit of the leader's ledger wrote, in the order it wrote it."""

    position: int
    term: int
    committed_ms: int
    writes: tuple[Write, ...]

    @property
    def at(self) -> Position:
        return Position(self.position, self.term)

    @property
    def rows(self) -> int:
        return sum(len(w.rows) for w in self.writes)


def batch_bytes(batch: LedgerBatch) -> int:
    """About what the batch holds in memory and on the wire: what bounds the backlog."""
    size = 32
    for w in batch.writes:
        size += 16
        for row in w.rows:
            for v in row:
                size += len(v) if isinstance(v, str | bytes) else 8
    return size


# -- settings -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BacklogSettings:
    """The leader's memory of recent batches, from which a follower that reconnects resumes
    without a snapshot. The reference workload commits one batch of ~3 KB per 5 s tick: the
    defaults keep ~6 h of it within 64 MiB; 1,000 slots (~200 KB a tick) keep ~5 minutes."""

    max_batches: int = 4096
    max_bytes: int = 64 * 1024 * 1024
    snapshot_chunk_bytes: int = 1024 * 1024  # the wire's limit is 4 MiB a message

    def __post_init__(self) -> None:
        for name in ("max_batches", "max_bytes", "snapshot_chunk_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"replication.{name} must be >= 1, got {getattr(self, name)}")
        if self.snapshot_chunk_bytes > 1024 * 1024:
            raise ValueError(
                "replication.snapshot_chunk_bytes must be <= 1 MiB (1048576), got "
                f"{self.snapshot_chunk_bytes}"
            )


@dataclass(frozen=True, slots=True)
class FollowerSettings:
    """How a follower reaches its leader: each attempt on a fresh channel, bounded; between
    attempts a backoff that doubles up to its cap. ``max_lag``: batches behind the leader's
    head past which the follower is no longer caught up (1: the batch being received)."""

    connect_timeout_s: float = 2.0
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 2.0
    max_lag: int = 1

    def __post_init__(self) -> None:
        for name in ("connect_timeout_s", "backoff_initial_s", "backoff_max_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"follower.{name} must be > 0, got {getattr(self, name)}")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(
                f"follower.backoff_max_s ({self.backoff_max_s}) must be >= "
                f"follower.backoff_initial_s ({self.backoff_initial_s})"
            )
        if self.max_lag < 0:
            raise ValueError(f"follower.max_lag must be >= 0, got {self.max_lag}")


def backoff_s(settings: FollowerSettings, failures: int) -> float:
    """The wait before the next attempt after ``failures`` failed ones in a row (>= 1)."""
    doublings = min(30, max(0, failures - 1))
    return min(settings.backoff_max_s, settings.backoff_initial_s * (1 << doublings))


# -- the leader's decision ----------------------------------------------------------------------


class SnapshotReason(enum.Enum):
    # The follower's last batch is not the leader's at that position (or the leader has no
    # such position): a tail the leader never had. Its file is kept aside, for inspection.
    DIVERGED = "diverged"
    # The follower shares the leader's history but the batches it lacks are no longer in the
    # leader's memory (a leader restart, a follower away too long).
    BEHIND = "behind"


@dataclass(frozen=True, slots=True)
class Stream:
    """Send the batches after ``after`` (the follower's position), as they come."""

    after: int


@dataclass(frozen=True, slots=True)
class SendSnapshot:
    reason: SnapshotReason
    detail: str


@dataclass(frozen=True, slots=True)
class Refuse:
    """The follower must not follow this leader (it knows a newer term, or more of the
    leader's own term than the leader): nothing is sent, the stream ends naming why."""

    detail: str


Plan = Stream | SendSnapshot | Refuse


def plan_follow(
    follower: Position,
    *,
    leader_term: int,
    head: int,
    term_at_follower: int | None,
    oldest_held: int | None,
) -> Plan:
    """What the leader sends a follower whose last batch is ``follower``.

    ``head``: the leader's last position; ``term_at_follower``: the term of the leader's batch
    at the follower's position (None if it has none); ``oldest_held``: the oldest position the
    leader still holds in memory (None: none).
    """
    if follower.term > leader_term:
        return Refuse(
            f"the follower's last batch ({_name(follower)}) is of a newer term than this "
            f"leader's ({leader_term}): this leader is stale"
        )
    if follower.position > head:
        if follower.term == leader_term:
            return Refuse(
                f"the follower's last batch ({_name(follower)}) is past this leader's head "
                f"({head}) in the leader's own term: the leader lost committed batches"
            )
        return SendSnapshot(
            SnapshotReason.DIVERGED,
            f"the follower's tail ({_name(follower)}) is past the leader's head ({head}): "
            "batches the leader never had",
        )
    if follower.position > 0 and term_at_follower != follower.term:
        return SendSnapshot(
            SnapshotReason.DIVERGED,
            f"the follower's batch {_name(follower)} is not the leader's (term "
            f"{term_at_follower} at position {follower.position})",
        )
    if follower.position == head:
        return Stream(head)
    if oldest_held is not None and oldest_held <= follower.position + 1:
        return Stream(follower.position)
    held = f"{oldest_held}..{head}" if oldest_held is not None else "none"
    return SendSnapshot(
        SnapshotReason.BEHIND,
        f"the follower needs batches from {follower.position + 1}; the leader holds {held}",
    )


# -- the follower's decision --------------------------------------------------------------------


class BatchRefused(Exception):
    """A batch that would not continue the follower's history: nothing of it is written."""


def check_batch(last: Position, batch: Position) -> None:
    """Raises ``BatchRefused`` unless ``batch`` is the one after ``last`` and of no older
    term than the newest the follower applied."""
    if batch.position != last.position + 1:
        raise BatchRefused(
            f"batch at position {batch.position} does not follow the ledger's last position "
            f"{last.position} (expected {last.position + 1})"
        )
    if batch.term < last.term:
        raise BatchRefused(
            f"batch at position {batch.position} is of term {batch.term}, older than the "
            f"newest applied ({last.term} at position {last.position})"
        )


def lag(position: int, head: int) -> int:
    """Batches the follower is behind the leader's announced head (never negative)."""
    return max(0, head - position)


def _name(p: Position) -> str:
    return f"position {p.position}, term {p.term}"
