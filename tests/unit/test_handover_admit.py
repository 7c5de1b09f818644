"""Whether a replica takes a ``ControlService.Handover`` request (gateway/core/handover.py)."""

from __future__ import annotations

import pytest

from baton.gateway.core.handover import NOT_A_REPLICA, Refusal, admit
from baton.gateway.core.replica import Phase


@pytest.mark.parametrize(
    ("phase", "under_way", "refusal", "words"),
    [
        pytest.param(Phase.LEADING, False, None, "", id="leader-hands-over"),
        pytest.param(Phase.LEADING, True, Refusal.UNDER_WAY, "already under way", id="asked-twice"),
        pytest.param(Phase.FOLLOWING, False, Refusal.NOT_LEADING, "not the leader", id="follower"),
        pytest.param(Phase.STARTING, False, Refusal.STARTING, "still starting", id="starting"),
        pytest.param(Phase.STOPPING, False, Refusal.STOPPING, "already stopping", id="sigtermed"),
        pytest.param(Phase.STOPPING, True, Refusal.UNDER_WAY, "no second one", id="twice-stopping"),
        pytest.param(Phase.DONE, False, Refusal.STOPPING, "already stopping", id="done"),
    ],
)  # fmt: skip
def test_admit(phase: Phase, under_way: bool, refusal: Refusal | None, words: str) -> None:
    refused = admit(phase, under_way=under_way, identity="gw-a", term=4)
    if refusal is None:
        assert refused is None
        return
    assert refused is not None
    assert refused.refusal is refusal
    assert refused.code == "FAILED_PRECONDITION"
    assert words in str(refused)


def test_a_single_gateway_says_it_is_not_a_replica() -> None:
    assert NOT_A_REPLICA.refusal is Refusal.NOT_A_REPLICA
    assert "leader.backend = off" in str(NOT_A_REPLICA)
