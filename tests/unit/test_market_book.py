"""The gateway's candle book: live candle, closed history, repeats and reordering."""

from __future__ import annotations

import pytest

from baton.gateway.core.market import MarketBook
from baton.model import Candle

M5 = 300_000


def candle(i: int, *, closed: bool, close: float = 100.0) -> Candle:
    t = 1_700_000_100_000 - 1_700_000_100_000 % M5 + i * M5
    return Candle("BTCUSDT", "5m", t, t + M5 - 1, 100.0, 101.0, 99.0, close, closed=closed)


def test_live_then_closed_then_next_window() -> None:
    book = MarketBook([("BTCUSDT", "5m")], depth=3)
    assert book.live("BTCUSDT", "5m") is None
    assert not book.apply(candle(0, closed=False)).newly_closed
    assert book.live("BTCUSDT", "5m") == candle(0, closed=False)
    assert book.apply(candle(0, closed=True)).newly_closed
    assert book.live("BTCUSDT", "5m") == candle(0, closed=True)
    book.apply(candle(1, closed=False))
    assert book.live("BTCUSDT", "5m") == candle(1, closed=False)
    assert book.history("BTCUSDT", "5m", 10) == (candle(0, closed=True),)


@pytest.mark.parametrize(
    ("sequence", "newly"),
    [
        ([0, 0], [True, False]),
        ([0, 1, 0], [True, True, False]),
        ([1, 0], [True, False]),
    ],
    ids=[
        "a repeated closing frame is not new",
        "an old closed candle after a newer one is ignored",
        "a late older candle never goes behind a newer one",
    ],
)
def test_closed_candles_are_kept_once_in_order(sequence: list[int], newly: list[bool]) -> None:
    book = MarketBook([("BTCUSDT", "5m")], depth=10)
    assert [book.apply(candle(i, closed=True)).newly_closed for i in sequence] == newly
    opens = [c.open_time_ms for c in book.history("BTCUSDT", "5m", 10)]
    assert opens == sorted(set(opens))


def test_stale_live_update_does_not_replace_newer_live() -> None:
    book = MarketBook([("BTCUSDT", "5m")], depth=3)
    book.apply(candle(2, closed=False))
    assert book.apply(candle(1, closed=False)).stale
    assert book.live("BTCUSDT", "5m") == candle(2, closed=False)


def test_history_depth_and_unknown_stream() -> None:
    book = MarketBook([("BTCUSDT", "5m")], depth=2)
    for i in range(5):
        book.apply(candle(i, closed=True))
    assert [c.open_time_ms for c in book.history("BTCUSDT", "5m", 5)] == [
        candle(3, closed=True).open_time_ms,
        candle(4, closed=True).open_time_ms,
    ]
    assert book.history("BTCUSDT", "5m", 1) == (candle(4, closed=True),)
    assert book.apply(Candle("ETHUSDT", "5m", 0, M5 - 1, 1, 1, 1, 1, closed=True)).stale
    assert book.live("ETHUSDT", "5m") is None


T0 = candle(0, closed=False).open_time_ms


@pytest.mark.parametrize(
    ("now", "left"),
    [
        pytest.param(T0, M5, id="at-the-open"),
        pytest.param(T0 + 270_000, 30_000, id="30s-before-the-close"),
        pytest.param(T0 + M5 - 1, 1, id="last-ms"),
    ],
)
def test_on_a_real_time_exchange_the_time_left_is_the_gateway_clock(now: int, left: int) -> None:
    book = MarketBook([("BTCUSDT", "5m")], depth=3)
    assert book.time_left_ms("BTCUSDT", "5m", now) is None  # no live candle
    book.apply(candle(0, closed=False), T0)
    assert book.time_left_ms("BTCUSDT", "5m", now) == left


def test_a_faster_simulated_market_is_timed_from_the_window_beginnings_seen() -> None:
    """60x: a 5-minute window passes in 5 s of gateway time, far from the candles' times."""
    book = MarketBook([("BTCUSDT", "5m")], depth=3)
    wall = 1_000_000  # the gateway's clock: nowhere near the market's
    book.apply(candle(0, closed=False), wall - 2_000)  # first seen mid-window: no reading
    book.apply(candle(0, closed=True), wall - 10)
    book.apply(candle(1, closed=False), wall)  # a beginning: the first reading
    assert book.time_left_ms("BTCUSDT", "5m", wall + 1_000) is None  # no rate yet
    book.apply(candle(1, closed=True), wall + 4_990)
    book.apply(candle(2, closed=False), wall + 5_000)  # the second: 300 s in 5 s
    assert book.time_left_ms("BTCUSDT", "5m", wall + 5_000) == M5
    assert book.time_left_ms("BTCUSDT", "5m", wall + 9_500) == 30_000
    assert book.time_left_ms("BTCUSDT", "5m", wall + 60_000) == 0  # clamped to the window


def test_a_fast_market_is_not_timed_by_the_gateway_clock_even_inside_the_window() -> None:
    """A simulator started at the gateway's time: its first windows contain the gateway's
    clock, which runs 60 times slower than the market's."""
    book = MarketBook([("BTCUSDT", "5m")], depth=3)
    book.apply(candle(0, closed=False), T0 - 1)
    book.apply(candle(1, closed=False), T0 + 100)
    book.apply(candle(2, closed=False), T0 + 5_100)  # 300 s of market in 5 s
    now = T0 + 2 * M5 + 100  # inside window 2 by the gateway's clock, near its start
    assert book.time_left_ms("BTCUSDT", "5m", now) == 0  # the market's clock: long past


def test_backfilled_candles_are_no_clock_reading() -> None:
    book = MarketBook([("BTCUSDT", "5m")], depth=5)
    for i in range(3):
        book.apply(candle(i, closed=True), 1_000 + i)  # a REST page: milliseconds apart
    book.apply(candle(3, closed=False), 2_000)
    assert book.time_left_ms("BTCUSDT", "5m", 3_000) is None
