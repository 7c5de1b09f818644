"""The presence report's gateway leadership changes (docs/gateway-standby.md), from the ledger.

A gateway replica leads one term per process and each process start is a run, so a leadership
change is two consecutive runs of which the second was elected (``runs.term`` set). The first
one's end says which kind: ``handover`` (it was asked to stop, finished its tick and released
the lease), anything else a ``failover`` (SIGKILLed: it wrote no end; deposed: ``deposed``).

For each change, measured on the evaluations (the same ground as the rest of the report):

- ``missed``: the evaluations of the ticks nobody scheduled between the two runs (per strategy
  and slot: the cadences between the old run's last tick and the new run's first, less one)
  plus those of the ticks around the change recorded missed (the old leader's last tick, which
  it may not execute once deposed; the new one's first);
- ``pause_ms`` (a handover) / ``takeover_ms`` (a failover): from the schedule of the first tick
  the old leader did not dispatch to the new leader's first dispatch. A handover that misses
  nothing has a pause of the new leader's first dispatch delay: milliseconds;
- ``result``: ``completed`` once the new leader executed an evaluation, else ``no_ticks``.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from dataclasses import dataclass

from baton.gateway.core.records import MISSED_OUTCOMES
from baton.gateway.ledger import RunEnd

HANDOVER = RunEnd.HANDOVER.value
FAILOVER = "failover"
RESTART = "restart"  # two runs of a gateway without election (bench.gateway_swap's baseline)


@dataclass(frozen=True, slots=True)
class GatewayChange:
    kind: str  # handover | failover (| restart, when asked for)
    from_replica: str
    to_replica: str
    term: int
    from_run: int
    to_run: int
    ended: str  # how the old leader's run ended: handover / deposed / stopped / "" (killed)
    pause_ms: int | None  # handovers: see the module docstring; failovers: takeover_ms
    missed: int
    missed_ticks: int  # ticks nobody scheduled between the two runs
    result: str  # completed / no_ticks


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _identity(config_json: str) -> str:
    try:
        leader = json.loads(config_json).get("leader") or {}
    except ValueError:
        return ""
    return str(leader.get("identity", ""))


def gateway_changes(
    conn: sqlite3.Connection, *, restarts: bool = False
) -> tuple[GatewayChange, ...]:
    """Every leadership change in the ledger, in order (none before schema 6's ``runs.term``).
    ``restarts``: also the restarts of a gateway without election, measured the same way (the
    baseline a handover is compared with)."""
    cols = _columns(conn, "runs")
    if "term" not in cols:
        return ()
    ended = "end_reason" if "end_reason" in cols else "NULL"
    runs = conn.execute(
        f"SELECT id, term, cadence_ms, config, {ended} FROM runs ORDER BY id"
    ).fetchall()
    ticks = {
        run: (first, last)
        for run, first, last in conn.execute(
            "SELECT run_id, MIN(scheduled_ms), MAX(scheduled_ms) FROM evaluations GROUP BY run_id"
        )
    }
    out: list[GatewayChange] = []
    for old, new in itertools.pairwise(runs):
        old_id, _, _, old_config, old_end = old
        new_id, term, cadence, new_config, _ = new
        if term is None and not restarts:
            continue  # a restart of a gateway without election: not a change of leader
        kind = RESTART if term is None else HANDOVER if old_end == HANDOVER else FAILOVER
        last = ticks.get(old_id, (None, None))[1]
        first = ticks.get(new_id, (None, None))[0]
        pause, missed, missed_ticks = None, 0, 0
        if last is not None and first is not None:
            missed_ticks = max(0, (first - last) // cadence - 1)
            (dispatched,) = conn.execute(
                "SELECT MIN(dispatched_ms) FROM evaluations WHERE run_id = ? AND scheduled_ms = ?",
                (new_id, first),
            ).fetchone()
            if dispatched is not None:
                pause = int(dispatched) - (last + cadence)
            (cells,) = conn.execute(
                "SELECT COUNT(*) FROM evaluations WHERE run_id = ? AND scheduled_ms = ?",
                (new_id, first),
            ).fetchone()
            marks = ",".join("?" * len(MISSED_OUTCOMES))
            (recorded,) = conn.execute(
                f"SELECT COUNT(*) FROM evaluations WHERE outcome IN ({marks})"
                " AND ((run_id = ? AND scheduled_ms = ?) OR (run_id = ? AND scheduled_ms = ?))",
                (*(o.value for o in MISSED_OUTCOMES), old_id, last, new_id, first),
            ).fetchone()
            missed = missed_ticks * int(cells) + int(recorded)
        (executed,) = conn.execute(
            "SELECT COUNT(*) FROM evaluations WHERE run_id = ? AND outcome = 'executed'",
            (new_id,),
        ).fetchone()
        out.append(
            GatewayChange(
                kind=kind,
                from_replica=_identity(old_config),
                to_replica=_identity(new_config),
                term=int(term or 0),
                from_run=int(old_id),
                to_run=int(new_id),
                ended=str(old_end or ""),
                pause_ms=pause,
                missed=missed,
                missed_ticks=missed_ticks,
                result="completed" if executed else "no_ticks",
            )
        )
    return tuple(out)


def change_to_json(c: GatewayChange) -> dict[str, object]:
    """The issue's names: ``from``, ``to``, ``term``, ``missed``, ``result``, and ``pause_ms``
    for a handover or ``takeover_ms`` for a failover."""
    timing = "pause_ms" if c.kind == HANDOVER else "takeover_ms"
    return {
        "from": c.from_replica,
        "to": c.to_replica,
        "term": c.term,
        timing: c.pause_ms,
        "missed": c.missed,
        "missed_ticks": c.missed_ticks,
        "result": c.result,
        "ended": c.ended,
        "from_run": c.from_run,
        "to_run": c.to_run,
    }


def change_table(changes: tuple[GatewayChange, ...]) -> list[tuple[str, ...]]:
    """Rows for the human report: #, kind, from -> to, term, pause/takeover ms, missed, result."""
    return [
        (
            str(n),
            c.kind,
            f"{c.from_replica or '?'} -> {c.to_replica or '?'}",
            str(c.term),
            "-" if c.pause_ms is None else str(c.pause_ms),
            f"{c.missed} ({c.missed_ticks} ticks)",
            c.result,
        )
        for n, c in enumerate(changes, 1)
    ]
