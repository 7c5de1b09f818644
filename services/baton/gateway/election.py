"""The elector: runs the leadership machine (``core/leadership.py``) against a ``LeaseStore``.

One task per gateway replica (``run``). It makes one store call at a time, each bounded by the
machine's deadline for it (a leader's is its renew deadline: a call that hangs cannot keep it
leading), sleeps until the machine's next wake-up otherwise, and carries out the role changes:
``on_elected(term)`` when this replica starts leading, ``on_deposed(reason)`` when it stops,
always before anything else happens (the next store call, a release). Both are plain functions
called on the event loop: they must only flip what the gateway does, at once.

Its waits are ``asyncio.timeout`` blocks, never ``asyncio.wait_for``: on Python 3.11
``wait_for`` can swallow a cancellation that arrives as its inner wait ends (seen here: an
elector that could not be stopped), and an elector that cannot be stopped is a leader that
cannot be stopped.

The gateway asks ``executing()`` before it executes anything: it answers from the machine and
the clock of this instant, so a leader past its renew deadline does not execute even if the
elector's task has not run since (a stalled loop).

Outside facts come in through ``resign()`` (a planned handover: stop now, then release),
``set_eligible()``, ``check()`` (read the store now: the leader says it released) and
``term_seen()`` (a newer term seen elsewhere: fenced). Cancelling ``run`` stops the elector as a
crash would for the others: it stops executing (``on_deposed("stopped")``) but does not release;
the lease runs out. Logs, metrics (``LeaderMetrics``) and spans (``gateway.elected``,
``gateway.deposed``) are docs/gateway-standby.md's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from opentelemetry import trace

from baton.gateway.core.leadership import (
    Call,
    CallKind,
    Check,
    Conflict,
    Deposed,
    Elected,
    Event,
    Failed,
    Leadership,
    LeaseRecord,
    Read,
    Resign,
    Role,
    SetEligible,
    Settings,
    Step,
    TermSeen,
    Tick,
    Wrote,
    executing,
    start,
    step,
)
from baton.gateway.lease import LeaseConflict, LeaseError, LeaseStore
from baton.gateway.metrics import LeaderMetrics

log = logging.getLogger(__name__)
tracer = trace.get_tracer("baton.gateway")


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class Elector:
    def __init__(
        self,
        store: LeaseStore,
        identity: str,
        settings: Settings,
        *,
        on_elected: Callable[[int], None] | None = None,
        on_deposed: Callable[[str], None] | None = None,
        metrics: LeaderMetrics | None = None,
        eligible: bool = True,
        clock: Callable[[], int] = monotonic_ms,
    ) -> None:
        self._store = store
        self._clock = clock
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._metrics = metrics
        self._first = start(identity, settings, clock(), eligible=eligible)
        self._lead: Leadership = self._first.leadership
        self._inbox: asyncio.Queue[Event] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._released = asyncio.Event()
        self._resigning = False
        self._store_down_since: int | None = None
        # Measured, for logs and tests: when this replica last stopped executing, and why.
        self.deposed_at_ms: int | None = None
        self.elected_at_ms: int | None = None

    # -- what the gateway asks ---------------------------------------------------------------

    @property
    def identity(self) -> str:
        return self._lead.identity

    @property
    def leadership(self) -> Leadership:
        return self._lead

    @property
    def role(self) -> Role:
        return self._lead.role

    @property
    def term(self) -> int:
        return self._lead.term

    def executing(self) -> bool:
        """Whether this replica may execute right now."""
        return not self._resigning and executing(self._lead, self._clock())

    # -- what the gateway tells ----------------------------------------------------------------

    async def resign(self, timeout_s: float = 5.0) -> None:
        """A planned handover: stop executing at once, write the lease free, and return when it
        is written (or given up: a failing store, ``timeout_s``). The replica stays ineligible
        until ``set_eligible(True)``."""
        self._resigning = True
        self._released.clear()
        self._post(Resign(self._clock()))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._released.wait()

    def set_eligible(self, eligible: bool) -> None:
        if eligible:
            self._resigning = False
        self._post(SetEligible(self._clock(), eligible))

    def check(self) -> None:
        """Read the store now (the leader says it released)."""
        self._post(Check(self._clock()))

    def term_seen(self, term: int, source: str) -> None:
        self._post(TermSeen(self._clock(), term, source))

    def _post(self, event: Event) -> None:
        self._inbox.put_nowait(event)
        self._wake.set()

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        s = self._first
        try:
            while True:
                s = self._carry_out(s)
                event = await self._next_event(s)
                s = step(self._lead, event)
                if isinstance(event, Resign) and not s.leadership.releasing:
                    self._released.set()  # nothing to release (not leading)
        finally:
            if self._lead.role is Role.LEADER:
                self._deposed(Deposed(self._lead.term, "stopped"))

    def _carry_out(self, s: Step) -> Step:
        was_releasing = self._lead.releasing
        self._lead = s.leadership
        for change in s.changes:
            if isinstance(change, Elected):
                self._elected(change)
            else:
                self._deposed(change)
        if self._metrics is not None and self._lead.role is Role.FOLLOWER:
            self._metrics.term(self._lead.term)
        if was_releasing and not self._lead.releasing:
            self._released.set()
        return s

    async def _next_event(self, s: Step) -> Event:
        if not self._inbox.empty():
            return self._inbox.get_nowait()  # the machine plans again from it: nothing is lost
        if s.call is not None:
            return await self._make(s.call)
        while (delay := (s.wake_ms - self._clock()) / 1000) > 0:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            if not self._inbox.empty():
                return self._inbox.get_nowait()
        return Tick(self._clock())

    async def _make(self, call: Call) -> Event:
        sent = self._clock()
        kind = call.kind
        timeout = max(0.0, (call.deadline_ms - sent) / 1000)
        try:
            async with asyncio.timeout(timeout):
                result = await self._call(call)
        except LeaseConflict as conflict:
            self._store_up()
            return Conflict(self._clock(), kind, conflict.current)
        except TimeoutError:
            return self._failed(kind, f"no answer within {timeout:.3f} s")
        except LeaseError as exc:
            return self._failed(kind, str(exc))
        except Exception as exc:  # the boundary: whatever a store raises, the elector runs on
            return self._failed(kind, f"{type(exc).__name__}: {exc}")
        self._store_up()
        now = self._clock()
        if kind is CallKind.READ:
            return Read(now, result)
        assert result is not None
        return Wrote(now, kind, sent, result)

    async def _call(self, call: Call) -> LeaseRecord | None:
        if call.kind is CallKind.READ:
            return await self._store.read()
        assert call.record is not None
        if call.kind is CallKind.ACQUIRE:
            return await self._store.try_acquire(call.record, call.expected_version)
        assert call.expected_version is not None
        if call.kind is CallKind.RENEW:
            return await self._store.renew(call.record, call.expected_version)
        return await self._store.release(call.record, call.expected_version)

    # -- reporting -------------------------------------------------------------------------------

    def _failed(self, kind: CallKind, error: str) -> Event:
        now = self._clock()
        if self._metrics is not None:
            self._metrics.lease_error(kind.value)
        if self._store_down_since is None:
            self._store_down_since = now
            log.warning(
                "lease store call failed",
                extra={
                    "replica": self.identity,
                    "lease": self._store.where,
                    "call": kind.value,
                    "error": error,
                    "role": self._lead.role.value,
                },
            )
        return Failed(now, kind, error)

    def _store_up(self) -> None:
        if self._store_down_since is not None:
            log.info(
                "lease store answers again",
                extra={
                    "replica": self.identity,
                    "lease": self._store.where,
                    "down_ms": self._clock() - self._store_down_since,
                },
            )
            self._store_down_since = None

    def _elected(self, change: Elected) -> None:
        self.elected_at_ms = self._clock()
        self._resigning = False
        with tracer.start_as_current_span(
            "gateway.elected",
            attributes={"baton.replica": self.identity, "baton.term": change.term},
        ):
            log.info(
                "gateway replica elected leader",
                extra={"replica": self.identity, "term": change.term, "lease": self._store.where},
            )
            if self._metrics is not None:
                self._metrics.elected(change.term)
            if self._on_elected is not None:
                self._on_elected(change.term)

    def _deposed(self, change: Deposed) -> None:
        self.deposed_at_ms = self._clock()
        with tracer.start_as_current_span(
            "gateway.deposed",
            attributes={
                "baton.replica": self.identity,
                "baton.term": change.term,
                "baton.reason": change.reason,
            },
        ):
            level = logging.INFO if change.reason in ("handover", "stopped") else logging.WARNING
            log.log(
                level,
                "gateway replica stopped leading",
                extra={"replica": self.identity, "term": change.term, "reason": change.reason},
            )
            if self._metrics is not None:
                self._metrics.deposed()
            if self._on_deposed is not None:
                self._on_deposed(change.reason)
