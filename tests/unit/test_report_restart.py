"""The report of a ledger written by two gateway runs with down time between them: the ticks
that fell while no gateway ran are ``not_scheduled`` (neither scheduled nor missed), a seq
hole left by a crash is ``unaccounted``, and the two are never counted twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.gateway.core.records import EvalOutcome, EvaluationRecord
from baton.gateway.ledger import Ledger
from baton.gateway.report import format_report, presence_report, report_to_json

T0 = 1_700_000_000_000
CADENCE = 1000


def write_run(ledger: Ledger, slot_ticks: list[tuple[int, int]]) -> None:
    """A gateway run evaluating (seq, tick time index) in both slots."""
    ledger.record_run(started_ms=T0, cadence_ms=CADENCE, slots=["A", "B"], config_json="{}")
    for seq, k in slot_ticks:
        for slot in ("A", "B"):
            at = T0 + k * CADENCE
            ledger.record_evaluation(
                EvaluationRecord(
                    slot, seq, at, at + CADENCE, EvalOutcome.EXECUTED,
                    dispatched_ms=at, decided_ms=at + 3, version="v1", epoch=1,
                )
            )  # fmt: skip
    ledger.flush()


@pytest.mark.parametrize(
    ("second_run", "not_scheduled", "unaccounted"),
    [
        ([(4, 4), (5, 5)], 0, 0),  # no down time: one run continued by the next
        ([(4, 9), (5, 10)], 5, 0),  # a clean restart: ticks 4..8 fell while down
        ([(5, 9), (6, 10)], 4, 1),  # a crash: seq 4 was in flight (a hole), then down time
    ],
    ids=["seamless", "restart", "crash"],
)
def test_down_time_between_runs(
    tmp_path: Path, second_run: list[tuple[int, int]], not_scheduled: int, unaccounted: int
) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    write_run(ledger, [(1, 1), (2, 2), (3, 3)])
    write_run(ledger, second_run)
    ledger.close()
    r = presence_report(path)
    assert r.runs == 2
    assert (r.not_scheduled, r.unaccounted) == (not_scheduled * 2, unaccounted * 2)
    assert (r.scheduled, r.missed) == (10, 0)
    assert report_to_json(r)["not_scheduled"] == not_scheduled * 2
    assert (
        f"not_scheduled: {not_scheduled * 2}  (ticks while no gateway ran, between its 2 runs)"
        in (format_report(r).splitlines())
    )
