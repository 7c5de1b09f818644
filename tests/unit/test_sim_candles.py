"""Candle boundaries, candles as seen at an instant, and REST's selection of candles."""

from __future__ import annotations

import pytest

from baton.exchange_sim.core.candles import (
    build_kline,
    interval_close,
    interval_next,
    interval_open,
    interval_prev,
    select_opens,
)
from baton.exchange_sim.core.prices import LISTING_MS, PricePath, symbol_spec

MIN = 60_000
T = 1_700_000_000_000  # Tue 2023-11-14 22:13:20 UTC


@pytest.mark.parametrize(
    ("interval", "t", "open_ms", "next_ms"),
    [
        ("1s", T + 999, T, T + 1_000),
        ("1m", T, 1_699_999_980_000, 1_700_000_040_000),
        ("5m", 1_672_515_782_136, 1_672_515_600_000, 1_672_515_900_000),
        ("15m", T, 1_699_999_200_000, 1_700_000_100_000),
        ("1h", T, 1_699_999_200_000, 1_700_002_800_000),
        ("1d", T, 1_699_920_000_000, 1_700_006_400_000),
        ("3d", T, 1_699_833_600_000, 1_700_092_800_000),
        ("1w", T, 1_699_833_600_000, 1_700_438_400_000),
        ("1w", 1_699_833_600_000, 1_699_833_600_000, 1_700_438_400_000),
        ("1M", T, 1_698_796_800_000, 1_701_388_800_000),
        ("1M", 1_707_000_000_000, 1_706_745_600_000, 1_709_251_200_000),
        ("1M", 1_703_000_000_000, 1_701_388_800_000, 1_704_067_200_000),
    ],
    ids=[
        "1s",
        "1m",
        "5m (the spec's example)",
        "15m",
        "1h",
        "1d at midnight UTC",
        "3d aligned to the epoch",
        "1w starts on Monday",
        "1w: Monday midnight opens its own week",
        "1M: calendar month",
        "1M: February of a leap year is 29 days",
        "1M: December rolls over to January",
    ],
)
def test_interval_boundaries(interval: str, t: int, open_ms: int, next_ms: int) -> None:
    assert interval_open(t, interval) == open_ms
    assert interval_next(open_ms, interval) == next_ms
    assert interval_close(open_ms, interval) == next_ms - 1
    assert interval_prev(next_ms, interval) == open_ms


def test_unknown_interval_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown interval"):
        interval_open(T, "7m")


PATH = PricePath(7, symbol_spec("BTCUSDT"))
OPEN = interval_open(T, "5m")
CLOSE = OPEN + 5 * MIN - 1


@pytest.mark.parametrize(
    ("now", "closed", "last_second"),
    [
        (OPEN, False, OPEN),
        (OPEN + 61_500, False, OPEN + 61_000),
        (CLOSE, False, CLOSE - 999),
        (CLOSE + 1, True, CLOSE - 999),
        (CLOSE + 3_600_000, True, CLOSE - 999),
    ],
    ids=[
        "at its open: one second of data",
        "mid-candle: data through now's second",
        "at T it is still open",
        "one ms after T it is closed",
        "long after: still the same closed values",
    ],
)
def test_a_candle_as_seen_at_an_instant(now: int, closed: bool, last_second: int) -> None:
    k = build_kline(PATH, "5m", OPEN, now)
    assert k is not None
    assert (k.open_time_ms, k.close_time_ms, k.closed) == (OPEN, CLOSE, closed)
    assert k.bar == PATH.bar(OPEN // 1000, last_second // 1000 + 1)


def test_no_candle_before_it_opens() -> None:
    assert build_kline(PATH, "5m", OPEN, OPEN - 1) is None


def test_the_closing_values_are_final() -> None:
    at_close = build_kline(PATH, "5m", OPEN, CLOSE + 1)
    later = build_kline(PATH, "5m", OPEN, CLOSE + 10 * MIN)
    assert at_close == later


M0 = interval_open(T, "1m")  # T is 20 s into this minute


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"limit": 3}, [M0 - 3 * MIN, M0 - 2 * MIN, M0 - MIN]),
        ({"limit": 2, "start_ms": M0 - 10 * MIN + 1}, [M0 - 9 * MIN, M0 - 8 * MIN]),
        ({"limit": 2, "start_ms": M0 - 10 * MIN}, [M0 - 10 * MIN, M0 - 9 * MIN]),
        ({"limit": 2, "end_ms": M0 - 5 * MIN + 1}, [M0 - 6 * MIN, M0 - 5 * MIN]),
        (
            {"limit": 10, "start_ms": M0 - 4 * MIN, "end_ms": M0 - 3 * MIN},
            [M0 - 4 * MIN, M0 - 3 * MIN],
        ),
        ({"limit": 5, "start_ms": M0 - 2 * MIN}, [M0 - 2 * MIN, M0 - MIN]),
        ({"limit": 5, "start_ms": M0 + 10 * MIN}, []),
        ({"limit": 2, "start_ms": 0}, [LISTING_MS, LISTING_MS + MIN]),
    ],
    ids=[
        "the most recent, the open one last",
        "from a start time: the first candle opening at or after it",
        "a start exactly at an open includes that candle",
        "the most recent up to an end time",
        "between start and end, open times inclusive",
        "never a candle that has not opened",
        "a start in the future selects nothing",
        "nothing before the listing",
    ],
)
def test_rest_selection(kwargs: dict[str, int], expected: list[int]) -> None:
    now = M0 - MIN + 30_000  # 30 s into the candle that opened a minute before M0
    assert select_opens("1m", now, **kwargs) == expected
