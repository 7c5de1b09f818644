"""A handoff's trace and log lines: the ``gateway.handoff`` span for the whole handoff, a child
span per phase (the trace shows how long each took), an event and a log line per step."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from opentelemetry import propagate, trace

from baton.gateway.core import handoff as hm

log = logging.getLogger(__name__)
tracer = trace.get_tracer("baton.gateway")


class HandoffTrace:
    def __init__(self, span: trace.Span | None) -> None:
        self._span = span  # gateway.handoff, the whole handoff
        self._phase_span: trace.Span | None = None  # gateway.handoff.<phase>, the current phase

    @classmethod
    def begin(
        cls, h: hm.Handoff, request_id: str, trace_context: Mapping[str, str] | None
    ) -> HandoffTrace:
        """``trace_context`` (W3C, from the caller: the operator's rollout) makes the span part
        of the caller's trace."""
        span = tracer.start_span(
            "gateway.handoff",
            context=propagate.extract(trace_context) if trace_context else None,
            attributes={
                "baton.handoff": h.handoff_id,
                "baton.strategy": h.strategy,
                "baton.from": h.from_version,
                "baton.to": h.to_version,
                "baton.blue": h.blue,
                "baton.green": h.green,
                "baton.epoch_before": h.epoch_before,
                "baton.request_id": request_id,
            },
        )
        return cls(span)

    def transitioned(self, before: hm.Handoff, h: hm.Handoff, epoch: int) -> None:
        """After each transition: its new steps, and a new phase span when the phase moved."""
        if h.phase is not before.phase or h.steps != before.steps:
            for step in h.steps[len(before.steps) :]:
                log.info(
                    "handoff step",
                    extra={"handoff": h.handoff_id, "step": step.name, "detail": step.detail},
                )
                if self._span is not None:
                    self._span.add_event(f"handoff.{step.name}", {"detail": step.detail})
        if h.phase is not before.phase or self._phase_span is None:
            self._phase(h, epoch)

    def _phase(self, h: hm.Handoff, epoch: int) -> None:
        """One child span per phase (exporting, importing, shadowing, baking, draining): the
        trace shows how long each took. Ended when the next begins or the handoff finishes."""
        if self._phase_span is not None:
            self._phase_span.end()
            self._phase_span = None
        if self._span is None or h.phase.terminal:
            return
        self._phase_span = tracer.start_span(
            f"gateway.handoff.{h.phase.value}",
            context=trace.set_span_in_context(self._span),
            attributes={"baton.handoff": h.handoff_id, "baton.epoch": epoch},
        )

    def finished(self, h: hm.Handoff, missed: int) -> None:
        if self._phase_span is not None:
            self._phase_span.end()
            self._phase_span = None
        if self._span is not None:
            _end_handoff_span(self._span, h, missed)


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
