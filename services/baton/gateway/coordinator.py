"""Runs handoffs inside the gateway: feeds observed facts to the pure machine in
``handoff.py`` and carries out the actions it returns, on the router and the streams.

One handoff at a time per gateway. Promote starts it and returns at once; it goes on whether
or not the caller stays connected. Watchers get the status after every transition.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from opentelemetry import propagate, trace

from baton.gateway.core import handoff as hm
from baton.gateway.core.records import MISSED_OUTCOMES, EvaluationRecord
from baton.gateway.ports import Fleet, HandoffRecorder, Roster, TakeOver
from baton.model import Role
from baton.v1 import gateway_pb2 as gw

log = logging.getLogger(__name__)
tracer = trace.get_tracer("baton.gateway")

# Shadow comparisons keep this many ticks of answers while waiting for the other side.
_COMPARE_WINDOW_TICKS = 4


class PromoteError(Exception):
    """A promotion that cannot start. ``code`` names the gRPC status it maps to."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Running:
    handoff: hm.Handoff
    snapshot: gw.StateSnapshot | None = None
    missed: int = 0
    first_green_tick: bool = False
    export_due: bool = False  # ExportState goes out right after the next tick's dispatch
    # Blue's journal, kept when blue went away mid-import (KEEP_JOURNAL); what the gateway
    # broadcasts meanwhile (settlements) is added, for green to replay after its import.
    kept_journal: list[gw.AttachResponse] | None = None
    journal_of_gone: list[gw.AttachResponse] | None = None  # blue's, handed over by on_gone
    span: trace.Span | None = None  # gateway.handoff, the whole handoff
    phase_span: trace.Span | None = None  # gateway.handoff.<phase>, its child, the current phase


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
        self._running: _Running | None = None
        self.history: dict[str, hm.Handoff] = {}
        self._by_request: dict[str, str] = {}
        self.missed: dict[str, int] = {}  # handoff id -> evaluations missed while it ran
        self._watchers: dict[str, list[asyncio.Queue[hm.Handoff]]] = {}
        # (slot_id, seq) -> executed action of the ACTIVE / shadow action of green
        self._blue_actions: dict[tuple[str, int], str] = {}
        self._green_actions: dict[tuple[str, int], str] = {}

    # -- queries ------------------------------------------------------------------------------

    @property
    def current(self) -> hm.Handoff | None:
        return self._running.handoff if self._running else None

    def get(self, handoff_id: str) -> hm.Handoff | None:
        if not handoff_id:
            if self._running:
                return self._running.handoff
            return next(reversed(self.history.values()), None)
        if self._running and self._running.handoff.handoff_id == handoff_id:
            return self._running.handoff
        return self.history.get(handoff_id)

    async def watch(self, handoff_id: str) -> AsyncIterator[hm.Handoff]:
        """The status now, then after each transition, until a terminal phase."""
        h = self.get(handoff_id)
        if h is None:
            return
        queue: asyncio.Queue[hm.Handoff] = asyncio.Queue()
        watchers = self._watchers.setdefault(h.handoff_id, [])
        watchers.append(queue)
        try:
            yield h
            while not h.phase.terminal:
                h = await queue.get()
                yield h
        finally:
            watchers.remove(queue)

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
        if request_id and request_id in self._by_request:
            existing = self.get(self._by_request[request_id])
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
                blue_gone = running.handoff.blue_gone
                where = "failing over to its green" if blue_gone else "past its flip"
                raise PromoteError(
                    "FAILED_PRECONDITION",
                    f"handoff {running.handoff.handoff_id} is {where} "
                    f"({running.handoff.phase.value}); promote again when it has finished",
                )
            self._feed(hm.Cancel(self._now_ms(), f"superseded by a promotion of {green_id}"))
        blue = router.active
        now = self._now_ms()
        handoff_id = f"h-{uuid.uuid4().hex[:12]}"
        if blue is None:
            # Nothing to hand off from: the first version of a strategy simply starts.
            self._takeover.flip_to(green_id)
            h = hm.Handoff(
                handoff_id,
                green.info.strategy,
                "",
                green_id,
                "",
                green.info.version,
                policy,
                hm.Phase.COMPLETED,
                now,
                now,
                router.epoch - 1,
                epoch_after=router.epoch,
                finished_ms=now,
                message="no ACTIVE instance: promoted directly",
            )
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
        span = tracer.start_span(
            "gateway.handoff",
            context=propagate.extract(trace_context) if trace_context else None,
            attributes={
                "baton.handoff": handoff_id,
                "baton.strategy": blue.info.strategy,
                "baton.from": blue.info.version,
                "baton.to": green.info.version,
                "baton.blue": blue.instance_id,
                "baton.green": green_id,
                "baton.epoch_before": router.epoch,
                "baton.request_id": request_id,
            },
        )
        self._running = _Running(t.handoff, span=span)
        if request_id:
            self._by_request[request_id] = handoff_id
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
        self._prune_compare()

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
            key = (slot_id, seq)
            self._blue_actions[key] = action
            self._compare(key)

    def on_shadow_answer(self, instance_id: str, slot_id: str, seq: int, action: str) -> None:
        running = self._running
        if running is not None and instance_id == running.handoff.green and self._comparing():
            key = (slot_id, seq)
            self._green_actions[key] = action
            self._compare(key)

    # -- internals ----------------------------------------------------------------------------

    def _comparing(self) -> bool:
        return self._running is not None and self._running.handoff.phase is hm.Phase.SHADOWING

    def _compare(self, key: tuple[str, int]) -> None:
        if key in self._blue_actions and key in self._green_actions:
            blue, green = self._blue_actions.pop(key), self._green_actions.pop(key)
            self._feed(hm.Compared(self._now_ms(), key[0], key[1], blue, green))

    def _prune_compare(self) -> None:
        if not self._blue_actions and not self._green_actions:
            return
        # Sequence numbers advance by one per tick: keep a few ticks' worth.
        horizon = max((seq for _, seq in (*self._blue_actions, *self._green_actions)), default=0)
        for store in (self._blue_actions, self._green_actions):
            for key in [k for k in store if k[1] < horizon - _COMPARE_WINDOW_TICKS]:
                del store[key]

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
        if h.phase is not before.phase or h.steps != before.steps:
            for step in h.steps[len(before.steps) :]:
                log.info(
                    "handoff step",
                    extra={"handoff": h.handoff_id, "step": step.name, "detail": step.detail},
                )
                if running.span is not None:
                    running.span.add_event(f"handoff.{step.name}", {"detail": step.detail})
        if h.phase is not before.phase or running.phase_span is None:
            self._phase_span(running, h)
        for act in t.actions:
            self._act(running, act)
        if not h.phase.terminal:
            self._notify(h)

    def _act(self, running: _Running, act: hm.Act) -> None:
        h = running.handoff
        fleet = self._fleet
        if act is hm.Act.REQUEST_IMPORT:
            assert running.snapshot is not None
            fleet.send_to(
                h.green,
                gw.AttachResponse(
                    import_state=gw.ImportState(handoff_id=h.handoff_id, snapshot=running.snapshot)
                ),
            )
        elif act is hm.Act.START_SHADOW:
            if running.kept_journal is not None:
                journal, running.kept_journal = running.kept_journal, None
            else:
                journal = fleet.stop_journal(h.blue)
            fleet.make_shadow(h.green, journal)
        elif act is hm.Act.KEEP_JOURNAL:
            running.kept_journal = running.journal_of_gone or []
            log.warning(
                "blue went away mid-import; its journal is kept for green",
                extra={"handoff": h.handoff_id, "journaled": len(running.kept_journal)},
            )
        elif act is hm.Act.STOP_SHADOW:
            fleet.stop_journal(h.blue)
            fleet.set_role(h.green, Role.STANDBY)
        elif act is hm.Act.FLIP:
            fleet.stop_journal(h.blue)
            self._takeover.flip_to(h.green, previous_role=Role.SHADOW)
            running.first_green_tick = True
        elif act is hm.Act.HAND_BACK:
            self._takeover.flip_to(h.blue, previous_role=Role.STANDBY)
        elif act is hm.Act.DRAIN_BLUE:
            fleet.drain(h.blue, f"handoff {h.handoff_id} completed its bake window")
        elif act is hm.Act.RELEASE_GREEN:
            fleet.drain(h.green, f"handoff {h.handoff_id} rolled back: {h.message}")
        elif act is hm.Act.FINISHED:
            fleet.stop_journal(h.blue)
            if running.phase_span is not None:
                running.phase_span.end()
                running.phase_span = None
            if running.span is not None:
                _end_handoff_span(running.span, h, running.missed)
            self._running = None
            self._blue_actions.clear()
            self._green_actions.clear()
            self._finish(h, running.missed)

    def _phase_span(self, running: _Running, h: hm.Handoff) -> None:
        """One child span per phase (exporting, importing, shadowing, baking, draining): the
        trace shows how long each took. Ended when the next begins or the handoff finishes."""
        if running.phase_span is not None:
            running.phase_span.end()
            running.phase_span = None
        if running.span is None or h.phase.terminal:
            return
        running.phase_span = tracer.start_span(
            f"gateway.handoff.{h.phase.value}",
            context=trace.set_span_in_context(running.span),
            attributes={"baton.handoff": h.handoff_id, "baton.epoch": self._roster.epoch},
        )

    def missed_of(self, handoff_id: str) -> int:
        running = self._running
        if running is not None and running.handoff.handoff_id == handoff_id:
            return running.missed
        return self.missed.get(handoff_id, 0)

    def _finish(self, h: hm.Handoff, missed: int) -> None:
        self.history[h.handoff_id] = h
        self.missed[h.handoff_id] = missed
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
        for queue in self._watchers.get(h.handoff_id, []):
            queue.put_nowait(h)


def _end_handoff_span(span: trace.Span, h: hm.Handoff, missed: int) -> None:
    span.set_attribute("baton.result", h.phase.value)
    span.set_attribute("baton.missed", missed)
    span.set_attribute("baton.state_bytes", h.state_bytes)
    span.set_attribute("baton.divergences", h.divergences)
    if h.pause_ms is not None:
        span.set_attribute("baton.pause_ms", h.pause_ms)
    if h.transfer_ms is not None:
        span.set_attribute("baton.transfer_ms", h.transfer_ms)
    if h.epoch_after:
        span.set_attribute("baton.epoch_after", h.epoch_after)
    if h.message:
        span.set_attribute("baton.message", h.message)
    if h.phase is not hm.Phase.COMPLETED:
        span.set_status(trace.Status(trace.StatusCode.ERROR, h.message or h.phase.value))
    span.end()
