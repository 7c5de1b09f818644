"""Was an evaluation's market data live when it was dispatched? Pure: time passed in.

Decided per stream (symbol, interval) at dispatch time and recorded with each evaluation: an
evaluation answered on stale data counts as evaluated (it was answered) and as stale (it was
not a real evaluation of the live market). docs/gateway.md, "Stale evaluations".
"""

from __future__ import annotations

from dataclasses import dataclass

from baton.gateway.core.records import Staleness

# Binance pushes a kline stream's update at least every 2 s while the market trades; a stream
# silent for longer than this floor is not live, whatever the cadence.
MIN_STALE_AFTER_MS = 5_000


def default_stale_after_ms(cadence_ms: int) -> int:
    """``gateway.stale_after_ms``'s default: two ticks, and at least ``MIN_STALE_AFTER_MS``
    (two and a half exchange push intervals)."""
    return max(2 * cadence_ms, MIN_STALE_AFTER_MS)


@dataclass(frozen=True, slots=True)
class StreamView:
    """What the market book knows of one stream when a tick is dispatched."""

    has_live: bool  # a live (or just-closed) candle is held
    updated_ms: int | None  # when the exchange stream last delivered a frame (None: never)
    has_history: bool  # at least one closed candle (the backfill has delivered)
    # The exchange feed is still backfilling the stream for the first time (its frames are held
    # until REST has delivered the history; not after a refusal, e.g. an unknown symbol).
    backfill_pending: bool = False


def freshness(
    view: StreamView, *, now_ms: int, stale_after_ms: int, needs_history: bool
) -> Staleness:
    """The stream's freshness for an evaluation dispatched at ``now_ms``. The first reason
    found, in order: no live candle (``backfill_pending`` when the first backfill is still
    running, else ``no_live``), no history yet, last update too old
    (``now_ms - updated_ms > stale_after_ms``)."""
    if not view.has_live or view.updated_ms is None:
        return Staleness.BACKFILL_PENDING if view.backfill_pending else Staleness.NO_LIVE
    if needs_history and not view.has_history:
        return Staleness.NO_HISTORY
    if now_ms - view.updated_ms > stale_after_ms:
        return Staleness.OLD
    return Staleness.FRESH
