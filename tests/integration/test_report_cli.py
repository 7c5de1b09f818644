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
