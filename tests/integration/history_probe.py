"""A strategy for tests that logs what each evaluation request carried (INFO
``probe: request``: slot, seq, the number of history candles, whether a live candle came) and
answers HOLD. Loaded by a real strategy host as ``tests.integration.history_probe:HistoryProbe``
(the test puts the repository on the host's ``PYTHONPATH``)."""

from __future__ import annotations

import logging
from typing import Any

from baton.model import Action, EvaluationRequest
from baton.strategy.sdk import Outcome, Strategy

log = logging.getLogger(__name__)

ENTRYPOINT = "tests.integration.history_probe:HistoryProbe"
LOG_MSG = "probe: request"


class HistoryProbe(Strategy[dict[str, int]]):
    name = "history-probe"
    version = "v1"
    state_schema = 1

    def initial_state(self) -> dict[str, int]:
        return {}

    def evaluate(self, request: EvaluationRequest, state: dict[str, int]) -> Outcome:
        slot_id = request.slot.slot_id
        state[slot_id] = state.get(slot_id, 0) + 1
        log.info(
            LOG_MSG,
            extra={
                "slot_id": slot_id,
                "seq": request.seq,
                "history": len(request.history),
                "live": request.live is not None,
                "role": request.role.value,
            },
        )
        return Action.HOLD, "probe"

    def export_state(self, state: dict[str, int]) -> dict[str, Any]:
        return dict(state)

    def import_state(self, data: dict[str, Any]) -> dict[str, int]:
        return {str(k): int(v) for k, v in data.items()}
