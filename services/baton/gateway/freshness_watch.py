"""The market data's freshness at each tick, for every slot of the gateway: decided once per
stream and tick (whatever the number of strategies evaluating it), and logged once when a
stream turns stale (WARNING) or live again.

Offers a callable to the tick loop; the decision itself is ``core.freshness``.
"""

from __future__ import annotations

import logging

from baton.gateway.core.freshness import freshness
from baton.gateway.core.market import MarketBook
from baton.gateway.core.records import Staleness
from baton.model import Slot

log = logging.getLogger(__name__)
# Streams named in one freshness log line (the count is always there): thousands of streams
# turning stale at once (an outage) stay one short line.
_LOGGED_STREAMS = 20


class FreshnessWatch:
    def __init__(
        self,
        *,
        slots: tuple[Slot, ...],
        book: MarketBook,
        stale_after_ms: int,
        needs_history: bool,
    ) -> None:
        self._slots = slots
        self._book = book
        self._stale_after_ms = stale_after_ms
        self._needs_history = needs_history
        # Per stale stream, why: a stream is logged when it turns stale and when it recovers.
        self._stale_streams: dict[tuple[str, str], Staleness] = {}

    def __call__(self, now: int) -> dict[str, Staleness]:
        """Per slot, whether its stream's data are live now (only stale slots are listed).
        Decided per stream; the streams whose freshness changed are logged, in one line a tick
        (WARNING for those that turned stale)."""
        by_stream: dict[tuple[str, str], Staleness] = {}
        out: dict[str, Staleness] = {}
        for slot in self._slots:
            key = (slot.symbol, slot.timeframe)
            verdict = by_stream.get(key)
            if verdict is None:
                verdict = by_stream[key] = freshness(
                    self._book.view(*key),
                    now_ms=now,
                    stale_after_ms=self._stale_after_ms,
                    needs_history=self._needs_history,
                )
            if verdict.stale:
                out[slot.slot_id] = verdict
        self._note_changes(by_stream)
        return out

    def _note_changes(self, by_stream: dict[tuple[str, str], Staleness]) -> None:
        known = self._stale_streams
        turned: dict[str, list[str]] = {}
        recovered: list[str] = []
        for key, verdict in by_stream.items():
            before = known.get(key, Staleness.FRESH)
            if verdict is before:
                continue
            name = f"{key[0]}@{key[1]}"
            if verdict.stale:
                known[key] = verdict
                turned.setdefault(verdict.value, []).append(name)
            else:
                del known[key]
                recovered.append(name)
        for why, names in turned.items():
            log.warning(
                "market data stale: evaluations counted stale",
                extra={
                    "why": why,
                    "count": len(names),
                    "streams": names[:_LOGGED_STREAMS],
                    "stale_streams": len(known),
                },
            )
        if recovered:
            log.info(
                "market data live again",
                extra={
                    "count": len(recovered),
                    "streams": recovered[:_LOGGED_STREAMS],
                    "stale_streams": len(known),
                },
            )
