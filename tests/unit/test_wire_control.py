"""The control service's conversions (``baton.wire``): every field both ways, unmeasured figures
as None on the model side, and values a peer could send out of range refused by name."""

from __future__ import annotations

import pytest

from baton import wire
from baton.control import TERMINAL_PHASES, phase_name
from baton.gateway.core import handoff as hm
from baton.model import HandoffPhase, HandoffStatus, HandoffStep, InstanceStatus, Role
from baton.operator.core.rollout import figures_of
from baton.v1 import control_pb2 as ctl

FULL = HandoffStatus(
    handoff_id="h-1",
    strategy="momentum",
    from_instance="i-blue",
    to_instance="i-green",
    from_version="v1",
    to_version="v2",
    phase=HandoffPhase.ROLLED_BACK,
    message="green timed out",
    epoch_before=4,
    epoch_after=5,
    state_bytes=12_900,
    export_digest="sha256:a",
    import_digest="sha256:a",
    migrated_digest="sha256:b",
    pause_ms=3.25,
    missed=0,
    divergences=2,
    compared=16,
    steps=(HandoffStep("start", 10, "v1 -> v2"), HandoffStep("flip", 20)),
    started_ms=10,
    finished_ms=30,
    transfer_ms=9.0,
)
UNMEASURED = HandoffStatus(
    "h-2", "momentum", "i-blue", "i-green", "v1", "v2", HandoffPhase.ABORTED, started_ms=10
)


@pytest.mark.parametrize("status", [FULL, UNMEASURED], ids=["full", "unmeasured"])
def test_a_handoff_status_survives_the_wire(status: HandoffStatus) -> None:
    assert wire.handoff_status_from_proto(wire.handoff_status_to_proto(status)) == status


def test_unmeasured_figures_are_minus_one_on_the_wire() -> None:
    m = wire.handoff_status_to_proto(UNMEASURED)
    assert (m.pause_ms, m.transfer_ms, m.finished_ms) == (-1.0, -1.0, 0)


def test_every_phase_has_a_wire_number_and_back() -> None:
    for phase in HandoffPhase:
        number = wire.handoff_phase_to_proto(phase)
        assert wire.handoff_phase_from_proto(number) is phase
        assert phase_name(number) == phase.value  # what `baton handoff` prints
        assert (number in TERMINAL_PHASES) == phase.terminal


def test_an_unknown_phase_or_role_is_refused_by_name() -> None:
    with pytest.raises(wire.WireError, match=r"handoff\.phase"):
        wire.handoff_status_from_proto(ctl.HandoffStatus(phase=ctl.HANDOFF_PHASE_UNSPECIFIED))
    with pytest.raises(wire.WireError, match=r"instance\.role"):
        wire.instance_status_from_proto(ctl.InstanceStatus(role=99))  # type: ignore[arg-type]


def test_an_instance_status_survives_the_wire() -> None:
    i = InstanceStatus("i-1", "mom-v1-abc", "momentum", "v1", 2, Role.SHADOW, 1234)
    assert wire.instance_status_from_proto(wire.instance_status_to_proto(i)) == i


def test_the_gateways_status_is_what_the_operator_reads() -> None:
    t = hm.start(
        handoff_id="h-3",
        strategy="momentum",
        blue="i-blue",
        green="i-green",
        from_version="v1",
        to_version="v2",
        policy=hm.Policy(),
        epoch=4,
        now_ms=100,
    )
    sent = wire.handoff_status_to_proto(hm.status(t.handoff, missed=0))
    figures = figures_of(wire.handoff_status_from_proto(sent))
    assert (figures.handoff_id, figures.phase, figures.from_version, figures.epoch) == (
        "h-3",
        t.handoff.phase.value,
        "v1",
        4,
    )
    assert (figures.pause_ms, figures.transfer_ms) == (None, None)
