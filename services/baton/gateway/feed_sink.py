"""The exchange feed's sink (``exchange.FeedSink``): candles into the book and the ledger, and
the settlements a closed candle brings (from each strategy's venue), to the ledger and to that
strategy's instances (through ``Peers``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from baton import wire
from baton.gateway.core.market import MarketBook
from baton.gateway.core.records import ConnectionEvent
from baton.gateway.core.venue import PaperVenue
from baton.gateway.outcomes import GatewayStats
from baton.gateway.ports import MarketRows, Peers
from baton.model import Candle
from baton.v1 import gateway_pb2 as gw

log = logging.getLogger(__name__)


class MarketSink:
    def __init__(
        self,
        *,
        book: MarketBook,
        venues: Callable[[], Iterable[tuple[str, PaperVenue]]],
        ledger: MarketRows,
        peers: Peers,
        stats: GatewayStats,
        now_ms: Callable[[], int],
        executing: Callable[[], bool] = lambda: True,
    ) -> None:
        self._book = book
        self._venues = venues  # (strategy, its venue) for every strategy of the book
        self._ledger = ledger
        self._peers = peers
        self._stats = stats
        self._now_ms = now_ms
        # Leader election: only the leader settles (a deposed one leaves its open bets to the
        # next leader, which settles them from the ledger and its own feed).
        self._executing = executing

    def on_candle(self, candle: Candle, source: str) -> None:
        now = self._now_ms()
        update = self._book.apply(candle, now if source == "ws" else None)
        if not update.newly_closed:
            return
        self._stats.candles_closed += 1
        self._ledger.record_candle(candle, source=source, observed_ms=now)
        if not self._executing():
            return
        for strategy, venue in self._venues():
            for settlement in venue.on_candle(candle):
                self._ledger.record_settlement(settlement, settled_ms=now)
                self._peers.broadcast(
                    strategy, gw.AttachResponse(settlement=wire.settlement_to_proto(settlement))
                )

    def on_connection(self, event: str, detail: str) -> None:
        self._ledger.record_connection_event(ConnectionEvent(self._now_ms(), event, detail))
        # The feed logs each event itself (a WARNING for a problem); the ledger row is the record.
        log.debug("exchange connection", extra={"event": event, "detail": detail})

    def on_malformed(self, reason: str, raw: str) -> None:
        self._stats.malformed += 1
        log.warning("malformed exchange message skipped", extra={"why": reason, "raw": raw[:200]})
