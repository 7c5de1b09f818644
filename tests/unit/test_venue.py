"""The paper venue: fills, rejections and settlement of UP/DOWN windows (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from baton.gateway.core.venue import (
    FeeModel,
    FixedPricing,
    PaperVenue,
    Rejection,
    RejectReason,
    VenueConfig,
    resolve_outcome,
)
from baton.model import Action, Candle, Fill, Slot

BTC5 = Slot("BTC", "BTCUSDT", "5m")
BTC15 = Slot("BTC", "BTCUSDT", "15m")
MATIC5 = Slot("MATIC", "POLUSDT", "5m")
SLOTS = (BTC5, BTC15, MATIC5)
M5 = 300_000
T0 = 1_700_000_100_000 - 1_700_000_100_000 % M5  # a 5m boundary


def live(slot: Slot = BTC5, start: int = T0, open_: float = 100.0, close: float = 101.0) -> Candle:
    size = {"5m": M5, "15m": 3 * M5}[slot.timeframe]
    return Candle(slot.symbol, slot.timeframe, start, start + size - 1, open_, 102, 99, close)


def closed(candle: Candle, close: float | None = None) -> Candle:
    return replace(candle, closed=True, close=candle.close if close is None else close)


def fill_of(result: Fill | Rejection) -> Fill:
    assert isinstance(result, Fill), result
    return result


# -- placing ----------------------------------------------------------------------------------


def test_a_bet_fills_at_the_fair_price_on_the_live_window() -> None:
    venue = PaperVenue(VenueConfig(), SLOTS)
    fill = fill_of(venue.place(BTC5, 42, Action.UP, live()))
    assert fill == Fill(
        bet_id=f"BTC/5m@{T0}#42",
        slot_id="BTC/5m",
        seq=42,
        side=Action.UP,
        stake=5.0,
        price=0.5,
        shares=10.0,
        fee=0.0,
        window_start_ms=T0,
        window_end_ms=T0 + M5,
    )
    assert venue.open_bets() == (fill,)


def test_the_window_length_is_the_slot_timeframe() -> None:
    venue = PaperVenue(VenueConfig(), SLOTS)
    fill = fill_of(venue.place(BTC15, 1, Action.DOWN, live(BTC15)))
    assert (fill.window_start_ms, fill.window_end_ms) == (T0, T0 + 3 * M5)


@pytest.mark.parametrize(
    ("side", "candle", "reason"),
    [
        (Action.HOLD, live(), RejectReason.HOLD),
        (Action.UP, None, RejectReason.NO_MARKET_DATA),
        (Action.UP, closed(live()), RejectReason.WINDOW_CLOSED),
        (Action.DOWN, live(BTC15), RejectReason.WRONG_STREAM),
        (Action.DOWN, live(MATIC5), RejectReason.WRONG_STREAM),
    ],
    ids=[
        "hold places nothing",
        "no live candle yet",
        "live candle already closed",
        "candle of another timeframe",
        "candle of another symbol",
    ],
)
def test_rejections(side: Action, candle: Candle | None, reason: RejectReason) -> None:
    venue = PaperVenue(VenueConfig(), SLOTS)
    assert venue.place(BTC5, 1, side, candle) == Rejection(reason)
    assert venue.open_bets() == ()


@pytest.mark.parametrize(
    ("max_open", "placed"),
    [(1, 1), (2, 2), (3, 3)],
    ids=["default one per window", "two per window", "three per window"],
)
def test_max_open_per_window(max_open: int, placed: int) -> None:
    venue = PaperVenue(VenueConfig(max_open_per_window=max_open), SLOTS)
    results = [venue.place(BTC5, seq, Action.UP, live()) for seq in range(1, 5)]
    assert sum(isinstance(r, Fill) for r in results) == placed
    assert results[placed:] == [Rejection(RejectReason.WINDOW_FULL)] * (4 - placed)


def test_the_window_limit_is_per_slot_and_per_window() -> None:
    venue = PaperVenue(VenueConfig(), SLOTS)
    fill_of(venue.place(BTC5, 1, Action.UP, live()))
    fill_of(venue.place(BTC15, 1, Action.UP, live(BTC15)))  # other slot, same symbol
    fill_of(venue.place(BTC5, 2, Action.UP, live(start=T0 + M5)))  # next window
    assert len(venue.open_bets()) == 3


def test_the_same_seq_twice_is_a_duplicate_not_a_second_bet() -> None:
    venue = PaperVenue(VenueConfig(max_open_per_window=5), SLOTS)
    fill_of(venue.place(BTC5, 7, Action.UP, live()))
    assert venue.place(BTC5, 7, Action.UP, live()) == Rejection(RejectReason.DUPLICATE)


class _Pricing:
    def __init__(self, price: float) -> None:
        self.value = price

    name = "test"

    def price(
        self,
        slot: Slot,
        side: Action,
        live: Candle,
        *,
        time_left_ms: int | None = None,
        history: Sequence[Candle] = (),
    ) -> float:
        return self.value


@pytest.mark.parametrize(
    ("price", "ok"),
    [(0.01, True), (0.99, True), (0.0, False), (1.0, False), (0.005, False)],
    ids=["floor 0.01", "cap 0.99", "zero", "one", "below floor"],
)
def test_the_pricing_model_must_answer_within_the_price_band(price: float, ok: bool) -> None:
    venue = PaperVenue(VenueConfig(), SLOTS, pricing=_Pricing(price))
    result = venue.place(BTC5, 1, Action.UP, live())
    assert isinstance(result, Fill) is ok
    if not ok:
        assert result == Rejection(RejectReason.BAD_PRICE)


def test_fixed_pricing_prices_the_down_side_as_the_complement() -> None:
    venue = PaperVenue(VenueConfig(max_open_per_window=2), SLOTS, pricing=FixedPricing(up=0.8))
    up = fill_of(venue.place(BTC5, 1, Action.UP, live()))
    down = fill_of(venue.place(BTC5, 2, Action.DOWN, live()))
    assert (up.price, up.shares) == pytest.approx((0.8, 6.25))
    assert (down.price, down.shares) == pytest.approx((0.2, 25.0))


# -- fees -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "exponent", "price", "expected"),
    [
        (0.0, 1.0, 0.5, 0.0),
        (0.1, 1.0, 0.5, 10.0 * 0.1 * 0.25),
        (0.1, 2.0, 0.5, 10.0 * 0.1 * 0.0625),
        (0.25, 1.0, 0.2, 25.0 * 0.25 * 0.16),
        (0.1, 0.0, 0.5, 10.0 * 0.1),
    ],
    ids=[
        "zero rate is free",
        "rate 0.1 at the fair price",
        "exponent 2 at the fair price",
        "cheap side buys more shares",
        "exponent 0 is a flat per-share rate",
    ],
)
def test_fee_formula(rate: float, exponent: float, price: float, expected: float) -> None:
    config = VenueConfig(fee_rate=rate, fee_exponent=exponent)
    venue = PaperVenue(config, SLOTS, pricing=FixedPricing(up=price))
    fill = fill_of(venue.place(BTC5, 1, Action.UP, live()))
    assert fill.fee == pytest.approx(expected)
    assert FeeModel(rate, exponent).fee(fill.shares, price) == pytest.approx(expected)


# -- settling ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "open_", "close", "outcome", "won"),
    [
        (Action.UP, 100.0, 101.0, Action.UP, True),
        (Action.UP, 100.0, 99.0, Action.DOWN, False),
        (Action.DOWN, 100.0, 99.0, Action.DOWN, True),
        (Action.DOWN, 100.0, 101.0, Action.UP, False),
        (Action.UP, 100.0, 100.0, Action.UP, True),
        (Action.DOWN, 100.0, 100.0, Action.UP, False),
    ],
    ids=[
        "up wins when close above open",
        "up loses when close below open",
        "down wins when close below open",
        "down loses when close above open",
        "tie resolves UP: up wins",
        "tie resolves UP: down loses",
    ],
)
def test_settlement_outcome(
    side: Action, open_: float, close: float, outcome: Action, won: bool
) -> None:
    venue = PaperVenue(VenueConfig(), SLOTS)
    fill = fill_of(venue.place(BTC5, 1, side, live(open_=open_, close=open_)))
    (s,) = venue.on_candle(closed(live(open_=open_), close=close))
    assert (s.bet_id, s.outcome, s.won) == (fill.bet_id, outcome, won)
    assert (s.open_price, s.close_price) == (open_, close)
    assert s.payout == (10.0 if won else 0.0)
    assert s.pnl == (5.0 if won else -5.0)
    assert venue.open_bets() == ()


def test_pnl_subtracts_stake_and_fee() -> None:
    venue = PaperVenue(VenueConfig(stake=4.0, fee_rate=0.2), SLOTS, pricing=FixedPricing(up=0.4))
    fill = fill_of(venue.place(BTC5, 1, Action.UP, live()))
    fee = 10.0 * 0.2 * 0.4 * 0.6
    assert fill.fee == pytest.approx(fee)
    (won,) = venue.on_candle(closed(live(), close=105.0))
    assert won.payout == pytest.approx(10.0)
    assert won.pnl == pytest.approx(10.0 - 4.0 - fee)


def test_an_open_candle_settles_nothing() -> None:
    venue = PaperVenue(VenueConfig(), SLOTS)
    venue.place(BTC5, 1, Action.UP, live())
    assert venue.on_candle(live()) == []
    assert len(venue.open_bets()) == 1


def test_a_candle_settles_only_its_own_window_and_stream() -> None:
    venue = PaperVenue(VenueConfig(), SLOTS)
    old = fill_of(venue.place(BTC5, 1, Action.UP, live(start=T0)))
    new = fill_of(venue.place(BTC5, 2, Action.UP, live(start=T0 + M5)))
    other_tf = fill_of(venue.place(BTC15, 1, Action.UP, live(BTC15)))
    other_symbol = fill_of(venue.place(MATIC5, 1, Action.UP, live(MATIC5)))
    # The newer window closes first (the old one's closing frame was missed).
    assert [s.bet_id for s in venue.on_candle(closed(live(start=T0 + M5)))] == [new.bet_id]
    assert set(venue.open_bets()) == {old, other_tf, other_symbol}
    # Its candle arrives later (backfill) and settles it against its own open/close.
    (s,) = venue.on_candle(closed(live(start=T0, open_=50.0), close=49.0))
    assert (s.bet_id, s.outcome, s.open_price) == (old.bet_id, Action.DOWN, 50.0)
    assert set(venue.open_bets()) == {other_tf, other_symbol}


def test_a_repeated_closed_candle_settles_nothing_twice() -> None:
    venue = PaperVenue(VenueConfig(), SLOTS)
    venue.place(BTC5, 1, Action.UP, live())
    assert len(venue.on_candle(closed(live()))) == 1
    assert venue.on_candle(closed(live())) == []


def test_slots_sharing_a_stream_settle_together_in_placement_order() -> None:
    alias = Slot("POL", "POLUSDT", "5m")  # the same symbol configured under two names
    venue = PaperVenue(VenueConfig(), (MATIC5, alias))
    a = fill_of(venue.place(alias, 3, Action.DOWN, live(alias)))
    b = fill_of(venue.place(MATIC5, 9, Action.UP, live(MATIC5)))
    settled = venue.on_candle(closed(live(MATIC5)))
    assert [(s.bet_id, s.won) for s in settled] == [(a.bet_id, False), (b.bet_id, True)]


def test_a_settled_window_frees_its_slot_window_count() -> None:
    venue = PaperVenue(VenueConfig(), SLOTS)
    venue.place(BTC5, 1, Action.UP, live())
    venue.on_candle(closed(live()))
    assert venue.place(BTC5, 2, Action.UP, live(start=T0 + M5)) != Rejection(
        RejectReason.WINDOW_FULL
    )


def test_a_custom_oracle_resolves_the_window() -> None:
    class Inverted:
        def resolve(self, candle: Candle) -> tuple[float, float]:
            return candle.close, candle.open

    venue = PaperVenue(VenueConfig(), SLOTS, oracle=Inverted())
    venue.place(BTC5, 1, Action.UP, live())
    (s,) = venue.on_candle(closed(live(open_=100.0), close=90.0))
    assert (s.open_price, s.close_price, s.outcome) == (90.0, 100.0, Action.UP)


# -- restart ----------------------------------------------------------------------------------


def test_restore_brings_back_open_bets_that_then_settle_and_count_in_the_window() -> None:
    before = PaperVenue(VenueConfig(), SLOTS)
    fill = fill_of(before.place(BTC5, 1, Action.DOWN, live()))
    after = PaperVenue(VenueConfig(), SLOTS)
    after.restore([fill])
    after.restore([fill])  # idempotent
    assert after.open_bets() == (fill,)
    assert after.place(BTC5, 2, Action.UP, live()) == Rejection(RejectReason.WINDOW_FULL)
    (s,) = after.on_candle(closed(live(), close=99.0))
    assert (s.bet_id, s.won) == (fill.bet_id, True)


def test_restored_bets_of_a_slot_no_longer_configured_stay_visible_and_never_settle() -> None:
    before = PaperVenue(VenueConfig(), SLOTS)
    fill = fill_of(before.place(MATIC5, 1, Action.UP, live(MATIC5)))
    after = PaperVenue(VenueConfig(), (BTC5,))
    after.restore([fill])
    assert after.open_bets() == (fill,)
    assert after.on_candle(closed(live(MATIC5))) == []


# -- pure helpers and config ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("open_", "close", "outcome"),
    [(1.0, 2.0, Action.UP), (2.0, 1.0, Action.DOWN), (1.5, 1.5, Action.UP)],
    ids=["rise", "fall", "tie is UP"],
)
def test_resolve_outcome(open_: float, close: float, outcome: Action) -> None:
    assert resolve_outcome(open_, close) is outcome


@pytest.mark.parametrize(
    "kwargs",
    [{"stake": 0.0}, {"fee_rate": -0.1}, {"fee_exponent": -1.0}, {"max_open_per_window": 0}],
    ids=["zero stake", "negative fee rate", "negative exponent", "zero per window"],
)
def test_invalid_venue_config(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        VenueConfig(**kwargs)  # type: ignore[arg-type]


def test_fixed_pricing_outside_the_band_is_refused() -> None:
    with pytest.raises(ValueError, match="up price"):
        FixedPricing(up=1.0)


def test_the_worked_examples_in_the_docstrings_hold() -> None:
    import doctest

    import baton.gateway.core.venue

    result = doctest.testmod(baton.gateway.core.venue)
    assert (result.failed, result.attempted > 5) == (0, True)
