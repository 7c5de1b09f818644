"""The presence timeline's data: what ``baton presence --html`` draws, as plain values.

``baton.gateway.timeline`` reads it from a ledger (SQL aggregates, one snapshot);
``timeline_html`` draws it. Both sides meet here, so the drawing is tested on values built by
hand and the reading on real ledgers.

A cell is one slot over one span of time: one tick (its scheduled time to the next) while the
ledger is small enough to draw every tick, or one bucket of many ticks past that
(``choose_bucket_ms``). Either way it carries exact counts per outcome, so a bucket of 10,000
executed ticks and one timeout still shows (and says) the one timeout.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# Every tick gets its own mark while each slot has at most this many; past it, cells are
# buckets. About one mark per 2 px of a 1,100 px wide plot: narrower marks stop being readable.
MAX_TICK_MARKS = 600
# Buckets per slot row past that: a column of ~2 px each.
BUCKET_COLUMNS = 550
# Cells in all, whatever the slots: with many slots the columns get fewer (never under
# MIN_COLUMNS), so a ledger of 20,000 slots still reads into a page a browser opens.
MAX_CELLS = 200_000
MIN_COLUMNS = 10


class Kind(enum.Enum):
    """How a cell is coloured: the worst thing that happened in it."""

    EXECUTED = "executed"  # every scheduled evaluation answered and executed
    NOT_LIVE = "not_live"  # all executed, some on market data that were not live (report: stale)
    ERROR = "error"  # answered in time with an error (the strategy raised); nothing missed
    MISSED = "missed"  # at least one evaluation missed (timeout, no_active, ...)


@dataclass(frozen=True, slots=True)
class Cell:
    """One slot over ``[start_ms, end_ms)``: exact counts of what the ledger recorded there.

    ``missed`` is per reason (the ledger's outcome: ``timeout``, ``no_active``,
    ``gateway_late``, ``undelivered``), sorted by reason. ``stale``: answers that arrived but
    were dropped as ``late`` (past the deadline) or ``fenced`` (under an old epoch): drawn as a
    mark of their own on top of the cell. ``not_live``: of the executed, those answered on
    market data that were not live at dispatch (the report's ``stale`` evaluations).
    ``seq`` is the tick's seq when the cell is one tick.
    """

    slot_id: str
    start_ms: int
    end_ms: int
    executed: int = 0
    errors: int = 0
    missed: tuple[tuple[str, int], ...] = ()
    stale: int = 0
    seq: int | None = None
    not_live: int = 0

    @property
    def missed_total(self) -> int:
        return sum(n for _, n in self.missed)

    @property
    def scheduled(self) -> int:
        return self.executed + self.errors + self.missed_total

    @property
    def kind(self) -> Kind:
        if self.missed_total:
            return Kind.MISSED
        if self.errors:
            return Kind.ERROR
        if self.not_live:
            return Kind.NOT_LIVE
        return Kind.EXECUTED


@dataclass(frozen=True, slots=True)
class VersionBand:
    """The strategy version that was ACTIVE from ``start_ms`` to ``end_ms``."""

    version: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class HandoffSpan:
    """One handoff, numbered as in the text report's handoff table."""

    number: int
    handoff_id: str
    from_version: str
    to_version: str
    result: str  # completed / aborted / rolled_back
    started_ms: int
    flipped_ms: int | None
    finished_ms: int | None
    pause_ms: float | None
    missed: int


@dataclass(frozen=True, slots=True)
class FailoverSpan:
    """One failover (a strategy's ACTIVE died, another instance took over; docs/standby.md),
    numbered as in the text report's failover table. ``rows``: the timeline rows of its
    strategy in a book of several (its band covers those); None: every row (one strategy)."""

    number: int
    failover_id: str
    strategy: str
    mode: str  # the standby mode it ran under: hot / checkpoint / none
    from_instance: str
    to_instance: str
    from_version: str
    to_version: str
    died_ms: int
    took_over_ms: int | None  # None: nobody had taken over when the ledger was read
    missed: int
    state: str  # exact / diverged / unverified / empty / pending
    result: str  # completed / failed / running
    checkpoint_id: str = ""
    message: str = ""
    rows: tuple[str, ...] | None = None

    @property
    def takeover_ms(self) -> int | None:
        return None if self.took_over_ms is None else self.took_over_ms - self.died_ms

    @property
    def outcome(self) -> FailoverOutcome:
        """How it is coloured: failed (or nobody took over), else exact or not.

        >>> def span(state, result="completed", took=5):
        ...     return FailoverSpan(1, "f", "s", "", "", "", "", "", 0, took, 0, state, result)
        >>> [span(s).outcome.value for s in ("exact", "diverged", "unverified", "empty")]
        ['exact', 'inexact', 'inexact', 'inexact']
        >>> span("exact", "failed").outcome.value, span("pending", "running", None).outcome.value
        ('failed', 'failed')
        """
        if self.result == "failed" or self.took_over_ms is None:
            return FailoverOutcome.FAILED
        if self.state == "exact":
            return FailoverOutcome.EXACT
        return FailoverOutcome.INEXACT


class FailoverOutcome(enum.Enum):
    """How a failover is coloured: what its successor goes on with."""

    EXACT = "exact"  # taken over with the dead instance's state, verified
    INEXACT = "inexact"  # taken over, the state diverged, unverified, empty (or not checked yet)
    FAILED = "failed"  # the take-over failed, or nobody has taken over


@dataclass(frozen=True, slots=True)
class RunSpan:
    """One gateway process (a row of the ledger's ``runs``): started, first and last tick."""

    number: int
    started_ms: int
    first_ms: int | None
    last_ms: int | None
    cadence_ms: int
    # A replica's run (docs/gateway-standby.md): the term it led, and how the leadership came
    # to it ("handover", "failover"; "" for the first leader or a gateway without election).
    term: int | None = None
    change: str = ""
    change_missed: int = 0  # the evaluations that change missed (report_gateways.py)

    @property
    def label(self) -> str:
        """``gateway run 3`` or ``gateway run 3 · term 3 · failover``."""
        parts = [f"gateway run {self.number}"]
        if self.term is not None:
            parts.append(f"term {self.term}")
        if self.change:
            parts.append(self.change)
        return " · ".join(parts)


@dataclass(frozen=True, slots=True)
class Figure:
    """A headline number: ``bad`` ones (a miss, a failed handoff) are drawn in red."""

    label: str
    value: str
    bad: bool = False


@dataclass(frozen=True, slots=True)
class Timeline:
    title: str
    start_ms: int
    end_ms: int
    cadence_ms: int
    bucket_ms: int | None  # None: one cell per tick
    slots: tuple[str, ...]
    cells: tuple[Cell, ...]
    versions: tuple[VersionBand, ...]
    handoffs: tuple[HandoffSpan, ...]
    runs: tuple[RunSpan, ...]
    headline: tuple[Figure, ...]
    failovers: tuple[FailoverSpan, ...] = ()


def choose_bucket_ms(
    ticks_per_slot: int, span_ms: int, cadence_ms: int, slots: int = 1
) -> int | None:
    """None while every tick can have its own mark; else the bucket width: a whole number of
    cadences, so a bucket never splits a tick, and about ``BUCKET_COLUMNS`` of them (fewer
    when ``slots`` rows of that many would pass ``MAX_CELLS``).

    >>> choose_bucket_ms(600, 600_000, 1000) is None
    True
    >>> choose_bucket_ms(3600, 3_600_000, 1000)
    7000
    >>> choose_bucket_ms(600, 600_000, 1000, slots=20_000)
    60000
    """
    rows = max(slots, 1)
    if ticks_per_slot <= MAX_TICK_MARKS and ticks_per_slot * rows <= MAX_CELLS:
        return None
    columns = max(min(BUCKET_COLUMNS, MAX_CELLS // rows), MIN_COLUMNS)
    cadence = max(cadence_ms, 1)
    per_bucket = -(-span_ms // (columns * cadence))  # ceil
    return max(per_bucket, 2) * cadence


def version_bands(changes: list[tuple[int, str]], end_ms: int) -> tuple[VersionBand, ...]:
    """Bands from the ticks where the serving version changed (time order), the last one
    running to ``end_ms``.

    >>> [(b.version, b.start_ms, b.end_ms) for b in version_bands([(0, "v1"), (10, "v2")], 20)]
    [('v1', 0, 10), ('v2', 10, 20)]
    """
    bands = []
    for i, (start, version) in enumerate(changes):
        stop = changes[i + 1][0] if i + 1 < len(changes) else end_ms
        bands.append(VersionBand(version, start, stop))
    return tuple(bands)


def time_of_day(t_ms: int) -> str:
    """``HH:MM:SS`` (UTC) of a Unix time in ms; pure arithmetic (the core reads no clock).

    >>> time_of_day(1_700_000_000_000)
    '22:13:20'
    """
    s = (t_ms // 1000) % 86_400
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"
