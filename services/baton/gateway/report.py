"""The presence report: did the bot ever stop evaluating? Read from a ledger file.

Read-only, from one consistent snapshot, so it can run against the ledger of a live gateway.
Every figure is an SQL aggregate over indexed columns: the report stays fast on a ledger of
millions of evaluations.

Definitions:

- ``scheduled``: evaluations recorded (one per scheduled slot and tick, G1);
- ``evaluated``: executed (the ACTIVE instance answered in time under the current epoch);
- ``stale``: of the evaluated, those answered on market data that were not live when the
  evaluation was dispatched (no live candle, backfill unfinished, or the stream's last update
  older than ``gateway.stale_after_ms``), broken down in ``stale_by_reason``. They stay in
  ``evaluated`` (they were answered); ``evaluated - stale`` were real evaluations of the live
  market. Rows of ledgers older than schema 3 read as fresh;
- ``errors``: the ACTIVE instance answered in time with an error;
- ``missed``: no valid answer (``MISSED_OUTCOMES``: timeout, no active, gateway late,
  undelivered), broken down in ``missed_by_reason``;
- ``unaccounted``: holes in a slot's seq numbers, i.e. scheduled evaluations with no record
  at all (0 unless the ledger lost rows, e.g. a gateway crash before a flush);
- ``max_gap_ms``: the longest time between two consecutive answered evaluations of one slot,
  measured on their ``decided_ms`` (a gateway outage or a failed handoff shows up here).
- ``not_scheduled``: ticks that fell while no gateway clock ran, i.e. between two gateway
  runs (a restart, a crash): per slot, the cadences in the time between two consecutive
  evaluations beyond those their seqs account for (seq holes are ``unaccounted`` already).
  Nobody was there to schedule them, so they are neither ``scheduled`` nor ``missed``: the
  down time is reported as such, next to the number of gateway runs.

A gateway serves a book of strategies (docs/gateway.md#a-book-of-strategies): each evaluation
belongs to one strategy, and every figure above is the sum over them (a slot evaluated by two
strategies is scheduled twice a tick). ``per_strategy`` has the same figures for each one, and
its bets, settlements and PnL; ``per_version`` is per (strategy, version). Ledgers older than
schema 4 served one strategy: their rows are that one's.

Handoffs (one ``HandoffSummary`` each, in the order they started):

- ``result``: completed, aborted (failed before the flip; blue kept serving) or rolled_back
  (green failed inside the bake window; blue took over again). ``handoffs_failed`` counts the
  last two;
- ``missed``: evaluations missed while the handoff ran, as the gateway counted them;
- ``pause_ms``: the cutover pause as the gateway measured it (sub-millisecond): how late green's
  first tick was dispatched against its schedule. ``pause_ms_p50``/``pause_ms_max`` are over the
  completed handoffs that have one (the median, and the largest);
- ``pause_ms_ledger``: the same pause measured independently from the evaluations, a
  cross-check at millisecond resolution: the earliest tick dispatched to green under the
  flip's epoch, ``min(dispatched_ms) - scheduled_ms``. None when green never got a tick.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from baton.gateway.core.handoff import Phase, Step
from baton.gateway.core.records import MISSED_OUTCOMES, EvalOutcome, Staleness
from baton.gateway.ledger import (
    HandoffRow,
    open_readonly,
    read_book,
    read_failovers,
    read_handoffs,
    stale_column,
    strategy_column,
)
from baton.gateway.report_gateways import (
    HANDOVER,
    GatewayChange,
    change_table,
    change_to_json,
    gateway_changes,
)

_EXECUTED = EvalOutcome.EXECUTED.value
_ERROR = EvalOutcome.ERROR.value
_MISSED = tuple(sorted(o.value for o in MISSED_OUTCOMES))
# Outcomes of an evaluation that was dispatched to an instance (it has a dispatched_ms).
_DISPATCHED = (_EXECUTED, _ERROR, EvalOutcome.TIMEOUT.value, EvalOutcome.UNDELIVERED.value)


@dataclass(frozen=True, slots=True)
class SlotCoverage:
    slot_id: str
    scheduled: int
    evaluated: int
    missed: int
    errors: int
    max_gap_ms: int
    unaccounted: int = 0
    stale: int = 0


@dataclass(frozen=True, slots=True)
class StrategyRow:
    """One strategy of the book: its presence (as for the whole ledger), its bets and PnL."""

    name: str
    slots: int
    scheduled: int
    evaluated: int
    missed: int
    errors: int
    stale: int
    unaccounted: int
    max_gap_ms: int
    bets: int
    settled: int
    wins: int
    pnl: float
    stake: float | None  # as its instances asked (None: the venue's default, or a pre-book ledger)
    retired_ms: int | None = None  # taken out of the book then (RetireStrategy)


@dataclass(frozen=True, slots=True)
class VersionRow:
    """One deployment (strategy version): the evaluations dispatched to it while it was ACTIVE.
    Evaluations missed with no ACTIVE instance at all have version ``""``."""

    version: str
    scheduled: int
    evaluated: int
    missed: int
    errors: int
    bets: int
    first_ms: int | None
    last_ms: int | None
    stale: int = 0
    strategy: str = ""


@dataclass(frozen=True, slots=True)
class HandoffSummary:
    """One finished handoff (see the module docstring for the figures)."""

    handoff_id: str
    strategy: str
    blue: str
    green: str
    from_version: str
    to_version: str
    result: str  # a terminal Phase value: completed / aborted / rolled_back
    pause_ms: float | None
    pause_ms_ledger: int | None
    missed: int
    state_bytes: int
    transfer_ms: int | None
    compared: int
    divergences: int
    divergence_examples: tuple[str, ...]
    bake_faults: int
    epoch_before: int
    epoch_after: int
    export_digest: str
    import_digest: str
    migrated_digest: str
    started_ms: int
    flipped_ms: int | None
    finished_ms: int | None
    message: str
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class FailoverSummary:
    """A take-over after a strategy's ACTIVE died (docs/standby.md). ``missed``: the strategy's
    evaluations missed that were due after the death and scheduled before the take-over (the
    dark ticks, and what the dead instance owed that its successor did not answer in time)."""

    failover_id: str
    strategy: str
    mode: str  # the standby mode it ran under: hot / checkpoint / none
    from_instance: str
    to_instance: str
    from_version: str
    to_version: str
    died_ms: int
    took_over_ms: int | None
    takeover_ms: int | None
    missed: int
    state: str  # exact / diverged / unverified / empty / pending
    result: str  # completed / failed / running
    checkpoint_id: str
    message: str


@dataclass(frozen=True, slots=True)
class PresenceReport:
    slots: int
    scheduled: int
    evaluated: int
    missed: int
    errors: int
    missed_by_reason: dict[str, int]
    max_gap_ms: int
    cadence_ms: int
    bets: int
    settled: int
    wins: int
    losses: int
    win_rate: float | None
    pnl: float
    dropped_decisions: int
    candles: int
    per_slot: tuple[SlotCoverage, ...]
    per_version: tuple[VersionRow, ...]
    first_scheduled_ms: int | None
    last_scheduled_ms: int | None
    unaccounted: int = 0
    runs: int = 0
    not_scheduled: int = 0
    handoffs: tuple[HandoffSummary, ...] = ()
    handoffs_completed: int = 0
    handoffs_failed: int = 0
    handoffs_missed: int = 0
    pause_ms_p50: float | None = None
    pause_ms_max: float | None = None
    stale: int = 0
    stale_by_reason: dict[str, int] = field(default_factory=dict)
    pricing: str | None = None  # the model(s) that priced the bets, by run: "random_walk"
    per_strategy: tuple[StrategyRow, ...] = ()
    failovers: tuple[FailoverSummary, ...] = ()
    # Gateway leadership changes (docs/gateway-standby.md; report_gateways.py).
    gateway_handovers: tuple[GatewayChange, ...] = ()
    gateway_failovers: tuple[GatewayChange, ...] = ()


def presence_report(path: str | Path) -> PresenceReport:
    """The report of the ledger at ``path``. Raises ``LedgerOpenError`` if it is not one."""
    conn = open_readonly(path)
    try:
        conn.execute("BEGIN")  # one snapshot for every query: the figures add up
        try:
            return report_from(conn)
        finally:
            conn.execute("COMMIT")
    finally:
        conn.close()


def report_from(conn: sqlite3.Connection) -> PresenceReport:
    """The report of an open ledger, inside the caller's transaction (the timeline reads the
    report and its own rows from one snapshot)."""
    runs = conn.execute("SELECT cadence_ms, slots FROM runs ORDER BY id").fetchall()
    pricing = _pricing(row[0] for row in conn.execute("SELECT config FROM runs ORDER BY id"))
    cells = _cells(conn)
    per_slot = _per_slot(cells, configured=_configured_slots(s for _, s in runs))
    per_strategy = _per_strategy(conn, cells)
    stale_by_version, stale_by_reason = _stale(conn)
    per_version, missed_by_reason = _per_version(conn, stale_by_version)
    settled, wins, pnl = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(won), 0), COALESCE(SUM(pnl), 0.0) FROM settlements"
    ).fetchone()
    firsts = [v.first_ms for v in per_version if v.first_ms is not None]
    lasts = [v.last_ms for v in per_version if v.last_ms is not None]
    max_cadence = max((cadence for cadence, _ in runs), default=None)
    handoffs = tuple(_handoff_summary(conn, row, max_cadence) for row in read_handoffs(conn))
    completed = [h for h in handoffs if h.result == Phase.COMPLETED.value]
    pauses = [h.pause_ms for h in completed if h.pause_ms is not None]
    changes = gateway_changes(conn)
    return PresenceReport(
        slots=len(per_slot),
        scheduled=sum(s.scheduled for s in per_slot),
        evaluated=sum(s.evaluated for s in per_slot),
        missed=sum(s.missed for s in per_slot),
        errors=sum(s.errors for s in per_slot),
        missed_by_reason=missed_by_reason,
        max_gap_ms=max((s.max_gap_ms for s in per_slot), default=0),
        cadence_ms=runs[-1][0] if runs else 0,
        bets=_count(conn, "bets"),
        settled=settled,
        wins=wins,
        losses=settled - wins,
        win_rate=wins / settled if settled else None,
        pnl=float(pnl),
        dropped_decisions=_count(conn, "dropped_decisions"),
        candles=_count(conn, "candles"),
        per_slot=per_slot,
        per_version=per_version,
        first_scheduled_ms=min(firsts, default=None),
        last_scheduled_ms=max(lasts, default=None),
        unaccounted=sum(s.unaccounted for s in per_slot),
        runs=len(runs),
        not_scheduled=_not_scheduled(conn),
        handoffs=handoffs,
        handoffs_completed=len(completed),
        handoffs_failed=len(handoffs) - len(completed),
        handoffs_missed=sum(h.missed for h in handoffs),
        pause_ms_p50=statistics.median(pauses) if pauses else None,
        pause_ms_max=max(pauses, default=None),
        stale=sum(s.stale for s in per_slot),
        stale_by_reason=stale_by_reason,
        pricing=pricing,
        per_strategy=per_strategy,
        failovers=_failovers(conn),
        gateway_handovers=tuple(c for c in changes if c.kind == HANDOVER),
        gateway_failovers=tuple(c for c in changes if c.kind != HANDOVER),
    )


def _failovers(conn: sqlite3.Connection) -> tuple[FailoverSummary, ...]:
    strategy = strategy_column(conn)
    missed = "', '".join(o.value for o in MISSED_OUTCOMES)
    out = []
    for row in read_failovers(conn):
        end = row.took_over_ms if row.took_over_ms is not None else 2**62
        (n,) = conn.execute(
            f"""SELECT COUNT(*) FROM evaluations WHERE {strategy} = ? AND outcome IN ('{missed}')
                AND deadline_ms > ? AND scheduled_ms <= ?""",
            (row.strategy, row.died_ms, end),
        ).fetchone()
        out.append(
            FailoverSummary(
                failover_id=row.failover_id,
                strategy=row.strategy,
                mode=row.mode,
                from_instance=row.dead,
                to_instance=row.to_instance,
                from_version=row.dead_version,
                to_version=row.to_version,
                died_ms=row.died_ms,
                took_over_ms=row.took_over_ms,
                takeover_ms=None if row.took_over_ms is None else row.took_over_ms - row.died_ms,
                missed=int(n),
                state=row.state,
                result=row.result,
                checkpoint_id=row.checkpoint_id,
                message=row.message,
            )
        )
    return tuple(out)


def _pricing(configs: Iterable[str]) -> str | None:
    """The pricing models of the runs, in run order, each once (``venue.pricing`` in the
    run's recorded config). Runs recorded before the setting existed priced flat."""
    names: dict[str, None] = {}
    for text in configs:
        try:
            venue = json.loads(text).get("venue", {})
        except (ValueError, AttributeError):
            venue = {}
        names[str(venue.get("pricing", "flat")) if isinstance(venue, dict) else "flat"] = None
    return ", ".join(names) or None


def _handoff_summary(
    conn: sqlite3.Connection, row: HandoffRow, max_cadence: int | None
) -> HandoffSummary:
    h = row.handoff
    return HandoffSummary(
        handoff_id=h.handoff_id,
        strategy=h.strategy,
        blue=h.blue,
        green=h.green,
        from_version=h.from_version,
        to_version=h.to_version,
        result=h.phase.value,
        pause_ms=h.pause_ms,
        pause_ms_ledger=_ledger_pause(conn, row, max_cadence),
        missed=row.missed,
        state_bytes=h.state_bytes,
        transfer_ms=h.transfer_ms,
        compared=h.compared,
        divergences=h.divergences,
        divergence_examples=h.divergence_examples,
        bake_faults=h.bake_faults,
        epoch_before=h.epoch_before,
        epoch_after=h.epoch_after,
        export_digest=h.export_digest,
        import_digest=h.import_digest,
        migrated_digest=h.migrated_digest,
        started_ms=h.started_ms,
        flipped_ms=h.flipped_ms,
        finished_ms=h.finished_ms,
        message=h.message,
        steps=h.steps,
    )


def _ledger_pause(conn: sqlite3.Connection, row: HandoffRow, max_cadence: int | None) -> int | None:
    """Green's cutover pause from the evaluations alone: its first tick under the flip's epoch,
    ``min(dispatched_ms) - scheduled_ms``.

    Any dispatched outcome counts, not only executed ones: the pause is about when green's
    first tick left the gateway; an answer that then timed out is a missed evaluation (counted
    apart), and skipping it would measure a later tick than the gateway did.
    """
    h = row.handoff
    if h.flipped_ms is None or not h.green:
        return None
    # Bounds that let the scan use evaluations_version (version, outcome, scheduled_ms), so it
    # reads a tick or two instead of every row of a version that served many times: the first
    # tick dispatched after the flip is past its schedule but before its deadline (one cadence
    # later), and it was dispatched before the handoff ended.
    where = [
        "version = ?",
        f"outcome IN ({', '.join('?' * len(_DISPATCHED))})",
        "instance_id = ?",
        "epoch = ?",
        "dispatched_ms IS NOT NULL",
    ]
    params: list[object] = [h.to_version, *_DISPATCHED, h.green, h.epoch_after]
    if max_cadence is not None:
        where.append("scheduled_ms > ?")
        params.append(h.flipped_ms - max_cadence)
    if h.finished_ms is not None:
        where.append("scheduled_ms <= ?")
        params.append(h.finished_ms)
    found = conn.execute(
        "SELECT scheduled_ms, MIN(dispatched_ms) FROM evaluations "
        f"WHERE {' AND '.join(where)} GROUP BY scheduled_ms ORDER BY scheduled_ms LIMIT 1",
        params,
    ).fetchone()
    if found is None:
        return None
    scheduled_ms, dispatched_ms = found
    return int(dispatched_ms - scheduled_ms)


def _configured_slots(slot_lists: Iterable[str]) -> list[str]:
    """Slots of every run, the latest run's order first: a configured slot with no evaluation
    at all still gets a (zero) row."""
    lists = [json.loads(s) for s in slot_lists]
    ordered: dict[str, None] = {}
    for slots in reversed(lists):
        ordered.update(dict.fromkeys(slots))
    return list(ordered)


def _cells(conn: sqlite3.Connection) -> dict[tuple[str, str], SlotCoverage]:
    """Coverage per (strategy, slot): seqs, gaps and holes are one strategy's evaluations of
    one slot (two strategies evaluate the same (slot, seq) once each)."""
    strategy = strategy_column(conn)
    counts = conn.execute(
        f"SELECT {strategy}, slot_id, COUNT(*), SUM(outcome = ?), SUM(outcome = ?), MIN(seq), "
        f"MAX(seq), SUM(outcome = ? AND {stale_column(conn)} != '') "
        f"FROM evaluations GROUP BY {strategy}, slot_id",
        (_EXECUTED, _ERROR, _EXECUTED),
    ).fetchall()
    # A sort of the answered rows: a per-slot index would cost the writer one page per slot
    # and tick (see the ledger schema); the report runs rarely, the writer every tick.
    gaps = {
        (row[0], row[1]): row[2]
        for row in conn.execute(
            "SELECT strategy, slot_id, MAX(gap) FROM ("
            f"  SELECT {strategy} AS strategy, slot_id, decided_ms - LAG(decided_ms) OVER ("
            f"    PARTITION BY {strategy}, slot_id ORDER BY seq) AS gap"
            "  FROM evaluations WHERE outcome IN (?, ?)"
            ") GROUP BY strategy, slot_id",
            (_EXECUTED, _ERROR),
        )
    }
    cells = {}
    for name, slot_id, scheduled, evaluated, errors, lo, hi, stale in counts:
        cells[(name, slot_id)] = SlotCoverage(
            slot_id=slot_id,
            scheduled=scheduled,
            evaluated=evaluated,
            missed=scheduled - evaluated - errors,
            errors=errors,
            max_gap_ms=gaps.get((name, slot_id)) or 0,
            unaccounted=hi - lo + 1 - scheduled,
            stale=stale or 0,
        )
    return cells


def _sum(slot_id: str, cells: Iterable[SlotCoverage]) -> SlotCoverage:
    cells = list(cells)
    return SlotCoverage(
        slot_id=slot_id,
        scheduled=sum(c.scheduled for c in cells),
        evaluated=sum(c.evaluated for c in cells),
        missed=sum(c.missed for c in cells),
        errors=sum(c.errors for c in cells),
        max_gap_ms=max((c.max_gap_ms for c in cells), default=0),
        unaccounted=sum(c.unaccounted for c in cells),
        stale=sum(c.stale for c in cells),
    )


def _per_slot(
    cells: dict[tuple[str, str], SlotCoverage], configured: list[str]
) -> tuple[SlotCoverage, ...]:
    by_slot: dict[str, list[SlotCoverage]] = {}
    for (_, slot_id), cell in cells.items():
        by_slot.setdefault(slot_id, []).append(cell)
    order = configured + sorted(set(by_slot) - set(configured))
    return tuple(_sum(slot_id, by_slot.get(slot_id, ())) for slot_id in order)


def _per_strategy(
    conn: sqlite3.Connection, cells: dict[tuple[str, str], SlotCoverage]
) -> tuple[StrategyRow, ...]:
    """One row per strategy: in the book's order, then any other the rows name."""
    book = {row.name: row for row in read_book(conn, retired=True)}
    by_name: dict[str, list[SlotCoverage]] = {}
    for (name, _), cell in cells.items():
        by_name.setdefault(name, []).append(cell)
    bet_strategy = strategy_column(conn, "bets")
    bets = dict(conn.execute(f"SELECT {bet_strategy}, COUNT(*) FROM bets GROUP BY 1").fetchall())
    settled = {
        row[0]: row[1:]
        for row in conn.execute(
            # (settlements has no strategy column: the bet's, whichever form it takes)
            f"SELECT {bet_strategy}, COUNT(*), "
            "COALESCE(SUM(s.won), 0), COALESCE(SUM(s.pnl), 0.0) "
            "FROM settlements s JOIN bets b ON b.bet_id = s.bet_id GROUP BY 1"
        )
    }
    names = list(book) + sorted(set(by_name) - set(book))
    rows = []
    for name in names:
        total = _sum("", by_name.get(name, ()))
        n_settled, wins, pnl = settled.get(name, (0, 0, 0.0))
        entry = book.get(name)
        rows.append(
            StrategyRow(
                name=name,
                slots=len(by_name.get(name, ())),
                scheduled=total.scheduled,
                evaluated=total.evaluated,
                missed=total.missed,
                errors=total.errors,
                stale=total.stale,
                unaccounted=total.unaccounted,
                max_gap_ms=total.max_gap_ms,
                bets=bets.get(name, 0),
                settled=n_settled,
                wins=wins,
                pnl=float(pnl),
                stake=None if entry is None else entry.stake,
                retired_ms=None if entry is None else entry.retired_ms,
            )
        )
    return tuple(rows)


def _not_scheduled(conn: sqlite3.Connection) -> int:
    """Ticks no gateway scheduled (see the module docstring). A row's cadence is its deadline
    minus its schedule, so runs with different cadences count right."""
    (n,) = conn.execute(
        "SELECT COALESCE(SUM((scheduled_ms - prev_ms) / (deadline_ms - scheduled_ms)"
        "  - (seq - prev_seq)), 0) FROM ("
        "  SELECT seq, scheduled_ms, deadline_ms,"
        "    LAG(seq) OVER w AS prev_seq, LAG(scheduled_ms) OVER w AS prev_ms"
        f"  FROM evaluations WINDOW w AS (PARTITION BY {strategy_column(conn)}, slot_id "
        "ORDER BY seq)"
        ") WHERE prev_ms IS NOT NULL"
        "  AND (scheduled_ms - prev_ms) / (deadline_ms - scheduled_ms) > seq - prev_seq"
    ).fetchone()
    return int(n)


def _stale(
    conn: sqlite3.Connection,
) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """Stale evaluated evaluations per (strategy, version) and by reason (the partial index
    evaluations_stale holds only stale rows)."""
    per_version: dict[tuple[str, str], int] = {}
    by_reason = {s.value: 0 for s in Staleness if s.stale}
    if stale_column(conn) != "stale":
        return per_version, by_reason
    strategy = strategy_column(conn)
    for name, version, why, n in conn.execute(
        f"SELECT {strategy}, version, stale, COUNT(*) FROM evaluations "
        f"WHERE stale != '' AND outcome = ? GROUP BY {strategy}, version, stale",
        (_EXECUTED,),
    ):
        key = (name, version)
        per_version[key] = per_version.get(key, 0) + n
        by_reason[why] = by_reason.get(why, 0) + n
    return per_version, by_reason


def _per_version(
    conn: sqlite3.Connection, stale: dict[tuple[str, str], int]
) -> tuple[tuple[VersionRow, ...], dict[str, int]]:
    """Rows per deployment (strategy, version), and the missed evaluations by reason (from the
    same scan of the covering index evaluations_version (strategy, version, outcome,
    scheduled_ms))."""
    strategy = strategy_column(conn)
    bet_strategy = strategy_column(conn, "bets")
    bets = {
        (row[0], row[1]): row[2]
        for row in conn.execute(
            f"SELECT {bet_strategy}, version, COUNT(*) FROM bets GROUP BY 1, 2"
        ).fetchall()
    }
    by_version: dict[tuple[str, str], dict[str, int]] = {}
    span: dict[tuple[str, str], tuple[int, int]] = {}
    missed_by_reason = dict.fromkeys(_MISSED, 0)
    for name, version, outcome, n, first, last in conn.execute(
        f"SELECT {strategy}, version, outcome, COUNT(*), MIN(scheduled_ms), MAX(scheduled_ms) "
        f"FROM evaluations GROUP BY {strategy}, version, outcome"
    ):
        key = (name, version)
        by_version.setdefault(key, {})[outcome] = n
        lo, hi = span.get(key, (first, last))
        span[key] = (min(lo, first), max(hi, last))
        if outcome in missed_by_reason:
            missed_by_reason[outcome] += n
    rows = []
    for key, counts in by_version.items():
        scheduled = sum(counts.values())
        evaluated, errors = counts.get(_EXECUTED, 0), counts.get(_ERROR, 0)
        rows.append(
            VersionRow(
                version=key[1],
                scheduled=scheduled,
                evaluated=evaluated,
                missed=scheduled - evaluated - errors,
                errors=errors,
                bets=bets.get(key, 0),
                first_ms=span[key][0],
                last_ms=span[key][1],
                stale=stale.get(key, 0),
                strategy=key[0],
            )
        )
    # Deployments in the order they served; the unattributed rows (no ACTIVE instance) last.
    rows.sort(key=lambda v: (v.version == "", v.first_ms or 0, v.strategy, v.version))
    return tuple(rows), missed_by_reason


def _count(conn: sqlite3.Connection, table: str) -> int:
    (n,) = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    return int(n)


# -- output -------------------------------------------------------------------------------------


def report_to_json(r: PresenceReport) -> dict[str, object]:
    """The report as one JSON object. Headline figures first, then the tables. New sections
    (e.g. handoffs) are added here as new keys; existing keys never change meaning."""
    out: dict[str, object] = {
        "slots": r.slots,
        "scheduled": r.scheduled,
        "evaluated": r.evaluated,
        "missed": r.missed,
        "errors": r.errors,
        "stale": r.stale,
        "stale_by_reason": dict(r.stale_by_reason),
        "unaccounted": r.unaccounted,
        "missed_by_reason": dict(r.missed_by_reason),
        "max_gap_ms": r.max_gap_ms,
        "cadence_ms": r.cadence_ms,
        "bets": r.bets,
        "settled": r.settled,
        "wins": r.wins,
        "losses": r.losses,
        "win_rate": r.win_rate,
        "pnl": r.pnl,
        "pricing": r.pricing,
        "dropped_decisions": r.dropped_decisions,
        "candles": r.candles,
        "runs": r.runs,
        "not_scheduled": r.not_scheduled,
        "first_scheduled_ms": r.first_scheduled_ms,
        "last_scheduled_ms": r.last_scheduled_ms,
        "handoffs_completed": r.handoffs_completed,
        "handoffs_failed": r.handoffs_failed,
        "handoffs_missed": r.handoffs_missed,
        "pause_ms_p50": r.pause_ms_p50,
        "pause_ms_max": r.pause_ms_max,
        "per_slot": [asdict(s) for s in r.per_slot],
        "per_version": [asdict(v) for v in r.per_version],
        "per_strategy": [asdict(x) for x in r.per_strategy],
        "handoffs": [_handoff_to_json(h) for h in r.handoffs],
        "failovers": [asdict(f) for f in r.failovers],
        "gateway_handovers": [change_to_json(c) for c in r.gateway_handovers],
        "gateway_failovers": [change_to_json(c) for c in r.gateway_failovers],
    }
    return out


def _handoff_to_json(h: HandoffSummary) -> dict[str, object]:
    out = asdict(h)  # steps become {"name", "t_ms", "detail"} objects
    out["divergence_examples"] = list(h.divergence_examples)
    out["steps"] = [asdict(s) for s in h.steps]
    return out


def _iso(t_ms: int | None) -> str:
    if t_ms is None:
        return "-"
    return datetime.fromtimestamp(t_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _table(headers: list[str], rows: list[list[str]], *, left: int = 1) -> list[str]:
    """Columns aligned; the first ``left`` left-aligned (names), the rest right-aligned
    (figures)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        aligned = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(aligned).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def format_report(r: PresenceReport) -> str:
    """A human table. The first lines are the headline figures as ``name: value``."""
    win_rate = "-" if r.win_rate is None else f"{r.win_rate:.1%}"
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(r.missed_by_reason.items()) if v)
    stale_reasons = ", ".join(f"{k}={v}" for k, v in sorted(r.stale_by_reason.items()) if v)
    lines = [
        f"slots: {r.slots}",
        f"scheduled: {r.scheduled}",
        f"evaluated: {r.evaluated}",
        f"missed: {r.missed}" + (f"  ({reasons})" if reasons else ""),
        f"errors: {r.errors}",
        f"stale: {r.stale}  (evaluated on data that were not live"
        + (f": {stale_reasons})" if stale_reasons else ")"),
        f"unaccounted: {r.unaccounted}",
        f"max_gap_ms: {r.max_gap_ms}  (cadence {r.cadence_ms} ms)",
        f"not_scheduled: {r.not_scheduled}  (ticks while no gateway ran, between its "
        f"{r.runs} run{'s' if r.runs != 1 else ''})",
        f"bets: {r.bets}",
        f"settled: {r.settled}  (won {r.wins}, lost {r.losses})",
        f"win_rate: {win_rate}",
        f"pnl: {r.pnl:+.2f}",
        f"pricing: {r.pricing or '-'}",
        f"dropped_decisions: {r.dropped_decisions}",
        f"candles: {r.candles}",
        f"handoffs: {len(r.handoffs)}  ({_results(r.handoffs)}, "
        f"missed during them {r.handoffs_missed})",
        f"pause_ms: p50 {_ms(r.pause_ms_p50)}, max {_ms(r.pause_ms_max)}  (completed handoffs)",
        f"period: {_iso(r.first_scheduled_ms)} .. {_iso(r.last_scheduled_ms)} UTC"
        f"  ({r.runs} gateway run{'s' if r.runs != 1 else ''})",
    ]
    if r.per_slot:
        lines += ["", "per slot"]
        lines += _table(
            [
                "slot",
                "scheduled",
                "evaluated",
                "stale",
                "missed",
                "errors",
                "unaccounted",
                "max_gap_ms",
            ],
            [
                [s.slot_id]
                + [str(n) for n in (s.scheduled, s.evaluated, s.stale, s.missed, s.errors)]
                + [str(s.unaccounted), str(s.max_gap_ms)]
                for s in r.per_slot
            ],
        )
    if len(r.per_strategy) > 1:
        lines += ["", "per strategy"]
        lines += _table(
            [
                *("strategy", "slots", "scheduled", "evaluated", "stale", "missed", "errors"),
                *("bets", "settled", "won", "pnl"),
            ],
            [
                [x.name or "(unnamed)"]
                + [str(n) for n in (x.slots, x.scheduled, x.evaluated, x.stale, x.missed)]
                + [str(n) for n in (x.errors, x.bets, x.settled, x.wins)]
                + [f"{x.pnl:+.2f}"]
                for x in r.per_strategy
            ],
        )
    if r.per_version:
        lines += ["", "per version"]
        lines += _table(
            [
                "version",
                "scheduled",
                "evaluated",
                "stale",
                "missed",
                "errors",
                "bets",
                "first",
                "last",
            ],
            [
                [v.version or "(no active)"]
                + [str(n) for n in (v.scheduled, v.evaluated, v.stale, v.missed, v.errors, v.bets)]
                + [_iso(v.first_ms), _iso(v.last_ms)]
                for v in r.per_version
            ],
        )
    if r.handoffs:
        lines += ["", "handoffs"]
        lines += _handoff_table(r.handoffs)
    if r.failovers:
        lines += ["", "failovers (an ACTIVE died; docs/standby.md)"]
        lines += _failover_table(r.failovers)
    changes = sorted((*r.gateway_handovers, *r.gateway_failovers), key=lambda c: c.to_run)
    if changes:
        lines += ["", "gateway leadership changes (docs/gateway-standby.md)"]
        headers = ["#", "change", "replicas", "term", "pause_ms", "missed", "result"]
        lines += _table(headers, [list(row) for row in change_table(tuple(changes))], left=3)
    return "\n".join(lines)


def _failover_table(failovers: tuple[FailoverSummary, ...]) -> list[str]:
    rows = [
        [
            str(n),
            f.strategy,
            f.mode,
            f"{f.from_instance} -> {f.to_instance or '(nobody)'}",
            f.result,
            "-" if f.takeover_ms is None else str(f.takeover_ms),
            str(f.missed),
            f.state,
        ]
        for n, f in enumerate(failovers, 1)
    ]
    headers = ["#", "strategy", "mode", "failover", "result", "takeover_ms", "missed", "state"]
    lines = _table(headers, rows, left=5)
    notes = [f"  #{n} {f.result}: {f.message}" for n, f in enumerate(failovers, 1) if f.message]
    return lines + (["", *notes] if notes else [])


def _results(handoffs: tuple[HandoffSummary, ...]) -> str:
    """``completed 2, aborted 1, rolled_back 0``: counted per result, in the words the
    handoff table's ``result`` column uses (a ``failed`` here would name no row below)."""
    terminal = (Phase.COMPLETED, Phase.ABORTED, Phase.ROLLED_BACK)
    return ", ".join(
        f"{p.value} {sum(1 for h in handoffs if h.result == p.value)}" for p in terminal
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _handoff_table(handoffs: tuple[HandoffSummary, ...]) -> list[str]:
    """One row per handoff, numbered; then why each one that says so ended as it did (messages
    are sentences: they would make the table unreadable)."""
    rows = [
        [
            str(n),
            f"{h.from_version or '(none)'} -> {h.to_version}",
            h.result,
            _ms(h.pause_ms),
            "-" if h.pause_ms_ledger is None else str(h.pause_ms_ledger),
            str(h.missed),
            f"{h.state_bytes / 1024:.1f}",
            "-" if h.transfer_ms is None else str(h.transfer_ms),
            str(h.compared),
            str(h.divergences),
        ]
        for n, h in enumerate(handoffs, 1)
    ]
    headers = [
        "#", "handoff", "result", "pause_ms", "ledger_ms", "missed", "state_kb", "transfer_ms",
        "compared", "divergences",
    ]  # fmt: skip
    lines = _table(headers, rows, left=3)
    notes = [f"  #{n} {h.result}: {h.message}" for n, h in enumerate(handoffs, 1) if h.message]
    return lines + (["", *notes] if notes else [])
