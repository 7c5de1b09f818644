"""The presence ledger on real SQLite files: round trips, uniqueness, atomic retried flushes."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.gateway.core.records import (
    ConnectionEvent,
    DroppedDecision,
    EvalOutcome,
    EvaluationRecord,
    InstanceEvent,
)
from baton.gateway.ledger import (
    SCHEMA_VERSION,
    DuplicateRecordError,
    Ledger,
    LedgerConflictError,
    LedgerOpenError,
    LedgerReader,
    LedgerSchemaError,
    LedgerWriteError,
    PlacedBet,
    Run,
    open_readonly,
)
from baton.model import Action, Candle, Fill, Settlement

T0 = 1_700_000_000_000


def evaluation(
    seq: int, slot_id: str = "BTC/5m", outcome: EvalOutcome = EvalOutcome.EXECUTED
) -> EvaluationRecord:
    answered = outcome.answered
    return EvaluationRecord(
        slot_id=slot_id,
        seq=seq,
        scheduled_ms=T0 + seq * 5000,
        deadline_ms=T0 + (seq + 1) * 5000,
        outcome=outcome,
        dispatched_ms=T0 + seq * 5000 + 1,
        decided_ms=T0 + seq * 5000 + 40 if answered else None,
        instance_id="i1-blue",
        version="v1",
        epoch=1,
        action="UP" if answered else None,
        reason="momentum up" if answered else "",
        error="boom" if outcome is EvalOutcome.ERROR else "",
        eval_us=1234,
        bet_id=f"{slot_id}@{T0}#{seq}" if outcome is EvalOutcome.EXECUTED else None,
    )


def fill(seq: int, slot_id: str = "BTC/5m", side: Action = Action.UP) -> Fill:
    return Fill(f"{slot_id}@{T0}#{seq}", slot_id, seq, side, 5.0, 0.5, 10.0, 0.1, T0, T0 + 300_000)


def settlement(f: Fill, won: bool = True) -> Settlement:
    outcome = f.side if won else (Action.DOWN if f.side is Action.UP else Action.UP)
    payout = f.shares if won else 0.0
    return Settlement(
        f.bet_id, f.slot_id, f.side, f.window_start_ms, f.window_end_ms, 100.0, 101.5,
        outcome, won, payout, payout - f.stake - f.fee,
    )  # fmt: skip


def candle(start: int = T0, symbol: str = "BTCUSDT", close: float = 101.5) -> Candle:
    return Candle(
        symbol, "5m", start, start + 299_999, 100.0, 102.0, 99.0, close, 12.5, 321, closed=True
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger" / "baton.sqlite"


@pytest.fixture
def ledger(path: Path) -> Iterator[Ledger]:
    led = Ledger(path)
    yield led
    led.abandon()


def read(path: Path) -> LedgerReader:
    return LedgerReader(path)


# -- opening ----------------------------------------------------------------------------------


def test_a_new_ledger_is_created_in_wal_mode_with_its_schema_version(path: Path) -> None:
    Ledger(path).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert version == (str(SCHEMA_VERSION),)
    finally:
        conn.close()


def test_opening_an_existing_ledger_keeps_its_rows(path: Path) -> None:
    with Ledger(path) as first:
        first.record_evaluation(evaluation(1))
    with Ledger(path) as second:
        assert second.last_seqs() == {"BTC/5m": 1}
    with read(path) as r:
        assert r.schema_version() == SCHEMA_VERSION
        assert len(r.evaluations()) == 1


def test_a_ledger_of_a_newer_schema_is_refused_and_left_untouched(path: Path) -> None:
    Ledger(path).close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(LedgerSchemaError, match="schema version 99"):
        Ledger(path)
    with pytest.raises(LedgerSchemaError, match="schema version 99"):
        open_readonly(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta").fetchone() == ("99",)
    conn.close()


def test_a_sqlite_file_that_is_not_a_ledger_is_refused(path: Path) -> None:
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE something_else (x)")
    conn.close()
    with pytest.raises(LedgerOpenError, match="not a baton ledger"):
        Ledger(path)


@pytest.mark.parametrize(
    ("content", "match"),
    [(None, "no such file"), (b"not a database " * 100, "not a readable ledger"), (b"", "empty")],
    ids=["missing file", "garbage file", "empty file"],
)
def test_open_readonly_refuses_what_is_not_a_ledger(
    path: Path, content: bytes | None, match: str
) -> None:
    if content is not None:
        path.parent.mkdir(parents=True)
        path.write_bytes(content)
    with pytest.raises(LedgerOpenError, match=match):
        open_readonly(path)


def test_a_garbage_file_is_refused_by_the_writer_too(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database " * 100)
    with pytest.raises(LedgerOpenError, match="cannot open ledger"):
        Ledger(path)


# -- round trips ------------------------------------------------------------------------------


def test_every_record_type_round_trips(ledger: Ledger, path: Path) -> None:
    run_id = ledger.record_run(
        started_ms=T0, cadence_ms=5000, slots=["BTC/5m", "ETH/5m"], config_json='{"a": 1}'
    )
    evals = [
        evaluation(1),
        evaluation(2, outcome=EvalOutcome.ERROR),
        evaluation(3, outcome=EvalOutcome.TIMEOUT),
        evaluation(1, "ETH/5m", EvalOutcome.NO_ACTIVE),
    ]
    for e in evals:
        ledger.record_evaluation(e)
    ledger.record_dropped_decision(
        slot_id="BTC/5m", seq=3, instance_id="i1-blue", epoch=1, received_ms=T0 + 99,
        action="DOWN", reason="late",
    )  # fmt: skip
    ledger.record_dropped_decision(
        slot_id="BTC/5m", seq=4, instance_id="i2-green", epoch=2, received_ms=T0 + 100,
        action=None, reason="invalid: no action",
    )  # fmt: skip
    f1, f2 = fill(1), fill(2, "ETH/5m", Action.DOWN)
    ledger.record_bet(f1, instance_id="i1-blue", version="v1", epoch=1, placed_ms=T0 + 41)
    ledger.record_bet(f2, instance_id="i2-green", version="v2", epoch=2, placed_ms=T0 + 42)
    s1 = settlement(f1)
    ledger.record_settlement(s1, settled_ms=T0 + 300_500)
    c = candle()
    ledger.record_candle(c, source="ws", observed_ms=T0 + 300_001)
    ie = InstanceEvent(T0, "i1-blue", "attached", "blue-0", "momentum", "v1", "ACTIVE", 1, "")
    ce = ConnectionEvent(T0 + 5, "connected", "wss://example")
    ledger.record_instance_event(ie)
    ledger.record_connection_event(ce)
    ledger.flush()

    with read(path) as r:
        assert r.runs() == [Run(run_id, T0, 5000, ("BTC/5m", "ETH/5m"), '{"a": 1}')]
        assert r.evaluations() == sorted(evals, key=lambda e: (e.slot_id, e.seq))
        assert r.evaluations("ETH/5m") == [evals[3]]
        assert set(r.evaluation_runs().values()) == {run_id}
        assert r.dropped_decisions() == [
            DroppedDecision("BTC/5m", 3, "i1-blue", 1, T0 + 99, "DOWN", "late"),
            DroppedDecision("BTC/5m", 4, "i2-green", 2, T0 + 100, None, "invalid: no action"),
        ]
        assert r.bets() == [
            PlacedBet(f1, "i1-blue", "v1", 1, T0 + 41),
            PlacedBet(f2, "i2-green", "v2", 2, T0 + 42),
        ]
        assert r.settlements() == [s1]
        assert r.candles() == [c]
        assert r.candles("BTCUSDT", "5m") == [c]
        assert r.candles("ETHUSDT") == []
        assert r.instance_events() == [ie]
        assert r.connection_events() == [ce]


def test_times_are_stored_as_integer_milliseconds(ledger: Ledger, path: Path) -> None:
    ledger.record_evaluation(evaluation(1))
    ledger.flush()
    conn = sqlite3.connect(path)
    types = conn.execute(
        "SELECT typeof(scheduled_ms), typeof(deadline_ms), typeof(dispatched_ms), "
        "typeof(decided_ms) FROM evaluations"
    ).fetchone()
    conn.close()
    assert types == ("integer",) * 4


def test_records_reach_the_file_only_on_flush(ledger: Ledger, path: Path) -> None:
    ledger.record_evaluation(evaluation(1))
    ledger.record_candle(candle(), source="ws", observed_ms=T0)
    assert ledger.pending_rows == 2
    with read(path) as r:
        assert (r.evaluations(), r.candles()) == ([], [])
        ledger.flush()
        assert len(r.evaluations()) == 1  # a reader open across the flush sees it
    assert ledger.pending_rows == 0


def test_close_flushes(path: Path) -> None:
    led = Ledger(path)
    led.record_evaluation(evaluation(1))
    led.close()
    with read(path) as r:
        assert len(r.evaluations()) == 1


def test_evaluations_reference_the_current_run(path: Path) -> None:
    with Ledger(path) as led:
        led.record_evaluation(evaluation(1))  # recorded before any run
        assert led.record_run(started_ms=T0, cadence_ms=5000, slots=[], config_json="{}") == 1
        led.record_evaluation(evaluation(2))
    with Ledger(path) as led:
        assert led.record_run(started_ms=T0, cadence_ms=1000, slots=[], config_json="{}") == 2
        led.record_evaluation(evaluation(3))
    with read(path) as r:
        runs = r.evaluation_runs()
    assert runs == {("BTC/5m", 1): None, ("BTC/5m", 2): 1, ("BTC/5m", 3): 2}


# -- uniqueness -------------------------------------------------------------------------------


@pytest.mark.parametrize("flush_between", [False, True], ids=["both buffered", "first written"])
def test_a_second_outcome_for_the_same_slot_and_seq_fails_loudly(
    ledger: Ledger, path: Path, flush_between: bool
) -> None:
    ledger.record_evaluation(evaluation(7))
    if flush_between:
        ledger.flush()
    with pytest.raises(DuplicateRecordError, match="BTC/5m#7") as err:
        ledger.record_evaluation(evaluation(7, outcome=EvalOutcome.TIMEOUT))
    assert err.value.keys == ("BTC/5m#7",)
    ledger.record_evaluation(evaluation(7, "ETH/5m"))  # same seq, other slot: fine
    ledger.record_evaluation(evaluation(8))
    ledger.flush()
    with read(path) as r:
        assert [(e.slot_id, e.seq, e.outcome) for e in r.evaluations()] == [
            ("BTC/5m", 7, EvalOutcome.EXECUTED),
            ("BTC/5m", 8, EvalOutcome.EXECUTED),
            ("ETH/5m", 7, EvalOutcome.EXECUTED),
        ]


@pytest.mark.parametrize("flush_between", [False, True], ids=["both buffered", "first written"])
def test_a_bet_and_a_settlement_are_recorded_once(ledger: Ledger, flush_between: bool) -> None:
    f = fill(1)
    ledger.record_bet(f, instance_id="i1", version="v1", epoch=1, placed_ms=T0)
    ledger.record_settlement(settlement(f), settled_ms=T0)
    if flush_between:
        ledger.flush()
    with pytest.raises(DuplicateRecordError, match="already recorded"):
        ledger.record_bet(f, instance_id="i1", version="v1", epoch=1, placed_ms=T0)
    with pytest.raises(DuplicateRecordError, match="already settled"):
        ledger.record_settlement(settlement(f), settled_ms=T0)


def test_a_closed_candle_is_recorded_once_per_window(ledger: Ledger, path: Path) -> None:
    ledger.record_candle(candle(), source="ws", observed_ms=T0)
    ledger.record_candle(candle(), source="ws", observed_ms=T0 + 1)  # repeat in the buffer
    ledger.flush()
    ledger.record_candle(candle(close=1.0), source="rest", observed_ms=T0 + 2)  # backfilled
    ledger.record_candle(candle(T0 + 300_000), source="rest", observed_ms=T0 + 2)
    ledger.flush()
    with read(path) as r:
        assert r.candles() == [candle(), candle(T0 + 300_000)]


def test_an_open_candle_is_not_recorded(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="only closed candles"):
        ledger.record_candle(
            Candle("BTCUSDT", "5m", T0, T0 + 1, 1, 1, 1, 1), source="ws", observed_ms=T0
        )


# -- failing flushes --------------------------------------------------------------------------


def test_a_flush_that_fails_midway_writes_nothing_and_is_retried(
    ledger: Ledger, path: Path
) -> None:
    for seq in range(1, 11):
        ledger.record_evaluation(evaluation(seq))
    ledger.record_candle(candle(), source="ws", observed_ms=T0)
    ledger.record_bet(fill(1), instance_id="i1", version="v1", epoch=1, placed_ms=T0)
    # Another writer commits a row the buffer collides with, after rows 1..4 of the same
    # INSERT succeeded inside the flush transaction.
    intruder = sqlite3.connect(path, isolation_level=None)
    intruder.execute(
        "INSERT INTO evaluations (slot_id, seq, scheduled_ms, deadline_ms, outcome, "
        "instance_id, version, epoch, reason, error, eval_us) "
        "VALUES ('BTC/5m', 5, 0, 0, 'timeout', '', '', 0, '', '', 0)"
    )
    with pytest.raises(LedgerConflictError, match="another gateway") as err:
        ledger.flush()
    assert not err.value.retryable
    assert ledger.pending_rows == 12
    with read(path) as r:
        assert [e.seq for e in r.evaluations()] == [5]  # only the intruder's row
        assert (r.candles(), r.bets()) == ([], [])
    intruder.execute("DELETE FROM evaluations")
    intruder.close()
    ledger.flush()
    assert ledger.pending_rows == 0
    with read(path) as r:
        assert [e.seq for e in r.evaluations()] == list(range(1, 11))
        assert (len(r.candles()), len(r.bets())) == (1, 1)


def test_a_flush_blocked_by_a_lock_raises_keeps_its_rows_and_succeeds_later(path: Path) -> None:
    ledger = Ledger(path, busy_timeout_ms=20)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        ledger.record_evaluation(evaluation(1))
        blocker.execute("BEGIN IMMEDIATE")  # holds the write lock
        with pytest.raises(LedgerWriteError, match="kept for the next flush") as err:
            ledger.flush()
        assert err.value.retryable
        ledger.record_evaluation(evaluation(2))  # recording goes on while the disk is stuck
        assert ledger.pending_rows == 2
        blocker.execute("ROLLBACK")
        ledger.flush()
        with read(path) as r:
            assert [e.seq for e in r.evaluations()] == [1, 2]
    finally:
        blocker.close()
        ledger.close()


def test_close_with_a_failing_flush_raises_and_keeps_the_ledger_open(path: Path) -> None:
    ledger = Ledger(path, busy_timeout_ms=20)
    blocker = sqlite3.connect(path, isolation_level=None)
    ledger.record_evaluation(evaluation(1))
    blocker.execute("BEGIN IMMEDIATE")
    with pytest.raises(LedgerWriteError):
        ledger.close()
    blocker.execute("ROLLBACK")
    blocker.close()
    ledger.close()
    with read(path) as r:
        assert len(r.evaluations()) == 1


# -- restart support --------------------------------------------------------------------------


def test_last_seqs_covers_written_and_buffered_evaluations(ledger: Ledger) -> None:
    assert ledger.last_seqs() == {}
    for seq in (1, 2, 3):
        ledger.record_evaluation(evaluation(seq))
    ledger.record_evaluation(evaluation(9, "ETH/5m"))
    ledger.flush()
    ledger.record_evaluation(evaluation(4))
    ledger.record_evaluation(evaluation(1, "SOL/15m"))
    assert ledger.last_seqs() == {"BTC/5m": 4, "ETH/5m": 9, "SOL/15m": 1}


def test_open_bets_are_the_unsettled_ones_written_or_buffered(ledger: Ledger) -> None:
    bets = [fill(seq) for seq in range(1, 6)]
    for f in bets[:3]:
        ledger.record_bet(f, instance_id="i1", version="v1", epoch=1, placed_ms=T0)
    ledger.record_settlement(settlement(bets[0]), settled_ms=T0)
    ledger.flush()
    for f in bets[3:]:
        ledger.record_bet(f, instance_id="i1", version="v1", epoch=1, placed_ms=T0)
    ledger.record_settlement(settlement(bets[1], won=False), settled_ms=T0)  # buffered
    ledger.record_settlement(settlement(bets[4]), settled_ms=T0)  # buffered bet and settlement
    assert ledger.open_bets() == [bets[2], bets[3]]
    ledger.flush()
    assert ledger.open_bets() == [bets[2], bets[3]]


def test_a_reader_snapshot_holds_still_while_the_gateway_flushes(
    ledger: Ledger, path: Path
) -> None:
    ledger.record_evaluation(evaluation(1))
    ledger.flush()
    with read(path) as r:
        with r.snapshot():
            assert len(r.evaluations()) == 1
            ledger.record_evaluation(evaluation(2))
            ledger.flush()  # a reader never blocks the writer (WAL)
            assert len(r.evaluations()) == 1
        assert len(r.evaluations()) == 2


def _attached(
    t: int, instance: str, pod: str, role: str, strategy: str = "momentum"
) -> InstanceEvent:
    return InstanceEvent(t, instance, "attached", pod, strategy, "v1", role, 1)


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([], None, id="never-any"),
        pytest.param([_attached(1, "i1-blue", "blue", "STANDBY")], None, id="never-active"),
        pytest.param([_attached(1, "i1-blue", "blue", "ACTIVE")], "blue", id="attached-active"),
        pytest.param(
            [
                _attached(1, "i1-blue", "blue", "ACTIVE"),
                _attached(2, "i2-green", "green", "STANDBY"),
                InstanceEvent(3, "i2-green", "role", role="SHADOW", epoch=1),
                InstanceEvent(4, "i2-green", "role", role="ACTIVE", epoch=2),
            ],
            "green",
            id="a-handoff-flipped-to-green",
        ),
        pytest.param(
            [
                _attached(1, "i1-blue", "blue", "ACTIVE"),
                _attached(2, "i2-green", "green", "STANDBY"),
                InstanceEvent(3, "i1-blue", "detached", role="ACTIVE", epoch=1),
            ],
            "blue",
            id="the-active-gone-still-holds-the-state",
        ),
        pytest.param(
            [
                _attached(1, "i1-blue", "blue", "ACTIVE"),
                _attached(2, "i1-other", "other", "ACTIVE", strategy="reversion"),
            ],
            "blue",
            id="another-strategys-active-is-not-this-ones",
        ),
        pytest.param(
            [
                _attached(1, "i1-blue", "blue", "ACTIVE"),
                _attached(2, "i1-green", "green", "ACTIVE"),  # a later run numbers again
            ],
            "green",
            id="the-latest-run-wins",
        ),
    ],
)
def test_the_pod_last_made_active(
    ledger: Ledger, events: list[InstanceEvent], expected: str | None
) -> None:
    for e in events:
        ledger.record_instance_event(e)
    ledger.flush()
    assert ledger.last_active_pod("momentum") == expected
