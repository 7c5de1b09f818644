"""What the gateway writes to its presence ledger: one frozen record per fact."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class EvalOutcome(enum.Enum):
    """How one scheduled (slot, seq) ended. Exactly one outcome per scheduled evaluation."""

    EXECUTED = "executed"  # the ACTIVE instance answered in time, under the current epoch
    ERROR = "error"  # the ACTIVE instance answered in time with an error (strategy raised)
    TIMEOUT = "timeout"  # dispatched, no valid answer before the deadline
    NO_ACTIVE = "no_active"  # no ACTIVE instance was attached when it was due
    GATEWAY_LATE = "gateway_late"  # the gateway itself could not dispatch before the deadline
    UNDELIVERED = "undelivered"  # the instance's send queue was full; never reached it

    @property
    def answered(self) -> bool:
        return self in (EvalOutcome.EXECUTED, EvalOutcome.ERROR)


MISSED_OUTCOMES = frozenset(
    {EvalOutcome.TIMEOUT, EvalOutcome.NO_ACTIVE, EvalOutcome.GATEWAY_LATE, EvalOutcome.UNDELIVERED}
)


class Staleness(enum.Enum):
    """Whether an evaluation's market data were live when it was dispatched (core/freshness)."""

    FRESH = ""  # a live candle, updated by the exchange stream within gateway.stale_after_ms
    NO_LIVE = "no_live"  # no candle from the exchange stream at all (unknown symbol, not yet)
    # Nothing delivered yet because the stream's first backfill has not finished (the feed
    # holds its frames until REST has delivered the history): the clock's wait ran out first.
    BACKFILL_PENDING = "backfill_pending"
    NO_HISTORY = "no_history"  # no closed candle yet: the REST backfill has not delivered
    OLD = "old"  # the stream's last update is older than gateway.stale_after_ms (stall, outage)

    @property
    def stale(self) -> bool:
        return self is not Staleness.FRESH


@dataclass(frozen=True, slots=True)
class EvaluationRecord:
    """One scheduled evaluation, written once it is resolved (answered or past its deadline)."""

    slot_id: str
    seq: int
    scheduled_ms: int
    deadline_ms: int
    outcome: EvalOutcome
    dispatched_ms: int | None = None
    decided_ms: int | None = None
    instance_id: str = ""
    version: str = ""
    epoch: int = 0
    action: str | None = None  # "HOLD" / "UP" / "DOWN"
    reason: str = ""
    error: str = ""
    eval_us: int = 0
    bet_id: str | None = None  # set when executing the decision placed a bet
    stale: Staleness = Staleness.FRESH  # its data at dispatch; old ledgers read as fresh
    strategy: str = ""  # whose evaluation (the book's strategy name); old ledgers: their one

    @property
    def executed(self) -> bool:
        return self.outcome is EvalOutcome.EXECUTED


@dataclass(frozen=True, slots=True)
class InstanceEvent:
    """An instance attached, changed role, or detached."""

    t_ms: int
    instance_id: str
    event: str  # "attached" / "role" / "detached"
    pod_name: str = ""
    strategy: str = ""
    version: str = ""
    role: str = ""
    epoch: int = 0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """The exchange connection changed: connected, disconnected, backfilled, stalled..."""

    t_ms: int
    event: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DroppedDecision:
    """A decision that was received and recorded but never executed: late, fenced, from a
    shadow or draining instance, unknown or duplicate (G2)."""

    slot_id: str
    seq: int
    instance_id: str
    epoch: int
    received_ms: int
    action: str | None
    reason: str
