"""The default pricing of UP/DOWN shares: a driftless random walk (docs/markets.md#price).

Pure: no I/O and no clock; the time left in the window is passed in, in market time.

At the moment of a bet the venue knows the window's open ``S0``, the price now ``S`` (the live
candle's close), the time left ``tau`` and the slot's recent closed candles. If the log price
is a driftless random walk with volatility ``sigma`` per sqrt(ms), the window ends at or above
its open with probability

    P(UP) = Phi(ln(S / S0) / (sigma * sqrt(tau)))

(a tie resolves UP; with no time left the outcome is known: 1 if ``S >= S0``, else 0).
``sigma`` is the root mean square of the log returns ``ln(close / open)`` of the last
``vol_window`` closed candles, divided by sqrt(candle length), floored at ``MIN_SIGMA``. A side's
price is its fair probability plus half the ``spread`` (the two sides sum to 1 + spread),
clamped to [0.01, 0.99]. With no closed candle yet, or no time left known, the fair
probability is 0.5 (``PriceBasis`` says which).

>>> from baton.model import Slot, Candle, Action
>>> btc = Slot("BTC", "BTCUSDT", "5m")
>>> live = Candle("BTCUSDT", "5m", 0, 299_999, open=100.0, high=100, low=100, close=100.0)
>>> calm = [Candle("BTCUSDT", "5m", 0, 299_999, 100.0, 100, 100, c, closed=True)
...         for c in (100.1, 99.9, 100.1, 99.9)]
>>> p = RandomWalkPricing(spread=0.02)
>>> p.price(btc, Action.UP, live, time_left_ms=300_000, history=calm)  # the open, no move
0.51
>>> up = Candle("BTCUSDT", "5m", 0, 299_999, open=100.0, high=100.1, low=100, close=100.1)
>>> p.price(btc, Action.UP, up, time_left_ms=30_000, history=calm)  # a usual move, 30 s left
0.99
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import ClassVar

from baton.gateway.core.venue import (
    MAX_PRICE,
    MIN_PRICE,
    FixedPricing,
    PricingKind,
    PricingModel,
    VenueConfig,
)
from baton.model import Action, Candle, Slot

# A floor on sigma (per sqrt(ms)): a flat or empty history must not divide by zero. 1e-7 is
# ~0.005% over a 5-minute window, far below any listed coin's (BTC's is ~0.1%).
MIN_SIGMA = 1e-7
_NORMAL = NormalDist()


class PriceBasis(enum.StrEnum):
    MODEL = "model"  # the random walk, from the move, the time left and the volatility
    NO_HISTORY = "no_history"  # no closed candle to estimate the volatility from: fair 0.5
    NO_CLOCK = "no_clock"  # the time left in the window is unknown: fair 0.5


@dataclass(frozen=True, slots=True)
class Quote:
    fair_up: float  # the probability the window resolves UP
    basis: PriceBasis


def volatility(history: Sequence[Candle], window: int) -> float | None:
    """Sigma per sqrt(ms) from the last ``window`` closed candles (root mean square of their
    log returns: driftless, so no mean is taken off), floored at ``MIN_SIGMA``; None with no
    usable candle.

    >>> c = Candle("X", "1m", 0, 59_999, 100.0, 100, 100, 100.0, closed=True)
    >>> volatility([c], 30)   # one flat candle: the floor
    1e-07
    >>> volatility([], 30) is None
    True
    """
    squares = [
        math.log(c.close / c.open) ** 2 / (c.close_time_ms + 1 - c.open_time_ms)
        for c in list(history)[-window:]
        if c.open > 0 and c.close > 0 and c.close_time_ms >= c.open_time_ms
    ]
    if not squares:
        return None
    return max(math.sqrt(sum(squares) / len(squares)), MIN_SIGMA)


def fair_up(open_price: float, price: float, time_left_ms: int, sigma: float) -> float:
    """P(the window ends at or above its open) for a driftless log random walk.

    >>> fair_up(100.0, 100.0, 300_000, 1e-6)
    0.5
    >>> fair_up(100.0, 100.0, 0, 1e-6), fair_up(100.0, 99.0, 0, 1e-6)  # no time left: known
    (1.0, 0.0)
    """
    if open_price <= 0 or price <= 0:
        return 0.5
    if time_left_ms <= 0:
        return 1.0 if price >= open_price else 0.0
    return _NORMAL.cdf(math.log(price / open_price) / (sigma * math.sqrt(time_left_ms)))


@dataclass(frozen=True, slots=True)
class RandomWalkPricing:
    """The default model (``venue.pricing = "random_walk"``); see the module docstring."""

    name: ClassVar[str] = PricingKind.RANDOM_WALK.value
    spread: float = 0.02
    vol_window: int = 30

    def __post_init__(self) -> None:
        if not 0.0 <= self.spread <= 0.5:
            raise ValueError(f"spread must be in [0, 0.5], got {self.spread}")
        if self.vol_window < 1:
            raise ValueError(f"vol_window must be >= 1, got {self.vol_window}")

    def quote(self, live: Candle, *, time_left_ms: int | None, history: Sequence[Candle]) -> Quote:
        if time_left_ms is None:
            return Quote(0.5, PriceBasis.NO_CLOCK)
        sigma = volatility(history, self.vol_window)
        if sigma is None:
            return Quote(0.5, PriceBasis.NO_HISTORY)
        return Quote(fair_up(live.open, live.close, time_left_ms, sigma), PriceBasis.MODEL)

    def price(
        self,
        slot: Slot,
        side: Action,
        live: Candle,
        *,
        time_left_ms: int | None = None,
        history: Sequence[Candle] = (),
    ) -> float:
        up = self.quote(live, time_left_ms=time_left_ms, history=history).fair_up
        fair = up if side is Action.UP else 1.0 - up
        return min(MAX_PRICE, max(MIN_PRICE, fair + self.spread / 2))


def pricing_model(config: VenueConfig) -> PricingModel:
    """The model ``venue.pricing`` names, with its settings."""
    if config.pricing is PricingKind.FLAT:
        return FixedPricing()
    return RandomWalkPricing(spread=config.spread, vol_window=config.vol_window)
