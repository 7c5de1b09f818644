"""Ballast: a benchmark strategy whose state is as big as you ask (``state_mb``, ~10 MB).

Per slot it keeps a ring of the last ``window`` observations; each observation is
``[seq, close, f1, ..., fn]`` where the features are pseudo-random floats derived from
``(slot_id, seq)`` alone (the stand-in for a model's rolling inputs). Deterministic given the
request and the state, as the SDK requires: a SHADOW instance computes the same features, so
blue's and green's states and decisions agree.

``n`` is chosen so that the canonical JSON export of a full state (every slot's ring full) is
about ``state_mb`` megabytes (10^6 bytes) for ``slots`` slots. A fresh (cold) instance starts
with empty rings and answers ``HOLD "warming up (k/window)"`` until its ring for the slot is full:
the benchmark counts those answers as decisions made on lost state.

Decision, once warm: UP if the live close is above the ring's mean close by more than
``threshold`` (relative), DOWN if below by more, HOLD otherwise; at most one bet per slot and
candle window. Cheap: one seeded PRNG and ``n`` draws per evaluation.

Config: ``state_mb`` (> 0, default 10), ``slots`` (the slot count the size is computed for,
default 512), ``window`` (observations per slot, 2..64, default 8), ``threshold`` (default 0.002).

``BallastV1`` and ``BallastV2`` differ only in ``version``: same ``state_schema``, so a handoff
between them moves the state byte for byte (no migration).

``M01`` .. ``M16``: a book of strategies for ``python -m bench.scale book``: MomentumV1 (the
reference strategy, deterministic) under 16 distinct names ``m01`` .. ``m16``, so that 16 of
them can share one gateway (a book is keyed by the strategy's name).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from baton.common import Settings
from baton.model import Action, EvaluationRequest
from baton.strategy.examples.momentum_v1 import MomentumV1
from baton.strategy.sdk import Outcome, Strategy

# Canonical JSON of one random() float and its comma: "0.8444218515250481," (about 19 bytes).
_FLOAT_BYTES = 19
# "[seq,close," and the closing "]," of one observation.
_ENTRY_OVERHEAD = 32


@dataclass(frozen=True, slots=True)
class BallastConfig:
    state_mb: float = 10.0
    slots: int = 512
    window: int = 8
    threshold: float = 0.002

    @classmethod
    def parse(cls, config: Mapping[str, Any]) -> BallastConfig:
        """Validated config; ``ConfigError`` (a ``ValueError``) naming the key otherwise."""
        s = Settings(config)
        d = cls()
        parsed = cls(
            state_mb=s.number("state_mb", d.state_mb, minimum=0.0, exclusive_minimum=True),
            slots=s.integer("slots", d.slots, minimum=1, maximum=20_000),
            window=s.integer("window", d.window, minimum=2, maximum=64),
            threshold=s.number("threshold", d.threshold, minimum=0.0),
        )
        s.check_unknown(())
        return parsed

    @property
    def features(self) -> int:
        """Floats per observation so that a full state exports to about ``state_mb`` MB."""
        per_entry = self.state_mb * 1e6 / (self.slots * self.window)
        return max(1, round((per_entry - _ENTRY_OVERHEAD) / _FLOAT_BYTES))


@dataclass(slots=True)
class SlotRing:
    ring: list[list[float]] = field(default_factory=list)  # oldest first; [seq, close, f...]
    last_bet_window_ms: int | None = None


@dataclass(slots=True)
class BallastState:
    slots: dict[str, SlotRing] = field(default_factory=dict)
    evaluations: int = 0


def features(slot_id: str, seq: int, n: int) -> list[float]:
    """``n`` floats that depend only on ``(slot_id, seq)``: the same in every process (a str
    seed is hashed with SHA-512, not with Python's per-process ``hash``).

    >>> features("BTC/5m", 7, 3) == features("BTC/5m", 7, 3)
    True
    """
    rng = random.Random(f"{slot_id}:{seq}")
    draw = rng.random
    return [draw() for _ in range(n)]


class Ballast(Strategy[BallastState]):
    name = "ballast"
    version = "v0"
    state_schema = 1

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.settings = BallastConfig.parse(self.config)
        self._features = self.settings.features

    def initial_state(self) -> BallastState:
        return BallastState()

    def evaluate(self, request: EvaluationRequest, state: BallastState) -> Outcome:
        slot_id = request.slot.slot_id
        slot = state.slots.setdefault(slot_id, SlotRing())
        state.evaluations += 1
        live = request.live
        if live is None:
            return Action.HOLD, "no live candle"
        window = self.settings.window
        # The decision looks at the ring as it was before this observation.
        warm = len(slot.ring) >= window
        mean = sum(entry[1] for entry in slot.ring) / len(slot.ring) if warm else 0.0
        slot.ring.append([request.seq, live.close, *features(slot_id, request.seq, self._features)])
        del slot.ring[:-window]
        if not warm:
            return Action.HOLD, f"warming up ({len(slot.ring)}/{window})"
        if slot.last_bet_window_ms == live.open_time_ms:
            return Action.HOLD, "already bet this window"
        move = (live.close - mean) / mean if mean > 0 else 0.0
        if abs(move) <= self.settings.threshold:
            return Action.HOLD, f"move={move:+.5f}"
        slot.last_bet_window_ms = live.open_time_ms
        return (Action.UP if move > 0 else Action.DOWN), f"move={move:+.5f}"

    def export_state(self, state: BallastState) -> dict[str, Any]:
        # The rings are handed out as they are, not copied: the SDK encodes them at once, on
        # the same worker thread, before any other call can touch them.
        return {
            "evaluations": state.evaluations,
            "slots": {
                slot_id: {"last_bet_window_ms": s.last_bet_window_ms, "ring": s.ring}
                for slot_id, s in state.slots.items()
            },
        }

    def import_state(self, data: dict[str, Any]) -> BallastState:
        return BallastState(
            evaluations=int(data["evaluations"]),
            slots={
                slot_id: SlotRing(
                    ring=[list(entry) for entry in s["ring"]],
                    last_bet_window_ms=(
                        None if s["last_bet_window_ms"] is None else int(s["last_bet_window_ms"])
                    ),
                )
                for slot_id, s in data["slots"].items()
            },
        )


class BallastV1(Ballast):
    version = "v1"


class BallastV2(Ballast):
    version = "v2"


# -- a book of momentum strategies --------------------------------------------------------------

BOOK_SIZE = 16


class M01(MomentumV1):
    name = "m01"


class M02(MomentumV1):
    name = "m02"


class M03(MomentumV1):
    name = "m03"


class M04(MomentumV1):
    name = "m04"


class M05(MomentumV1):
    name = "m05"


class M06(MomentumV1):
    name = "m06"


class M07(MomentumV1):
    name = "m07"


class M08(MomentumV1):
    name = "m08"


class M09(MomentumV1):
    name = "m09"


class M10(MomentumV1):
    name = "m10"


class M11(MomentumV1):
    name = "m11"


class M12(MomentumV1):
    name = "m12"


class M13(MomentumV1):
    name = "m13"


class M14(MomentumV1):
    name = "m14"


class M15(MomentumV1):
    name = "m15"


class M16(MomentumV1):
    name = "m16"


def book_entrypoint(i: int) -> str:
    """The entrypoint of the ``i``-th (1-based) strategy of the book.

    >>> book_entrypoint(3)
    'bench.strategies:M03'
    """
    if not 1 <= i <= BOOK_SIZE:
        raise ValueError(f"the bench book has strategies 1..{BOOK_SIZE}, not {i}")
    return f"bench.strategies:M{i:02d}"
