"""Momentum v1 (state_schema 1): bet with the live candle's move when it is large for the market.

Rule, per slot and evaluation:

1. fold the request's closed ``history`` candles into the slot's rolling window of closes;
2. HOLD if there is no live candle, if this window already has a bet (open, or asked for and
   not yet filled), or while fewer than ``min_closes`` closes are known;
3. ``sigma`` = standard deviation of the window's close-to-close log returns;
   ``z`` = log(live.close / live.open) / sigma;
4. UP if ``z >= threshold``, DOWN if ``z <= -threshold``, HOLD otherwise.

Config: ``threshold`` (> 0, default 0.3, low enough that the demo bets on most windows),
``window`` (closes kept, 3..1000, default 20), ``min_closes`` (3..window, default 5).

State (``export_state``)::

    {"counters": {"bets": 3, "evaluations": 40, "losses": 1, "pnl": -0.2, "wins": 1},
     "slots": {"BTC/5m": {"closes": [[1700000000000, 37000.5], ...],
                          "last_bet_window_ms": 1700000300000,
                          "last_decision": {"action": "UP", "seq": 7,
                                            "window_start_ms": 1700000300000},
                          "open_bets": {"bet-12": {"seq": 7, "side": "UP", "stake": 5.0,
                                                   "window_end_ms": ..., "window_start_ms": ...}}}}}

Reading state back from v2 (``migrate(data, 2)``, a downgrade): ``baton demo --handoffs N``
alternates v1 and v2, so v1 takes over v2's state every other handoff. Per slot the rolling
window, open bets, last decision and last bet window are kept exactly; the EMAs are dropped (v1
has none, and v2 derives them again from the window); v2's ``carried`` counters plus every
slot's ``stats`` become v1's global ``counters``. A v1 -> v2 -> v1 round trip with no ticks in
between gives back v1's bytes exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from baton.common import Settings
from baton.model import Action, EvaluationRequest, Fill, Settlement
from baton.strategy.examples._momentum import (
    Close,
    Counters,
    LastDecision,
    OpenBet,
    action_of,
    already_bet,
    closes_from_json,
    closes_to_json,
    live_move,
    merge_closes,
    signed,
    volatility,
)
from baton.strategy.sdk import Outcome, Strategy


@dataclass(frozen=True, slots=True)
class MomentumConfig:
    threshold: float = 0.3
    window: int = 20
    min_closes: int = 5

    @classmethod
    def parse(cls, config: Mapping[str, Any]) -> MomentumConfig:
        """Validated config; ``ValueError`` (``ConfigError``) naming the key otherwise."""
        s = Settings(config)
        d = cls()
        threshold = s.number("threshold", d.threshold, minimum=0.0, exclusive_minimum=True)
        window = s.integer("window", d.window, minimum=3, maximum=1000)
        min_closes = s.integer("min_closes", d.min_closes, minimum=3, maximum=window)
        s.check_unknown(())
        return cls(threshold=threshold, window=window, min_closes=min_closes)


@dataclass(slots=True)
class SlotV1:
    closes: list[Close] = field(default_factory=list)
    open_bets: dict[str, OpenBet] = field(default_factory=dict)
    last_decision: LastDecision | None = None
    last_bet_window_ms: int | None = None


@dataclass(slots=True)
class MomentumStateV1:
    slots: dict[str, SlotV1] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)


class MomentumV1(Strategy[MomentumStateV1]):
    name = "momentum"
    version = "v1"
    state_schema = 1

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.settings = MomentumConfig.parse(self.config)

    def initial_state(self) -> MomentumStateV1:
        return MomentumStateV1()

    def evaluate(self, request: EvaluationRequest, state: MomentumStateV1) -> Outcome:
        slot = state.slots.setdefault(request.slot.slot_id, SlotV1())
        state.counters.evaluations += 1
        merge_closes(slot.closes, request.history, self.settings.window)
        action, reason = self._decide(request, slot)
        window = request.live.open_time_ms if request.live else 0
        slot.last_decision = LastDecision(request.seq, window, action.value)
        if action is not Action.HOLD:
            slot.last_bet_window_ms = window
        return action, reason

    def _decide(self, request: EvaluationRequest, slot: SlotV1) -> tuple[Action, str]:
        live = request.live
        if live is None:
            return Action.HOLD, "no live candle"
        if already_bet(slot.open_bets, slot.last_bet_window_ms, live.open_time_ms):
            return Action.HOLD, "already bet this window"
        if len(slot.closes) < self.settings.min_closes:
            return Action.HOLD, f"warming up ({len(slot.closes)}/{self.settings.min_closes})"
        sigma = volatility(slot.closes)
        move = live_move(live)
        if sigma <= 0.0 or move is None:
            return Action.HOLD, "no volatility to compare with"
        z = move / sigma
        action = action_of(z, self.settings.threshold)
        return action, f"z={signed(z)} threshold={self.settings.threshold:g}"

    def on_fill(self, fill: Fill, state: MomentumStateV1) -> None:
        slot = state.slots.setdefault(fill.slot_id, SlotV1())
        slot.open_bets[fill.bet_id] = OpenBet.from_fill(fill)
        state.counters.bets += 1

    def on_settlement(self, settlement: Settlement, state: MomentumStateV1) -> None:
        slot = state.slots.setdefault(settlement.slot_id, SlotV1())
        slot.open_bets.pop(settlement.bet_id, None)
        state.counters.settle(settlement)

    def export_state(self, state: MomentumStateV1) -> dict[str, Any]:
        return {
            "counters": state.counters.to_json(),
            "slots": {
                slot_id: {
                    "closes": closes_to_json(s.closes),
                    "last_bet_window_ms": s.last_bet_window_ms,
                    "last_decision": s.last_decision.to_json() if s.last_decision else None,
                    "open_bets": {k: b.to_json() for k, b in s.open_bets.items()},
                }
                for slot_id, s in state.slots.items()
            },
        }

    def migrate(self, data: dict[str, Any], from_schema: int) -> dict[str, Any]:
        if from_schema != 2:
            return super().migrate(data, from_schema)  # StateSchemaError: no migration
        counters = Counters.from_json(data["carried"])
        slots: dict[str, Any] = {}
        # Sorted, as MomentumStateV2.totals sums: the float pnl comes out the same everywhere.
        for slot_id, s in sorted(data["slots"].items()):
            counters.add(Counters.from_json(s["stats"]))
            slots[slot_id] = {
                "closes": s["closes"],
                "last_bet_window_ms": s["last_bet_window_ms"],
                "last_decision": s["last_decision"],
                "open_bets": s["open_bets"],
            }
        return {"counters": counters.to_json(), "slots": slots}

    def import_state(self, data: dict[str, Any]) -> MomentumStateV1:
        return MomentumStateV1(
            counters=Counters.from_json(data["counters"]),
            slots={
                slot_id: SlotV1(
                    closes=closes_from_json(s["closes"]),
                    open_bets={k: OpenBet.from_json(b) for k, b in s["open_bets"].items()},
                    last_decision=LastDecision.from_json(s["last_decision"]),
                    last_bet_window_ms=_opt_int(s["last_bet_window_ms"]),
                )
                for slot_id, s in data["slots"].items()
            },
        )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
