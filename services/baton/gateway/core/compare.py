"""Shadow comparison: blue's executed action and green's shadow action for one evaluation,
paired whichever arrives first, so that the handoff machine can count divergences."""

from __future__ import annotations

# Keep this many ticks of answers while waiting for the other side.
COMPARE_WINDOW_TICKS = 4

Key = tuple[str, int]  # (slot_id, seq)


class ShadowComparison:
    def __init__(self) -> None:
        # (slot_id, seq) -> executed action of the ACTIVE / shadow action of green
        self._blue: dict[Key, str] = {}
        self._green: dict[Key, str] = {}

    def blue(self, key: Key, action: str) -> tuple[str, str] | None:
        """Blue's action for ``key``; (blue, green) once both are known."""
        self._blue[key] = action
        return self._pair(key)

    def green(self, key: Key, action: str) -> tuple[str, str] | None:
        """Green's action for ``key``; (blue, green) once both are known."""
        self._green[key] = action
        return self._pair(key)

    def _pair(self, key: Key) -> tuple[str, str] | None:
        if key in self._blue and key in self._green:
            return self._blue.pop(key), self._green.pop(key)
        return None

    def prune(self) -> None:
        """Forget answers the other side never matched, past a few ticks."""
        if not self._blue and not self._green:
            return
        # Sequence numbers advance by one per tick: keep a few ticks' worth.
        horizon = max((seq for _, seq in (*self._blue, *self._green)), default=0)
        for store in (self._blue, self._green):
            for key in [k for k in store if k[1] < horizon - COMPARE_WINDOW_TICKS]:
                del store[key]

    def clear(self) -> None:
        self._blue.clear()
        self._green.clear()
