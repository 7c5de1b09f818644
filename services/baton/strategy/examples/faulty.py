"""A strategy that misbehaves on purpose, for testing how the gateway handles bad strategies.

Config (every fault is off by default; a Faulty with no config is a well-behaved strategy):

- ``action``: what it answers when nothing goes wrong: HOLD (default), UP or DOWN.
- ``raise_every``: ``evaluate`` raises ``FaultyError`` on every seq that is a multiple of it
  (0 = never). The host answers such a request with ``Decision.error``.
- ``delay_ms``: sleep this long inside ``evaluate`` (blocking the host's worker: a slow strategy
  that misses deadlines), on the seqs picked by ``delay_every``.
- ``delay_every``: sleep only on seqs that are a multiple of it (0 = on every evaluation).
- ``exit_on_seq``: when asked to evaluate this seq (any slot), the process exits at once with
  status 3 (``os._exit``: no answer, no cleanup, no drain) - a crash. 0 = never.
- ``wrong_epoch``: answer every evaluation with ``epoch + 1000`` instead of the request's epoch,
  as a host answering under an epoch it was never given would; the gateway must fence it. It
  applies in every role (SHADOW answers too), and the state still follows every request.
- ``fail_import``: ``import_state`` raises ``FaultyError``: a handoff into it fails at import.
- ``nondeterministic``: every evaluation also stores a random number in the state (under
  ``"noise"``), breaking the SDK's determinism rule: two copies of its state never agree, which
  the gateway's digest checks must detect (docs/standby.md).

State (``state_schema`` 1): evaluations seen per slot, ``{"BTC/5m": 12, ...}``.

``Faulty`` is version ``v1``; ``FaultyV2`` is the same strategy as version ``v2`` (same name,
same state schema), so a handoff ``faulty v1 -> faulty v2`` moves state with no migration and
either side can be given the faults.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Mapping
from typing import Any

from baton.common import ConfigError, Settings
from baton.model import Action, EvaluationRequest
from baton.strategy.sdk import Outcome, Strategy

log = logging.getLogger(__name__)

#: What ``wrong_epoch`` adds to the request's epoch.
WRONG_EPOCH_OFFSET = 1000
#: The exit status of an ``exit_on_seq`` crash.
CRASH_EXIT_CODE = 3


class FaultyError(RuntimeError):
    """The error Faulty raises on purpose."""


class Faulty(Strategy[dict[str, int]]):
    name = "faulty"
    version = "v1"
    state_schema = 1

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        s = Settings(self.config)
        action = s.text("action", "HOLD").upper()
        if action not in ("HOLD", "UP", "DOWN"):
            raise ConfigError("action", f"must be HOLD, UP or DOWN, got {action!r}")
        self.action = Action(action)
        self.raise_every = s.integer("raise_every", 0, minimum=0)
        self.delay_s = s.number("delay_ms", 0.0, minimum=0.0, maximum=600_000.0) / 1000.0
        self.delay_every = s.integer("delay_every", 0, minimum=0)
        self.exit_on_seq = s.integer("exit_on_seq", 0, minimum=0)
        self.wrong_epoch = s.boolean("wrong_epoch", False)
        self.fail_import = s.boolean("fail_import", False)
        self.nondeterministic = s.boolean("nondeterministic", False)
        self._rng = random.Random()  # seeded by the OS on purpose: no two processes agree
        s.check_unknown(())

    def delay_for(self, seq: int) -> float:
        """Seconds ``evaluate`` sleeps for ``seq``.

        >>> f = Faulty({"delay_ms": 50, "delay_every": 3})
        >>> [f.delay_for(seq) for seq in (1, 3, 6)]
        [0.0, 0.05, 0.05]
        >>> Faulty({"delay_ms": 50}).delay_for(1)
        0.05
        """
        if self.delay_every and seq % self.delay_every:
            return 0.0
        return self.delay_s

    def crashes_on(self, seq: int) -> bool:
        """Whether evaluating ``seq`` ends the process (``exit_on_seq``)."""
        return bool(self.exit_on_seq) and seq == self.exit_on_seq

    def initial_state(self) -> dict[str, int]:
        return {}

    def evaluate(self, request: EvaluationRequest, state: dict[str, int]) -> Outcome:
        slot_id = request.slot.slot_id
        if self.crashes_on(request.seq):
            log.error(
                "faulty: crashing on purpose (exit_on_seq)",
                extra={"slot_id": slot_id, "seq": request.seq, "exit_code": CRASH_EXIT_CODE},
            )
            os._exit(CRASH_EXIT_CODE)  # a crash: no answer, no flush, no drain
        state[slot_id] = state.get(slot_id, 0) + 1
        if self.nondeterministic:
            state["noise"] = self._rng.getrandbits(31)
        delay = self.delay_for(request.seq)
        if delay:
            time.sleep(delay)  # deliberately blocks the worker: a slow strategy
        if self.wrong_epoch:
            # The SDK gives strategies no say over the answer's epoch (the host copies the
            # request's); breaking that rule is this strategy's whole point, so it rewrites the
            # request it was handed. It is built per message and the host reads its epoch
            # after evaluate returns (pinned by tests).
            object.__setattr__(request, "epoch", request.epoch + WRONG_EPOCH_OFFSET)
        if self.raise_every and request.seq % self.raise_every == 0:
            raise FaultyError(f"injected failure at {slot_id} seq {request.seq}")
        return self.action, "faulty"

    def export_state(self, state: dict[str, int]) -> dict[str, Any]:
        return dict(state)

    def import_state(self, data: dict[str, Any]) -> dict[str, int]:
        if self.fail_import:
            raise FaultyError("injected import failure (fail_import)")
        return {str(k): int(v) for k, v in data.items()}


class FaultyV2(Faulty):
    """Faulty as version ``v2``: same name and state schema, for ``faulty v1 -> v2`` handoffs."""

    version = "v2"
