"""The domain model every component shares: plain frozen dataclasses, no I/O.

Protocol buffers stop at the edge: ``baton.wire`` converts between these and ``baton.v1``.
"""

from baton.model._evaluation import Action, Decision, EvaluationRequest, Role
from baton.model._handoff import HandoffPhase, HandoffPolicy
from baton.model._health import LedgerHealth
from baton.model._market import Candle, Market, Slot, make_slots, timeframe_ms, window_start
from baton.model._slot_ids import (
    SLOT_ID_HINT,
    SLOT_ID_PATTERN,
    check_slot_ids,
    is_slot_id,
)
from baton.model._standby import StandbyMode, StandbyPolicy
from baton.model._status import HandoffStatus, HandoffStep, InstanceStatus
from baton.model._venue import Fill, Settlement

__all__ = [
    "SLOT_ID_HINT",
    "SLOT_ID_PATTERN",
    "Action",
    "Candle",
    "Decision",
    "EvaluationRequest",
    "Fill",
    "HandoffPhase",
    "HandoffPolicy",
    "HandoffStatus",
    "HandoffStep",
    "InstanceStatus",
    "LedgerHealth",
    "Market",
    "Role",
    "Settlement",
    "Slot",
    "StandbyMode",
    "StandbyPolicy",
    "check_slot_ids",
    "is_slot_id",
    "make_slots",
    "timeframe_ms",
    "window_start",
]
