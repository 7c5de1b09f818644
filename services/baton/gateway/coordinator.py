"""Runs handoffs inside the gateway: feeds observed facts to the pure machine in
``handoff.py`` and carries out the actions it returns, on the router and the streams.

One handoff at a time per gateway. Promote starts it and returns at once; it goes on whether
or not the caller stays connected. Watchers get the status after every transition.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping

from baton.gateway.core import handoff as hm
from baton.gateway.core.compare import ShadowComparison
from baton.gateway.core.records import MISSED_OUTCOMES, EvaluationRecord
from baton.gateway.core.router import Instance
from baton.gateway.handoff_acts import Running, carry_out
from baton.gateway.handoff_history import HandoffHistory
from baton.gateway.handoff_trace import HandoffTrace
from baton.gateway.ports import Fleet, HandoffRecorder, Roster, TakeOver
from baton.model import Role
from baton.v1 import gateway_pb2 as gw

log = logging.getLogger(__name__)


class PromoteError(Exception):
    """A promotion that cannot start. ``code`` names the gRPC status it maps to."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Coordinator:
    """Offers ``HandoffFacts`` and ``Boundaries`` (ports.py) to the other parts, and the
    handoff commands to the ControlService; drives instances through ``Fleet`` and
    ``TakeOver``, reads ``Roster``, writes through ``HandoffRecorder``."""

    def __init__(
        self,
        *,
        fleet: Fleet,
        takeover: TakeOver,
        roster: Roster,
        recorder: HandoffRecorder,
        now_ms: Callable[[], int],
    ) -> None:
        self._fleet = fleet
        self._takeover = takeover
        self._roster = roster
        self._recorder = recorder
        self._now_ms = now_ms
        self._running: Running | None = None
        self._history = HandoffHistory()
        self._compare = ShadowComparison()

    # -- queries ------------------------------------------------------------------------------

    @property
    def current(self) -> hm.Handoff | None:
        return self._running.handoff if self._running else None

    @property
    def running(self) -> bool:
        return self._running is not None

    def get(self, handoff_id: str) -> hm.Handoff | None:
        if not handoff_id:
            if self._running:
                return self._running.handoff
            return self._history.last()
        if self._running and self._running.handoff.handoff_id == handoff_id:
            return self._running.handoff
        return self._history.finished.get(handoff_id)

    async def watch(self, handoff_id: str) -> AsyncIterator[hm.Handoff]:
        """The status now, then after each transition, until a terminal phase."""
        h = self.get(handoff_id)
        if h is None:
            return
        async for status in self._history.watch(h):
            yield status

    # -- commands -----------------------------------------------------------------------------

    def promote(
        self,
        green_id: str,
        policy: hm.Policy,
        request_id: str = "",
        trace_context: Mapping[str, str] | None = None,
    ) -> hm.Handoff:
        """Start a handoff to ``green_id``. ``trace_context`` (W3C, from the caller: the
        operator's rollout) makes the ``gateway.handoff`` span part of the caller's trace."""
        served = self._history.handoff_of(request_id)
        if served is not None:
            existing = self.get(served)
            assert existing is not None
            return existing
        router = self._roster
        green = router.instances.get(green_id)
        if green is None:
            raise PromoteError("NOT_FOUND", f"no attached instance {green_id!r}")
        if green.role is Role.ACTIVE:
            raise PromoteError("FAILED_PRECONDITION", f"{green_id} is already ACTIVE")
        running = self._running
        if running is not None:
            if running.handoff.green == green_id:
                return running.handoff
            if running.handoff.phase.flipped or running.handoff.blue_gone:
                raise _not_now(running.handoff)
            self._feed(hm.Cancel(self._now_ms(), f"superseded by a promotion of {green_id}"))
        blue = router.active
        now = self._now_ms()
        handoff_id = f"h-{uuid.uuid4().hex[:12]}"
        if blue is None:
            # Nothing to hand off from: the first version of a strategy simply starts.
            self._takeover.flip_to(green_id)
            h = _promoted_directly(handoff_id, green, policy, now, router.epoch)
            self._finish(h, missed=0)
            return h
        if blue.info.strategy != green.info.strategy:
            raise PromoteError(
                "FAILED_PRECONDITION",
                f"{green_id} runs strategy {green.info.strategy!r}, the ACTIVE "
                f"{blue.instance_id} runs {blue.info.strategy!r}: state moves only within one",
            )
        t = hm.start(
            handoff_id=handoff_id,
            strategy=blue.info.strategy,
            blue=blue.instance_id,
            green=green_id,
            from_version=blue.info.version,
            to_version=green.info.version,
            policy=policy,
            epoch=router.epoch,
            now_ms=now,
        )
        spans = HandoffTrace.begin(t.handoff, request_id, trace_context)
        self._running = Running(t.handoff, trace=spans)
        self._history.remember(request_id, handoff_id)
        log.info(
            "handoff started",
            extra={"handoff": handoff_id, "blue": blue.instance_id, "green": green_id},
        )
        self._running.export_due = t.handoff.phase is hm.Phase.EXPORTING
        self._apply(t)
        return t.handoff

    def rollback(self, handoff_id: str, reason: str) -> hm.Handoff:
        running = self._running
        if running is None or (handoff_id and running.handoff.handoff_id != handoff_id):
            raise PromoteError("FAILED_PRECONDITION", "no such handoff is running")
        self._feed(hm.Cancel(self._now_ms(), reason or "rollback requested"))
        h = self.get(running.handoff.handoff_id)
        assert h is not None
        return h

    # -- facts from the gateway ---------------------------------------------------------------

    def on_boundary(self, now: int) -> None:
        running = self._running
        if running is None:
            return
        caught_up = self._roster.caught_up(running.handoff.green)
        self._feed(hm.Boundary(now, caught_up))

    def after_dispatch(self, scheduled_ms: int, dispatched_ms: float) -> None:
        running = self._running
        if running is not None and running.first_green_tick:
            running.first_green_tick = False
            self._feed(hm.FirstGreenTick(dispatched_ms - scheduled_ms))
        if running is not None and running.export_due:
            # Right after a dispatch: blue answers this tick first (stream order), then has
            # a whole cadence to export before the next tick's requests queue behind it.
            running.export_due = False
            h = running.handoff
            # The snapshot point: everything blue is sent after this is journaled for green.
            self._fleet.send_to(
                h.blue, gw.AttachResponse(export_state=gw.ExportState(handoff_id=h.handoff_id))
            )
            self._fleet.start_journal(h.blue)
            self._feed(hm.ExportSent(self._now_ms()))
        self._compare.prune()

    def on_exported(self, instance_id: str, snapshot: gw.StateSnapshot) -> None:
        running = self._running
        if running is None or snapshot.handoff_id != running.handoff.handoff_id:
            return
        if instance_id != running.handoff.blue:
            return
        running.snapshot = snapshot
        self._feed(
            hm.Exported(self._now_ms(), len(snapshot.state), snapshot.digest, snapshot.error)
        )

    def on_imported(self, instance_id: str, result: gw.ImportResult) -> None:
        running = self._running
        if running is None or result.handoff_id != running.handoff.handoff_id:
            return
        if instance_id != running.handoff.green:
            return
        self._feed(
            hm.Imported(
                self._now_ms(), result.ok, result.digest, result.migrated_digest, result.error
            )
        )

    def on_drained(self, instance_id: str) -> None:
        running = self._running
        if running is not None and instance_id == running.handoff.blue:
            self._feed(hm.Drained(self._now_ms()))

    def on_gone(
        self, instance_id: str, reason: str, journal: list[gw.AttachResponse] | None = None
    ) -> None:
        """``journal``: what the instance's connection had journaled (blue's, mid-handoff)."""
        running = self._running
        if running is not None:
            if instance_id == running.handoff.blue:
                running.journal_of_gone = journal
            self._feed(hm.Gone(self._now_ms(), instance_id, reason))
            if self._running is running:
                running.journal_of_gone = None

    def on_broadcast(self, msg: gw.AttachResponse) -> None:
        """A fill or settlement went to the instances that keep state. While green is still
        importing a gone blue's state, it is owed to green too, after the journal."""
        running = self._running
        if running is not None and running.kept_journal is not None:
            running.kept_journal.append(msg)

    def on_record(self, record: EvaluationRecord) -> None:
        running = self._running
        if running is None:
            return
        if record.outcome in MISSED_OUTCOMES:
            running.missed += 1
        h = running.handoff
        # Errors were reported when the answer arrived (check_green_answer); misses here.
        failed = record.outcome in MISSED_OUTCOMES
        if h.phase is hm.Phase.BAKING and record.instance_id == h.green and failed:
            what = f"{record.outcome.value} at {record.slot_id}#{record.seq}"
            self._feed(hm.GreenFault(self._now_ms(), what))

    def check_green_answer(self, instance_id: str, error: str, epoch: int) -> None:
        """Green, ACTIVE inside its bake window, answered with an error or a wrong epoch: a
        fault, known before the answer is judged, so that a hand-back can still use blue's
        answer for the same evaluation (blue shadows green) and nothing is missed."""
        running = self._running
        if running is None or running.handoff.phase is not hm.Phase.BAKING:
            return
        if instance_id != running.handoff.green or instance_id != self._roster.active_id:
            return
        if error:
            self._feed(hm.GreenFault(self._now_ms(), f"strategy error: {error[:200]}"))
        elif epoch != self._roster.epoch:
            self._feed(hm.GreenFault(self._now_ms(), f"answered under epoch {epoch}"))

    def on_executed(self, slot_id: str, seq: int, action: str) -> None:
        if self._comparing():
            self._compared(slot_id, seq, self._compare.blue((slot_id, seq), action))

    def on_shadow_answer(self, instance_id: str, slot_id: str, seq: int, action: str) -> None:
        running = self._running
        if running is not None and instance_id == running.handoff.green and self._comparing():
            self._compared(slot_id, seq, self._compare.green((slot_id, seq), action))

    # -- internals ----------------------------------------------------------------------------

    def _comparing(self) -> bool:
        return self._running is not None and self._running.handoff.phase is hm.Phase.SHADOWING

    def _compared(self, slot_id: str, seq: int, pair: tuple[str, str] | None) -> None:
        if pair is not None:
            blue, green = pair
            self._feed(hm.Compared(self._now_ms(), slot_id, seq, blue, green))

    def _feed(self, event: hm.Event) -> None:
        running = self._running
        if running is None:
            return
        self._apply(hm.transition(running.handoff, event))

    def _apply(self, t: hm.Transition) -> None:
        running = self._running
        assert running is not None
        before = running.handoff
        running.handoff = t.handoff
        h = t.handoff
        if running.trace is not None:
            running.trace.transitioned(before, h, self._roster.epoch)
        for act in t.actions:
            self._act(running, act)
        if not h.phase.terminal:
            self._notify(h)

    def _act(self, running: Running, act: hm.Act) -> None:
        if act is not hm.Act.FINISHED:
            carry_out(running, act, self._fleet, self._takeover)
            return
        h = running.handoff
        self._fleet.stop_journal(h.blue)
        if running.trace is not None:
            running.trace.finished(h, running.missed)
        self._running = None
        self._compare.clear()
        self._finish(h, running.missed)

    def missed_of(self, handoff_id: str) -> int:
        running = self._running
        if running is not None and running.handoff.handoff_id == handoff_id:
            return running.missed
        return self._history.missed.get(handoff_id, 0)

    def _finish(self, h: hm.Handoff, missed: int) -> None:
        self._history.finish(h, missed)
        self._recorder.record_handoff(h, missed)
        log.info(
            "handoff finished",
            extra={
                "handoff": h.handoff_id,
                "result": h.phase.value,
                "why": h.message,
                "pause_ms": h.pause_ms,
                "missed": missed,
            },
        )
        self._notify(h)

    def _notify(self, h: hm.Handoff) -> None:
        self._history.notify(h)


def _promoted_directly(
    handoff_id: str, green: Instance, policy: hm.Policy, now: int, epoch: int
) -> hm.Handoff:
    """The record of a promotion with no ACTIVE to hand off from: complete at once."""
    return hm.Handoff(
        handoff_id,
        green.info.strategy,
        "",
        green.instance_id,
        "",
        green.info.version,
        policy,
        hm.Phase.COMPLETED,
        now,
        now,
        epoch - 1,
        epoch_after=epoch,
        finished_ms=now,
        message="no ACTIVE instance: promoted directly",
    )


def _not_now(running: hm.Handoff) -> PromoteError:
    """A running handoff past its point of no return cannot be superseded."""
    where = "failing over to its green" if running.blue_gone else "past its flip"
    return PromoteError(
        "FAILED_PRECONDITION",
        f"handoff {running.handoff_id} is {where} "
        f"({running.phase.value}); promote again when it has finished",
    )
