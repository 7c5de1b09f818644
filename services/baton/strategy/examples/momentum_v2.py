"""Momentum v2 (state_schema 2): momentum confirmed by an EMA crossover, statistics per slot.

Changes from v1:

- logic: a bet needs the live move (``z`` as in v1) AND the trend to agree: UP when
  ``z >= threshold`` and the fast EMA of closes is above the slow one, DOWN when
  ``z <= -threshold`` and fast is below slow, HOLD otherwise;
- state: each slot keeps running EMAs (``ema``: fast, slow, and the open time of the last close
  folded in) and its own ``stats`` (evaluations, bets, wins, losses, pnl). v1 counted globally;
  those totals cannot be split per slot, so ``migrate`` keeps them as ``carried``.

Config: v1's ``threshold``, ``window``, ``min_closes`` plus ``fast`` (EMA period, default 5) and
``slow`` (default 12, must be greater than ``fast``).

Migration from state_schema 1 (``migrate(data, 1)``): closes, open bets and last decisions are
copied; each slot's EMAs are computed over its rolling window (seeded with its first close), as
if v2 had run over those closes; per-slot stats start at zero; v1's counters become ``carried``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from baton.common import ConfigError, Settings
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
    ema_of,
    ema_step,
    live_move,
    merge_closes,
    signed,
    volatility,
)
from baton.strategy.examples.momentum_v1 import MomentumConfig
from baton.strategy.sdk import Outcome, Strategy


@dataclass(frozen=True, slots=True)
class MomentumV2Config:
    base: MomentumConfig = field(default_factory=MomentumConfig)
    fast: int = 5
    slow: int = 12

    @classmethod
    def parse(cls, config: Mapping[str, Any]) -> MomentumV2Config:
        own = {k: v for k, v in config.items() if k in ("fast", "slow")}
        base = MomentumConfig.parse({k: v for k, v in config.items() if k not in own})
        s = Settings(own)
        d = cls()
        fast = s.integer("fast", d.fast, minimum=1, maximum=1000)
        slow = s.integer("slow", d.slow, minimum=2, maximum=1000)
        if fast >= slow:
            raise ConfigError("fast", f"must be less than slow ({slow}), got {fast}")
        return cls(base=base, fast=fast, slow=slow)


@dataclass(slots=True)
class Ema:
    fast: float
    slow: float
    last_open_time_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"fast": self.fast, "last_open_time_ms": self.last_open_time_ms, "slow": self.slow}

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> Ema | None:
        if d is None:
            return None
        return cls(
            fast=float(d["fast"]),
            slow=float(d["slow"]),
            last_open_time_ms=int(d["last_open_time_ms"]),
        )


@dataclass(slots=True)
class SlotV2:
    closes: list[Close] = field(default_factory=list)
    ema: Ema | None = None
    open_bets: dict[str, OpenBet] = field(default_factory=dict)
    last_decision: LastDecision | None = None
    last_bet_window_ms: int | None = None
    stats: Counters = field(default_factory=Counters)


@dataclass(slots=True)
class MomentumStateV2:
    slots: dict[str, SlotV2] = field(default_factory=dict)
    carried: Counters = field(default_factory=Counters)

    def totals(self) -> Counters:
        """All-time counters: what v1 carried over plus every slot's own.

        Slots are summed in sorted order, as v1's downgrade does, so both give the same float.
        """
        t = Counters(**{k: getattr(self.carried, k) for k in Counters.__slots__})
        for _, s in sorted(self.slots.items()):
            t.add(s.stats)
        return t


class MomentumV2(Strategy[MomentumStateV2]):
    name = "momentum"
    version = "v2"
    state_schema = 2

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.settings = MomentumV2Config.parse(self.config)

    def initial_state(self) -> MomentumStateV2:
        return MomentumStateV2()

    def evaluate(self, request: EvaluationRequest, state: MomentumStateV2) -> Outcome:
        slot = state.slots.setdefault(request.slot.slot_id, SlotV2())
        slot.stats.evaluations += 1
        for open_time, close in merge_closes(
            slot.closes, request.history, self.settings.base.window
        ):
            self._fold(slot, open_time, close)
        action, reason = self._decide(request, slot)
        window = request.live.open_time_ms if request.live else 0
        slot.last_decision = LastDecision(request.seq, window, action.value)
        if action is not Action.HOLD:
            slot.last_bet_window_ms = window
        return action, reason

    def _fold(self, slot: SlotV2, open_time: int, close: float) -> None:
        if slot.ema is None:
            slot.ema = Ema(fast=close, slow=close, last_open_time_ms=open_time)
            return
        slot.ema = Ema(
            fast=ema_step(slot.ema.fast, close, self.settings.fast),
            slow=ema_step(slot.ema.slow, close, self.settings.slow),
            last_open_time_ms=open_time,
        )

    def _decide(self, request: EvaluationRequest, slot: SlotV2) -> tuple[Action, str]:
        base = self.settings.base
        live = request.live
        if live is None:
            return Action.HOLD, "no live candle"
        if already_bet(slot.open_bets, slot.last_bet_window_ms, live.open_time_ms):
            return Action.HOLD, "already bet this window"
        if len(slot.closes) < base.min_closes or slot.ema is None:
            return Action.HOLD, f"warming up ({len(slot.closes)}/{base.min_closes})"
        sigma = volatility(slot.closes)
        move = live_move(live)
        if sigma <= 0.0 or move is None:
            return Action.HOLD, "no volatility to compare with"
        z = move / sigma
        momentum = action_of(z, base.threshold)
        trend = slot.ema.fast - slot.ema.slow
        trend_action = Action.UP if trend > 0 else Action.DOWN if trend < 0 else Action.HOLD
        detail = f"z={signed(z)} trend={'up' if trend > 0 else 'down' if trend < 0 else 'flat'}"
        if momentum is Action.HOLD:
            return Action.HOLD, f"{detail}: weak momentum"
        if momentum is not trend_action:
            return Action.HOLD, f"{detail}: momentum against trend"
        return momentum, detail

    def on_fill(self, fill: Fill, state: MomentumStateV2) -> None:
        slot = state.slots.setdefault(fill.slot_id, SlotV2())
        slot.open_bets[fill.bet_id] = OpenBet.from_fill(fill)
        slot.stats.bets += 1

    def on_settlement(self, settlement: Settlement, state: MomentumStateV2) -> None:
        slot = state.slots.setdefault(settlement.slot_id, SlotV2())
        slot.open_bets.pop(settlement.bet_id, None)
        slot.stats.settle(settlement)

    def export_state(self, state: MomentumStateV2) -> dict[str, Any]:
        return {
            "carried": state.carried.to_json(),
            "slots": {
                slot_id: {
                    "closes": closes_to_json(s.closes),
                    "ema": s.ema.to_json() if s.ema else None,
                    "last_bet_window_ms": s.last_bet_window_ms,
                    "last_decision": s.last_decision.to_json() if s.last_decision else None,
                    "open_bets": {k: b.to_json() for k, b in s.open_bets.items()},
                    "stats": s.stats.to_json(),
                }
                for slot_id, s in state.slots.items()
            },
        }

    def import_state(self, data: dict[str, Any]) -> MomentumStateV2:
        return MomentumStateV2(
            carried=Counters.from_json(data["carried"]),
            slots={
                slot_id: SlotV2(
                    closes=closes_from_json(s["closes"]),
                    ema=Ema.from_json(s["ema"]),
                    open_bets={k: OpenBet.from_json(b) for k, b in s["open_bets"].items()},
                    last_decision=LastDecision.from_json(s["last_decision"]),
                    last_bet_window_ms=(
                        None if s["last_bet_window_ms"] is None else int(s["last_bet_window_ms"])
                    ),
                    stats=Counters.from_json(s["stats"]),
                )
                for slot_id, s in data["slots"].items()
            },
        )

    def migrate(self, data: dict[str, Any], from_schema: int) -> dict[str, Any]:
        if from_schema != 1:
            return super().migrate(data, from_schema)  # StateSchemaError: no migration
        slots: dict[str, Any] = {}
        for slot_id, s in data["slots"].items():
            closes = closes_from_json(s["closes"])
            prices = [c for _, c in closes]
            fast, slow = ema_of(prices, self.settings.fast), ema_of(prices, self.settings.slow)
            ema = (
                Ema(fast=fast, slow=slow, last_open_time_ms=closes[-1][0]).to_json()
                if fast is not None and slow is not None
                else None
            )
            slots[slot_id] = {
                "closes": closes_to_json(closes),
                "ema": ema,
                "last_bet_window_ms": s["last_bet_window_ms"],
                "last_decision": s["last_decision"],
                "open_bets": s["open_bets"],
                "stats": Counters().to_json(),
            }
        return {"carried": Counters.from_json(data["counters"]).to_json(), "slots": slots}
