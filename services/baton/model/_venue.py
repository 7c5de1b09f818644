"""Bets on UP/DOWN windows and their settlement (the market rules: docs/markets.md)."""

from __future__ import annotations

from dataclasses import dataclass

from baton.model._evaluation import Action


@dataclass(frozen=True, slots=True)
class Fill:
    """A bet the paper venue accepted."""

    bet_id: str
    slot_id: str
    seq: int
    side: Action
    stake: float
    price: float
    shares: float
    fee: float
    window_start_ms: int
    window_end_ms: int


@dataclass(frozen=True, slots=True)
class Settlement:
    """A bet's result once its window closed. A tie (close == open) resolves UP."""

    bet_id: str
    slot_id: str
    side: Action
    window_start_ms: int
    window_end_ms: int
    open_price: float
    close_price: float
    outcome: Action
    won: bool
    payout: float
    pnl: float
