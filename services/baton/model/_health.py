"""The ledger's health as the control API reports it (part of the contract: ``baton.wire``
converts it): an immutable value the gateway replaces after every flush (``Gateway._flush``).
Pure: no I/O, no clock (the caller passes ``now_ms``).

A failed flush (full disk, I/O error) never stops the clock; the rows wait in memory and the
next flush retries them. This value is how the operator and ``baton instances`` see that, next
to the ``baton_ledger_*`` metrics and the log lines.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class LedgerHealth:
    """As of the last flush.

    >>> h = LedgerHealth().failed("disk I/O error", pending_rows=32, discarded_rows=0)
    >>> (h.ok, h.failed_flushes, h.pending_rows, h.last_error)
    (False, 1, 32, 'disk I/O error')
    >>> h = h.flushed(now_ms=1_000, pending_rows=0, discarded_rows=0)
    >>> (h.ok, h.failed_flushes, h.pending_rows, h.last_error, h.last_ok_flush_ms)
    (True, 0, 0, 'disk I/O error', 1000)
    """

    pending_rows: int = 0  # rows the last flush left unwritten (0 after a good flush)
    discarded_rows: int = 0  # rows discarded unwritten since the ledger was opened
    failed_flushes: int = 0  # consecutive failed flushes up to the last one (0: healthy)
    last_error: str = ""  # the latest failed flush's error, kept after recovery
    last_ok_flush_ms: int = 0  # wall ms of the last good flush; 0 before the first

    @property
    def ok(self) -> bool:
        """The last flush (if any) succeeded."""
        return self.failed_flushes == 0

    def flushed(self, *, now_ms: int, pending_rows: int, discarded_rows: int) -> LedgerHealth:
        """After a good flush: healthy again; the last error stays as a record of the outage."""
        return replace(
            self,
            pending_rows=pending_rows,
            discarded_rows=discarded_rows,
            failed_flushes=0,
            last_ok_flush_ms=now_ms,
        )

    def failed(self, error: str, *, pending_rows: int, discarded_rows: int) -> LedgerHealth:
        """After a failed flush: one more consecutive failure; the last good flush stays."""
        return replace(
            self,
            pending_rows=pending_rows,
            discarded_rows=discarded_rows,
            failed_flushes=self.failed_flushes + 1,
            last_error=error,
        )
