"""What ``baton handoff`` and ``baton demo`` print about a handoff: a step with no detail is its
name alone, and a figure the gateway did not measure reads ``-``, never a sentinel number."""

from __future__ import annotations

import pytest

from baton.control import step_line, summary_line
from baton.control.cli import _standby_words
from baton.v1 import control_pb2 as ctl


def status(**fields: object) -> ctl.HandoffStatus:
    base: dict[str, object] = {
        "handoff_id": "h-1",
        "from_version": "v1",
        "to_version": "v2",
        "phase": ctl.HANDOFF_PHASE_COMPLETED,
        "pause_ms": 3.2151,
        "transfer_ms": 9.0,
        "state_bytes": 13_210,
        "shadow_compared": 16,
    }
    base.update(fields)
    return ctl.HandoffStatus(**base)  # type: ignore[arg-type]


def steps(*pairs: tuple[str, str]) -> list[ctl.HandoffStep]:
    return [ctl.HandoffStep(name=name, t_ms=1, detail=detail) for name, detail in pairs]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param(
            status(phase=ctl.HANDOFF_PHASE_IMPORTING, steps=steps(("import", "4096 bytes"))),
            "h-1 importing    import: 4096 bytes",
            id="step-with-detail",
        ),
        pytest.param(
            status(phase=ctl.HANDOFF_PHASE_EXPORTING, steps=steps(("export sent", ""))),
            "h-1 exporting    export sent",
            id="step-without-detail-has-no-colon",
        ),
        pytest.param(
            status(steps=steps(("drain", "blue i1"), ("completed", ""))),
            "h-1 completed    completed",
            id="terminal-step-without-message",
        ),
        pytest.param(
            status(phase=ctl.HANDOFF_PHASE_EXPORTING),
            "h-1 exporting",
            id="no-step-yet",
        ),
    ],
)
def test_step_line(given: ctl.HandoffStatus, expected: str) -> None:
    assert step_line(given) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param(
            status(),
            "completed: v1 -> v2, pause 3.22 ms, compared 16 (0 diverged), missed 0, state 12.9 kB",
            id="completed",
        ),
        pytest.param(
            status(
                phase=ctl.HANDOFF_PHASE_ABORTED,
                pause_ms=-1.0,
                shadow_compared=0,
                message="green's import failed: StateMigrationError: boom",
            ),
            "aborted: v1 -> v2, pause -, compared 0 (0 diverged), missed 0, state 12.9 kB "
            "(green's import failed: StateMigrationError: boom)",
            id="aborted-has-no-pause",
        ),
        pytest.param(
            status(phase=ctl.HANDOFF_PHASE_ROLLED_BACK, divergences=3, missed=1),
            "rolled_back: v1 -> v2, pause 3.22 ms, compared 16 (3 diverged), missed 1, "
            "state 12.9 kB",
            id="rolled-back",
        ),
        pytest.param(
            status(from_version="", pause_ms=-1.0, shadow_compared=0, state_bytes=0),
            "completed: (none) -> v2, pause -, compared 0 (0 diverged), missed 0, state 0.0 kB",
            id="first-version-promoted-directly",
        ),
    ],
)
def test_summary_line(given: ctl.HandoffStatus, expected: str) -> None:
    assert summary_line(given) == expected
    assert "-1" not in summary_line(given)


@pytest.mark.parametrize(
    ("standby", "words"),
    [
        pytest.param(ctl.StandbyStatus(), "", id="an-older-gateway-says-nothing"),
        pytest.param(
            ctl.StandbyStatus(mode="hot"), ", standby hot, no standby yet", id="hot-alone"
        ),
        pytest.param(
            ctl.StandbyStatus(
                mode="hot",
                standby_instance_id="i2-pod",
                standby_phase="following",
                last_checkpoint_id="ckpt-1",
                last_checkpoint_bytes=2150,
                failovers=3,
            ),
            ", standby hot, i2-pod following, checkpoint 2.1 KB, 3 failovers",
            id="hot-following",
        ),
        pytest.param(
            ctl.StandbyStatus(mode="checkpoint", recovering_into="i4-pod", divergences=1),
            ", standby checkpoint, recovering into i4-pod, 1 divergence",
            id="checkpoint-recovering",
        ),
    ],
)
def test_the_instances_line_says_how_a_strategys_state_is_kept(
    standby: ctl.StandbyStatus, words: str
) -> None:
    assert _standby_words(standby) == words
