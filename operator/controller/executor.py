"""Carry out a rollout decision: pods, control calls, status, Events (the machine's I/O edge)."""

from __future__ import annotations

import logging
from dataclasses import replace

from opentelemetry import propagate, trace

from baton.control import ControlClient, ControlError
from baton.operator.facts import format_time, status_from_progress
from baton.operator.kube import Kube, KubeError
from baton.operator.observe import World, figures_from_proto
from baton.operator.pods import PodSettings, pod_manifest
from baton.operator.rollout import (
    CreatePod,
    Decision,
    DeletePod,
    Event,
    Phase,
    Promote,
    Rollback,
)
from baton.operator.spec import HandoffMode, HandoffSpec, SpecError
from baton.v1 import control_pb2 as ctl

log = logging.getLogger(__name__)
tracer = trace.get_tracer("baton.operator")


def policy_proto(h: HandoffSpec) -> ctl.HandoffPolicy:
    policy = ctl.HandoffPolicy(
        shadow_ticks=h.shadow_ticks,
        # The gateway reads 0 as "default (10 s)"; a spec asking for no bake gets the smallest.
        bake_s=h.bake_s if h.bake_s > 0 else 1e-3,
        no_auto_rollback=not h.auto_rollback,
        max_bake_faults=h.max_bake_faults,
        step_timeout_s=h.step_timeout_s,
        skip_state_transfer=h.mode is HandoffMode.SWAP,
    )
    if h.max_divergence is not None:
        policy.max_divergence = h.max_divergence
    return policy


class Executor:
    def __init__(self, kube: Kube, control: ControlClient, pods: PodSettings) -> None:
        self._kube = kube
        self._control = control
        self._pods = pods

    async def carry_out(self, world: World, decision: Decision, now: float) -> float:
        """Do it; return the requeue delay (shorter when something went wrong)."""
        o = world.observed
        if not decision.actions and decision.progress == o.progress:
            return decision.requeue_s  # steady: nothing to do, no span
        meta = world.obj.get("metadata") or {}
        namespace = str(meta.get("namespace"))
        progress = decision.progress
        events: list[Event] = []
        attributes = {
            "baton.sv": o.name,
            "baton.phase": (o.progress.phase or Phase.PENDING).value,
            "baton.next_phase": (progress.phase or Phase.PENDING).value,
        }
        with tracer.start_as_current_span("operator.reconcile", attributes=attributes) as span:
            for action in decision.actions:
                if isinstance(action, Event):
                    events.append(action)
                elif isinstance(action, CreatePod):
                    if isinstance(o.spec, SpecError):
                        continue
                    manifest = pod_manifest(
                        pod_name=action.name,
                        namespace=namespace,
                        sv_name=o.name,
                        sv_uid=o.uid,
                        spec=o.spec,
                        settings=self._pods,
                    )
                    created = await self._kube.create_pod(namespace, manifest)
                    log.info("pod created" if created else "pod exists", extra={"pod": action.name})
                elif isinstance(action, DeletePod):
                    await self._kube.delete_pod(namespace, action.name)
                    log.info("pod deleted", extra={"pod": action.name, "why": action.reason})
                elif isinstance(action, Promote):
                    carrier: dict[str, str] = {}
                    propagate.inject(carrier)
                    try:
                        handoff = await self._control.promote(
                            action.instance_id,
                            policy_proto(action.policy),
                            request_id=action.request_id,
                            trace_context=carrier,
                        )
                    except ControlError as exc:
                        # Stay where we were; the message says why, the next round tries again.
                        span.set_attribute("baton.promote_error", str(exc))
                        log.warning("promote refused", extra={"sv": o.name, "error": str(exc)})
                        progress = replace(o.progress, message=f"promote refused: {exc}")
                        events = []
                        break
                    progress = replace(progress, handoff=figures_from_proto(handoff))
                    span.set_attribute("baton.handoff", handoff.handoff_id)
                elif isinstance(action, Rollback):
                    try:
                        await self._control.rollback(action.handoff_id, action.reason)
                    except ControlError as exc:
                        # FAILED_PRECONDITION: it ended meanwhile; the next observation says how.
                        log.info("rollback not applied", extra={"error": str(exc)})
            if progress != o.progress:
                status = status_from_progress(
                    progress, world.obj.get("status"), now, int(meta.get("generation") or 0)
                )
                try:
                    await self._kube.patch_sv_status(
                        namespace, o.name, status, str(meta.get("resourceVersion"))
                    )
                except KubeError as exc:
                    if exc.status == 409:  # changed meanwhile: decide again on fresh facts
                        return 0.05
                    if exc.status == 404:
                        return decision.requeue_s
                    raise
                if progress.phase != o.progress.phase:
                    log.info(
                        "phase",
                        extra={
                            "sv": o.name,
                            "from": attributes["baton.phase"],
                            "to": attributes["baton.next_phase"],
                            "why": progress.message,
                        },
                    )
            for event in events:
                await self._kube.post_event(
                    world.obj, event.type.value, event.reason, event.message, format_time(now)
                )
        return decision.requeue_s
