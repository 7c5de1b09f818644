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
