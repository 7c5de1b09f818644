"""Simulated exchange time: a fixed start plus real elapsed time, scaled."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SimClock:
    """Maps the event loop's monotonic clock to exchange milliseconds and back.

    ``sim_ms = start_ms + (real - real_origin) * 1000 * time_scale``

    >>> c = SimClock(start_ms=1_700_000_000_000, real_origin=50.0, time_scale=300.0)
    >>> c.now_ms(51.0)  # one real second later: five simulated minutes
    1700000300000
    >>> c.real_at(1_700_000_300_000)
    51.0
    """

    start_ms: int
    real_origin: float
    time_scale: float

    def now_ms(self, real: float) -> int:
        return self.start_ms + int((real - self.real_origin) * 1000.0 * self.time_scale)

    def real_at(self, sim_ms: int) -> float:
        """The real (monotonic) instant at which the simulated clock reads ``sim_ms``."""
        return self.real_origin + (sim_ms - self.start_ms) / (1000.0 * self.time_scale)
