"""The clock's warm-up: its first tick waits until the exchange backfill of every stream has
finished (delivered, or refused for good), for at most ``gateway.backfill_wait_s``. The decision
is ``core/warmup.py``'s; this part waits, measures, logs and traces it. Until every stream's
first backfill is over, it also tells the market book, before each tick, which streams are
still being backfilled: their evaluations are counted stale as ``backfill_pending``.

Offers ``Warmup`` (ports.py) to the ticker; reads ``BackfillProgress`` (the exchange feed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from opentelemetry import trace

from baton.gateway.core.market import MarketBook
from baton.gateway.core.warmup import BackfillWait, WaitOutcome
from baton.gateway.metrics import GatewayMetrics
from baton.gateway.ports import BackfillProgress

log = logging.getLogger(__name__)
tracer = trace.get_tracer("baton.gateway")
# Streams named in the log line (the count is always there).
_LOGGED_STREAMS = 20


class BackfillGate:
    def __init__(
        self,
        *,
        feed: BackfillProgress,
        book: MarketBook,
        max_wait_ms: int,
        metrics: GatewayMetrics,
        stopping: asyncio.Event,
        now_ms: Callable[[], int],
    ) -> None:
        self._feed = feed
        self._book = book
        # Until the first backfill of every stream is over: a later reconnect's gap fill is
        # not one (the stream has delivered by then, and is judged by its last update).
        self._first_backfill = True
        self._max_wait_ms = max_wait_ms
        self._metrics = metrics
        self._stopping = stopping
        self._now_ms = now_ms

    async def wait(self) -> None:
        started = time.perf_counter()
        wait = BackfillWait(self._now_ms(), self._max_wait_ms)
        with tracer.start_as_current_span(
            "gateway.backfill_wait", attributes={"baton.max_wait_ms": self._max_wait_ms}
        ) as span:
            outcome = await self._wait(wait)
            waited_s = time.perf_counter() - started
            pending, refused = self._feed.backfill_pending(), self._feed.backfill_refused()
            span.set_attribute("baton.outcome", "stopping" if outcome is None else outcome.value)
            span.set_attribute("baton.waited_ms", round(waited_s * 1000, 1))
            span.set_attribute("baton.pending_streams", len(pending))
            span.set_attribute("baton.refused_streams", len(refused))
        if outcome is None:
            return  # stopping: the clock never starts
        self._metrics.backfill_waited(waited_s, len(pending))
        extra = {
            "outcome": outcome.value,
            "waited_s": round(waited_s, 3),
            "max_wait_s": self._max_wait_ms / 1000,
            "pending": len(pending),
            "pending_streams": _names(pending),
            "refused": len(refused),
            "refused_streams": _names(refused),
        }
        if outcome is WaitOutcome.TIMED_OUT and pending:
            # Their evaluations are counted stale (backfill_pending) until it lands.
            log.warning("backfill unfinished: the clock starts without it", extra=extra)
        else:
            log.info("backfill finished: the clock starts", extra=extra)

    def before_tick(self) -> None:
        if not self._first_backfill:
            return
        pending = self._feed.backfill_pending()
        self._book.set_backfill_pending(pending)
        if not pending:
            self._first_backfill = False

    async def _wait(self, wait: BackfillWait) -> WaitOutcome | None:
        """The outcome once the clock may start; None if the gateway is stopping first."""
        done = self._feed.connected
        stop = asyncio.create_task(self._stopping.wait())
        try:
            while True:
                outcome = wait.decide(backfilled=done.is_set(), now_ms=self._now_ms())
                if outcome is not None:
                    return outcome
                if self._stopping.is_set():
                    return None
                ready = asyncio.create_task(done.wait())
                try:
                    await asyncio.wait(
                        {ready, stop},
                        timeout=wait.remaining_ms(self._now_ms()) / 1000,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    ready.cancel()
        finally:
            stop.cancel()


def _names(streams: tuple[tuple[str, str], ...]) -> list[str]:
    return [f"{symbol}@{interval}" for symbol, interval in streams[:_LOGGED_STREAMS]]
