"""Ledger replication, the pure part: what the leader sends a follower, what a follower takes,
the settings, and a ``LedgerBatch``'s round trip through the wire."""

from __future__ import annotations

import math

import pytest

from baton.gateway.core.replication import (
    ORIGIN,
    BacklogSettings,
    BatchRefused,
    FollowerSettings,
    LedgerBatch,
    Plan,
    Position,
    Refuse,
    SendSnapshot,
    SnapshotReason,
    Statement,
    Stream,
    Write,
    backoff_s,
    batch_bytes,
    check_batch,
    lag,
    plan_follow,
)
from baton.gateway.replication import batch_from_proto, batch_to_proto
from baton.v1 import replication_pb2 as pb

DIVERGED, BEHIND = SnapshotReason.DIVERGED, SnapshotReason.BEHIND

# (id, follower, leader_term, head, term_at_follower, oldest_held, expected)
PLANS: list[tuple[str, Position, int, int, int | None, int | None, Plan | SnapshotReason]] = [
    ("empty-follower-empty-leader", ORIGIN, 0, 0, 0, None, Stream(0)),
    ("empty-follower-leader-holds-all", ORIGIN, 2, 5, 0, 1, Stream(0)),
    ("empty-follower-leader-lost-the-start", ORIGIN, 2, 5, 0, 2, BEHIND),
    ("empty-follower-leader-restarted", ORIGIN, 2, 5, 0, None, BEHIND),
    ("at-the-head", Position(5, 2), 2, 5, 2, 3, Stream(5)),
    ("at-the-head-after-a-leader-restart", Position(5, 2), 3, 5, 2, None, Stream(5)),
    ("behind-within-memory", Position(3, 2), 2, 9, 2, 4, Stream(3)),
    ("behind-at-the-oldest-held-minus-one", Position(3, 2), 2, 9, 2, 4, Stream(3)),
    ("behind-past-memory", Position(3, 2), 2, 9, 2, 5, BEHIND),
    ("behind-leader-restarted", Position(3, 2), 3, 9, 2, None, BEHIND),
    ("same-position-other-term", Position(5, 1), 2, 9, 2, 1, DIVERGED),
    ("tail-of-an-older-term-past-the-head", Position(12, 1), 2, 9, None, 1, DIVERGED),
    ("tail-of-no-election-past-the-head", Position(12, 0), 2, 9, None, 1, DIVERGED),
    (
        "ahead-in-the-leaders-own-term",
        Position(12, 2),
        2,
        9,
        None,
        1,
        Refuse("past this leader's head (9) in the leader's own term"),
    ),
    (
        "ahead-without-elections",
        Position(12, 0),
        0,
        9,
        None,
        1,
        Refuse("in the leader's own term"),
    ),
    (
        "follower-knows-a-newer-term",
        Position(4, 3),
        2,
        9,
        2,
        1,
        Refuse("newer term than this leader's (2): this leader is stale"),
    ),
]


@pytest.mark.parametrize(
    ("follower", "leader_term", "head", "term_at", "oldest", "expected"),
    [p[1:] for p in PLANS],
    ids=[p[0] for p in PLANS],
)
def test_what_the_leader_sends_a_follower(
    follower: Position,
    leader_term: int,
    head: int,
    term_at: int | None,
    oldest: int | None,
    expected: Plan | SnapshotReason,
) -> None:
    plan = plan_follow(
        follower, leader_term=leader_term, head=head, term_at_follower=term_at, oldest_held=oldest
    )
    if isinstance(expected, SnapshotReason):
        assert isinstance(plan, SendSnapshot)
        assert plan.reason is expected
    elif isinstance(expected, Refuse):
        assert isinstance(plan, Refuse)
        assert expected.detail in plan.detail
    else:
        assert plan == expected


# (id, last applied, batch, error or None)
CHECKS: list[tuple[str, Position, Position, str | None]] = [
    ("first-batch", ORIGIN, Position(1, 0), None),
    ("next-batch-same-term", Position(4, 2), Position(5, 2), None),
    ("next-batch-newer-term", Position(4, 2), Position(5, 3), None),
    ("a-gap", Position(4, 2), Position(6, 2), "position 6 does not follow the ledger's last"),
    ("a-repeat", Position(4, 2), Position(4, 2), "expected 5"),
    ("an-older-term", Position(4, 3), Position(5, 2), "term 2, older than the newest applied (3"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("last", "batch", "error"), [c[1:] for c in CHECKS], ids=[c[0] for c in CHECKS]
)
def test_what_a_follower_takes(last: Position, batch: Position, error: str | None) -> None:
    if error is None:
        check_batch(last, batch)
    else:
        with pytest.raises(BatchRefused, match=error.replace("(", r"\(")):
            check_batch(last, batch)


def test_lag_is_never_negative() -> None:
    assert (lag(3, 7), lag(7, 7), lag(9, 7)) == (4, 0, 0)


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        (dict(max_batches=0), "replication.max_batches must be >= 1, got 0"),
        (dict(max_bytes=0), "replication.max_bytes must be >= 1"),
        (dict(snapshot_chunk_bytes=2 * 1024 * 1024), "must be <= 1 MiB"),
    ],
    ids=["no-batches", "no-bytes", "chunk-over-1MiB"],
)
def test_backlog_settings_are_validated(settings: dict[str, int], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        BacklogSettings(**settings)


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        (dict(connect_timeout_s=0.0), "follower.connect_timeout_s must be > 0"),
        (dict(backoff_initial_s=1.0, backoff_max_s=0.5), "backoff_max_s .0.5. must be >="),
        (dict(max_lag=-1), "follower.max_lag must be >= 0"),
    ],
    ids=["no-connect-time", "cap-below-start", "negative-lag"],
)
def test_follower_settings_are_validated(settings: dict[str, float], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        FollowerSettings(**settings)  # type: ignore[arg-type]


def test_the_backoff_doubles_up_to_its_cap() -> None:
    s = FollowerSettings(backoff_initial_s=0.1, backoff_max_s=1.0)
    assert [backoff_s(s, n) for n in (1, 2, 3, 4, 5, 1000)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def _batch() -> LedgerBatch:
    return LedgerBatch(
        position=7,
        term=3,
        committed_ms=1_700_000_000_123,
        writes=(
            Write(Statement.RUNS, ((2, 1_700_000_000_000, 5000, '["BTC/5m"]', "{}", 3),)),
            Write(
                Statement.EVALUATIONS,
                (
                    (
                        2,
                        "BTC/5m",
                        9,
                        1,
                        2,
                        None,
                        None,
                        "missed",
                        "",
                        "v1",
                        1,
                        None,
                        "",
                        "",
                        0,
                        None,
                        "",
                        "momentum",
                    ),
                ),
            ),
            Write(
                Statement.BETS,
                (
                    (
                        2,
                        "b1",
                        "BTC/5m",
                        9,
                        "UP",
                        5.0,
                        0.51,
                        9.8,
                        0.1,
                        -(2**62),
                        2**62,
                        "i1",
                        "v1",
                        1,
                        5,
                        "momentum",
                        "random_walk",
                    ),
                ),
            ),
            Write(
                Statement.CHECKPOINTS,
                (("momentum", "c1", 2, "i1", "v1", 1, 4, 5, "d", "{}", b"\x00\xffstate"),),
            ),
            Write(Statement.SLOT_SEQS, (("BTC/5m", 9),)),
            Write(Statement.PRUNE_CHECKPOINTS, (("momentum", 3),)),
        ),
    )


def test_a_batch_round_trips_through_the_wire() -> None:
    batch = _batch()
    wire = pb.LedgerBatch.FromString(batch_to_proto(batch).SerializeToString())
    assert batch_from_proto(wire) == batch


def test_the_wire_keeps_each_value_s_type() -> None:
    batch = LedgerBatch(1, 0, 0, (Write(Statement.CANDLES, ((None, 0, 0.0, "", b"", 1.5),)),))
    (row,) = batch_from_proto(batch_to_proto(batch)).writes[0].rows
    assert [type(v) for v in row] == [type(None), int, float, str, bytes, float]
    nan = batch_from_proto(
        batch_to_proto(LedgerBatch(1, 0, 0, (Write(Statement.CANDLES, ((math.inf,),)),)))
    )
    assert nan.writes[0].rows == ((math.inf,),)


def test_a_statement_this_baton_does_not_know_is_refused() -> None:
    msg = batch_to_proto(_batch())
    msg.writes[0].statement = "orders"
    with pytest.raises(ValueError, match=r"does not know: 'orders' \(is the leader a newer baton"):
        batch_from_proto(msg)


def test_a_value_without_a_kind_is_refused() -> None:
    msg = batch_to_proto(_batch())
    msg.writes[0].rows[0].values.add()
    with pytest.raises(ValueError, match="no kind set"):
        batch_from_proto(msg)


def test_batch_bytes_counts_text_and_blobs() -> None:
    small = LedgerBatch(1, 0, 0, (Write(Statement.CHECKPOINTS, ((b"x",),)),))
    large = LedgerBatch(1, 0, 0, (Write(Statement.CHECKPOINTS, ((b"x" * 100_000,),)),))
    assert batch_bytes(large) - batch_bytes(small) == 99_999
