"""The benchmark's figures: per-swap records, per-scenario summaries, the table. Pure: no I/O,
no clock; the harness measures, this module adds up and formats."""

from __future__ import annotations

import bisect
import enum
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


class Scenario(enum.Enum):
    """How the new version replaces the running one."""

    BATON = "baton handoff"  # state exported, imported, shadowed, flipped between two ticks
    STOP_RESTART = "stop-and-restart"  # SIGTERM the old process, then start the new one (cold)
    ROLLING = "rolling, no state"  # start the new one, flip to it, no state transfer (cold)

    @property
    def carries_state(self) -> bool:
        return self is Scenario.BATON


@dataclass(frozen=True, slots=True)
class Swap:
    """One version swap, as measured.

    ``missed_ledger`` counts the ledger's missed evaluations scheduled from this swap's start to
    the next swap's start (so the swaps of a scenario partition its timeline);
    ``missed_status`` is what the gateway counted while the handoff ran (None without a
    handoff). ``cold_decisions``: executed answers in the same interval that the strategy made
    on an empty state ("warming up"). ``state_bytes_lost``: bytes of blue's warm state that
    the new instance did not get.
    """

    index: int
    from_version: str
    to_version: str
    result: str  # completed / aborted / rolled_back for handoffs; "restarted" otherwise
    started_ms: int  # bench wall clock: green spawn (handoffs) or SIGTERM (stop-and-restart)
    missed_ledger: int
    cold_decisions: int
    state_bytes_carried: int
    state_bytes_lost: int
    cycle_ms: float  # the whole swap as the operator sees it, process start included
    missed_status: int | None = None
    pause_ms: float | None = None
    pause_ms_ledger: int | None = None
    transfer_ms: float | None = None
    handoff_ms: int | None = None  # Promote -> terminal phase, as the gateway recorded it
    outage_ms: float | None = None  # stop-and-restart: SIGTERM -> new process attached
    divergences: int = 0
    digest_ok: bool | None = None
    missed_by_reason: dict[str, int] = field(default_factory=dict)
    # The handoff's steps as the gateway recorded them: (name, ms since Promote, detail).
    steps: tuple[tuple[str, int, str], ...] = ()
    # Cores used by processes outside the benchmark during the swap (a shared machine).
    foreign_cpu_cores: float | None = None


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    workload: str
    scenario: Scenario
    slots: int
    cadence_s: float
    swaps: tuple[Swap, ...]
    scheduled: int  # every evaluation in this scenario's ledger
    evaluated: int
    missed: int  # presence_report(ledger).missed: the cross-check of the per-swap sums
    missed_by_reason: dict[str, int]
    missed_before_first_swap: int
    unaccounted: int
    wall_s: float
    foreign_cpu_cores: float | None = None  # over the whole scenario


@dataclass(frozen=True, slots=True)
class LedgerTick:
    """The evaluations of one tick with one outcome, as counted in the ledger."""

    deadline_ms: int
    outcome: str
    count: int
    cold: int  # executed answers made on an empty state ("warming up ...")


@dataclass(frozen=True, slots=True)
class Interval:
    """What the ledger resolved between two swap starts."""

    missed: int = 0
    cold: int = 0
    missed_by_reason: dict[str, int] = field(default_factory=dict)


def bucket(
    rows: Sequence[LedgerTick], starts: Sequence[int], missed_outcomes: frozenset[str]
) -> tuple[Interval, list[Interval]]:
    """Split the ledger's ticks by swap: swap ``i`` owns the ticks whose deadline falls in
    ``[starts[i], starts[i + 1])`` (the last one, everything after its start). Returns what came
    before the first swap, and one interval per swap. ``starts`` must be ascending.

    By deadline, not schedule: the tick in flight when a swap starts (dispatched to the old
    instance, not answered yet) is the first one a stop-and-restart can lose.

    >>> rows = [LedgerTick(5, "executed", 16, 0), LedgerTick(12, "no_active", 16, 0),
    ...         LedgerTick(13, "executed", 16, 16), LedgerTick(30, "timeout", 2, 0)]
    >>> before, swaps = bucket(rows, [10, 20], frozenset({"no_active", "timeout"}))
    >>> before.missed, [(s.missed, s.cold) for s in swaps]
    (0, [(16, 16), (2, 0)])
    """
    before: dict[str, int] = {}
    per: list[dict[str, int]] = [{} for _ in starts]
    cold = [0] * len(starts)
    for row in rows:
        i = bisect.bisect_right(starts, row.deadline_ms) - 1
        counts = before if i < 0 else per[i]
        if row.outcome in missed_outcomes:
            counts[row.outcome] = counts.get(row.outcome, 0) + row.count
        if i >= 0:
            cold[i] += row.cold

    def interval(counts: dict[str, int], cold_n: int) -> Interval:
        return Interval(sum(counts.values()), cold_n, dict(sorted(counts.items())))

    return interval(before, 0), [interval(c, n) for c, n in zip(per, cold, strict=True)]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks (numpy's
    default); None for no values.

    >>> percentile([1, 2, 3, 4], 50)
    2.5
    >>> percentile([5.0], 99)
    5.0
    >>> percentile(list(range(1, 101)), 99)
    99.01
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(rank), math.ceil(rank)
    value = ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)
    return round(value, 6)


@dataclass(frozen=True, slots=True)
class Summary:
    """One row of the table."""

    workload: str
    scenario: str
    slots: int
    cadence_s: float
    swaps: int
    failed: int
    missed_total: int  # summed over the swaps, from the ledger
    missed_per_swap: float
    missed_report: int  # the whole scenario's ledger (presence report): the cross-check
    missed_before_first_swap: int
    # missed_total + missed_before_first_swap == missed_report: the swaps account for every
    # missed evaluation of the run.
    ledger_consistent: bool
    missed_status: int | None  # the gateway's own count while its handoffs ran
    state_carried: bool
    state_bytes_p50: int  # carried (Baton) or lost (baselines) per swap
    cold_decisions_per_swap: float
    pause_ms_p50: float | None
    pause_ms_p99: float | None
    pause_ms_max: float | None
    transfer_ms_p50: float | None
    transfer_ms_p99: float | None
    handoff_ms_p50: float | None
    cycle_ms_p50: float | None
    outage_ms_p50: float | None
    foreign_cpu_cores: float | None  # over the whole scenario
    foreign_cpu_cores_max: float | None  # the busiest swap


def summarize(r: ScenarioResult) -> Summary:
    swaps = r.swaps
    n = len(swaps)
    pauses = [s.pause_ms for s in swaps if s.pause_ms is not None]
    transfers = [s.transfer_ms for s in swaps if s.transfer_ms is not None]
    statuses = [s.missed_status for s in swaps if s.missed_status is not None]
    carried = r.scenario.carries_state
    # Carried: over the handoffs that moved state; lost: over the swaps that happened.
    sizes = [s.state_bytes_carried if carried else s.state_bytes_lost for s in swaps]
    sizes = [x for x in sizes if x] or [0]
    missed_total = sum(s.missed_ledger for s in swaps)
    handoff = [float(s.handoff_ms) for s in swaps if s.handoff_ms is not None]
    outages = [s.outage_ms for s in swaps if s.outage_ms is not None]
    foreign = [s.foreign_cpu_cores for s in swaps if s.foreign_cpu_cores is not None]
    size_p50 = percentile([float(x) for x in sizes], 50)
    return Summary(
        workload=r.workload,
        scenario=r.scenario.value,
        slots=r.slots,
        cadence_s=r.cadence_s,
        swaps=n,
        failed=sum(1 for s in swaps if s.result not in ("completed", "restarted")),
        missed_total=missed_total,
        missed_per_swap=missed_total / n if n else 0.0,
        missed_report=r.missed,
        missed_before_first_swap=r.missed_before_first_swap,
        ledger_consistent=missed_total + r.missed_before_first_swap == r.missed,
        missed_status=sum(statuses) if statuses else None,
        state_carried=carried,
        state_bytes_p50=round(size_p50) if size_p50 is not None else 0,
        cold_decisions_per_swap=sum(s.cold_decisions for s in swaps) / n if n else 0.0,
        pause_ms_p50=percentile(pauses, 50),
        pause_ms_p99=percentile(pauses, 99),
        pause_ms_max=max(pauses) if pauses else None,
        transfer_ms_p50=percentile(transfers, 50),
        transfer_ms_p99=percentile(transfers, 99),
        handoff_ms_p50=percentile(handoff, 50),
        cycle_ms_p50=percentile([s.cycle_ms for s in swaps], 50),
        outage_ms_p50=percentile(outages, 50),
        foreign_cpu_cores=r.foreign_cpu_cores,
        foreign_cpu_cores_max=max(foreign, default=None),
    )


def ratio(value: float, reference: float) -> str:
    """``value`` against ``reference`` as a readable factor.

    >>> ratio(40.0, 0.0), ratio(0.0, 0.0), ratio(30.0, 10.0)
    ('inf (Baton: 0)', '1x (both 0)', '3.0x')
    """
    if reference == 0:
        return "1x (both 0)" if value == 0 else "inf (Baton: 0)"
    return f"{value / reference:.1f}x"


def comparisons(summaries: Sequence[Summary]) -> list[dict[str, Any]]:
    """Each baseline against Baton's handoff on the same workload."""
    out: list[dict[str, Any]] = []
    baton = {s.workload: s for s in summaries if s.scenario == Scenario.BATON.value}
    for s in summaries:
        ref = baton.get(s.workload)
        if ref is None or s is ref:
            continue
        out.append(
            {
                "workload": s.workload,
                "baseline": s.scenario,
                "missed_per_swap": s.missed_per_swap,
                "baton_missed_per_swap": ref.missed_per_swap,
                "missed_per_swap_vs_baton": ratio(s.missed_per_swap, ref.missed_per_swap),
                "state_bytes_lost_per_swap": s.state_bytes_p50,
                "baton_state_bytes_lost_per_swap": 0,
                "cold_decisions_per_swap": s.cold_decisions_per_swap,
                "baton_cold_decisions_per_swap": ref.cold_decisions_per_swap,
            }
        )
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _cores(whole: float | None, worst: float | None) -> str:
    if whole is None:
        return "-"
    return f"{whole:.2f} ({worst:.2f})" if worst is not None else f"{whole:.2f}"


def _bytes(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} MB"
    if n >= 1_000:
        return f"{n / 1e3:.1f} kB"
    return f"{n} B"


TABLE_HEADERS = (
    "workload",
    "scenario",
    "swaps",
    "failed",
    "missed",
    "missed/swap",
    "state carried",
    "state lost/swap",
    "cold dec./swap",
    "pause p50 ms",
    "pause p99 ms",
    "pause max ms",
    "transfer p50 ms",
    "transfer p99 ms",
    "outage p50 ms",
    "handoff p50 s",
    "swap wall p50 s",
    "other CPU (max)",
    "ledger check",
)


def table_rows(summaries: Sequence[Summary]) -> list[list[str]]:
    rows = []
    for s in summaries:
        size = _bytes(s.state_bytes_p50)
        rows.append(
            [
                f"{s.workload} ({s.slots} slots, {s.cadence_s:g} s)",
                s.scenario,
                str(s.swaps),
                str(s.failed),
                str(s.missed_total),
                f"{s.missed_per_swap:.1f}",
                f"yes, {size}" if s.state_carried else "no",
                "0" if s.state_carried else size,
                f"{s.cold_decisions_per_swap:.1f}",
                _ms(s.pause_ms_p50),
                _ms(s.pause_ms_p99),
                _ms(s.pause_ms_max),
                _ms(s.transfer_ms_p50),
                _ms(s.transfer_ms_p99),
                _ms(s.outage_ms_p50),
                "-" if s.handoff_ms_p50 is None else f"{s.handoff_ms_p50 / 1000:.1f}",
                "-" if s.cycle_ms_p50 is None else f"{s.cycle_ms_p50 / 1000:.1f}",
                _cores(s.foreign_cpu_cores, s.foreign_cpu_cores_max),
                "ok" if s.ledger_consistent else f"MISMATCH ({s.missed_report})",
            ]
        )
    return rows


def format_table(summaries: Sequence[Summary], *, markdown: bool = False) -> str:
    """The summaries as an aligned text table (or a Markdown one)."""
    rows = table_rows(summaries)
    headers = list(TABLE_HEADERS)
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def to_json(value: Summary | Swap) -> dict[str, Any]:
    return asdict(value)


def scenario_to_json(r: ScenarioResult) -> dict[str, Any]:
    out = asdict(r)
    out["scenario"] = r.scenario.value
    out["summary"] = asdict(summarize(r))
    return out
