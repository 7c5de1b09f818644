"""The gateway's market data: the market book and the exchange feed that keeps it current.

A single gateway builds its own. A replica under leader election builds it while it follows
(docs/gateway-standby.md): the feed connects, backfills and streams as on a leader, but its
candles only update the book (``BookSink``): the leader records them and settles the bets.
Once elected, the replica's gateway takes the same book and the same running feed and points
the feed at its own sink (``SwitchSink.target``), so its first tick finds every stream backfilled
and current instead of waiting for a backfill.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from baton.gateway.config import GatewayConfig
from baton.gateway.core.market import MarketBook
from baton.gateway.exchange import ExchangeFeed, FeedSink
from baton.gateway.metrics import FeedMetrics
from baton.model import Candle

log = logging.getLogger(__name__)


class BookSink:
    """A follower's sink: the book follows the exchange; nothing is recorded or settled."""

    def __init__(self, book: MarketBook, now_ms: Callable[[], int]) -> None:
        self._book = book
        self._now_ms = now_ms

    def on_candle(self, candle: Candle, source: str) -> None:
        # As the gateway's MarketSink applies them: a live frame marks the stream fresh.
        self._book.apply(candle, self._now_ms() if source == "ws" else None)

    def on_connection(self, event: str, detail: str) -> None:
        log.debug("exchange connection (following)", extra={"event": event, "detail": detail})

    def on_malformed(self, reason: str, raw: str) -> None:
        log.warning("malformed exchange message skipped", extra={"why": reason, "raw": raw[:200]})


class SwitchSink:
    """Forwards to ``target``, which the elected gateway replaces with its own sink."""

    def __init__(self, target: FeedSink) -> None:
        self.target = target

    def on_candle(self, candle: Candle, source: str) -> None:
        self.target.on_candle(candle, source)

    def on_connection(self, event: str, detail: str) -> None:
        self.target.on_connection(event, detail)

    def on_malformed(self, reason: str, raw: str) -> None:
        self.target.on_malformed(reason, raw)


@dataclass(frozen=True, slots=True)
class MarketData:
    book: MarketBook
    feed: ExchangeFeed
    sink: SwitchSink
    metrics: FeedMetrics  # the feed's, registered before the gateway's other metrics


def market_book(config: GatewayConfig) -> MarketBook:
    return MarketBook(config.streams, depth=max(config.history, config.venue.vol_window, 1))


def following_market(
    config: GatewayConfig, metrics: FeedMetrics, now_ms: Callable[[], int]
) -> MarketData:
    """A follower's market data (its feed not started: the caller runs ``feed.run()``)."""
    book = market_book(config)
    sink = SwitchSink(BookSink(book, now_ms))
    feed = ExchangeFeed(config.exchange, config.streams, sink, metrics)
    return MarketData(book, feed, sink, metrics)
