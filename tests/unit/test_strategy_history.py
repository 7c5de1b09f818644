"""The host's history cache: one conversion per stream and candle close, never a stale one."""

from __future__ import annotations

from baton import wire
from baton.strategy._history import HistoryCache
from baton.v1 import market_pb2 as mk

MIN5 = 300_000


def closed(symbol: str, i: int, close: float = 100.0) -> mk.Candle:
    return mk.Candle(
        symbol=symbol, interval="5m", open_time_ms=i * MIN5, close_time_ms=(i + 1) * MIN5 - 1,
        open=100.0, high=max(100.0, close), low=min(100.0, close), close=close, volume=1.0,
        closed=True,
    )  # fmt: skip


def history(symbol: str, last: int, n: int = 30) -> list[mk.Candle]:
    return [closed(symbol, i) for i in range(last - n + 1, last + 1)]


def test_the_same_history_is_converted_once_and_equals_a_fresh_conversion() -> None:
    cache = HistoryCache()
    first = cache.convert(history("BTCUSDT", 100))
    again = cache.convert(history("BTCUSDT", 100))
    assert again is first
    assert (cache.hits, cache.misses) == (1, 1)
    assert first == tuple(wire.candle_from_proto(c) for c in history("BTCUSDT", 100))


def test_a_candle_close_replaces_the_streams_entry() -> None:
    cache = HistoryCache()
    before = cache.convert(history("BTCUSDT", 100))
    after = cache.convert(history("BTCUSDT", 101))
    assert after[-1].open_time_ms == 101 * MIN5
    assert after != before
    assert (cache.hits, cache.misses) == (0, 2)


def test_streams_do_not_share_entries() -> None:
    cache = HistoryCache()
    btc = cache.convert(history("BTCUSDT", 100))
    eth = cache.convert(history("ETHUSDT", 100))
    assert {c.symbol for c in btc} == {"BTCUSDT"}
    assert {c.symbol for c in eth} == {"ETHUSDT"}
    assert cache.convert(history("BTCUSDT", 100)) is btc


def test_a_shorter_or_corrected_history_is_not_mistaken_for_the_cached_one() -> None:
    cache = HistoryCache()
    cache.convert(history("BTCUSDT", 100))
    shorter = cache.convert(history("BTCUSDT", 100, n=10))
    assert len(shorter) == 10
    corrected = history("BTCUSDT", 100)
    corrected[-1] = closed("BTCUSDT", 100, close=99.0)
    assert cache.convert(corrected)[-1].close == 99.0
    assert cache.misses == 3


def test_an_empty_history_converts_to_nothing() -> None:
    assert HistoryCache().convert([]) == ()
