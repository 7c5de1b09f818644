"""Carry out a rollout decision: pods, control calls, status, Events (the machine's I/O edge)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from baton import wire
from baton.control import ControlClient, ControlError
from baton.operator.core.facts import format_time, status_from_progress
from baton.operator.core.pods import PodSettings, pod_manifest
from baton.operator.core.rollout import (
    Action,
    CreatePod,
    Decision,
    DeletePod,
    Event,
    Observed,
    Phase,
    Promote,
    Rollback,
    figures_of,
    pod_refused,
)
from baton.operator.core.spec import SpecError
from baton.operator.kube import Kube, KubeError
from baton.operator.observe import World

log = logging.getLogger(__name__)

#: Where a rollout's trace lives between rounds and across operator restarts: the W3C
#: traceparent of its ``operator.rollout`` span, in the StrategyVersion's status.
TRACEPARENT_FIELD = "traceparent"
# Rounds that start in these phases belong to the rollout's trace (the round that moves the
# object on to Active or a terminal phase is the trace's last). Later rounds (an Active
# version retired by its successor, a deletion) make their own trace, linked to it.
_ROLLOUT_PHASES = (None, Phase.PENDING, Phase.STARTING, Phase.HANDING_OFF)
# A pod create refused as invalid: the manifest (from the spec) is wrong, a retry cannot help.
POD_REFUSED_STATUSES = (400, 422)


def stored_traceparent(obj: Mapping[str, Any]) -> str:
    value = (obj.get("status") or {}).get(TRACEPARENT_FIELD)
    return value if isinstance(value, str) else ""


def _span_context(traceparent: str) -> trace.SpanContext | None:
    if not traceparent:
        return None
    ctx = trace.get_current_span(propagate.extract({"traceparent": traceparent})).get_span_context()
    return ctx if ctx.is_valid else None


def _action_span(action: Action) -> tuple[str, dict[str, str]]:
    """Span name and attributes of one executed action."""
    if isinstance(action, CreatePod):
        return "operator.create_pod", {"baton.pod": action.name}
    if isinstance(action, DeletePod):
        return "operator.delete_pod", {"baton.pod": action.name, "baton.reason": action.reason}
    if isinstance(action, Promote):
        return "operator.promote", {
            "baton.instance": action.instance_id,
            "baton.request_id": action.request_id,
        }
    if isinstance(action, Rollback):
        return "operator.rollback", {
            "baton.handoff": action.handoff_id,
            "baton.reason": action.reason,
        }
    return "operator.event", {
        "baton.event_type": action.type.value,
        "baton.reason": action.reason,
        "baton.message": action.message,
    }


class Executor:
    def __init__(
        self,
        kube: Kube,
        control: ControlClient,
        pods: PodSettings,
        *,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._kube = kube
        self._control = control
        self._pods = pods
        self._tracer = tracer or trace.get_tracer("baton.operator")  # tests pass their own

    async def carry_out(self, world: World, decision: Decision, now: float) -> float:
        """Do it; return the requeue delay (shorter when something went wrong).

        Traced: an ``operator.reconcile`` span for each round that does something, with a child
        span per action, inside the rollout's trace (``_round_context``); ``Promote`` carries
        the context to the gateway, whose ``gateway.handoff`` span joins the trace."""
        o = world.observed
        if not decision.actions and decision.progress == o.progress:
            return decision.requeue_s  # steady: nothing to do, no span
        attributes = {
            "baton.sv": o.name,
            "baton.sv_uid": o.uid,
            "baton.phase": (o.progress.phase or Phase.PENDING).value,
            "baton.next_phase": (decision.progress.phase or Phase.PENDING).value,
            "baton.message": decision.progress.message,
        }
        if decision.progress.handoff.phase:
            attributes["baton.handoff_phase"] = decision.progress.handoff.phase
        parent, links, traceparent, rollout = self._round_context(o, world.obj)
        try:
            with self._tracer.start_as_current_span(
                "operator.reconcile", context=parent, links=links, attributes=attributes
            ) as span:
                return await self._carry_out(world, decision, now, span, traceparent)
        finally:
            if rollout is not None:
                rollout.end()

    def _round_context(
        self, o: Observed, obj: Mapping[str, Any]
    ) -> tuple[otel_context.Context, list[trace.Link], str, trace.Span | None]:
        """(parent context, links, traceparent to keep in the status, a rollout span to end).

        The first round of a rollout opens its trace with an ``operator.rollout`` span (ended
        with the round; its traceparent goes into the status written in the same round). The
        rounds after it, by this operator or one restarted meanwhile, are its children. Rounds
        after the rollout (the version is Active or done) are traces of their own, linked."""
        stored = stored_traceparent(obj)
        if o.progress.phase in _ROLLOUT_PHASES:
            if stored:
                return propagate.extract({"traceparent": stored}), [], stored, None
            spec = o.spec if not isinstance(o.spec, SpecError) else None
            rollout = self._tracer.start_span(
                "operator.rollout",
                context=otel_context.Context(),  # a root: one trace per rollout
                attributes={
                    "baton.sv": o.name,
                    "baton.sv_uid": o.uid,
                    "baton.strategy": spec.strategy if spec else "",
                    "baton.version": spec.version if spec else "",
                },
            )
            ctx = trace.set_span_in_context(rollout)
            carrier: dict[str, str] = {}
            propagate.inject(carrier, context=ctx)
            return ctx, [], carrier.get("traceparent", ""), rollout
        linked = _span_context(stored)
        links = [trace.Link(linked)] if linked is not None else []
        return otel_context.Context(), links, stored, None

    async def _carry_out(
        self, world: World, decision: Decision, now: float, span: trace.Span, traceparent: str
    ) -> float:
        o = world.observed
        meta = world.obj.get("metadata") or {}
        namespace = str(meta.get("namespace"))
        progress = decision.progress
        requeue_s = decision.requeue_s
        events: list[Event] = []
        for action in decision.actions:
            if isinstance(action, Event):
                events.append(action)  # posted after the status write
                continue
            if isinstance(action, CreatePod) and isinstance(o.spec, SpecError):
                continue
            name, action_attributes = _action_span(action)
            with self._tracer.start_as_current_span(
                name, attributes=action_attributes
            ) as action_span:
                if isinstance(action, CreatePod):
                    assert not isinstance(o.spec, SpecError)
                    manifest = pod_manifest(
                        pod_name=action.name,
                        namespace=namespace,
                        sv_name=o.name,
                        sv_uid=o.uid,
                        spec=o.spec,
                        settings=self._pods,
                    )
                    try:
                        created = await self._kube.create_pod(namespace, manifest)
                    except KubeError as exc:
                        if exc.status not in POD_REFUSED_STATUSES:
                            raise  # transient or ours (RBAC, outage): the next round retries
                        action_span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
                        log.warning("pod refused", extra={"pod": action.name, "error": str(exc)})
                        refused = pod_refused(o, action.name, str(exc))
                        progress, requeue_s = refused.progress, refused.requeue_s
                        events = [a for a in refused.actions if isinstance(a, Event)]
                        break
                    action_span.set_attribute("baton.created", created)
                    log.info("pod created" if created else "pod exists", extra={"pod": action.name})
                elif isinstance(action, DeletePod):
                    await self._kube.delete_pod(namespace, action.name)
                    log.info("pod deleted", extra={"pod": action.name, "why": action.reason})
                elif isinstance(action, Promote):
                    carrier: dict[str, str] = {}
                    propagate.inject(carrier)  # this span: the gateway's handoff is its child
                    try:
                        handoff = await self._control.promote(
                            action.instance_id,
                            wire.policy_to_proto(action.policy.policy()),
                            request_id=action.request_id,
                            trace_context=carrier,
                        )
                    except ControlError as exc:
                        # Stay where we were; the message says why, the next round tries again.
                        span.set_attribute("baton.promote_error", str(exc))
                        action_span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
                        log.warning("promote refused", extra={"sv": o.name, "error": str(exc)})
                        progress = replace(o.progress, message=f"promote refused: {exc}")
                        events = []
                        break
                    reported = wire.handoff_status_from_proto(handoff)
                    progress = replace(progress, handoff=figures_of(reported))
                    span.set_attribute("baton.handoff", handoff.handoff_id)
                    action_span.set_attribute("baton.handoff", handoff.handoff_id)
                elif isinstance(action, Rollback):
                    try:
                        await self._control.rollback(action.handoff_id, action.reason)
                    except ControlError as exc:
                        # FAILED_PRECONDITION: it ended meanwhile; the next observation says how.
                        action_span.set_attribute("baton.error", str(exc))
                        log.info("rollback not applied", extra={"error": str(exc)})
        if progress != o.progress:
            status = status_from_progress(
                progress, world.obj.get("status"), now, int(meta.get("generation") or 0)
            )
            if traceparent:
                status[TRACEPARENT_FIELD] = traceparent
            try:
                await self._kube.patch_sv_status(
                    namespace, o.name, status, str(meta.get("resourceVersion"))
                )
            except KubeError as exc:
                span.set_attribute("baton.status_write", exc.status)
                if exc.status == 409:  # changed meanwhile: decide again on fresh facts
                    return 0.05
                if exc.status == 404:
                    return requeue_s
                raise
            if progress.phase != o.progress.phase:
                log.info(
                    "phase",
                    extra={
                        "sv": o.name,
                        "from": (o.progress.phase or Phase.PENDING).value,
                        "to": (progress.phase or Phase.PENDING).value,
                        "why": progress.message,
                    },
                )
        for event in events:
            name, event_attributes = _action_span(event)
            with self._tracer.start_as_current_span(name, attributes=event_attributes):
                await self._kube.post_event(
                    world.obj, event.type.value, event.reason, event.message, format_time(now)
                )
        return requeue_s
