"""Helpers for tests that run Baton's real processes: bounded condition waits, ledger reads."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

POLL_S = 0.05


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
