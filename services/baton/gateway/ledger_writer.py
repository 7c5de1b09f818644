"""The ledger's once-per-tick write, and its health: a failing disk is reported, never fatal.

Offers ``HandoffRecorder`` (ports.py) to the coordinator, ``flush()`` to the tick loop and
``health`` to the ControlService.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from baton.gateway.core.handoff import Handoff
from baton.gateway.ledger import Ledger
from baton.gateway.metrics import GatewayMetrics
from baton.model import LedgerHealth

log = logging.getLogger(__name__)


class LedgerWriter:
    def __init__(self, ledger: Ledger, metrics: GatewayMetrics, now_ms: Callable[[], int]) -> None:
        self._ledger = ledger
        self._metrics = metrics
        self._now_ms = now_ms
        self._health = LedgerHealth()  # replaced after every flush (flush)
        # Called after every flush, written or not (the release gate: held fills may go).
        self.on_flushed: Callable[[], None] | None = None

    @property
    def health(self) -> LedgerHealth:
        """The ledger's writes as of the last flush (the control API's ``ledger``)."""
        return self._health

    def flush(self) -> None:
        ledger = self._ledger
        writing = ledger.pending_rows > 0
        discarded = ledger.discarded_rows
        before = self._health
        started = time.perf_counter()
        try:
            ledger.flush()
        except Exception as exc:  # the clock must keep its time even when the disk does not
            health = before.failed(
                str(exc), pending_rows=ledger.pending_rows, discarded_rows=ledger.discarded_rows
            )
            self._health = health
            self._metrics.ledger_write_failed(ledger.discarded_rows - discarded)
            # The traceback once per outage; then one line per failed flush.
            log.error(
                "ledger flush failed; rows kept for the next flush",
                exc_info=health.failed_flushes == 1,
                extra={
                    "error": str(exc),
                    "pending_rows": ledger.pending_rows,
                    "discarded_rows": ledger.discarded_rows,
                    "failed_flushes": health.failed_flushes,
                },
            )
        else:
            self._health = before.flushed(
                now_ms=self._now_ms(),
                pending_rows=ledger.pending_rows,
                discarded_rows=ledger.discarded_rows,
            )
            if writing:
                self._metrics.ledger_flushed(time.perf_counter() - started)
            if not before.ok:
                log.warning(
                    "ledger writes recovered",
                    extra={
                        "failed_flushes": before.failed_flushes,
                        "discarded_rows": ledger.discarded_rows,
                    },
                )
        self._metrics.ledger_pending(ledger.pending_rows)
        # Once per tick, right after the rows: between ticks the counters equal the ledger.
        self._metrics.commit()
        if self.on_flushed is not None:
            self.on_flushed()

    def flush_early(self) -> None:
        """A write between the per-tick flushes (a tick's answers all in, a held fill):
        skipped while writes fail, so a failing disk still sees one attempt a tick."""
        if self._health.ok:
            self.flush()

    def record_handoff(self, h: Handoff, missed: int) -> None:
        self._ledger.record_handoff(h, missed=missed)
        self._metrics.handoff(h.phase.value, h.pause_ms)
        self.flush()
