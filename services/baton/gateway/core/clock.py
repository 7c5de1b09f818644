"""The slot clock: when each tick is due, and what to do when the gateway falls behind.

Pure arithmetic over integer milliseconds; the async driver in ``app.py`` reads the time and
sleeps. Tick ``k`` is scheduled at ``origin + k * cadence`` and must be answered before the next
one (its deadline). Ticks are aligned to multiples of the cadence in Unix time so that every
gateway (and every restart of one) ticks on the same boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Tick:
    index: int
    scheduled_ms: int
    deadline_ms: int


@dataclass(frozen=True, slots=True)
class ClockPlan:
    """What the driver does now: ticks it can no longer dispatch in time (recorded as missed,
    never silently skipped), the tick to dispatch (if one is due) and the next index to wait for."""

    late: tuple[Tick, ...]
    dispatch: Tick | None
    next_index: int


class SlotClock:
    def __init__(self, cadence_ms: int, origin_ms: int) -> None:
        if cadence_ms <= 0:
            raise ValueError(f"cadence_ms must be > 0, got {cadence_ms}")
        self.cadence_ms = cadence_ms
        self.origin_ms = origin_ms

    @classmethod
    def starting_after(cls, cadence_ms: int, now_ms: int) -> SlotClock:
        """A clock whose tick 0 is the first cadence boundary strictly after ``now_ms``.

        >>> SlotClock.starting_after(5000, 12_300).origin_ms
        15000
        """
        return cls(cadence_ms, (now_ms // cadence_ms + 1) * cadence_ms)

    def tick(self, index: int) -> Tick:
        scheduled = self.origin_ms + index * self.cadence_ms
        return Tick(index, scheduled, scheduled + self.cadence_ms)

    def plan(self, now_ms: int, next_index: int) -> ClockPlan:
        """Decide what is due at ``now_ms`` when ``next_index`` is the next undispatched tick.

        >>> c = SlotClock(1000, 0)
        >>> c.plan(500, 1)                      # nothing due yet
        ClockPlan(late=(), dispatch=None, next_index=1)
        >>> c.plan(1003, 1).dispatch            # due: dispatch it
        Tick(index=1, scheduled_ms=1000, deadline_ms=2000)
        >>> p = c.plan(3500, 1)                 # stalled 2.5 s: ticks 1 and 2 are past deadline
        >>> [t.index for t in p.late], p.dispatch.index, p.next_index
        ([1, 2], 3, 4)
        """
        late: list[Tick] = []
        index = next_index
        while True:
            tick = self.tick(index)
            if tick.scheduled_ms > now_ms:
                return ClockPlan(tuple(late), None, index)
            if tick.deadline_ms <= now_ms:
                late.append(tick)
                index += 1
                continue
            return ClockPlan(tuple(late), tick, index + 1)
