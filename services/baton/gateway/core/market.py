"""The gateway's view of the market: per stream, the live candle and recent closed ones, and
the market's clock as seen from the gateway's.

Pure: fed candles by the exchange feed (with the gateway time they arrived at), read by the
clock when it builds evaluation requests and by the venue's pricing (time left in a window).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from baton.gateway.core.freshness import StreamView
from baton.model import Candle


@dataclass(frozen=True, slots=True)
class CandleUpdate:
    """What one incoming candle changed. ``newly_closed`` is false for a repeat of a closed one."""

    candle: Candle
    newly_closed: bool
    stale: bool  # older than what the book already holds: ignored


# Window beginnings arriving within 5% of real time: the gateway's clock is the market's.
REAL_TIME_TOLERANCE = 0.05


class _Stream:
    __slots__ = ("closed", "last_closed_open_ms", "live", "updated_ms")

    def __init__(self, depth: int) -> None:
        self.live: Candle | None = None
        self.updated_ms: int | None = None  # the last frame from the exchange stream
        self.closed: deque[Candle] = deque(maxlen=depth)
        self.last_closed_open_ms = -1


class MarketBook:
    """Live and recent candles for a fixed set of (symbol, interval) streams."""

    def __init__(self, streams: list[tuple[str, str]], depth: int) -> None:
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self._streams = {key: _Stream(depth) for key in streams}
        # The market's clock: the newest window beginning seen live (market ms, gateway ms),
        # and market ms per gateway ms between the last two beginnings (every stream's window
        # boundaries are the one market clock's).
        self._anchor: tuple[int, int] | None = None
        self._rate: float | None = None
        # Streams the exchange feed is still backfilling for the first time (set by the shell).
        self._backfill_pending: frozenset[tuple[str, str]] = frozenset()

    def set_backfill_pending(self, streams: Iterable[tuple[str, str]]) -> None:
        """The (symbol, interval) streams whose first backfill has not finished (freshness)."""
        self._backfill_pending = frozenset(streams)

    def apply(self, candle: Candle, received_ms: int | None = None) -> CandleUpdate:
        """Take one candle update. Closed candles are kept once, in open-time order.
        ``received_ms``: when a frame of the live stream brought it (None for a REST backfill):
        the stream's last update, whether or not the frame changed anything (freshness).

        Exchange streams may repeat or reorder frames (and REST backfill overlaps the stream),
        so anything at or before the last closed candle is a repeat and changes nothing.
        """
        stream = self._streams.get((candle.symbol, candle.interval))
        if stream is None:
            return CandleUpdate(candle, newly_closed=False, stale=True)
        if received_ms is not None:
            stream.updated_ms = received_ms
        if candle.open_time_ms <= stream.last_closed_open_ms:
            return CandleUpdate(candle, newly_closed=False, stale=True)
        if candle.closed:
            stream.closed.append(candle)
            stream.last_closed_open_ms = candle.open_time_ms
            if stream.live is None or stream.live.open_time_ms <= candle.open_time_ms:
                stream.live = candle
            return CandleUpdate(candle, newly_closed=True, stale=False)
        if stream.live is not None and candle.open_time_ms < stream.live.open_time_ms:
            return CandleUpdate(candle, newly_closed=False, stale=True)
        began = stream.live is not None and candle.open_time_ms == stream.live.close_time_ms + 1
        if began and received_ms is not None:  # a live frame: a reading of the market's clock
            self._see_beginning(candle.open_time_ms, received_ms)
        stream.live = candle
        return CandleUpdate(candle, newly_closed=False, stale=False)

    def _see_beginning(self, market_ms: int, now_ms: int) -> None:
        """A live window began (its first frame after the previous window's): a clock reading.
        Backfilled closed candles never are one; nor is the first window a stream sees."""
        anchor = self._anchor
        if anchor is not None and market_ms <= anchor[0]:
            return  # another stream's frame of a boundary already seen: the first one counts
        if anchor is not None and now_ms > anchor[1]:
            self._rate = (market_ms - anchor[0]) / (now_ms - anchor[1])
        self._anchor = (market_ms, now_ms)

    def time_left_ms(self, symbol: str, interval: str, now_ms: int) -> int | None:
        """Market time left in the stream's live window at gateway time ``now_ms``; None when
        unknown (no live window, or the market clock not read yet).

        On a real exchange the gateway's clock is the market's: ``end - now``. When ``now_ms``
        is outside the live window (a skewed clock), or the window beginnings come in faster
        or slower than real time (an exchange simulator running at 60x), market time is the
        last window beginning seen plus the gateway time since, at the rate the last two
        beginnings came in.
        """
        stream = self._streams.get((symbol, interval))
        live = None if stream is None else stream.live
        if live is None or live.closed:
            return None
        end = live.close_time_ms + 1
        real_time = self._rate is None or abs(self._rate - 1.0) <= REAL_TIME_TOLERANCE
        if real_time and live.open_time_ms <= now_ms < end:
            return end - now_ms
        if self._anchor is None or self._rate is None:
            return None
        market_now = self._anchor[0] + (now_ms - self._anchor[1]) * self._rate
        return max(0, min(end - live.open_time_ms, round(end - market_now)))

    def live(self, symbol: str, interval: str) -> Candle | None:
        """The newest candle of the stream: the open one, or the last closed one until the
        exchange sends the next window's first frame."""
        stream = self._streams.get((symbol, interval))
        return None if stream is None else stream.live

    def view(self, symbol: str, interval: str) -> StreamView:
        """The stream as the freshness decision sees it (core/freshness.py)."""
        stream = self._streams.get((symbol, interval))
        pending = (symbol, interval) in self._backfill_pending
        if stream is None:
            return StreamView(
                has_live=False, updated_ms=None, has_history=False, backfill_pending=pending
            )
        return StreamView(
            has_live=stream.live is not None,
            updated_ms=stream.updated_ms,
            has_history=stream.last_closed_open_ms >= 0,
            backfill_pending=pending,
        )

    def last_closed(self, symbol: str, interval: str) -> int:
        """Open time of the newest closed candle (-1: none yet); changes when history does."""
        stream = self._streams.get((symbol, interval))
        return -1 if stream is None else stream.last_closed_open_ms

    def history(self, symbol: str, interval: str, n: int) -> tuple[Candle, ...]:
        """The ``n`` most recent closed candles, oldest first."""
        stream = self._streams.get((symbol, interval))
        if stream is None or n <= 0:
            return ()
        closed = stream.closed
        return tuple(closed)[-n:] if n < len(closed) else tuple(closed)
