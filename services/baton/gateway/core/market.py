"""The gateway's view of the market: per stream, the live candle and recent closed ones.

Pure: fed candles by the exchange feed, read by the clock when it builds evaluation requests.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from baton.gateway.core.freshness import StreamView
from baton.model import Candle


@dataclass(frozen=True, slots=True)
class CandleUpdate:
    """What one incoming candle changed. ``newly_closed`` is false for a repeat of a closed one."""

    candle: Candle
    newly_closed: bool
    stale: bool  # older than what the book already holds: ignored


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
        stream.live = candle
        return CandleUpdate(candle, newly_closed=False, stale=False)

    def live(self, symbol: str, interval: str) -> Candle | None:
        """The newest candle of the stream: the open one, or the last closed one until the
        exchange sends the next window's first frame."""
        stream = self._streams.get((symbol, interval))
        return None if stream is None else stream.live

    def view(self, symbol: str, interval: str) -> StreamView:
        """The stream as the freshness decision sees it (core/freshness.py)."""
        stream = self._streams.get((symbol, interval))
        if stream is None:
            return StreamView(has_live=False, updated_ms=None, has_history=False)
        return StreamView(
            has_live=stream.live is not None,
            updated_ms=stream.updated_ms,
            has_history=stream.last_closed_open_ms >= 0,
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
