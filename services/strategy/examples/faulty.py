"""A strategy that misbehaves on purpose, for testing the gateway's handling of bad strategies.

Config: ``raise_every`` (raise on every evaluation whose ``seq`` is a multiple; 0 = never),
``delay_ms`` (sleep this long in every evaluation, to miss deadlines), ``action`` (what it
answers otherwise: HOLD, UP or DOWN). State: evaluation count per slot.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from baton.common import ConfigError, Settings
from baton.model import Action, EvaluationRequest
from baton.strategy.sdk import Outcome, Strategy


class FaultyError(RuntimeError):
    """The error Faulty raises on purpose."""


class Faulty(Strategy[dict[str, int]]):
    name = "faulty"
    version = "v1"
    state_schema = 1

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        s = Settings(self.config)
        self.raise_every = s.integer("raise_every", 0, minimum=0)
        self.delay_s = s.number("delay_ms", 0.0, minimum=0.0, maximum=600_000.0) / 1000.0
        action = s.text("action", "HOLD").upper()
        if action not in ("HOLD", "UP", "DOWN"):
            raise ConfigError("action", f"must be HOLD, UP or DOWN, got {action!r}")
        self.action = Action(action)
        s.check_unknown(())

    def initial_state(self) -> dict[str, int]:
        return {}

    def evaluate(self, request: EvaluationRequest, state: dict[str, int]) -> Outcome:
        slot_id = request.slot.slot_id
        state[slot_id] = state.get(slot_id, 0) + 1
        if self.delay_s:
            time.sleep(self.delay_s)  # deliberately blocks the worker: a slow strategy
        if self.raise_every and request.seq % self.raise_every == 0:
            raise FaultyError(f"injected failure at {slot_id} seq {request.seq}")
        return self.action, "faulty"

    def export_state(self, state: dict[str, int]) -> dict[str, Any]:
        return dict(state)

    def import_state(self, data: dict[str, Any]) -> dict[str, int]:
        return {str(k): int(v) for k, v in data.items()}
