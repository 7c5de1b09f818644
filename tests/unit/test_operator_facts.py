"""Kubernetes JSON to rollout facts and back: pods, status round trip, conditions' times."""

from __future__ import annotations

from typing import Any

import pytest

from baton.operator.core.facts import (
    format_time,
    parse_time,
    pod_facts,
    progress_from_status,
    sibling_from_object,
    status_from_progress,
)
from baton.operator.core.rollout import (
    HandoffFigures,
    Phase,
    PodFacts,
    Progress,
    StandbyFigures,
)
from baton.operator.core.spec import BookShape

NOW = 1_795_000_000.0


def test_time_round_trip() -> None:
    assert parse_time(format_time(NOW)) == NOW
    assert parse_time("2026-11-24T22:10:19.5Z") == parse_time("2026-11-24T22:10:19Z") + 0.5  # type: ignore[operator]
    assert parse_time("yesterday") is None
    assert parse_time(None) is None


def test_status_round_trip() -> None:
    p = Progress(
        phase=Phase.ACTIVE,
        message="ok",
        pod="p-1",
        instance_id="i-1",
        started_at=NOW - 3,
        handoff=HandoffFigures(
            handoff_id="h-1",
            phase="completed",
            pause_ms=2.5,
            transfer_ms=9.0,
            compared=16,
            divergences=3,
            state_bytes=10,
            from_version="1",
            epoch=4,
        ),
        request_id="sv-x",
        active=True,
        epoch=4,
    )
    status = status_from_progress(p, None, NOW, generation=1)
    assert progress_from_status(status) == p
    assert status["activeSince"] == format_time(NOW)
    assert "finishedAt" not in status


def test_standby_status_round_trip() -> None:
    """status.standby: written with a hot standby (or once a failover was counted), read back
    the same; absent otherwise, so a Checkpoint version's status is as before."""
    figures = StandbyFigures("Ready", "p-1-standby", "i-2", 2, NOW - 60, "p-1", 1)
    p = Progress(phase=Phase.ACTIVE, pod="p-1", instance_id="i-1", active=True, standby=figures)
    status = status_from_progress(p, None, NOW, generation=1)
    assert status["standby"] == {
        "state": "Ready",
        "pod": "p-1-standby",
        "instanceId": "i-2",
        "failovers": 2,
        "lastFailoverAt": format_time(NOW - 60),
        "lastFailoverFrom": "p-1",
        "divergences": 1,
    }
    assert progress_from_status(status) == p
    retired = Progress(phase=Phase.RETIRED, standby=StandbyFigures(failovers=1))
    assert status_from_progress(retired, None, NOW, 1)["standby"]["failovers"] == 1
    assert "standby" not in status_from_progress(Progress(phase=Phase.ACTIVE), None, NOW, 1)
    assert progress_from_status({"standby": "x"}).standby == StandbyFigures()


def test_condition_time_kept_until_it_changes() -> None:
    p = Progress(phase=Phase.STARTING, message="a")
    first = status_from_progress(p, None, NOW, 1)
    later = status_from_progress(Progress(phase=Phase.STARTING, message="b"), first, NOW + 60, 1)
    moved = status_from_progress(Progress(phase=Phase.FAILED, message="c"), later, NOW + 90, 1)

    def since(status: dict[str, Any], kind: str) -> str:
        return str(next(c["lastTransitionTime"] for c in status["conditions"] if c["type"] == kind))

    assert since(later, "Progressing") == format_time(NOW)
    assert since(moved, "Progressing") == format_time(NOW + 90)
    assert moved["finishedAt"] == format_time(NOW + 90)


def test_unknown_status_reads_as_new() -> None:
    assert progress_from_status({"phase": "Exploded", "epoch": "x"}) == Progress()
    assert progress_from_status(None) == Progress()


def _pod(status: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", **meta}, "status": status}


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        pytest.param(_pod({}), PodFacts("p"), id="new"),
        pytest.param(
            _pod(
                {
                    "phase": "Running",
                    "containerStatuses": [
                        {"ready": True, "restartCount": 0, "state": {"running": {}}}
                    ],
                }
            ),
            PodFacts("p", phase="Running", ready=True),
            id="running-ready",
        ),
        pytest.param(
            _pod(
                {
                    "phase": "Running",
                    "containerStatuses": [
                        {
                            "ready": False,
                            "restartCount": 3,
                            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                            "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}},
                        }
                    ],
                }
            ),
            PodFacts(
                "p",
                phase="Running",
                restarts=3,
                waiting_reason="CrashLoopBackOff",
                last_exit_code=2,
            ),
            id="crash-loop",
        ),
        pytest.param(
            _pod({"phase": "Failed", "reason": "UnsupportedImage", "message": "nope"}),
            PodFacts("p", phase="Failed", reason="UnsupportedImage", message="nope"),
            id="failed-by-runner",
        ),
        pytest.param(
            _pod({"phase": "Running"}, deletionTimestamp="2026-11-24T22:10:19Z"),
            PodFacts("p", phase="Running", terminating=True),
            id="terminating",
        ),
    ],
)
def test_pod_facts(pod: dict[str, Any], expected: PodFacts) -> None:
    assert pod_facts(pod) == expected


def test_sibling() -> None:
    s = sibling_from_object(
        {
            "metadata": {"name": "v3", "creationTimestamp": format_time(NOW)},
            "status": {"phase": "HandingOff", "instanceId": "i-3"},
        }
    )
    assert (s.name, s.created, s.phase, s.instance_id) == ("v3", NOW, Phase.HANDING_OFF, "i-3")


SV_SPEC = {
    "strategy": "reversion",
    "version": "v1",
    "image": "baton:dev",
    "entrypoint": "baton.strategy.examples.reversion_v1:ReversionV1",
}


@pytest.mark.parametrize(
    ("spec", "shape"),
    [
        pytest.param(SV_SPEC, BookShape(), id="none-chosen-all-slots-gateway-stake"),
        pytest.param(
            {**SV_SPEC, "slots": ["ETH/5m", "BTC/5m"], "stake": 2},
            BookShape(("ETH/5m", "BTC/5m"), 2.0),
            id="chosen",
        ),
        pytest.param({**SV_SPEC, "slots": ["eth/5m"]}, None, id="unreadable-slots"),
        pytest.param({**SV_SPEC, "image": None}, None, id="unreadable-spec"),
        pytest.param(None, None, id="no-spec"),
    ],
)
def test_a_siblings_shape(spec: dict[str, Any] | None, shape: BookShape | None) -> None:
    """What the rollout compares a new version's slots and stake with (None: nothing)."""
    obj = {"metadata": {"name": "rev-v1"}, "spec": spec, "status": {"phase": "Active"}}
    assert sibling_from_object(obj).shape == shape
