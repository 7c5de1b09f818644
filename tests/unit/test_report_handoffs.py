"""The handoff part of the presence report, over a ledger built with known handoffs and the
evaluations around them: every figure exact, in the report value, the JSON and the table."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from baton.gateway.core import handoff as hm
from baton.gateway.core.records import EvalOutcome, EvaluationRecord
from baton.gateway.ledger import _MIGRATIONS, Ledger
from baton.gateway.report import HandoffSummary, format_report, presence_report, report_to_json

T0 = 1_700_000_000_000
CADENCE = 1000
SLOTS = ("BTC/1m", "ETH/1m")
LATER = 7  # dispatch delay (ms) of every tick that is not the first one after a flip


def sched(tick: int) -> int:
    return T0 + tick * CADENCE


# Who served which ticks: (first tick, last tick, instance, version, epoch, outcome).
SERVED = [
    (1, 3, "i-v1a", "v1", 1, EvalOutcome.EXECUTED),
    (4, 9, "i-v2a", "v2", 2, EvalOutcome.EXECUTED),  # H1 flipped at 4
    (10, 10, "i-v1b", "v1", 3, EvalOutcome.TIMEOUT),  # H3's green: its only tick timed out
    (11, 14, "i-v2a", "v2", 4, EvalOutcome.EXECUTED),  # handed back to blue
    (15, 18, "i-v1c", "v1", 5, EvalOutcome.EXECUTED),  # H4 flipped at 15
    (19, 20, "i-v2b", "v2", 6, EvalOutcome.EXECUTED),  # H5 flipped at 19
]
# The dispatch delay (ms) of green's first tick at each flip (the ledger's pause).
FIRST_TICK_DELAY = {4: 2, 10: 3, 15: 4, 19: 0}


def evaluations() -> list[EvaluationRecord]:
    out = []
    for first, last, instance, version, epoch, outcome in SERVED:
        for tick in range(first, last + 1):
            delay = FIRST_TICK_DELAY.get(tick, LATER)
            for n, slot in enumerate(SLOTS):
                dispatched = sched(tick) + delay + n  # the second slot leaves 1 ms later
                out.append(
                    EvaluationRecord(
                        slot, tick, sched(tick), sched(tick + 1), outcome,
                        dispatched_ms=dispatched,
                        decided_ms=dispatched + 20 if outcome.answered else None,
                        instance_id=instance, version=version, epoch=epoch,
                        action="UP" if outcome.answered else None,
                    )
                )  # fmt: skip
    return out


@dataclass(frozen=True)
class Case:
    """One handoff as the gateway finished it, and what the report must say about it."""

    handoff: hm.Handoff
    missed: int
    expected: dict[str, object]


def handoff(
    handoff_id: str,
    blue: str,
    green: str,
    from_version: str,
    to_version: str,
    phase: hm.Phase,
    *,
    started: int,
    epoch: int,
    flip_tick: int | None,
    finished: int,
    pause_ms: float | None = None,
    state_bytes: int = 0,
    imported_ms: int | None = None,
    **more: Any,
) -> hm.Handoff:
    flipped = None if flip_tick is None else sched(flip_tick) + FIRST_TICK_DELAY[flip_tick]
    h = hm.Handoff(
        handoff_id=handoff_id, strategy="momentum", blue=blue, green=green,
        from_version=from_version, to_version=to_version, policy=hm.Policy(bake_ms=2000),
        phase=phase, started_ms=started, phase_since_ms=finished, epoch_before=epoch,
        epoch_after=epoch + 1 if flipped is not None else 0, state_bytes=state_bytes,
        export_requested_ms=started, imported_ms=imported_ms, flipped_ms=flipped,
        pause_ms=pause_ms, finished_ms=finished,
        steps=(hm.Step("start", started, f"{from_version} -> {to_version}"),),
    )  # fmt: skip
    return replace(h, **more)


CASES = [
    Case(  # the first version of a strategy: nothing to hand off from
        handoff(
            "h0",
            "",
            "i-v1a",
            "",
            "v1",
            hm.Phase.COMPLETED,
            started=sched(0),
            epoch=0,
            flip_tick=None,
            finished=sched(0),
            message="no ACTIVE instance: promoted directly",
        ),
        0,
        {"result": "completed", "pause_ms": None, "pause_ms_ledger": None, "transfer_ms": None},
    ),
    Case(
        handoff(
            "h1",
            "i-v1a",
            "i-v2a",
            "v1",
            "v2",
            hm.Phase.COMPLETED,
            started=sched(2) + 100,
            epoch=1,
            flip_tick=4,
            finished=sched(7),
            pause_ms=2.37,
            state_bytes=2048,
            imported_ms=sched(2) + 250,
            compared=4,
        ),
        0,
        {"result": "completed", "pause_ms": 2.37, "pause_ms_ledger": 2, "transfer_ms": 150},
    ),
    Case(  # before the flip: blue kept serving
        handoff(
            "h2",
            "i-v2a",
            "i-v1b",
            "v2",
            "v1",
            hm.Phase.ABORTED,
            started=sched(6) + 100,
            epoch=2,
            flip_tick=None,
            finished=sched(7) + 5,
            state_bytes=4096,
            message="green's import failed: boom",
        ),
        0,
        {"result": "aborted", "pause_ms": None, "pause_ms_ledger": None, "transfer_ms": None},
    ),
    Case(  # green's first tick timed out; blue took over again. Its pause counts in no figure.
        handoff(
            "h3",
            "i-v2a",
            "i-v1b",
            "v2",
            "v1",
            hm.Phase.ROLLED_BACK,
            started=sched(8) + 1,
            epoch=2,
            flip_tick=10,
            finished=sched(11),
            pause_ms=9.99,
            state_bytes=8192,
            imported_ms=sched(8) + 41,
            divergences=1,
            compared=2,
            bake_faults=2,
            divergence_examples=("BTC/1m#9: blue UP, green DOWN",),
            message="green failed inside the bake window: timeout at BTC/1m#10",
        ),
        2,
        {"result": "rolled_back", "pause_ms": 9.99, "pause_ms_ledger": 3, "transfer_ms": 40},
    ),
    Case(
        handoff(
            "h4",
            "i-v2a",
            "i-v1c",
            "v2",
            "v1",
            hm.Phase.COMPLETED,
            started=sched(13) + 1,
            epoch=4,
            flip_tick=15,
            finished=sched(17),
            pause_ms=4.5,
            state_bytes=8192,
            imported_ms=sched(13) + 36,
        ),
        0,
        {"result": "completed", "pause_ms": 4.5, "pause_ms_ledger": 4, "transfer_ms": 35},
    ),
    Case(
        handoff(
            "h5",
            "i-v1c",
            "i-v2b",
            "v1",
            "v2",
            hm.Phase.COMPLETED,
            started=sched(17) + 1,
            epoch=5,
            flip_tick=19,
            finished=sched(20) + 500,
            pause_ms=0.8,
            state_bytes=1536,
            imported_ms=sched(17) + 21,
        ),
        0,
        {"result": "completed", "pause_ms": 0.8, "pause_ms_ledger": 0, "transfer_ms": 20},
    ),
]


def build(path: Path) -> None:
    with Ledger(path) as led:
        led.record_run(started_ms=T0, cadence_ms=CADENCE, slots=SLOTS, config_json="{}")
        for record in evaluations():
            led.record_evaluation(record)
        # Recorded out of order, over two flushes: the report orders them by start.
        for case in reversed(CASES[3:]):
            led.record_handoff(case.handoff, missed=case.missed)
        led.flush()
        for case in CASES[:3]:
            led.record_handoff(case.handoff, missed=case.missed)


@pytest.fixture(scope="module")
def ledger_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "ledger.sqlite"
    build(path)
    return path


def test_handoffs_in_the_order_they_started(ledger_path: Path) -> None:
    r = presence_report(ledger_path)
    assert [h.handoff_id for h in r.handoffs] == ["h0", "h1", "h2", "h3", "h4", "h5"]
    assert all(isinstance(h, HandoffSummary) for h in r.handoffs)


@pytest.mark.parametrize("case", CASES, ids=[c.handoff.handoff_id for c in CASES])
def test_each_handoff_summary(ledger_path: Path, case: Case) -> None:
    h = case.handoff
    (summary,) = [s for s in presence_report(ledger_path).handoffs if s.handoff_id == h.handoff_id]
    assert {k: getattr(summary, k) for k in case.expected} == case.expected
    assert (summary.from_version, summary.to_version) == (h.from_version, h.to_version)
    assert (summary.blue, summary.green, summary.strategy) == (h.blue, h.green, "momentum")
    assert (summary.missed, summary.state_bytes) == (case.missed, h.state_bytes)
    assert (summary.divergences, summary.divergence_examples) == (
        h.divergences,
        h.divergence_examples,
    )
    assert (summary.started_ms, summary.flipped_ms, summary.finished_ms) == (
        h.started_ms,
        h.flipped_ms,
        h.finished_ms,
    )
    assert (summary.epoch_before, summary.epoch_after) == (h.epoch_before, h.epoch_after)
    assert (summary.message, summary.steps) == (h.message, h.steps)


def test_headline_figures(ledger_path: Path) -> None:
    r = presence_report(ledger_path)
    assert (r.handoffs_completed, r.handoffs_failed, r.handoffs_missed) == (4, 2, 2)
    # Over the completed handoffs with a pause (2.37, 4.5, 0.8): not h0 (none), not h3.
    assert (r.pause_ms_p50, r.pause_ms_max) == (2.37, 4.5)


def test_the_ledger_pause_measures_greens_first_tick_only(ledger_path: Path) -> None:
    # Every later tick was dispatched LATER ms after its schedule; the first ones were not.
    pauses = {h.handoff_id: h.pause_ms_ledger for h in presence_report(ledger_path).handoffs}
    assert pauses == {"h0": None, "h1": 2, "h2": None, "h3": 3, "h4": 4, "h5": 0}


def test_handoffs_change_no_other_figure(ledger_path: Path) -> None:
    r = presence_report(ledger_path)
    assert (r.scheduled, r.evaluated, r.missed) == (40, 38, 2)
    assert [(v.version, v.scheduled, v.missed) for v in r.per_version] == [
        ("v1", 16, 2),
        ("v2", 24, 0),
    ]


def test_no_handoffs(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    Ledger(path).close()
    r = presence_report(path)
    assert (r.handoffs, r.handoffs_completed, r.handoffs_failed) == ((), 0, 0)
    assert (r.pause_ms_p50, r.pause_ms_max) == (None, None)
    text = format_report(r)
    headline = "handoffs: 0  (completed 0, aborted 0, rolled_back 0, missed during them 0)"
    assert headline in text.splitlines()
    assert "\nhandoffs\n" not in text
    data = report_to_json(r)
    assert (data["handoffs"], data["pause_ms_p50"], data["pause_ms_max"]) == ([], None, None)


def test_a_schema_1_ledger_opened_read_only_reports_no_handoffs(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in _MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    conn.close()
    r = presence_report(path)
    assert (r.handoffs, r.handoffs_completed) == ((), 0)


# -- output -----------------------------------------------------------------------------------


def test_json_handoffs(ledger_path: Path) -> None:
    data = json.loads(json.dumps(report_to_json(presence_report(ledger_path))))
    assert {k: data[k] for k in ("handoffs_completed", "handoffs_failed", "handoffs_missed")} == {
        "handoffs_completed": 4,
        "handoffs_failed": 2,
        "handoffs_missed": 2,
    }
    assert (data["pause_ms_p50"], data["pause_ms_max"]) == (2.37, 4.5)
    handoffs = data["handoffs"]
    assert [h["handoff_id"] for h in handoffs] == ["h0", "h1", "h2", "h3", "h4", "h5"]
    h3 = handoffs[3]
    assert {
        k: h3[k]
        for k in (
            "from_version", "to_version", "result", "pause_ms", "pause_ms_ledger", "missed",
            "state_bytes", "transfer_ms", "divergences", "divergence_examples", "started_ms",
            "finished_ms", "message",
        )
    } == {
        "from_version": "v2", "to_version": "v1", "result": "rolled_back", "pause_ms": 9.99,
        "pause_ms_ledger": 3, "missed": 2, "state_bytes": 8192, "transfer_ms": 40,
        "divergences": 1, "divergence_examples": ["BTC/1m#9: blue UP, green DOWN"],
        "started_ms": sched(8) + 1, "finished_ms": sched(11),
        "message": "green failed inside the bake window: timeout at BTC/1m#10",
    }  # fmt: skip
    assert h3["steps"] == [{"name": "start", "t_ms": sched(8) + 1, "detail": "v2 -> v1"}]


def _section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(title) + 1
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return lines[start:end]


def test_the_human_report_has_handoff_headlines(ledger_path: Path) -> None:
    lines = format_report(presence_report(ledger_path)).splitlines()
    # Counted in the words of the table's result column: "failed" would name no row.
    assert "handoffs: 6  (completed 4, aborted 1, rolled_back 1, missed during them 2)" in lines
    assert "pause_ms: p50 2.37, max 4.50  (completed handoffs)" in lines
    assert "per version" in lines  # the per-deployment table stays


def test_the_human_handoff_table(ledger_path: Path) -> None:
    text = format_report(presence_report(ledger_path))
    table = _section(text, "handoffs")
    assert table[0].split() == [
        "#", "handoff", "result", "pause_ms", "ledger_ms", "missed", "state_kb", "transfer_ms",
        "compared", "divergences",
    ]  # fmt: skip
    assert [line.split() for line in table[1:]] == [
        ["1", "(none)", "->", "v1", "completed", "-", "-", "0", "0.0", "-", "0", "0"],
        ["2", "v1", "->", "v2", "completed", "2.37", "2", "0", "2.0", "150", "4", "0"],
        ["3", "v2", "->", "v1", "aborted", "-", "-", "0", "4.0", "-", "0", "0"],
        ["4", "v2", "->", "v1", "rolled_back", "9.99", "3", "2", "8.0", "40", "2", "1"],
        ["5", "v2", "->", "v1", "completed", "4.50", "4", "0", "8.0", "35", "0", "0"],
        ["6", "v1", "->", "v2", "completed", "0.80", "0", "0", "1.5", "20", "0", "0"],
    ]
    assert len({len(line) for line in table}) == 1  # figures right-aligned to one edge
    notes = text.splitlines()[text.splitlines().index(table[-1]) + 2 :]
    assert notes == [
        "  #1 completed: no ACTIVE instance: promoted directly",
        "  #3 aborted: green's import failed: boom",
        "  #4 rolled_back: green failed inside the bake window: timeout at BTC/1m#10",
    ]
