"""Kubernetes JSON to rollout facts and back: pods, status round trip, conditions' times."""

from __future__ import annotations

from typing import Any

import pytest

from baton.operator.core.facts import (
    BookEntry,
    Standing,
    format_time,
    parse_time,
    pod_facts,
    progress_from_status,
    sibling_from_object,
    standing_of,
    status_from_progress,
)
from baton.operator.core.rollout import HandoffFigures, Phase, PodFacts, Progress
from baton.operator.observe import book_of
from baton.v1 import control_pb2 as ctl

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
    ("spec", "slots"),
    [
        pytest.param(SV_SPEC, (), id="none-chosen-all-slots"),
        pytest.param({**SV_SPEC, "slots": ["ETH/5m", "BTC/5m"]}, ("ETH/5m", "BTC/5m"), id="chosen"),
        pytest.param({**SV_SPEC, "slots": ["eth/5m"]}, None, id="unreadable-slots"),
        pytest.param({**SV_SPEC, "image": None}, None, id="unreadable-spec"),
        pytest.param(None, None, id="no-spec"),
    ],
)
def test_a_siblings_slots(spec: dict[str, Any] | None, slots: tuple[str, ...] | None) -> None:
    """What the rollout compares a new version's slots with (None: nothing to compare)."""
    obj = {"metadata": {"name": "rev-v1"}, "spec": spec, "status": {"phase": "Active"}}
    assert sibling_from_object(obj).slots == slots


# -- the gateway's book: each strategy's own epoch and ACTIVE instance ------------------------

MOMENTUM = ctl.StrategyStatus(name="momentum", epoch=4, active_instance_id="i-mom")
REVERSION = ctl.StrategyStatus(name="reversion", epoch=1, active_instance_id="i-rev")


def one(*strategies: ctl.StrategyStatus) -> ctl.ListInstancesResponse:
    """A listing with the top level set, as a gateway serving exactly one strategy sends it."""
    return ctl.ListInstancesResponse(epoch=4, active_instance_id="i-mom", strategies=strategies)


@pytest.mark.parametrize(
    ("listing", "strategy", "expected"),
    [
        pytest.param(
            one(), "momentum", Standing(4, "i-mom"),
            id="older-gateway-no-book-reads-the-top-level",
        ),
        pytest.param(
            one(MOMENTUM), "momentum",
            Standing(4, "i-mom"), id="one-strategy-its-entry",
        ),
        pytest.param(
            ctl.ListInstancesResponse(strategies=[MOMENTUM, REVERSION]), "reversion",
            Standing(1, "i-rev"), id="two-strategies-the-second",
        ),
        pytest.param(
            ctl.ListInstancesResponse(strategies=[MOMENTUM, REVERSION]), "momentum",
            Standing(4, "i-mom"), id="two-strategies-the-first",
        ),
        pytest.param(
            one(MOMENTUM), "reversion", Standing(),
            id="first-version-of-a-new-strategy-not-the-others-top-level",
        ),
        pytest.param(
            ctl.ListInstancesResponse(
                strategies=[MOMENTUM, ctl.StrategyStatus(name="reversion", epoch=2)]
            ),
            "reversion", Standing(2, ""), id="its-entry-with-nobody-active",
        ),
        pytest.param(
            ctl.ListInstancesResponse(strategies=[MOMENTUM]), None, Standing(),
            id="unreadable-spec-no-strategy",
        ),
        pytest.param(ctl.ListInstancesResponse(), "momentum", Standing(), id="empty-gateway"),
    ],
)  # fmt: skip
def test_a_strategy_reads_its_own_standing(
    listing: ctl.ListInstancesResponse, strategy: str | None, expected: Standing
) -> None:
    """From the gateway's ListInstances answer as it comes off the wire (observe.book_of), to
    the epoch and ACTIVE instance the rollout machine gets (standing_of)."""
    got = standing_of(
        strategy,
        book_of(listing),
        epoch=listing.epoch,
        active_instance=listing.active_instance_id,
    )
    assert got == expected


def test_book_entries_keep_the_gateways_order_and_fields() -> None:
    listing = ctl.ListInstancesResponse(strategies=[REVERSION, MOMENTUM])
    assert book_of(listing) == (
        BookEntry("reversion", 1, "i-rev"),
        BookEntry("momentum", 4, "i-mom"),
    )
