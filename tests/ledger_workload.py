"""A gateway's ledger writes without a gateway, for the replication tests and measurements: ticks
of every record type through the real ``record_*`` methods, and every table of a ledger file
read back whole (to compare two files row for row, row ids included)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from baton.gateway.core import handoff as hm
from baton.gateway.core.records import (
    ConnectionEvent,
    EvalOutcome,
    EvaluationRecord,
    InstanceEvent,
)
from baton.gateway.ledger import FailoverRow, Ledger, StoredCheckpoint, open_readonly
from baton.model import Action, Candle, Fill, Settlement

T0 = 1_700_000_000_000
CADENCE_MS = 1000
STRATEGY = "momentum"


def slot_ids(n: int) -> list[str]:
    return [f"S{i:04d}USDT/5m" for i in range(n)]


def start_run(ledger: Ledger, slots: list[str], *, started_ms: int = T0) -> int:
    """A gateway start: its run, and its strategy in the book (both written at once)."""
    run_id = ledger.record_run(
        started_ms=started_ms, cadence_ms=CADENCE_MS, slots=slots, config_json='{"k": 1}'
    )
    ledger.record_strategy(name=STRATEGY, slot_ids=slots, stake=None, added_ms=started_ms)
    return run_id


def _fill(tick: int, slot: str) -> Fill:
    side = Action.UP if tick % 2 else Action.DOWN
    start = T0 + tick * CADENCE_MS
    return Fill(f"{slot}@{tick}", slot, tick, side, 5.0, 0.47 + tick % 7 / 100, 10.4, 0.05,
                start, start + 300_000)  # fmt: skip


def _handoff(tick: int) -> hm.Handoff:
    t0 = T0 + tick * CADENCE_MS
    start = hm.start(
        handoff_id=f"h-{tick}", strategy=STRATEGY, blue="i1", green="i2", from_version="v1",
        to_version="v2", policy=hm.Policy(), epoch=tick, now_ms=t0,
    )  # fmt: skip
    h = hm.transition(start.handoff, hm.Exported(t0 + 5, 2048, "sha256:cc")).handoff
    return hm.transition(h, hm.Imported(t0 + 9, False, "", error="ImportError: boom")).handoff


def tick(ledger: Ledger, n: int, slots: list[str], *, flush: bool = True) -> None:
    """Tick ``n`` (>= 1) of every slot: its evaluations (mostly executed), bets and the
    settlement of the last tick's bets, a dropped decision, candles, events; a checkpoint
    every 3 ticks, a handoff every 5, a failover every 7. Then one flush."""
    at = T0 + n * CADENCE_MS
    for i, slot in enumerate(slots):
        executed = (n + i) % 5 != 0
        outcome = EvalOutcome.EXECUTED if executed else EvalOutcome.TIMEOUT
        bet = _fill(n, slot) if executed and i % 2 == 0 else None
        ledger.record_evaluation(
            EvaluationRecord(
                slot, n, at, at + CADENCE_MS, outcome, dispatched_ms=at + 1,
                decided_ms=at + 9 if executed else None, instance_id="i1", version="v1",
                epoch=1, action="UP" if executed else None, reason="momentum", eval_us=321,
                bet_id=bet.bet_id if bet else None, strategy=STRATEGY,
            )
        )  # fmt: skip
        if bet is not None:
            ledger.record_bet(bet, instance_id="i1", version="v1", epoch=1, placed_ms=at + 10,
                              strategy=STRATEGY, pricing="random_walk")  # fmt: skip
        if n > 1 and (n - 1 + i) % 5 != 0 and i % 2 == 0:
            f = _fill(n - 1, slot)
            won = (n + i) % 3 != 0
            s = Settlement(f.bet_id, slot, f.side, f.window_start_ms, f.window_end_ms, 100.0,
                           101.0 if won else 99.0, f.side if won else Action(
                               "DOWN" if f.side is Action.UP else "UP"), won,
                           f.shares if won else 0.0, (f.shares if won else 0.0) - 5.05)  # fmt: skip
            ledger.record_settlement(s, settled_ms=at + 11)
        ledger.record_candle(
            Candle(slot.split("/")[0], "5m", at, at + 299_999, 100.0, 102.0 + i, 99.0, 101.0,
                   12.5, 321, closed=True),
            source="stream", observed_ms=at + 2,
        )  # fmt: skip
    ledger.record_dropped_decision(slot_id=slots[0], seq=n, instance_id="i2", epoch=1,
                                   received_ms=at + 999, action="UP", reason="late",
                                   strategy=STRATEGY)  # fmt: skip
    if n % 4 == 1:
        ledger.record_instance_event(
            InstanceEvent(at, f"i{n}", "attached", "pod", STRATEGY, "v1", "ACTIVE", 1, "")
        )
        ledger.record_connection_event(ConnectionEvent(at, "connected", "wss://sim"))
    if n % 3 == 0:
        ledger.record_checkpoint(
            StoredCheckpoint(STRATEGY, f"c-{n}", "i1", "v1", 1, n, at, f"sha256:{n}",
                             {s: n for s in slots[:4]}, bytes(range(256)) * 8),
            kept=2,
        )  # fmt: skip
    if n % 5 == 0:
        ledger.record_handoff(_handoff(n), missed=n % 2)
    if n % 7 == 0:
        ledger.record_failover(
            FailoverRow(f"f-{n}", STRATEGY, "checkpoint", "i1", "v1", "i2", "v1", at, at + 40,
                        f"c-{n}", "probe", "exact", "completed", "")
        )  # fmt: skip
    ledger.reserve_seqs({s: n + 1 for s in slots})  # the next tick in flight
    if flush:
        ledger.flush()


def tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of a ledger file, whole: rowid tables with their rowid, in rowid order;
    the others by their key. ``sqlite_sequence`` included (the runs' AUTOINCREMENT)."""
    conn = open_readonly(path)
    try:
        out: dict[str, list[tuple[Any, ...]]] = {}
        rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
        for name, sql in sorted(rows):
            if "WITHOUT ROWID" in (sql or "").upper():
                out[name] = sorted(conn.execute(f"SELECT * FROM {name}"), key=repr)
            else:
                out[name] = conn.execute(f"SELECT rowid, * FROM {name} ORDER BY rowid").fetchall()
        return out
    finally:
        conn.close()
