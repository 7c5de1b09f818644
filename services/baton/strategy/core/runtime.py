"""The host's synchronous core: one strategy, its state, and what that state has seen.

``StrategyRuntime`` turns domain requests into domain answers (``Decision``, ``EncodedState``,
``ImportOutcome``) without any I/O; the asyncio host feeds it from the gRPC stream, always from
one worker thread. It is tested directly, without sockets.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Status, StatusCode

from baton.common import sampled
from baton.model import Action, Decision, EvaluationRequest, Fill, Settlement
from baton.strategy.core.errors import StateDecodeError, StateError, StateMismatchError
from baton.strategy.core.state import (
    DEFAULT_MAX_STATE_BYTES,
    DecodedState,
    decode_state,
    encode_state,
    state_digest,
)
from baton.strategy.core.strategy import Strategy, normalize_outcome

log = logging.getLogger(__name__)

#: Longest error text put on a Decision: the ledger records it for every failed evaluation.
MAX_ERROR_CHARS = 2000


def describe_error(exc: BaseException) -> str:
    """``"Type: message"``, bounded, as recorded in ``Decision.error`` and ``ImportResult``."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while a large state is exported or imported.

    Building or parsing a state allocates hundreds of thousands of containers, each allocation
    counting towards a collection, and a full collection walks every object the state holds: on
    a 10 MB state that is most of the time spent (export 4x, parse 2x slower with it running).
    Nothing cyclic is freed in between, so nothing is lost by collecting afterwards. Restores
    the previous setting (a process that disabled the collector keeps it disabled).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True, slots=True)
class EncodedState:
    """A state snapshot as it travels: canonical bytes, their digest, what they have seen."""

    strategy: str
    version: str
    state_schema: int
    data: bytes
    digest: str
    applied_seq: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    """The answer to an import. On failure the runtime kept its previous state."""

    ok: bool
    digest: str  # of the bytes received
    error: str = ""
    state_schema: int = 0  # after migration; 0 when the import failed
    migrated_digest: str = ""  # of the state re-exported after import
    from_schema: int = 0


class StrategyRuntime:
    """A strategy, the state the host owns for it, and ``applied_seq``.

    Not thread-safe by design: every method except the read-only properties must be called from
    one thread (the host's worker). ``applied_seq`` and ``evaluations`` may be read from any
    thread.

    ``applied_seq`` maps slot id to the highest seq whose ``evaluate`` call has completed on this
    state, returned or raised: a raising call may have touched the state, and a successor fed
    "everything after applied_seq" must not see that request twice.

    >>> from baton.strategy.examples.momentum_v1 import MomentumV1
    >>> rt = StrategyRuntime(MomentumV1({}))
    >>> rt.applied_seq, rt.evaluations
    ({}, 0)
    """

    def __init__(
        self,
        strategy: Strategy[Any],
        *,
        max_state_bytes: int = DEFAULT_MAX_STATE_BYTES,
        clock_ns: Callable[[], int] = time.perf_counter_ns,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.strategy = strategy
        self.max_state_bytes = max_state_bytes
        self._clock_ns = clock_ns
        self._state: Any = strategy.initial_state()
        self._applied: dict[str, int] = {}
        self._lock = threading.Lock()  # guards _applied against readers on other threads
        self._evaluations = 0
        self._errors = 0
        # The global provider unless told otherwise (tests pass their own).
        self._tracer = tracer or trace.get_tracer("baton.strategy")

    @property
    def applied_seq(self) -> dict[str, int]:
        with self._lock:
            return dict(self._applied)

    @property
    def evaluations(self) -> int:
        return self._evaluations

    @property
    def errors(self) -> int:
        return self._errors

    def _advance(self, slot_id: str, seq: int) -> None:
        with self._lock:
            previous = self._applied.get(slot_id, 0)
            if seq > previous:
                self._applied[slot_id] = seq
                return
        # The gateway's per-slot seq is strictly increasing; seeing it go back means a replay
        # or a restarted gateway. Still evaluated (state must follow every tick), but visible.
        log.warning(
            "evaluation seq not after applied_seq",
            extra={"slot_id": slot_id, "seq": seq, "applied_seq": previous},
        )

    def evaluate(self, request: EvaluationRequest) -> Decision:
        """Run ``strategy.evaluate``; never raises.

        In a ``strategy.evaluate`` span, child of the gateway's tick, only when the request
        carries a sampled trace context: the gateway sends one only for sampled ticks, and an
        unsampled evaluation pays for no extraction, span or injection (the decision then
        carries no context either)."""
        if not sampled(request.trace_context):
            return self._evaluate(request, None)
        parent = propagate.extract(request.trace_context)
        attributes: dict[str, str | int] = {
            "baton.slot_id": request.slot.slot_id,
            "baton.seq": request.seq,
            "baton.epoch": request.epoch,
            "baton.role": request.role.value,
            "baton.strategy": self.strategy.name,
            "baton.version": self.strategy.version,
        }
        with self._tracer.start_as_current_span(
            "strategy.evaluate", context=parent, attributes=attributes
        ) as span:
            decision = self._evaluate(request, span)
            carrier: dict[str, str] = {}
            propagate.inject(carrier)  # the gateway's execute span follows this one
        return replace(decision, trace_context=carrier)

    def _evaluate(self, request: EvaluationRequest, span: trace.Span | None) -> Decision:
        slot_id = request.slot.slot_id
        started = self._clock_ns()
        action: Action | None = None
        reason = error = ""
        try:
            action, reason = normalize_outcome(self.strategy.evaluate(request, self._state))
        except Exception as exc:
            error = describe_error(exc)
            self._errors += 1
            if span is not None:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, error))
            log.warning(
                "strategy evaluate raised",
                extra={"slot_id": slot_id, "seq": request.seq, "error": error},
                exc_info=True,
            )
        else:
            if span is not None:
                span.set_attribute("baton.action", action.value)
        eval_us = max(0, (self._clock_ns() - started) // 1000)
        self._evaluations += 1
        self._advance(slot_id, request.seq)
        return Decision(
            slot_id=slot_id,
            seq=request.seq,
            epoch=request.epoch,
            action=action,
            reason=reason,
            error=error,
            eval_us=eval_us,
        )

    def on_fill(self, fill: Fill) -> str:
        """Pass a fill to the strategy; returns the error text if its hook raised ("" if not)."""
        try:
            self.strategy.on_fill(fill, self._state)
        except Exception as exc:
            log.warning(
                "strategy on_fill raised",
                extra={"bet_id": fill.bet_id, "slot_id": fill.slot_id},
                exc_info=True,
            )
            return describe_error(exc)
        return ""

    def on_settlement(self, settlement: Settlement) -> str:
        """Pass a settlement to the strategy; returns the error text if its hook raised."""
        try:
            self.strategy.on_settlement(settlement, self._state)
        except Exception as exc:
            log.warning(
                "strategy on_settlement raised",
                extra={"bet_id": settlement.bet_id, "slot_id": settlement.slot_id},
                exc_info=True,
            )
            return describe_error(exc)
        return ""

    def export(self) -> EncodedState:
        """The current state, encoded. Raises ``StateError`` (state is left as it was)."""
        applied = self.applied_seq
        with gc_paused():
            data = encode_state(self.strategy, self._state, applied, max_bytes=self.max_state_bytes)
        return EncodedState(
            strategy=self.strategy.name,
            version=self.strategy.version,
            state_schema=self.strategy.state_schema,
            data=data,
            digest=state_digest(data),
            applied_seq=applied,
        )

    def import_(self, snapshot: EncodedState) -> ImportOutcome:
        """Replace state and ``applied_seq`` with the snapshot's; never raises.

        Fields of the snapshot left empty (``""``, ``0``, ``{}``) are not checked against the
        envelope; the bytes are authoritative.
        """
        digest = state_digest(snapshot.data)
        try:
            with gc_paused():
                decoded, reexported = self._decode(snapshot, digest)
        except StateError as exc:
            error = describe_error(exc)
            log.warning("state import failed", extra={"error": error, "digest": digest})
            return ImportOutcome(ok=False, digest=digest, error=error)
        self._state = decoded.state
        with self._lock:
            self._applied = dict(decoded.applied_seq)
        outcome = ImportOutcome(
            ok=True,
            digest=digest,
            state_schema=self.strategy.state_schema,
            migrated_digest=state_digest(reexported),
            from_schema=decoded.from_schema,
        )
        log.info(
            "state imported",
            extra={
                "digest": digest,
                "migrated_digest": outcome.migrated_digest,
                "from_schema": decoded.from_schema,
                "state_schema": outcome.state_schema,
                "bytes": len(snapshot.data),
            },
        )
        return outcome

    def _decode(self, snapshot: EncodedState, digest: str) -> tuple[DecodedState[Any], bytes]:
        """The snapshot's state and its re-export, or ``StateError``; touches nothing."""
        if snapshot.digest and snapshot.digest != digest:
            raise StateMismatchError(
                f"digest mismatch: snapshot says {snapshot.digest}, its bytes hash to {digest}"
            )
        if snapshot.strategy and snapshot.strategy != self.strategy.name:
            raise StateMismatchError(
                f"snapshot is state of strategy {snapshot.strategy!r}; "
                f"this host runs {self.strategy.name!r}"
            )
        decoded = decode_state(self.strategy, snapshot.data, max_bytes=self.max_state_bytes)
        if snapshot.state_schema and snapshot.state_schema != decoded.from_schema:
            raise StateDecodeError(
                f"snapshot says state_schema {snapshot.state_schema}, "
                f"its bytes carry {decoded.from_schema}"
            )
        if snapshot.applied_seq and dict(snapshot.applied_seq) != decoded.applied_seq:
            raise StateDecodeError("snapshot applied_seq differs from the one in its bytes")
        # Re-export before adopting: a state this code cannot export again would strand
        # the next handoff, so it fails the import while the old state is still in place.
        # Exactly once: its digest is the ImportResult's migrated_digest (equal to the
        # snapshot's when no migration ran: import and export are inverse).
        reexported = encode_state(
            self.strategy,
            decoded.state,
            decoded.applied_seq,
            max_bytes=self.max_state_bytes,
        )
        return decoded, reexported
