"""Every scheduled evaluation's one outcome, wherever it was decided (an answer, a timeout, a
late tick, an undelivered batch): counted, told to the handoff, written, measured.

Offers ``Resolver`` (ports.py) to the dispatch and the execution, and ``Settling`` (also
whether anything is still pending: a stopping gateway waits for it) to the tick loop.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from baton.gateway.core.records import EvaluationRecord
from baton.gateway.core.router import Router
from baton.gateway.ledger import DuplicateRecordError
from baton.gateway.metrics import GatewayMetrics
from baton.gateway.ports import EvaluationRows, HandoffFacts

log = logging.getLogger(__name__)


@dataclass
class GatewayStats:
    """The process's counters, logged when it stops; each part counts its own."""

    ticks: int = 0
    dispatched: int = 0
    executed: int = 0
    errors: int = 0
    missed: int = 0
    dropped_decisions: int = 0
    malformed: int = 0
    candles_closed: int = 0
    duplicate_records: int = 0


class Outcomes:
    def __init__(
        self,
        router: Router,
        ledger: EvaluationRows,
        metrics: GatewayMetrics,
        stats: GatewayStats,
        facts: HandoffFacts,
    ) -> None:
        self._router = router
        self._ledger = ledger
        self._metrics = metrics
        self._stats = stats
        self._facts = facts
        self.idle = asyncio.Event()  # set while nothing is pending
        self.idle.set()

    async def settled(self) -> None:
        await self.idle.wait()

    def track(self) -> None:
        """After a dispatch: ``idle`` clears while its evaluations are pending."""
        if self._router.pending:
            self.idle.clear()

    def resolve(self, records: tuple[EvaluationRecord, ...]) -> None:
        for record in records:
            if record.outcome.answered:
                if record.executed:
                    self._stats.executed += 1
                else:
                    self._stats.errors += 1
            else:
                self._stats.missed += 1
            self._facts.on_record(record)
            try:
                self._ledger.record_evaluation(record)
                self._metrics.resolved(record)  # as the ledger has it: not a refused duplicate
            except DuplicateRecordError:
                # A second outcome for one (slot, seq) is a bug (G1/G2): say so loudly, keep the
                # first outcome, and keep the clock running.
                self._stats.duplicate_records += 1
                log.error(
                    "second outcome for one evaluation refused",
                    extra={
                        "slot": record.slot_id,
                        "seq": record.seq,
                        "outcome": record.outcome.value,
                    },
                )
        if not self._router.pending:
            self.idle.set()
