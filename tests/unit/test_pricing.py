"""The random-walk pricing model: properties over moves, times left and histories."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.gateway.core.pricing import (
    MIN_SIGMA,
    PriceBasis,
    RandomWalkPricing,
    fair_up,
    pricing_model,
    volatility,
)
from baton.gateway.core.venue import (
    MAX_PRICE,
    MIN_PRICE,
    FixedPricing,
    PaperVenue,
    PricingKind,
    VenueConfig,
)
from baton.model import Action, Candle, Fill, Slot

BTC5 = Slot("BTC", "BTCUSDT", "5m")
M5 = 300_000


def candle(open_: float, close: float, *, closed: bool = False, start: int = 0) -> Candle:
    return Candle("BTCUSDT", "5m", start, start + M5 - 1, open_, max(open_, close),
                  min(open_, close), close, closed=closed)  # fmt: skip


def history(closes: list[float]) -> list[Candle]:
    return [candle(100.0, c, closed=True, start=-(i + 1) * M5) for i, c in enumerate(closes)]


CALM = history([100.1, 99.9, 100.2, 99.8, 100.05])  # ~0.1% a window, like BTC

prices = st.floats(min_value=1.0, max_value=1e5, allow_nan=False)
moves = st.floats(min_value=-0.2, max_value=0.2, allow_nan=False)
time_left = st.integers(min_value=0, max_value=M5)
spreads = st.floats(min_value=0.0, max_value=0.5)
closes = st.lists(st.floats(min_value=50.0, max_value=150.0), max_size=40)


@given(spread=spreads, hist=closes.filter(bool), tau=st.integers(min_value=1, max_value=M5))
def test_at_the_open_with_no_move_the_fair_price_is_one_half(
    spread: float, hist: list[float], tau: int
) -> None:
    quote = RandomWalkPricing(spread=spread).quote(
        candle(100.0, 100.0), time_left_ms=tau, history=history(hist)
    )
    assert quote.fair_up == 0.5
    for side in (Action.UP, Action.DOWN):
        price = RandomWalkPricing(spread=spread).price(
            BTC5, side, candle(100.0, 100.0), time_left_ms=tau, history=history(hist)
        )
        assert price == pytest.approx(min(MAX_PRICE, 0.5 + spread / 2))


@given(open_=prices, a=moves, b=moves, tau=time_left, hist=closes)
def test_up_is_monotone_in_the_move_and_down_the_reverse(
    open_: float, a: float, b: float, tau: int, hist: list[float]
) -> None:
    lo, hi = sorted((a, b))
    model = RandomWalkPricing()
    h = history(hist)

    def at(move: float, side: Action) -> float:
        return model.price(
            BTC5, side, candle(open_, open_ * (1 + move)), time_left_ms=tau, history=h
        )

    assert at(lo, Action.UP) <= at(hi, Action.UP)
    assert at(lo, Action.DOWN) >= at(hi, Action.DOWN)


@given(
    move=st.floats(min_value=1e-4, max_value=0.2),
    side=st.sampled_from([Action.UP, Action.DOWN]),
)
def test_as_time_runs_out_the_price_tends_to_the_known_outcome(move: float, side: Action) -> None:
    """A move already made: the side it favours tends to 0.99, the other to 0.01."""
    model = RandomWalkPricing()
    for direction in (1, -1):
        live = candle(100.0, 100.0 * (1 + direction * move))
        winner = Action.UP if direction > 0 else Action.DOWN
        late = [
            model.price(BTC5, side, live, time_left_ms=tau, history=CALM)
            for tau in (M5, M5 // 10, 1_000, 10, 0)
        ]
        expected = MAX_PRICE if side is winner else MIN_PRICE
        assert late[-1] == expected
        # ...monotonically: the less time left, the closer to the outcome.
        steps = itertools.pairwise(late)
        assert all((b >= a) if side is winner else (b <= a) for a, b in steps)


@given(
    open_=prices, move=moves, tau=time_left, hist=closes, spread=spreads,
    side=st.sampled_from([Action.UP, Action.DOWN]),
)  # fmt: skip
def test_prices_stay_within_the_venue_bounds(
    open_: float, move: float, tau: int, hist: list[float], spread: float, side: Action
) -> None:
    price = RandomWalkPricing(spread=spread).price(
        BTC5, side, candle(open_, open_ * (1 + move)), time_left_ms=tau, history=history(hist)
    )
    assert MIN_PRICE <= price <= MAX_PRICE


@given(open_=prices, move=moves, tau=time_left, hist=closes)
def test_the_two_sides_sum_to_one_plus_the_spread_away_from_the_bounds(
    open_: float, move: float, tau: int, hist: list[float]
) -> None:
    model = RandomWalkPricing(spread=0.02)
    live = candle(open_, open_ * (1 + move))
    up = model.price(BTC5, Action.UP, live, time_left_ms=tau, history=history(hist))
    down = model.price(BTC5, Action.DOWN, live, time_left_ms=tau, history=history(hist))
    if MIN_PRICE < up < MAX_PRICE and MIN_PRICE < down < MAX_PRICE:
        assert up + down == pytest.approx(1.02)


@pytest.mark.parametrize(
    ("tau", "hist", "basis"),
    [
        pytest.param(None, CALM, PriceBasis.NO_CLOCK, id="time-left-unknown"),
        pytest.param(M5, [], PriceBasis.NO_HISTORY, id="no-closed-candle-yet"),
        pytest.param(M5, CALM, PriceBasis.MODEL, id="both-known"),
    ],
)
def test_without_a_clock_or_a_history_the_fair_price_falls_back_to_one_half(
    tau: int | None, hist: list[Candle], basis: PriceBasis
) -> None:
    quote = RandomWalkPricing().quote(candle(100.0, 100.3), time_left_ms=tau, history=hist)
    assert quote.basis is basis
    assert (quote.fair_up == 0.5) is (basis is not PriceBasis.MODEL)


@pytest.mark.parametrize(
    ("closes_", "expected"),
    [
        pytest.param([100.0, 100.0], MIN_SIGMA, id="flat-history-floors"),
        pytest.param([101.0, 99.0], 0.01 / M5**0.5, id="one-percent-a-window"),
    ],
)
def test_volatility_is_the_rms_log_return_per_sqrt_ms(
    closes_: list[float], expected: float
) -> None:
    assert volatility(history(closes_), 30) == pytest.approx(expected, rel=0.01)


def test_volatility_reads_only_the_last_window_candles() -> None:
    wild_then_calm = [*history([150.0, 50.0]), *history([100.0, 100.0])]
    assert volatility(wild_then_calm, 2) == MIN_SIGMA


def test_a_late_bet_on_a_move_already_made_pays_little() -> None:
    """The flaw of flat pricing: 30 s before the close, 0.1% up is nearly decided."""
    live = candle(100.0, 100.1)
    rw = RandomWalkPricing().price(BTC5, Action.UP, live, time_left_ms=30_000, history=CALM)
    flat = FixedPricing().price(BTC5, Action.UP, live, time_left_ms=30_000, history=CALM)
    assert (flat, rw) == (0.5, MAX_PRICE)
    assert fair_up(100.0, 100.1, M5, 0.001 / M5**0.5) == pytest.approx(0.84, abs=0.01)


@pytest.mark.parametrize(
    ("kind", "name"),
    [pytest.param(k, k.value, id=k.value) for k in PricingKind],
)
def test_the_configured_model_carries_its_name(kind: PricingKind, name: str) -> None:
    model = pricing_model(VenueConfig(pricing=kind))
    assert model.name == name
    assert PaperVenue(VenueConfig(pricing=kind), [BTC5], pricing=model).pricing_name == name


def test_the_venue_passes_the_time_left_and_history_to_the_model() -> None:
    venue = PaperVenue(VenueConfig(), [BTC5], pricing=RandomWalkPricing())
    fill = venue.place(BTC5, 1, Action.UP, candle(100.0, 100.1), time_left_ms=30_000, history=CALM)
    assert isinstance(fill, Fill)
    assert fill.price == MAX_PRICE
    assert fill.shares == pytest.approx(5.0 / MAX_PRICE)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"spread": -0.01}, "spread", id="negative-spread"),
        pytest.param({"spread": 0.6}, "spread", id="spread-over-half"),
        pytest.param({"vol_window": 0}, "vol_window", id="empty-vol-window"),
    ],
)
def test_bad_model_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RandomWalkPricing(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        VenueConfig(**kwargs)  # type: ignore[arg-type]
