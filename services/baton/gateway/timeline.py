"""The presence timeline of a ledger (``baton presence --html FILE``): read, then drawn by
``core/timeline_html.py``.

Read-only, in one snapshot with the presence report it shows on top, so the picture and the
figures agree even on the ledger of a running gateway. Every read is an SQL aggregate or one
row per tick: past ``core.timeline.MAX_TICK_MARKS`` ticks a slot, evaluations are counted per
bucket in SQL, so a ledger of millions of evaluations gives a page of a few thousand marks
with the same exact totals.
"""

from __future__ import annotations

import sqlite3
import statistics
from pathlib import Path

from baton.gateway.core.records import MISSED_OUTCOMES, EvalOutcome
from baton.gateway.core.timeline import (
    Cell,
    FailoverSpan,
    Figure,
    HandoffSpan,
    RunSpan,
    Timeline,
    choose_bucket_ms,
    version_bands,
)
from baton.gateway.core.timeline_html import render_html
from baton.gateway.ledger import open_readonly, stale_column
from baton.gateway.report import PresenceReport, report_from
from baton.gateway.report_gateways import gateway_changes

_EXECUTED = EvalOutcome.EXECUTED.value
_ERROR = EvalOutcome.ERROR.value
_MISSED = frozenset(o.value for o in MISSED_OUTCOMES)
# Dropped answers that mean an instance answered too late or under an old epoch (the router's
# verdicts); shadow, draining and unknown answers are normal during a handoff and not drawn.
STALE_REASONS = ("late", "fenced")


def read_timeline(path: str | Path) -> tuple[PresenceReport, Timeline]:
    """The report and the timeline of the ledger at ``path``, from one snapshot. Raises
    ``LedgerOpenError`` if it is not one."""
    conn = open_readonly(path)
    try:
        conn.execute("BEGIN")
        try:
            report = report_from(conn)
            return report, _timeline(conn, report, title=f"Presence: {Path(path).name}")
        finally:
            conn.execute("COMMIT")
    finally:
        conn.close()


def write_html(path: str | Path, out: str | Path) -> Path:
    """Write the timeline page of the ledger at ``path`` to ``out`` (returned)."""
    _, timeline = read_timeline(path)
    page = Path(out)
    page.write_text(render_html(timeline), encoding="utf-8")
    return page


def _timeline(conn: sqlite3.Connection, r: PresenceReport, *, title: str) -> Timeline:
    first, last_deadline = conn.execute(
        "SELECT MIN(scheduled_ms), MAX(deadline_ms) FROM evaluations"
    ).fetchone()
    runs = _runs(conn)
    starts = [run.started_ms for run in runs]
    start_ms = first if first is not None else min(starts, default=0)
    end_ms = last_deadline if last_deadline is not None else start_ms + max(r.cadence_ms, 1)
    # A book of several strategies: one row per (strategy, slot), named "strategy slot".
    several = len(r.per_strategy) > 1
    rows = _rows(conn) if several else tuple(s.slot_id for s in r.per_slot)
    ticks = max((s.scheduled for s in r.per_slot), default=0)
    if several:
        ticks = max((x.scheduled // max(x.slots, 1) for x in r.per_strategy), default=0)
    bucket_ms = choose_bucket_ms(ticks, end_ms - start_ms, r.cadence_ms, slots=len(rows))
    cells = (
        _tick_cells(conn, several)
        if bucket_ms is None
        else _bucket_cells(conn, start_ms, bucket_ms, several)
    )
    return Timeline(
        title=title,
        start_ms=start_ms,
        end_ms=end_ms,
        cadence_ms=r.cadence_ms,
        bucket_ms=bucket_ms,
        slots=rows,
        cells=cells,
        versions=version_bands(_version_changes(conn, several), end_ms),
        handoffs=tuple(
            HandoffSpan(
                number=n,
                handoff_id=h.handoff_id,
                # In a book, which strategy handed off: "momentum v1" -> "v2".
                from_version=f"{h.strategy} {h.from_version}" if several else h.from_version,
                to_version=h.to_version,
                result=h.result,
                started_ms=h.started_ms,
                flipped_ms=h.flipped_ms,
                finished_ms=h.finished_ms,
                pause_ms=h.pause_ms,
                missed=h.missed,
            )
            for n, h in enumerate(r.handoffs, 1)
        ),
        runs=runs,
        headline=headline(r),
        failovers=_failovers(conn, r, several),
    )


def _failovers(
    conn: sqlite3.Connection, r: PresenceReport, several: bool
) -> tuple[FailoverSpan, ...]:
    """The report's failovers, numbered as in its table; in a book each covers the rows of its
    strategy only."""
    rows: dict[str, tuple[str, ...]] = {}
    if several and r.failovers:
        for strategy, row in conn.execute(
            "SELECT strategy, strategy || ' ' || slot_id FROM evaluations "
            "GROUP BY strategy, slot_id ORDER BY MIN(id)"
        ):
            rows[strategy] = (*rows.get(strategy, ()), row)
    return tuple(
        FailoverSpan(
            number=n,
            failover_id=f.failover_id,
            strategy=f.strategy,
            mode=f.mode,
            from_instance=f.from_instance,
            to_instance=f.to_instance,
            from_version=f.from_version,
            to_version=f.to_version,
            died_ms=f.died_ms,
            took_over_ms=f.took_over_ms,
            missed=f.missed,
            state=f.state,
            result=f.result,
            checkpoint_id=f.checkpoint_id,
            message=f.message,
            rows=rows.get(f.strategy, ()) if several else None,
        )
        for n, f in enumerate(r.failovers, 1)
    )


def _row(several: bool, table: str = "") -> str:
    """The SQL naming a row's timeline row: its slot, or "strategy slot" in a book (a ledger
    of schema 4, whose rows all have the column); ``table``: the alias to qualify them with."""
    t = f"{table}." if table else ""
    return f"{t}strategy || ' ' || {t}slot_id" if several else f"{t}slot_id"


def _rows(conn: sqlite3.Connection) -> tuple[str, ...]:
    """A book's rows: each strategy's slots, strategies in the order they first served."""
    return tuple(
        row
        for (row,) in conn.execute(
            "SELECT strategy || ' ' || slot_id FROM evaluations "
            "GROUP BY strategy, slot_id ORDER BY MIN(id)"
        )
    )


def _tick_cells(conn: sqlite3.Connection, several: bool = False) -> tuple[Cell, ...]:
    row = _row(several)
    stale = {
        (key, seq): n
        for key, seq, n in conn.execute(
            f"SELECT {row}, seq, COUNT(*) "
            "FROM dropped_decisions "
            f"WHERE reason IN ({', '.join('?' * len(STALE_REASONS))}) GROUP BY 1, 2",
            STALE_REASONS,
        )
    }
    cells = []
    for key, seq, scheduled, deadline, outcome, not_live in conn.execute(
        f"SELECT {row}, seq, scheduled_ms, deadline_ms, outcome, "
        f"{stale_column(conn)} != '' FROM evaluations"
    ):
        cells.append(
            Cell(
                slot_id=key,
                start_ms=scheduled,
                end_ms=deadline,  # a tick's deadline is the next tick: its cadence
                executed=int(outcome == _EXECUTED),
                errors=int(outcome == _ERROR),
                missed=((outcome, 1),) if outcome in _MISSED else (),
                stale=stale.get((key, seq), 0),
                seq=seq,
                not_live=int(outcome == _EXECUTED and bool(not_live)),
            )
        )
    return tuple(cells)


def _bucket_cells(
    conn: sqlite3.Connection, start_ms: int, bucket_ms: int, several: bool = False
) -> tuple[Cell, ...]:
    row = _row(several)
    counts: dict[tuple[str, int], dict[str, int]] = {}
    not_live: dict[tuple[str, int], int] = {}
    for key, bucket, outcome, n, n_not_live in conn.execute(
        f"SELECT {row}, (scheduled_ms - ?) / ?, outcome, COUNT(*), "
        f"SUM({stale_column(conn)} != '') FROM evaluations GROUP BY 1, 2, 3",
        (start_ms, bucket_ms),
    ):
        counts.setdefault((key, bucket), {})[outcome] = n
        if outcome == _EXECUTED and n_not_live:
            not_live[(key, bucket)] = n_not_live
    same_strategy = " AND e.strategy = d.strategy" if several else ""
    stale = dict(
        ((key, bucket), n)
        for key, bucket, n in conn.execute(
            f"SELECT {_row(several, 'd')}, "
            "(e.scheduled_ms - ?) / ?, COUNT(*) FROM dropped_decisions d "
            f"JOIN evaluations e ON e.seq = d.seq AND e.slot_id = d.slot_id{same_strategy} "
            f"WHERE d.reason IN ({', '.join('?' * len(STALE_REASONS))}) GROUP BY 1, 2",
            (start_ms, bucket_ms, *STALE_REASONS),
        )
    )
    return tuple(
        Cell(
            slot_id=key,
            start_ms=start_ms + bucket * bucket_ms,
            end_ms=start_ms + (bucket + 1) * bucket_ms,
            executed=by.get(_EXECUTED, 0),
            errors=by.get(_ERROR, 0),
            missed=tuple(sorted((o, n) for o, n in by.items() if o in _MISSED)),
            stale=stale.get((key, bucket), 0),
            not_live=not_live.get((key, bucket), 0),
        )
        for (key, bucket), by in counts.items()
    )


def _version_changes(conn: sqlite3.Connection, several: bool = False) -> list[tuple[int, str]]:
    """The ticks at which the version that answered changed (one row per change, from SQL:
    the page gets one band per deployment whatever the ledger's size). In a book of several
    strategies a band names every strategy's version ("momentum v2, reversion v1")."""
    serving = (
        "SELECT scheduled_ms, GROUP_CONCAT(sv, ', ') AS version FROM ("
        "  SELECT DISTINCT scheduled_ms, strategy || ' ' || version AS sv FROM evaluations"
        "  WHERE version != '' ORDER BY scheduled_ms, sv) GROUP BY scheduled_ms"
        if several
        else "SELECT scheduled_ms, MAX(version) AS version FROM evaluations"
        "  WHERE version != '' GROUP BY scheduled_ms"
    )
    rows = conn.execute(
        "SELECT scheduled_ms, version FROM ("
        "  SELECT scheduled_ms, version, LAG(version) OVER (ORDER BY scheduled_ms) AS prev"
        f"  FROM ({serving})"
        ") WHERE prev IS NULL OR prev != version ORDER BY scheduled_ms"
    ).fetchall()
    return [(int(t), str(v)) for t, v in rows]


def _runs(conn: sqlite3.Connection) -> tuple[RunSpan, ...]:
    spans = {
        run_id: (lo, hi)
        for run_id, lo, hi in conn.execute(
            "SELECT run_id, MIN(scheduled_ms), MAX(scheduled_ms) FROM evaluations GROUP BY run_id"
        )
    }
    changes = {c.to_run: c for c in gateway_changes(conn)}
    has_term = "term" in {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    term = "term" if has_term else "NULL"
    rows = conn.execute(f"SELECT id, started_ms, cadence_ms, {term} FROM runs ORDER BY id")
    out = []
    for n, (run_id, started, cadence, run_term) in enumerate(rows, 1):
        change = changes.get(run_id)
        out.append(
            RunSpan(
                n,
                started,
                *spans.get(run_id, (None, None)),
                cadence_ms=cadence,
                term=run_term,
                change=change.kind if change is not None else "",
                change_missed=change.missed if change is not None else 0,
            )
        )
    return tuple(out)


def headline(r: PresenceReport) -> tuple[Figure, ...]:
    """The summary numbers on top of the page: those of the text report's first lines."""
    ratio = f"{r.evaluated / r.scheduled:.3%}" if r.scheduled else "-"
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(r.missed_by_reason.items()) if v)
    pause = "-" if r.pause_ms_p50 is None else f"{r.pause_ms_p50:.2f} / {r.pause_ms_max:.2f} ms"
    return (
        Figure("answered", ratio, bad=r.evaluated < r.scheduled),
        Figure("scheduled", f"{r.scheduled:,}"),
        Figure("evaluated", f"{r.evaluated:,}"),
        Figure("missed" + (f" ({reasons})" if reasons else ""), f"{r.missed:,}", bad=r.missed > 0),
        Figure("errors", f"{r.errors:,}", bad=r.errors > 0),
        Figure("stale (data not live)", f"{r.stale:,}", bad=r.stale > 0),
        Figure("unaccounted", f"{r.unaccounted:,}", bad=r.unaccounted > 0),
        Figure("longest gap", f"{r.max_gap_ms / 1000:g} s (cadence {r.cadence_ms / 1000:g} s)"),
        Figure(
            "handoffs completed / failed",
            f"{r.handoffs_completed} / {r.handoffs_failed}",
            bad=r.handoffs_failed > 0,
        ),
        Figure("missed during handoffs", str(r.handoffs_missed), bad=r.handoffs_missed > 0),
        Figure("pause p50 / max", pause),
        *_failover_figures(r),
        Figure("slots", str(r.slots)),
        *(
            (Figure("strategies", ", ".join(x.name for x in r.per_strategy)),)
            if len(r.per_strategy) > 1
            else ()
        ),
        Figure("gateway runs", str(r.runs)),
        Figure("ticks with no gateway", f"{r.not_scheduled:,}"),
    )


def _failover_figures(r: PresenceReport) -> tuple[Figure, ...]:
    """Failovers (docs/standby.md): how many took over with the dead instance's exact state
    and how many did not (diverged, unverified, empty, failed, nobody yet), what they missed,
    and how long the take-overs took."""
    exact = sum(1 for f in r.failovers if f.result == "completed" and f.state == "exact")
    other = len(r.failovers) - exact
    missed = sum(f.missed for f in r.failovers)
    takeovers = [f.takeover_ms for f in r.failovers if f.takeover_ms is not None]
    takeover = f"{statistics.median(takeovers):g} / {max(takeovers)} ms" if takeovers else "-"
    return (
        Figure("failovers exact / not", f"{exact} / {other}", bad=other > 0),
        Figure("missed in failovers", f"{missed:,}", bad=missed > 0),
        Figure("take-over p50 / max", takeover),
    )
