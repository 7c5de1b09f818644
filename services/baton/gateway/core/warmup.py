"""When the clock may start: its first tick waits for the exchange backfill of every stream,
within a bound (``gateway.backfill_wait_s``). Pure: time passed in.

A stream's backfill is finished when REST has delivered its history (the stream is live) or
refused it for good (an unknown symbol, -1121): a permanent refusal must not hold the clock.
Past the bound the clock starts anyway; the streams still being backfilled are then evaluated
without history and counted stale (``no_history``, core/freshness.py). docs/gateway.md,
"The first tick waits for the backfill".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class WaitOutcome(enum.Enum):
    BACKFILLED = "backfilled"  # every stream's backfill finished (delivered or refused for good)
    TIMED_OUT = "timed_out"  # the bound passed first: the clock starts without some history


@dataclass(frozen=True, slots=True)
class BackfillWait:
    """The wait that began at ``started_ms`` (the clock was told to start) for at most
    ``max_wait_ms`` (0: not at all)."""

    started_ms: int
    max_wait_ms: int

    def __post_init__(self) -> None:
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")

    @property
    def deadline_ms(self) -> int:
        return self.started_ms + self.max_wait_ms

    def decide(self, *, backfilled: bool, now_ms: int) -> WaitOutcome | None:
        """Start the clock now (and why), or None: keep waiting, at most ``remaining_ms``.
        A finished backfill wins over a bound that passed at the same moment.

        >>> w = BackfillWait(started_ms=1_000, max_wait_ms=5_000)
        >>> w.decide(backfilled=False, now_ms=3_000) is None
        True
        >>> w.decide(backfilled=True, now_ms=3_000)
        <WaitOutcome.BACKFILLED: 'backfilled'>
        >>> w.decide(backfilled=False, now_ms=6_000)
        <WaitOutcome.TIMED_OUT: 'timed_out'>
        """
        if backfilled:
            return WaitOutcome.BACKFILLED
        if now_ms >= self.deadline_ms:
            return WaitOutcome.TIMED_OUT
        return None

    def remaining_ms(self, now_ms: int) -> int:
        return max(0, self.deadline_ms - now_ms)
