"""``baton presence``: through the command dispatcher, and once as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from baton.cli import main
from baton.gateway.core import handoff as hm
from baton.gateway.core.records import EvalOutcome, EvaluationRecord
from baton.gateway.ledger import Ledger

T0 = 1_700_000_000_000


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as led:
        led.record_run(started_ms=T0, cadence_ms=5000, slots=["BTC/5m"], config_json="{}")
        for seq in (1, 2, 3):
            led.record_evaluation(
                EvaluationRecord(
                    "BTC/5m", seq, T0 + seq * 5000, T0 + (seq + 1) * 5000, EvalOutcome.EXECUTED,
                    dispatched_ms=T0 + seq * 5000, decided_ms=T0 + seq * 5000 + 30,
                    instance_id="i1-blue", version="v1", epoch=1, action="HOLD",
                )
            )  # fmt: skip
        led.record_handoff(
            hm.Handoff(
                "h-1", "momentum", "i0-blue", "i1-blue", "v0", "v1", hm.Policy(),
                hm.Phase.COMPLETED, started_ms=T0 + 2000, phase_since_ms=T0 + 9000,
                epoch_before=0, epoch_after=1, state_bytes=3072, export_requested_ms=T0 + 2000,
                imported_ms=T0 + 2012, flipped_ms=T0 + 5001, pause_ms=1.25, finished_ms=T0 + 9000,
            ),
            missed=0,
        )  # fmt: skip
    return path


def test_prints_the_human_report(ledger_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presence", "--ledger", str(ledger_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:4] == ["slots: 1", "scheduled: 3", "evaluated: 3", "missed: 0"]


def test_prints_json(ledger_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presence", "--ledger", str(ledger_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {k: data[k] for k in ("slots", "scheduled", "evaluated", "missed", "max_gap_ms")} == {
        "slots": 1,
        "scheduled": 3,
        "evaluated": 3,
        "missed": 0,
        "max_gap_ms": 5000,
    }
    assert (data["bets"], data["settled"], data["win_rate"]) == (0, 0, None)
    (handoff,) = data["handoffs"]
    assert {k: handoff[k] for k in ("from_version", "to_version", "result", "missed")} == {
        "from_version": "v0",
        "to_version": "v1",
        "result": "completed",
        "missed": 0,
    }
    assert (handoff["pause_ms"], handoff["pause_ms_ledger"], handoff["state_bytes"]) == (
        1.25,
        0,  # the evaluation of seq 1 was dispatched on its schedule
        3072,
    )
    assert (data["handoffs_completed"], data["handoffs_failed"], data["pause_ms_max"]) == (
        1,
        0,
        1.25,
    )


def test_prints_the_handoffs_table(ledger_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presence", "--ledger", str(ledger_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    table = out[out.index("handoffs") + 1 :]
    assert table[1].split() == [
        "1",
        "v0",
        "->",
        "v1",
        "completed",
        "1.25",
        "0",
        "0",
        "3.0",
        "12",
        "0",  # compared
        "0",  # divergences
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), (b"\x00garbage" * 64, "not a readable ledger")],
    ids=["missing file", "not a database"],
)
def test_a_bad_ledger_is_one_line_on_stderr_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, message: str
) -> None:
    path = tmp_path / "ledger.sqlite"
    if content is not None:
        path.write_bytes(content)
    assert main(["presence", "--ledger", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("baton presence: ")
    assert message in captured.err


@pytest.mark.parametrize(
    ("argv", "code"),
    [([], 2), (["--ledger"], 2), (["--help"], 0)],
    ids=["no ledger option", "ledger without path", "help"],
)
def test_usage(argv: list[str], code: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presence", *argv]) == code
    captured = capsys.readouterr()
    assert "--ledger" in captured.out + captured.err


def test_the_installed_command(ledger_path: Path) -> None:
    baton = Path(sys.executable).parent / "baton"
    done = subprocess.run(
        [str(baton), "presence", "--ledger", str(ledger_path), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["scheduled"] == 3


# -- --html: the presence timeline -----------------------------------------------------------


def test_html_writes_the_timeline_and_prints_the_report(
    ledger_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "out" / "presence.html"
    page.parent.mkdir()
    assert main(["presence", "--ledger", str(ledger_path), "--json", "--html", str(page)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["scheduled"] == 3, "stdout stays the JSON report"
    assert captured.err == f"baton presence: timeline written to {page}\n"
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert text.count('class="cell executed"') == 3
    assert 'data-handoff-id="h-1"' in text


def test_html_to_a_path_that_cannot_be_written_is_exit_2(
    ledger_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "no-such-dir" / "presence.html"
    assert main(["presence", "--ledger", str(ledger_path), "--html", str(page)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"baton presence: cannot write {page}: ")
    assert err.count("\n") == 1


def test_a_large_ledger_is_drawn_in_buckets_with_exact_counts(tmp_path: Path) -> None:
    """Two gateway runs of 16 slots x 1,500 ticks with a restart between, one timeout, one
    error, one late answer: buckets, not 48,000 marks, and every count still exact."""
    from baton.gateway.core.timeline import BUCKET_COLUMNS, MAX_TICK_MARKS
    from baton.gateway.timeline import read_timeline

    path = tmp_path / "big.sqlite"
    slots = [f"S{i}/5m" for i in range(16)]
    ticks = 1500
    with Ledger(path) as led:
        seq = 0
        for run, start in enumerate((T0, T0 + (ticks + 100) * 1000)):
            led.record_run(started_ms=start, cadence_ms=1000, slots=slots, config_json="{}")
            for _ in range(ticks):
                seq += 1
                t = start + (seq - run * ticks) * 1000
                for slot in slots:
                    outcome = EvalOutcome.EXECUTED
                    if (slot, seq) == ("S3/5m", 700):
                        outcome = EvalOutcome.TIMEOUT
                    elif (slot, seq) == ("S9/5m", 2000):
                        outcome = EvalOutcome.ERROR
                    led.record_evaluation(
                        EvaluationRecord(slot, seq, t, t + 1000, outcome, version="v1", epoch=1)
                    )
            led.flush()
        led.record_dropped_decision(
            slot_id="S3/5m", seq=700, instance_id="i", epoch=1, received_ms=T0, action=None,
            reason="late",
        )  # fmt: skip
        led.flush()
    assert ticks * 2 > MAX_TICK_MARKS

    report, timeline = read_timeline(path)
    assert timeline.bucket_ms is not None
    assert len({c.start_ms for c in timeline.cells}) <= BUCKET_COLUMNS + 1
    assert sum(c.scheduled for c in timeline.cells) == report.scheduled == 2 * ticks * 16
    assert sum(c.executed for c in timeline.cells) == report.evaluated
    (missed,) = [c for c in timeline.cells if c.missed]
    assert (missed.slot_id, missed.missed, missed.stale) == ("S3/5m", (("timeout", 1),), 1)
    (errored,) = [c for c in timeline.cells if c.errors]
    assert errored.slot_id == "S9/5m"
    assert [(r.number, r.first_ms is not None) for r in timeline.runs] == [(1, True), (2, True)]

    page = tmp_path / "big.html"
    assert main(["presence", "--ledger", str(path), "--html", str(page)]) == 0
    text = page.read_text()
    assert text.count('class="cell missed"') == 1
    assert text.count('class="down"') == 1, "the restart's down time"
    assert len(text) < 3_000_000, f"{len(text)} bytes"


def test_a_late_answer_is_a_stale_mark_on_its_tick(ledger_path: Path, tmp_path: Path) -> None:
    """One mark per tick (a small ledger): an answer dropped as late is drawn on the tick it
    answered; shadow answers (normal during a handoff) are not."""
    with Ledger(ledger_path) as led:
        for seq, reason in ((2, "late"), (3, "shadow")):
            led.record_dropped_decision(
                slot_id="BTC/5m", seq=seq, instance_id="i1-blue", epoch=1,
                received_ms=T0 + (seq + 1) * 5000 + 10, action="HOLD", reason=reason,
            )  # fmt: skip
        led.flush()
    page = tmp_path / "p.html"
    assert main(["presence", "--ledger", str(ledger_path), "--html", str(page)]) == 0
    text = page.read_text()
    from baton.gateway.core.timeline import time_of_day

    assert text.count('<circle class="stale"') == 1
    assert f"BTC/5m {time_of_day(T0 + 2 * 5000)}: 1 stale answer(s) dropped" in text
