"""Kubernetes objects (plain JSON dicts) to the rollout machine's facts, and back to a status.

Pure: no client, no clock. The executor and the observer call these at the edge.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from baton.operator.core.rollout import (
    Condition,
    HandoffFigures,
    Phase,
    PodFacts,
    Progress,
    Sibling,
    StandbyFigures,
    conditions,
)
from baton.operator.core.spec import BookShape, SpecError, parse_spec


@dataclass(frozen=True)
class BookEntry:
    """One strategy of the gateway's book, as ``ListInstances`` reports it (``StrategyStatus``)."""

    name: str
    epoch: int
    active_instance: str
    divergences: int = 0  # its standby keeping's digest checks that found two states


@dataclass(frozen=True)
class Standing:
    """A strategy's own epoch and ACTIVE instance at the gateway."""

    epoch: int = 0
    active_instance: str = ""  # "" when none of its instances is ACTIVE
    divergences: int = 0  # digest checks that found two different states (docs/standby.md)


def standing_of(
    strategy: str | None, book: Sequence[BookEntry], *, epoch: int, active_instance: str
) -> Standing:
    """The epoch and ACTIVE instance of ``strategy``: its own entry of the gateway's book.

    A gateway that predates the book reports no entries: its one strategy's are the listing's
    top-level ``epoch`` and ``active_instance_id``, as before. A gateway with a book where the
    strategy has no entry yet (its first version has not attached) has nothing for it: the
    top-level fields then describe another strategy, or nothing (several strategies).
    """
    if not book:
        return Standing(epoch, active_instance)
    for entry in book:
        if entry.name == strategy:
            return Standing(entry.epoch, entry.active_instance, entry.divergences)
    return Standing()


def parse_time(value: object) -> float | None:
    """RFC 3339 (``2026-11-24T22:10:19Z``, fractions allowed) to epoch seconds."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def format_time(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _phase(value: object) -> Phase | None:
    try:
        return Phase(value)
    except ValueError:
        return None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _float(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def figures_from_status(raw: Mapping[str, Any]) -> HandoffFigures:
    return HandoffFigures(
        handoff_id=_str(raw.get("id")),
        phase=_str(raw.get("phase")),
        from_instance=_str(raw.get("from")),
        from_version=_str(raw.get("fromVersion")),
        pause_ms=_float(raw.get("pauseMs")),
        missed=_int(raw.get("missed")),
        state_bytes=_int(raw.get("stateBytes")),
        export_digest=_str(raw.get("exportDigest")),
        import_digest=_str(raw.get("importDigest")),
        transfer_ms=_float(raw.get("transferMs")),
        compared=_int(raw.get("compared")),
        divergences=_int(raw.get("divergences")),
        epoch=_int(raw.get("epoch")),
    )


def standby_from_status(raw: Mapping[str, Any]) -> StandbyFigures:
    return StandbyFigures(
        state=_str(raw.get("state")),
        pod=_str(raw.get("pod")),
        instance_id=_str(raw.get("instanceId")),
        failovers=_int(raw.get("failovers")),
        last_failover_at=parse_time(raw.get("lastFailoverAt")),
        last_failover_from=_str(raw.get("lastFailoverFrom")),
        divergences=_int(raw.get("divergences")),
    )


def _standby_to_status(f: StandbyFigures) -> dict[str, Any]:
    out: dict[str, Any] = {
        "state": f.state,
        "pod": f.pod,
        "instanceId": f.instance_id,
        "failovers": f.failovers,
        "divergences": f.divergences,
    }
    if f.last_failover_at is not None:
        out["lastFailoverAt"] = format_time(f.last_failover_at)
    if f.last_failover_from:
        out["lastFailoverFrom"] = f.last_failover_from
    return out


def progress_from_status(status: Mapping[str, Any] | None) -> Progress:
    """The status the operator last wrote, as the machine's ``Progress`` (unknown -> defaults)."""
    s = status or {}
    handoff = s.get("handoff")
    standby = s.get("standby")
    return Progress(
        phase=_phase(s.get("phase")),
        message=_str(s.get("message")),
        pod=_str(s.get("pod")),
        instance_id=_str(s.get("instanceId")),
        started_at=parse_time(s.get("startedAt")),
        handoff=figures_from_status(handoff) if isinstance(handoff, Mapping) else HandoffFigures(),
        request_id=_str((handoff or {}).get("requestId")) if isinstance(handoff, Mapping) else "",
        active=s.get("active") is True,
        epoch=_int(s.get("epoch")),
        superseded_by=_str(s.get("supersededBy")),
        standby=standby_from_status(standby) if isinstance(standby, Mapping) else StandbyFigures(),
    )


def _figures_to_status(f: HandoffFigures, request_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": f.handoff_id,
        "requestId": request_id,
        "phase": f.phase,
        "from": f.from_instance,
        "fromVersion": f.from_version,
        "missed": f.missed,
        "stateBytes": f.state_bytes,
        "exportDigest": f.export_digest,
        "importDigest": f.import_digest,
        "compared": f.compared,
        "divergences": f.divergences,
        "epoch": f.epoch,
    }
    if f.pause_ms is not None:
        out["pauseMs"] = round(f.pause_ms, 3)
    if f.transfer_ms is not None:
        out["transferMs"] = round(f.transfer_ms, 3)
    return out


def _conditions_to_status(
    new: Sequence[Condition], old: Sequence[Mapping[str, Any]], now: float, generation: int
) -> list[dict[str, Any]]:
    """Conditions with ``lastTransitionTime`` kept while the status does not change."""
    before = {c.get("type"): c for c in old if isinstance(c, Mapping)}
    out = []
    for c in new:
        status = "True" if c.status else "False"
        prev = before.get(c.type)
        since = (
            prev.get("lastTransitionTime")
            if prev is not None and prev.get("status") == status and prev.get("lastTransitionTime")
            else format_time(now)
        )
        out.append(
            {
                "type": c.type,
                "status": status,
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": since,
                "observedGeneration": generation,
            }
        )
    return out


def status_from_progress(
    p: Progress, old_status: Mapping[str, Any] | None, now: float, generation: int
) -> dict[str, Any]:
    """The whole ``.status`` to write for ``p``."""
    old = old_status or {}
    phase = p.phase or Phase.PENDING
    out: dict[str, Any] = {
        "phase": phase.value,
        "message": p.message,
        "active": p.active,
        "pod": p.pod,
        "instanceId": p.instance_id,
        "epoch": p.epoch,
        "observedGeneration": generation,
        "conditions": _conditions_to_status(
            conditions(p), old.get("conditions") or [], now, generation
        ),
    }
    if p.started_at is not None:
        out["startedAt"] = format_time(p.started_at)
    if p.handoff.handoff_id or p.request_id:
        out["handoff"] = _figures_to_status(p.handoff, p.request_id)
    if p.superseded_by:
        out["supersededBy"] = p.superseded_by
    if p.standby.state or p.standby.failovers:
        out["standby"] = _standby_to_status(p.standby)
    # Timestamps of the moments that matter to a reader of `kubectl get sv -o yaml`.
    for key, when in (("activeSince", phase is Phase.ACTIVE), ("finishedAt", phase.terminal)):
        if when:
            out[key] = old.get(key) or format_time(now)
    return out


def pod_facts(pod: Mapping[str, Any]) -> PodFacts:
    """What the rollout needs to know of a pod, from its JSON."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    restarts = sum(_int(c.get("restartCount")) for c in statuses)
    ready = bool(statuses) and all(c.get("ready") is True for c in statuses)
    waiting = ""
    exit_code: int | None = None
    for c in statuses:
        state = c.get("state") or {}
        if "waiting" in state:
            waiting = _str((state.get("waiting") or {}).get("reason")) or waiting
        for source in (state.get("terminated"), (c.get("lastState") or {}).get("terminated")):
            if isinstance(source, Mapping) and isinstance(source.get("exitCode"), int):
                exit_code = source["exitCode"]
                break
    return PodFacts(
        name=_str(meta.get("name")),
        phase=_str(status.get("phase")) or "Pending",
        ready=ready,
        restarts=restarts,
        waiting_reason=waiting,
        last_exit_code=exit_code,
        reason=_str(status.get("reason")),
        message=_str(status.get("message")),
        terminating=bool(meta.get("deletionTimestamp")),
    )


def _shape_of(spec: object) -> BookShape | None:
    """A sibling's slots and stake, or None when its spec cannot be read."""
    if not isinstance(spec, Mapping):
        return None
    try:
        return parse_spec(spec).shape
    except SpecError:
        return None


def sibling_from_object(obj: Mapping[str, Any]) -> Sibling:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    return Sibling(
        name=_str(meta.get("name")),
        created=parse_time(meta.get("creationTimestamp")) or 0.0,
        phase=_phase(status.get("phase")),
        instance_id=_str(status.get("instanceId")),
        shape=_shape_of(obj.get("spec")),
    )
