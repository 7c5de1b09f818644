"""The handoff's vocabulary, defined once for the gateway that runs handoffs, the control client
that watches them and the operator that asks for them: phases and policy (with its defaults).

The gateway's machine (``baton.gateway.core.handoff``) moves through these phases; the operator
reads them back over the control service (``baton.wire`` converts both ways), so a property
such as "the flip happened" means the same on both sides.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class HandoffPhase(enum.Enum):
    EXPORTING = "exporting"  # blue is exporting its state
    IMPORTING = "importing"  # green is importing it
    SHADOWING = "shadowing"  # green follows as SHADOW, its decisions compared with blue's
    BAKING = "baking"  # flipped: green is ACTIVE, blue shadows it, ready to take back
    DRAINING = "draining"  # blue drains and detaches
    COMPLETED = "completed"
    ABORTED = "aborted"  # failed before the flip: blue was never touched
    ROLLED_BACK = "rolled_back"  # failed inside the bake window: blue is ACTIVE again

    @property
    def terminal(self) -> bool:
        """The handoff has ended; nothing about it changes any more."""
        return self in (HandoffPhase.COMPLETED, HandoffPhase.ABORTED, HandoffPhase.ROLLED_BACK)

    @property
    def flipped(self) -> bool:
        """The flip happened: green has been ACTIVE (a new epoch was started for it).

        ROLLED_BACK is reached only from BAKING, so it has flipped (and flipped back); ABORTED
        never has. Before the flip a failure aborts with blue untouched; after it, one hands back.
        """
        return self in (
            HandoffPhase.BAKING,
            HandoffPhase.DRAINING,
            HandoffPhase.COMPLETED,
            HandoffPhase.ROLLED_BACK,
        )


@dataclass(frozen=True, slots=True)
class HandoffPolicy:
    """How one handoff runs. The defaults here are the only ones: the gateway applies them to
    every field a ``Promote`` leaves unset, the operator's ``spec.handoff`` defaults to them and
    the CRD's schema states the same values (``tests/unit/test_handoff_defaults.py``)."""

    # Whole live ticks green must shadow (every request of the tick sent to it, answered and
    # compared with blue's) before the flip. The tick green joins in the middle of never counts.
    shadow_ticks: int = 1
    # Abort before the flip once more than this many shadow decisions differ; None: no limit.
    max_divergence: int | None = None
    bake_ms: int = 10_000  # after the flip, green's probation; 0: none
    auto_rollback: bool = True  # inside the bake window, hand back to blue on green's failure
    max_bake_faults: int = 0  # green errors/timeouts tolerated inside the bake window
    step_timeout_ms: int = 30_000  # each step before the flip must finish within this
    skip_state_transfer: bool = False  # baseline only: flip without moving state

    def __post_init__(self) -> None:
        if self.shadow_ticks < 1:
            raise ValueError(f"shadow_ticks must be >= 1, got {self.shadow_ticks}")
        if self.max_divergence is not None and self.max_divergence < 0:
            raise ValueError(f"max_divergence must be >= 0 or unset, got {self.max_divergence}")
        if self.bake_ms < 0 or self.max_bake_faults < 0:
            raise ValueError("bake and max bake faults must not be negative")
        if self.step_timeout_ms <= 0:
            raise ValueError(f"step_timeout_ms must be > 0, got {self.step_timeout_ms}")
