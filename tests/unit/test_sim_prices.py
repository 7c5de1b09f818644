"""Seeded price paths: reproducible whatever the order of questions, internally consistent
(seconds add up to minutes, minutes to days), plausible candles."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.exchange_sim.core.prices import (
    LISTING_S,
    Bar,
    PricePath,
    merge_bars,
    split_int,
    stable_seed,
    symbol_spec,
)

T0 = 1_700_000_000  # seconds; a Tuesday evening in November 2023
DAY = 86_400


def path(seed: int = 7, symbol: str = "BTCUSDT") -> PricePath:
    return PricePath(seed, symbol_spec(symbol))


def test_seeds_are_the_same_in_every_process() -> None:
    # BLAKE2b, not the salted hash(): a literal value pins it across interpreter runs.
    assert stable_seed(1, "BTCUSDT", "day", 19675) == 17352610494048383838


def test_the_same_seed_gives_the_same_candles() -> None:
    assert path().bar(T0, T0 + 300) == path().bar(T0, T0 + 300)
    assert path().bar(T0, T0 + 60) == Bar(
        open=4953947,
        high=4960402,
        low=4953818,
        close=4958682,
        volume=1392081,
        quote_volume=6872590269452,
        taker_volume=785846,
        taker_quote_volume=3879650640467,
        trades=1629,
        first_trade_id=1967501233882,
        last_trade_id=1967501235510,
    )


def test_the_order_of_questions_does_not_matter() -> None:
    spans = [(T0 + i * 900, T0 + (i + 1) * 900) for i in range(6)]
    forward, backward = path(), path()
    a = [forward.bar(*s) for s in spans]
    b = [backward.bar(*s) for s in reversed(spans)][::-1]
    assert a == b


@pytest.mark.parametrize(
    ("a", "b"),
    [((7, "BTCUSDT"), (8, "BTCUSDT")), ((7, "BTCUSDT"), (7, "ETHUSDT"))],
    ids=["another seed, another market", "another symbol, another path"],
)
def test_paths_differ_by_seed_and_symbol(a: tuple[int, str], b: tuple[int, str]) -> None:
    assert path(*a).bar(T0, T0 + 300) != path(*b).bar(T0, T0 + 300)


def test_each_level_aggregates_exactly_to_its_parent() -> None:
    p = path()
    minute, hour, day = T0 // 60, T0 // 3_600, T0 // DAY
    assert merge_bars(p.seconds(minute)) == p.minutes(hour)[minute % 60]
    assert merge_bars(p.minutes(hour)) == p.hours(day)[hour % 24]
    assert merge_bars(p.hours(day)) == p.day_bar(day)


@settings(max_examples=40, deadline=None)
@given(
    start=st.integers(T0 - 2 * DAY, T0),
    length=st.integers(1, 3 * DAY),
    cut=st.floats(0.0, 1.0),
)
def test_any_split_aggregates_to_the_whole(start: int, length: int, cut: float) -> None:
    p = path()
    mid = start + int(length * cut)
    parts = [b for b in (p.bar(start, mid), p.bar(mid, start + length)) if b is not None]
    assert merge_bars(parts) == p.bar(start, start + length)


def test_a_candle_opens_at_the_previous_close() -> None:
    p = path()
    for t in range(T0, T0 + 3_600, 300):
        before, after = p.bar(t - 300, t), p.bar(t, t + 300)
        assert before is not None
        assert after is not None
        assert after.open == before.close


@pytest.mark.parametrize("symbol", ["BTCUSDT", "DOGEUSDT", "POLUSDT", "NEWUSDT"])
def test_candles_are_well_formed(symbol: str) -> None:
    p = path(symbol=symbol)
    midnight = T0 - T0 % DAY
    for t in range(midnight, midnight + DAY, 3_600):
        b = p.bar(t, t + 3_600)
        assert b is not None
        assert b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high
        assert b.low > 0
        assert b.volume > 0
        assert 0 < b.taker_volume <= b.volume
        # Trade ids are contiguous within a UTC day (they restart at a per-day base).
        assert b.last_trade_id - b.first_trade_id + 1 == b.trades


def test_the_market_moves_both_ways() -> None:
    p = path()
    ups = 0
    for t in range(T0, T0 + DAY, 300):
        b = p.bar(t, t + 300)
        assert b is not None
        ups += b.close > b.open
    assert 0.3 < ups / (DAY / 300) < 0.7


def test_nothing_before_the_listing() -> None:
    p = path()
    assert p.bar(LISTING_S - 600, LISTING_S) is None
    straddling = p.bar(LISTING_S - 600, LISTING_S + 60)
    assert straddling == p.bar(LISTING_S, LISTING_S + 60)


def test_splitting_integers_preserves_the_total() -> None:
    assert split_int(0, [1, 2]) == [0, 0]
    assert sum(split_int(999_999_937, [200 + i for i in range(60)])) == 999_999_937


@pytest.mark.parametrize(
    ("symbol", "price_decimals", "qty_decimals"),
    [("BTCUSDT", 2, 5), ("ETHUSDT", 2, 4), ("DOGEUSDT", 6, 0)],
    ids=["BTC in cents", "ETH in cents", "DOGE in micro-dollars"],
)
def test_symbol_precision(symbol: str, price_decimals: int, qty_decimals: int) -> None:
    spec = symbol_spec(symbol)
    assert (spec.price_decimals, spec.qty_decimals) == (price_decimals, qty_decimals)
