"""What keeps a strategy's state alive when its ACTIVE instance dies: the standby policy,
defined once for the strategy host that asks for it (in its Hello), the gateway that carries it
out and the operator that reads it from a StrategyVersion's ``spec.standby``.

- ``HOT``: a second instance of the same version imports the ACTIVE's state and follows it as
  SHADOW on every tick; when the ACTIVE dies the gateway executes the standby's answers and makes
  it ACTIVE at once (0 missed, exact state). Checkpoints are taken too (for the case where the
  standby is not there yet).
- ``CHECKPOINT``: the gateway takes the ACTIVE's state every ``checkpoint_every_ticks`` ticks,
  keeps the last ``checkpoints_kept`` in its ledger and journals what it sends after the last
  one; the next instance to attach imports the checkpoint, replays the journal and takes over at
  a tick boundary (the ticks in between are missed, with their reason).
- ``NONE``: neither; a new instance starts with an empty state (how Baton behaved before).

The defaults are the only ones (the gateway applies them to a Hello that sets none; the CRD
states the same values): docs/standby.md justifies them with a measurement.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class StandbyMode(enum.Enum):
    NONE = "none"
    CHECKPOINT = "checkpoint"
    HOT = "hot"

    @property
    def checkpoints(self) -> bool:
        """Whether the gateway checkpoints the ACTIVE's state (a hot standby may be missing)."""
        return self is not StandbyMode.NONE


@dataclass(frozen=True, slots=True)
class StandbyPolicy:
    mode: StandbyMode = StandbyMode.CHECKPOINT
    # A full state checkpoint every this many ticks (1 minute at the reference 5 s cadence): the
    # journal replayed on a take-over is at most this long.
    checkpoint_every_ticks: int = 12
    checkpoints_kept: int = 3  # durable checkpoints kept in the ledger per strategy
    # A state digest asked of the ACTIVE (and of a hot standby, at the same stream point) every
    # this many ticks: what a replay or a standby is verified against. 0: never.
    verify_every_ticks: int = 1

    def __post_init__(self) -> None:
        if self.checkpoint_every_ticks < 1:
            raise ValueError(
                f"checkpoint_every_ticks must be >= 1, got {self.checkpoint_every_ticks}"
            )
        if self.checkpoints_kept < 1:
            raise ValueError(f"checkpoints_kept must be >= 1, got {self.checkpoints_kept}")
        if self.verify_every_ticks < 0:
            raise ValueError(f"verify_every_ticks must be >= 0, got {self.verify_every_ticks}")
