"""The paper venue: fixed-stake bets on 5m/15m UP/DOWN windows (the rules: docs/markets.md).

Pure: no I/O and no clock. The gateway hands it the live candle a decision was made on and,
later, the closed candle of that window; it answers with fills and settlements for the ledger.

A bet on slot ``BTC/5m`` placed while the live candle opened at ``t`` is a bet on the window
``[t, t + 5m)``. It settles when the *closed* candle of that exact window arrives: UP if
close >= open (a tie resolves UP), a winning share pays 1.00, ``pnl = payout - stake - fee``.

>>> from dataclasses import replace
>>> from baton.model import Slot, Candle, Action
>>> btc = Slot("BTC", "BTCUSDT", "5m")
>>> live = Candle("BTCUSDT", "5m", 0, 299_999, open=100.0, high=101, low=99, close=100.5)
>>> venue = PaperVenue(VenueConfig(), [btc])
>>> fill = venue.place(btc, 7, Action.UP, live)
>>> fill.bet_id, fill.price, fill.shares
('BTC/5m@0#7', 0.5, 10.0)
>>> [s.pnl for s in venue.on_candle(replace(live, closed=True))]   # closed above open: UP won
[5.0]
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from baton.model import Action, Candle, Fill, Settlement, Slot, timeframe_ms

MIN_PRICE = 0.01
MAX_PRICE = 0.99


class PricingKind(enum.StrEnum):
    """The pricing models a gateway can be configured with (``venue.pricing``)."""

    RANDOM_WALK = "random_walk"  # core/pricing.py: the move so far, time left, recent volatility
    FLAT = "flat"  # FixedPricing: 0.50 on both sides, whatever the window did


@dataclass(frozen=True)  # no slots: config.py reads the defaults off the class
class VenueConfig:
    stake: float = 5.0
    fee_rate: float = 0.0
    fee_exponent: float = 1.0
    max_open_per_window: int = 1
    pricing: PricingKind = PricingKind.RANDOM_WALK
    spread: float = 0.02  # the two sides' prices sum to 1 + spread
    vol_window: int = 30  # closed candles the volatility is estimated from

    def __post_init__(self) -> None:
        # config.py validates with named settings; this guards programmatic construction.
        if not self.stake > 0:
            raise ValueError(f"stake must be > 0, got {self.stake}")
        if self.fee_rate < 0 or self.fee_exponent < 0:
            raise ValueError("fee_rate and fee_exponent must be >= 0")
        if self.max_open_per_window < 1:
            raise ValueError(f"max_open_per_window must be >= 1, got {self.max_open_per_window}")
        if not 0.0 <= self.spread <= 0.5:
            raise ValueError(f"spread must be in [0, 0.5], got {self.spread}")
        if self.vol_window < 1:
            raise ValueError(f"vol_window must be >= 1, got {self.vol_window}")


class PricingModel(Protocol):
    """Prices a share from what is known at the moment of the bet: the live candle of the
    window, ``time_left_ms`` of it (market time; None when unknown) and the slot's recent
    closed candles, oldest first."""

    @property
    def name(self) -> str:
        """Recorded with the run and shown by the report (``pricing``)."""
        ...

    def price(
        self,
        slot: Slot,
        side: Action,
        live: Candle,
        *,
        time_left_ms: int | None = None,
        history: Sequence[Candle] = (),
    ) -> float:
        """The share price a bet on ``side`` fills at, in [0.01, 0.99]."""
        ...


@dataclass(frozen=True, slots=True)
class FixedPricing:
    """UP shares cost ``up``, DOWN shares ``1 - up`` (the two sides of one market sum to 1).
    The default 0.50 is a fair coin: win rate and PnL read directly.

    >>> p = FixedPricing(up=0.6)
    >>> p.price(Slot("BTC", "BTCUSDT", "5m"), Action.DOWN, None)  # doctest: +ELLIPSIS
    0.4...
    """

    name: ClassVar[str] = PricingKind.FLAT.value
    up: float = 0.5

    def __post_init__(self) -> None:
        if not MIN_PRICE <= self.up <= MAX_PRICE:
            raise ValueError(f"up price must be in [{MIN_PRICE}, {MAX_PRICE}], got {self.up}")

    def price(
        self,
        slot: Slot,
        side: Action,
        live: Candle,
        *,
        time_left_ms: int | None = None,
        history: Sequence[Candle] = (),
    ) -> float:
        return self.up if side is Action.UP else 1.0 - self.up


@dataclass(frozen=True, slots=True)
class FeeModel:
    """``fee = shares * rate * (p * (1 - p)) ** exponent``: largest at p = 0.5, as venues do.

    >>> FeeModel(rate=0.25, exponent=2).fee(shares=10.0, price=0.5)
    0.15625
    """

    rate: float = 0.0
    exponent: float = 1.0

    def fee(self, shares: float, price: float) -> float:
        return float(shares * self.rate * (price * (1.0 - price)) ** self.exponent)


class Oracle(Protocol):
    def resolve(self, candle: Candle) -> tuple[float, float]:
        """(open price, close price) of the window of the closed ``candle``."""
        ...


class CandleOracle:
    """The exchange candle is the oracle. Public venues resolve on an oracle feed instead,
    which can differ by a tick; swap this for one when that matters."""

    def resolve(self, candle: Candle) -> tuple[float, float]:
        return candle.open, candle.close


class RejectReason(enum.StrEnum):
    HOLD = "hold"  # nothing to bet on
    NO_MARKET_DATA = "no_market_data"  # no live candle for the slot yet
    WRONG_STREAM = "wrong_stream"  # the candle is not of the slot's symbol and timeframe
    WINDOW_CLOSED = "window_closed"  # the live candle already closed: its window is over
    WINDOW_FULL = "window_full"  # max_open_per_window open bets on this slot-window
    DUPLICATE = "duplicate"  # this (slot, window, seq) already has a bet
    BAD_PRICE = "bad_price"  # the pricing model answered outside [0.01, 0.99]


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str


def resolve_outcome(open_price: float, close_price: float) -> Action:
    """UP if the window closed at or above its open (a tie resolves UP), else DOWN.

    >>> resolve_outcome(100.0, 100.0), resolve_outcome(100.0, 99.99)
    (<Action.UP: 'UP'>, <Action.DOWN: 'DOWN'>)
    """
    return Action.UP if close_price >= open_price else Action.DOWN


def settle(fill: Fill, open_price: float, close_price: float) -> Settlement:
    outcome = resolve_outcome(open_price, close_price)
    won = fill.side is outcome
    payout = fill.shares * 1.0 if won else 0.0
    return Settlement(
        bet_id=fill.bet_id,
        slot_id=fill.slot_id,
        side=fill.side,
        window_start_ms=fill.window_start_ms,
        window_end_ms=fill.window_end_ms,
        open_price=open_price,
        close_price=close_price,
        outcome=outcome,
        won=won,
        payout=payout,
        pnl=payout - fill.stake - fill.fee,
    )


# (symbol, interval, window start): the closed candle that settles a window.
_WindowKey = tuple[str, str, int]


class PaperVenue:
    def __init__(
        self,
        config: VenueConfig,
        slots: Sequence[Slot],
        pricing: PricingModel | None = None,
        fees: FeeModel | None = None,
        oracle: Oracle | None = None,
        bet_prefix: str = "",
    ) -> None:
        self.config = config
        # Before every bet id: the strategy's name on a gateway serving several (each has its
        # own venue, and two strategies bet on the same (slot, seq)).
        self._bet_prefix = bet_prefix
        self._slots = {s.slot_id: s for s in slots}
        self._pricing: PricingModel = pricing or FixedPricing()
        self._fees = fees or FeeModel(config.fee_rate, config.fee_exponent)
        self._oracle: Oracle = oracle or CandleOracle()
        # Open bets by the window that settles them, in placement order (settlements come out
        # in a deterministic order). Bets of slots no longer configured (restored after a
        # config change) can never settle here; they stay visible in ``open_bets``.
        self._open: dict[_WindowKey, dict[str, Fill]] = {}
        self._orphans: dict[str, Fill] = {}
        self._per_window: dict[tuple[str, int], int] = {}  # (slot_id, window start) -> open

    @property
    def pricing_name(self) -> str:
        return self._pricing.name

    def place(
        self,
        slot: Slot,
        seq: int,
        side: Action,
        live: Candle | None,
        *,
        time_left_ms: int | None = None,
        history: Sequence[Candle] = (),
    ) -> Fill | Rejection:
        """Bet ``config.stake`` on ``side`` for the window of ``live``; ``time_left_ms`` (market
        time) and ``history`` (recent closed candles, oldest first) go to the pricing model.
        Without an explicit ``pricing`` the venue prices flat (FixedPricing); the gateway passes
        the configured model (``core.pricing.pricing_model``)."""
        if side is Action.HOLD:
            return Rejection(RejectReason.HOLD)
        if live is None:
            return Rejection(RejectReason.NO_MARKET_DATA)
        if live.symbol != slot.symbol or live.interval != slot.timeframe:
            return Rejection(RejectReason.WRONG_STREAM)
        if live.closed:
            return Rejection(RejectReason.WINDOW_CLOSED)
        start = live.open_time_ms
        bet_id = f"{self._bet_prefix}{slot.slot_id}@{start}#{seq}"
        key = (slot.symbol, slot.timeframe, start)
        if bet_id in self._open.get(key, {}):
            return Rejection(RejectReason.DUPLICATE)
        if self._per_window.get((slot.slot_id, start), 0) >= self.config.max_open_per_window:
            return Rejection(RejectReason.WINDOW_FULL)
        price = self._pricing.price(slot, side, live, time_left_ms=time_left_ms, history=history)
        if not MIN_PRICE <= price <= MAX_PRICE:
            return Rejection(RejectReason.BAD_PRICE)
        stake = self.config.stake
        shares = stake / price
        fill = Fill(
            bet_id=bet_id,
            slot_id=slot.slot_id,
            seq=seq,
            side=side,
            stake=stake,
            price=price,
            shares=shares,
            fee=self._fees.fee(shares, price),
            window_start_ms=start,
            window_end_ms=start + timeframe_ms(slot.timeframe),
        )
        self._add(fill)
        return fill

    def on_candle(self, candle: Candle) -> list[Settlement]:
        """Settle every open bet on the window of this closed candle (and only that window:
        an older window's bets wait for their own candle, e.g. a backfilled one)."""
        if not candle.closed:
            return []
        bets = self._open.pop((candle.symbol, candle.interval, candle.open_time_ms), None)
        if not bets:
            return []
        open_price, close_price = self._oracle.resolve(candle)
        settlements = []
        for fill in bets.values():
            self._per_window.pop((fill.slot_id, fill.window_start_ms), None)
            settlements.append(settle(fill, open_price, close_price))
        return settlements

    def open_bets(self) -> tuple[Fill, ...]:
        live = (fill for bets in self._open.values() for fill in bets.values())
        return (*live, *self._orphans.values())

    def restore(self, fills: Iterable[Fill]) -> None:
        """Take back the open bets of a previous gateway run (from the ledger). Idempotent."""
        known = {f.bet_id for f in self.open_bets()}
        for fill in fills:
            if fill.bet_id not in known:
                self._add(fill)
                known.add(fill.bet_id)

    def _add(self, fill: Fill) -> None:
        slot = self._slots.get(fill.slot_id)
        if slot is None:
            self._orphans[fill.bet_id] = fill
            return
        key = (slot.symbol, slot.timeframe, fill.window_start_ms)
        self._open.setdefault(key, {})[fill.bet_id] = fill
        window = (fill.slot_id, fill.window_start_ms)
        self._per_window[window] = self._per_window.get(window, 0) + 1
