"""Reconnect policy as data: geometric growth with full jitter and a cap."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_s: float = 0.2
    factor: float = 2.0
    max_s: float = 10.0
    jitter: float = 0.5  # fraction of each delay that is randomised

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """Endless delays: initial, initial*factor, ... capped at max_s, each jittered down.

        >>> d = Backoff(initial_s=1, factor=2, max_s=5, jitter=0).delays()
        >>> [next(d) for _ in range(5)]
        [1.0, 2.0, 4.0, 5.0, 5.0]
        """
        rng = rng or random.Random()
        delay = self.initial_s
        while True:
            capped = min(delay, self.max_s)
            yield float(capped * (1.0 - self.jitter * rng.random()))
            delay = capped * self.factor
