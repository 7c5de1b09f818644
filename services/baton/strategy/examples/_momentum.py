"""Pieces the example strategies share (momentum v1 and v2, reversion): the rolling window,
volatility, EMAs, bet bookkeeping.
Pure functions over plain data. The state classes are deliberately *mutable* dataclasses: the SDK
hands the strategy its state object and the strategy updates it in place (the host guarantees
one call at a time).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from baton.model import Action, Candle, Fill, Settlement

Close = tuple[int, float]  # (candle open time ms, close price)


@dataclass(slots=True)
class OpenBet:
    """A bet the venue filled and has not settled yet."""

    side: str  # "UP" | "DOWN"
    seq: int
    stake: float
    window_start_ms: int
    window_end_ms: int

    def to_json(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "seq": self.seq,
            "stake": self.stake,
            "window_start_ms": self.window_start_ms,
            "window_end_ms": self.window_end_ms,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> OpenBet:
        return cls(
            side=str(d["side"]),
            seq=int(d["seq"]),
            stake=float(d["stake"]),
            window_start_ms=int(d["window_start_ms"]),
            window_end_ms=int(d["window_end_ms"]),
        )

    @classmethod
    def from_fill(cls, fill: Fill) -> OpenBet:
        return cls(
            side=fill.side.value,
            seq=fill.seq,
            stake=fill.stake,
            window_start_ms=fill.window_start_ms,
            window_end_ms=fill.window_end_ms,
        )


@dataclass(slots=True)
class LastDecision:
    seq: int
    window_start_ms: int
    action: str

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "seq": self.seq, "window_start_ms": self.window_start_ms}

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> LastDecision | None:
        if d is None:
            return None
        return cls(seq=int(d["seq"]), window_start_ms=int(d["window_start_ms"]), action=d["action"])


@dataclass(slots=True)
class Counters:
    """Evaluation and betting tallies (v1: global; v2: per slot, plus carried v1 totals)."""

    evaluations: int = 0
    bets: int = 0
    wins: int = 0
    losses: int = 0
    pnl: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "bets": self.bets,
            "evaluations": self.evaluations,
            "losses": self.losses,
            "pnl": self.pnl,
            "wins": self.wins,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Counters:
        return cls(
            evaluations=int(d["evaluations"]),
            bets=int(d["bets"]),
            wins=int(d["wins"]),
            losses=int(d["losses"]),
            pnl=float(d["pnl"]),
        )

    def add(self, other: Counters) -> None:
        """Fold ``other``'s tallies into these (v2's per-slot stats into v1's global counters)."""
        self.evaluations += other.evaluations
        self.bets += other.bets
        self.wins += other.wins
        self.losses += other.losses
        self.pnl += other.pnl

    def settle(self, settlement: Settlement) -> None:
        if settlement.won:
            self.wins += 1
        else:
            self.losses += 1
        self.pnl += settlement.pnl


def closes_to_json(closes: Sequence[Close]) -> list[list[Any]]:
    return [[t, c] for t, c in closes]


def closes_from_json(raw: Sequence[Sequence[Any]]) -> list[Close]:
    return [(int(t), float(c)) for t, c in raw]


def merge_closes(closes: list[Close], history: Sequence[Candle], keep: int) -> list[Close]:
    """Append history candles newer than the window's last one; trim to ``keep``.

    Returns the closes appended (oldest first), so callers can fold them into running values.
    Closed candles are authoritative and never change, so an already-seen open time is skipped.

    >>> w = [(0, 1.0)]
    >>> c = lambda t, px: Candle("X", "5m", t, t + 299_999, px, px, px, px, closed=True)
    >>> merge_closes(w, [c(0, 1.0), c(300_000, 2.0), c(600_000, 3.0)], keep=2)
    [(300000, 2.0), (600000, 3.0)]
    >>> w
    [(300000, 2.0), (600000, 3.0)]
    """
    last = closes[-1][0] if closes else None
    added: list[Close] = []
    for candle in sorted(history, key=lambda c: c.open_time_ms):
        if last is None or candle.open_time_ms > last:
            added.append((candle.open_time_ms, candle.close))
            last = candle.open_time_ms
    closes.extend(added)
    if len(closes) > keep:
        del closes[: len(closes) - keep]
    return added


def volatility(closes: Sequence[Close]) -> float:
    """Sample standard deviation of close-to-close log returns (0.0 below two returns).

    >>> round(volatility([(0, 100.0), (1, 101.0), (2, 100.0)]), 6)
    0.014072
    """
    prices = [c for _, c in closes if c > 0]
    returns = [math.log(b / a) for a, b in itertools.pairwise(prices)]
    if len(returns) < 2:
        return 0.0
    mean = sum(returns) / len(returns)
    var = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    return math.sqrt(var)


def ema_step(previous: float | None, price: float, period: int) -> float:
    """One EMA update with ``alpha = 2 / (period + 1)``; the first price seeds it.

    >>> ema_step(None, 10.0, 3), ema_step(10.0, 12.0, 3)
    (10.0, 11.0)
    """
    if previous is None:
        return price
    alpha = 2.0 / (period + 1)
    return previous + alpha * (price - previous)


def ema_of(prices: Sequence[float], period: int) -> float | None:
    """The EMA over ``prices`` in order, seeded with the first (None for no prices)."""
    value: float | None = None
    for price in prices:
        value = ema_step(value, price, period)
    return value


def live_move(live: Candle) -> float | None:
    """Log move of the live candle from its open, or None if a price is not positive."""
    if live.open <= 0 or live.close <= 0:
        return None
    return math.log(live.close / live.open)


def already_bet(
    open_bets: Mapping[str, OpenBet], last_bet_window_ms: int | None, window_start_ms: int
) -> bool:
    """At most one bet per slot-window: one is open, or was asked for (fill pending)."""
    return last_bet_window_ms == window_start_ms or any(
        b.window_start_ms == window_start_ms for b in open_bets.values()
    )


def signed(x: float) -> str:
    return f"{x:+.2f}"


def action_of(z: float, threshold: float) -> Action:
    if z >= threshold:
        return Action.UP
    if z <= -threshold:
        return Action.DOWN
    return Action.HOLD
