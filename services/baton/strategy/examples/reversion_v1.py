"""Reversion v1 (state_schema 1): bet against a price stretched far from its moving average.

Where momentum bets *with* the live candle's move, reversion bets that a stretched price comes
back. Rule, per slot and evaluation:

1. fold the request's closed ``history`` candles into the slot's rolling window of closes;
2. HOLD if there is no live candle, if this window already has a bet (open, or asked for and
   not yet filled), or while fewer than ``min_closes`` closes are known;
3. ``mean`` = the window's mean close (a simple moving average); ``sigma`` = the standard
   deviation of its close-to-close log returns; ``stretch`` = log(live.close / mean) / sigma;
4. DOWN if ``stretch >= threshold`` (stretched up: expect it back down), UP if
   ``stretch <= -threshold``, HOLD otherwise.

Config: ``threshold`` (> 0, default 1.0), ``window`` (closes kept, 3..1000, default 20),
``min_closes`` (3..window, default 5). Unknown keys are refused.

State (``export_state``), everything per slot::

    {"slots": {"BTC/5m": {"closes": [[1700000000000, 37000.5], ...],
                          "last_bet_window_ms": 1700000300000,
                          "last_decision": {"action": "DOWN", "seq": 7,
                                            "window_start_ms": 1700000300000},
                          "open_bets": {"bet-12": {"seq": 7, "side": "DOWN", "stake": 2.0,
                                                   "window_end_ms": ..., "window_start_ms": ...}},
                          "stats": {"bets": 3, "evaluations": 40, "losses": 1, "pnl": -0.2,
                                    "wins": 1}}}}

The stake of each open bet is the fill's: a StrategyVersion may give this strategy its own
stake (``spec.stake``), which the gateway applies to its bets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from baton.common import Settings
from baton.model import Action, EvaluationRequest, Fill, Settlement
from baton.strategy.examples._momentum import (
    Close,
    Counters,
    LastDecision,
    OpenBet,
    already_bet,
    closes_from_json,
    closes_to_json,
    merge_closes,
    signed,
    volatility,
)
from baton.strategy.sdk import Outcome, Strategy


@dataclass(frozen=True, slots=True)
class ReversionConfig:
    threshold: float = 1.0
    window: int = 20
    min_closes: int = 5

    @classmethod
    def parse(cls, config: Mapping[str, Any]) -> ReversionConfig:
        """Validated config; ``ValueError`` (``ConfigError``) naming the key otherwise."""
        s = Settings(config)
        d = cls()
        threshold = s.number("threshold", d.threshold, minimum=0.0, exclusive_minimum=True)
        window = s.integer("window", d.window, minimum=3, maximum=1000)
        min_closes = s.integer("min_closes", d.min_closes, minimum=3, maximum=window)
        s.check_unknown(())
        return cls(threshold=threshold, window=window, min_closes=min_closes)


def moving_average(closes: Sequence[Close]) -> float | None:
    """The mean close of the window (None for an empty one).

    >>> moving_average([(0, 100.0), (1, 102.0), (2, 104.0)])
    102.0
    """
    if not closes:
        return None
    return sum(c for _, c in closes) / len(closes)


def stretch(price: float, mean: float, sigma: float) -> float | None:
    """How far ``price`` is from ``mean``, in units of ``sigma`` (log scale); None when it
    cannot be measured (a price not positive, no volatility).

    >>> round(stretch(110.0, 100.0, 0.05), 3)
    1.906
    """
    if price <= 0 or mean <= 0 or sigma <= 0:
        return None
    return math.log(price / mean) / sigma


def action_against(z: float, threshold: float) -> Action:
    """Bet against the stretch: DOWN when stretched up, UP when stretched down.

    >>> action_against(1.5, 1.0), action_against(-1.0, 1.0), action_against(0.9, 1.0)
    (<Action.DOWN: 'DOWN'>, <Action.UP: 'UP'>, <Action.HOLD: 'HOLD'>)
    """
    if z >= threshold:
        return Action.DOWN
    if z <= -threshold:
        return Action.UP
    return Action.HOLD


@dataclass(slots=True)
class SlotState:
    closes: list[Close] = field(default_factory=list)
    open_bets: dict[str, OpenBet] = field(default_factory=dict)
    last_decision: LastDecision | None = None
    last_bet_window_ms: int | None = None
    stats: Counters = field(default_factory=Counters)

    def to_json(self) -> dict[str, Any]:
        return {
            "closes": closes_to_json(self.closes),
            "last_bet_window_ms": self.last_bet_window_ms,
            "last_decision": self.last_decision.to_json() if self.last_decision else None,
            "open_bets": {k: b.to_json() for k, b in self.open_bets.items()},
            "stats": self.stats.to_json(),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SlotState:
        last_bet = d["last_bet_window_ms"]
        return cls(
            closes=closes_from_json(d["closes"]),
            open_bets={k: OpenBet.from_json(b) for k, b in d["open_bets"].items()},
            last_decision=LastDecision.from_json(d["last_decision"]),
            last_bet_window_ms=None if last_bet is None else int(last_bet),
            stats=Counters.from_json(d["stats"]),
        )


@dataclass(slots=True)
class ReversionState:
    slots: dict[str, SlotState] = field(default_factory=dict)


class ReversionV1(Strategy[ReversionState]):
    name = "reversion"
    version = "v1"
    state_schema = 1

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.settings = ReversionConfig.parse(self.config)

    def initial_state(self) -> ReversionState:
        return ReversionState()

    def evaluate(self, request: EvaluationRequest, state: ReversionState) -> Outcome:
        slot = state.slots.setdefault(request.slot.slot_id, SlotState())
        slot.stats.evaluations += 1
        merge_closes(slot.closes, request.history, self.settings.window)
        action, reason = self._decide(request, slot)
        window = request.live.open_time_ms if request.live else 0
        slot.last_decision = LastDecision(request.seq, window, action.value)
        if action is not Action.HOLD:
            slot.last_bet_window_ms = window
        return action, reason

    def _decide(self, request: EvaluationRequest, slot: SlotState) -> tuple[Action, str]:
        live = request.live
        if live is None:
            return Action.HOLD, "no live candle"
        if already_bet(slot.open_bets, slot.last_bet_window_ms, live.open_time_ms):
            return Action.HOLD, "already bet this window"
        if len(slot.closes) < self.settings.min_closes:
            return Action.HOLD, f"warming up ({len(slot.closes)}/{self.settings.min_closes})"
        mean = moving_average(slot.closes)
        z = stretch(live.close, mean or 0.0, volatility(slot.closes))
        if z is None:
            return Action.HOLD, "no volatility to compare with"
        action = action_against(z, self.settings.threshold)
        return action, f"stretch={signed(z)} threshold={self.settings.threshold:g}"

    def on_fill(self, fill: Fill, state: ReversionState) -> None:
        slot = state.slots.setdefault(fill.slot_id, SlotState())
        slot.open_bets[fill.bet_id] = OpenBet.from_fill(fill)
        slot.stats.bets += 1

    def on_settlement(self, settlement: Settlement, state: ReversionState) -> None:
        slot = state.slots.setdefault(settlement.slot_id, SlotState())
        slot.open_bets.pop(settlement.bet_id, None)
        slot.stats.settle(settlement)

    def export_state(self, state: ReversionState) -> dict[str, Any]:
        return {"slots": {slot_id: s.to_json() for slot_id, s in state.slots.items()}}

    def import_state(self, data: dict[str, Any]) -> ReversionState:
        return ReversionState(
            slots={slot_id: SlotState.from_json(s) for slot_id, s in data["slots"].items()}
        )
