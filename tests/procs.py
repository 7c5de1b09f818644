"""Helpers for tests that run Baton's real processes: bounded condition waits, ledger reads."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from baton.common import Service
from baton.local import GatewayOptions

POLL_S = 0.05

V1 = "baton.strategy.examples.momentum_v1:MomentumV1"
FAULTY = "baton.strategy.examples.faulty:Faulty"
# Generous for 2 shared cores: a strategy process starting next to a running one must not
# make it miss a deadline (this tests presence, not speed; bench/ measures speed).
CADENCE_S = 1.0
SLOTS = 16

StartGateway = Callable[..., Awaitable[Service]]
StartStrategy = Callable[..., Awaitable[Service]]


async def wait_until(
    predicate: Callable[[], bool], *, timeout_s: float, what: str, poll_s: float = POLL_S
) -> None:
    """Wait for a condition another process makes true (bounded; fails naming ``what``).

    Polls because the condition lives in another process (a ledger row, a file); the poll
    interval bounds the latency, the timeout bounds the wait.
    """
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(poll_s)


def log_entries(service: Service, msg: str) -> list[dict[str, Any]]:
    """The service's JSON log lines with message ``msg``."""
    out = []
    for line in service.log_path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("msg") == msg:
            out.append(entry)
    return out


def query(ledger: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Read a live ledger (WAL lets us read while the gateway writes)."""
    if not ledger.exists():
        return []
    conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


def count(ledger: Path, sql: str, *params: Any) -> int:
    rows = query(ledger, sql, *params)
    return int(rows[0][0]) if rows else 0


def evaluations(ledger: Path) -> int:
    return count(ledger, "SELECT count(*) FROM evaluations")


async def run_ticks(ledger: Path, ticks: int) -> None:
    await wait_until(
        lambda: evaluations(ledger) >= ticks * SLOTS,
        timeout_s=ticks * CADENCE_S + 20,
        what=f"{ticks} ticks of evaluations in the ledger",
    )


async def more_ticks_in_run(ledger: Path, run_id: int, ticks: int, *, timeout_s: float) -> None:
    """Until gateway run ``run_id`` has recorded ``ticks`` more ticks of evaluations than now."""
    sql = "SELECT count(*) FROM evaluations WHERE run_id = ?"
    target = count(ledger, sql, run_id) + ticks * SLOTS
    await wait_until(
        lambda: count(ledger, sql, run_id) >= target,
        timeout_s=timeout_s,
        what=f"{ticks} more ticks of run {run_id}",
    )


def assert_every_scheduled_evaluation_accounted(ledger: Path) -> dict[str, list[int]]:
    """Per slot, seqs run 1..N without a hole, and every slot has the same N."""
    seqs: dict[str, list[int]] = {}
    for slot_id, seq in query(ledger, "SELECT slot_id, seq FROM evaluations ORDER BY slot_id, seq"):
        seqs.setdefault(slot_id, []).append(seq)
    assert len(seqs) == SLOTS
    lengths = {len(v) for v in seqs.values()}
    assert len(lengths) == 1, f"slots have different evaluation counts: {lengths}"
    for slot_id, values in seqs.items():
        assert values == list(range(1, len(values) + 1)), f"{slot_id} has holes: {values}"
    return seqs


def seqs_by_run(ledger: Path) -> dict[int, dict[str, list[int]]]:
    """run -> slot -> the seqs of its evaluations, in order."""
    out: dict[int, dict[str, list[int]]] = {}
    for run_id, slot_id, seq in query(
        ledger, "SELECT run_id, slot_id, seq FROM evaluations ORDER BY run_id, slot_id, seq"
    ):
        out.setdefault(run_id, {}).setdefault(slot_id, []).append(seq)
    return out


def not_executed(ledger: Path) -> list[tuple[str, int]]:
    """Evaluations whose outcome is anything but executed (missed, error...): safe to read live."""
    sql = "SELECT outcome, count(*) FROM evaluations WHERE outcome != 'executed' GROUP BY 1"
    return [(str(outcome), int(n)) for outcome, n in query(ledger, sql)]


def sim_fault(sim: Service, path: str) -> dict[str, object]:
    """Call one of the simulator's fault endpoints (docs/simulator.md) and return its answer."""
    with urllib.request.urlopen(sim.ready["rest_url"] + path, timeout=5) as resp:
        result: dict[str, object] = json.loads(resp.read())
        return result


def contiguous_candles(ledger: Path) -> dict[tuple[str, str], int]:
    """Per stream, the number of closed candles, asserting no hole and no duplicate."""
    steps = {"5m": 300_000, "15m": 900_000}
    out: dict[tuple[str, str], int] = {}
    rows = query(
        ledger,
        "SELECT symbol, interval, open_time_ms FROM candles"
        " ORDER BY symbol, interval, open_time_ms",
    )
    streams: dict[tuple[str, str], list[int]] = {}
    for symbol, interval, t in rows:
        streams.setdefault((symbol, interval), []).append(t)
    for key, opens in streams.items():
        diffs = {b - a for a, b in itertools.pairwise(opens)}
        assert diffs <= {steps[key[1]]}, f"{key}: gap or duplicate in closed candles {diffs}"
        out[key] = len(opens)
    return out


def gateway_options(ledger: Path) -> GatewayOptions:
    """A test gateway's settings: the test cadence, a quick stall timeout, ``ledger``."""
    return GatewayOptions(ledger=ledger, cadence_s=CADENCE_S, stall_timeout_s=1.0)


def gateway_env(sim: Service, ledger: Path) -> dict[str, str]:
    """The same as environment, for tests that start a gateway themselves (any free ports)."""
    return gateway_options(ledger).env(sim)
