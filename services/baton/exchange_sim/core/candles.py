"""Kline intervals and candles cut from a price path. Pure: "now" is always an argument."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from baton.exchange_sim.core.prices import LISTING_MS, Bar, PricePath

_SECOND = 1_000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
_WEEK = 7 * _DAY
# Binance weeks start on Monday 00:00 UTC; the epoch (1970-01-01) was a Thursday.
_FIRST_MONDAY_MS = 4 * _DAY

_FIXED_MS: dict[str, int] = {
    "1s": _SECOND,
    "1m": _MINUTE,
    "3m": 3 * _MINUTE,
    "5m": 5 * _MINUTE,
    "15m": 15 * _MINUTE,
    "30m": 30 * _MINUTE,
    "1h": _HOUR,
    "2h": 2 * _HOUR,
    "4h": 4 * _HOUR,
    "6h": 6 * _HOUR,
    "8h": 8 * _HOUR,
    "12h": 12 * _HOUR,
    "1d": _DAY,
    "3d": 3 * _DAY,
}

# Every interval Binance Spot serves, in its documented order.
INTERVALS: tuple[str, ...] = (*_FIXED_MS, "1w", "1M")


def is_interval(name: str) -> bool:
    return name in _FIXED_MS or name in ("1w", "1M")


def _month_start(t_ms: int) -> dt.datetime:
    d = dt.datetime.fromtimestamp(t_ms / 1000, tz=dt.UTC)
    return dt.datetime(d.year, d.month, 1, tzinfo=dt.UTC)


def _ms(d: dt.datetime) -> int:
    return int(d.timestamp()) * 1000


def interval_open(t_ms: int, interval: str) -> int:
    """Open time of the ``interval`` candle containing ``t_ms``.

    >>> interval_open(1_672_515_782_136, "5m")
    1672515600000
    >>> interval_open(1_700_000_000_000, "1w")  # Tuesday 2023-11-14 -> Monday 2023-11-13
    1699833600000
    >>> interval_open(1_700_000_000_000, "1M")  # -> 2023-11-01
    1698796800000
    """
    size = _FIXED_MS.get(interval)
    if size is not None:
        return t_ms - t_ms % size
    if interval == "1w":
        return t_ms - (t_ms - _FIRST_MONDAY_MS) % _WEEK
    if interval == "1M":
        return _ms(_month_start(t_ms))
    raise ValueError(f"unknown interval {interval!r}")


def interval_next(open_ms: int, interval: str) -> int:
    """Open time of the candle after the one opening at ``open_ms``.

    >>> interval_next(1698796800000, "1M")  # 2023-11-01 -> 2023-12-01
    1701388800000
    """
    size = _FIXED_MS.get(interval)
    if size is not None:
        return open_ms + size
    if interval == "1w":
        return open_ms + _WEEK
    if interval == "1M":
        d = _month_start(open_ms)
        year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
        return _ms(dt.datetime(year, month, 1, tzinfo=dt.UTC))
    raise ValueError(f"unknown interval {interval!r}")


def interval_prev(open_ms: int, interval: str) -> int:
    """Open time of the candle before the one opening at ``open_ms``."""
    size = _FIXED_MS.get(interval)
    if size is not None:
        return open_ms - size
    if interval == "1w":
        return open_ms - _WEEK
    if interval == "1M":
        return interval_open(open_ms - 1, "1M")
    raise ValueError(f"unknown interval {interval!r}")


def interval_close(open_ms: int, interval: str) -> int:
    """Close time (``T``) of the candle opening at ``open_ms``: the next open minus 1 ms."""
    return interval_next(open_ms, interval) - 1


@dataclass(frozen=True, slots=True)
class Kline:
    """One candle as the exchange reports it at some instant (``closed`` once it is over)."""

    symbol: str
    interval: str
    open_time_ms: int
    close_time_ms: int
    bar: Bar
    price_decimals: int
    qty_decimals: int
    closed: bool


def build_kline(path: PricePath, interval: str, open_ms: int, now_ms: int) -> Kline | None:
    """The candle opening at ``open_ms`` as seen at ``now_ms``; None before it has any data.

    A candle still open at ``now_ms`` covers the seconds up to and including now's second.
    """
    close_ms = interval_close(open_ms, interval)
    if now_ms < open_ms:
        return None
    end_s = min(close_ms, now_ms) // 1000 + 1
    bar = path.bar(open_ms // 1000, end_s)
    if bar is None:
        return None
    return Kline(
        symbol=path.spec.symbol,
        interval=interval,
        open_time_ms=open_ms,
        close_time_ms=close_ms,
        bar=bar,
        price_decimals=path.spec.price_decimals,
        qty_decimals=path.spec.qty_decimals,
        closed=now_ms > close_ms,
    )


def select_opens(
    interval: str,
    now_ms: int,
    limit: int,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> list[int]:
    """Open times REST ``/api/v3/klines`` returns, oldest first (Binance's selection rules).

    Candles are picked by open time: ``start_ms <= open <= end_ms``, never one that has not
    opened by ``now_ms`` (the newest may still be open). With a start, the first ``limit``
    from it; otherwise the ``limit`` most recent.

    >>> select_opens("1m", now_ms=1_700_000_030_000, limit=3)
    [1699999860000, 1699999920000, 1699999980000]
    >>> select_opens("1m", now_ms=1_700_000_030_000, limit=2, start_ms=1_699_999_860_001)
    [1699999920000, 1699999980000]
    """
    newest = interval_open(now_ms, interval)
    if end_ms is not None:
        newest = min(newest, interval_open(end_ms, interval))
    oldest = interval_open(LISTING_MS, interval)
    if oldest < LISTING_MS:
        oldest = interval_next(oldest, interval)
    opens: list[int] = []
    if start_ms is not None:
        t = max(interval_open(start_ms, interval), oldest)
        if t < start_ms:
            t = interval_next(t, interval)
        while t <= newest and len(opens) < limit:
            opens.append(t)
            t = interval_next(t, interval)
        return opens
    t = newest
    while t >= oldest and len(opens) < limit:
        opens.append(t)
        t = interval_prev(t, interval)
    opens.reverse()
    return opens
