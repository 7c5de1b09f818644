"""What flows between the gateway's clock and a strategy: requests, decisions, roles."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from baton.model._market import Candle, Slot


class Action(enum.Enum):
    HOLD = "HOLD"
    UP = "UP"
    DOWN = "DOWN"


class Role(enum.Enum):
    STANDBY = "STANDBY"
    SHADOW = "SHADOW"
    ACTIVE = "ACTIVE"
    DRAINING = "DRAINING"


@dataclass(frozen=True, slots=True)
class EvaluationRequest:
    """One scheduled evaluation of one slot."""

    slot: Slot
    seq: int
    scheduled_ms: int
    deadline_ms: int
    epoch: int
    role: Role
    live: Candle | None
    history: tuple[Candle, ...] = ()
    trace_context: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class Decision:
    """A strategy's answer to one EvaluationRequest. ``error`` is set when the strategy raised."""

    slot_id: str
    seq: int
    epoch: int
    action: Action | None
    reason: str = ""
    error: str = ""
    eval_us: int = 0
    trace_context: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
