"""Read the world for one StrategyVersion: its object, its pod, its siblings and the gateway."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from baton import wire
from baton.control import ControlClient, ControlError
from baton.operator.core.facts import (
    BookEntry,
    parse_time,
    pod_facts,
    progress_from_status,
    sibling_from_object,
    standing_of,
)
from baton.operator.core.rollout import (
    GatewayFacts,
    HandoffFacts,
    InstanceFacts,
    Observed,
    figures_of,
    pod_pair_for,
)
from baton.operator.core.spec import SpecError, parse_spec
from baton.operator.kube import Kube
from baton.v1 import control_pb2 as ctl


def handoff_facts(h: ctl.HandoffStatus) -> HandoffFacts | None:
    try:
        status = wire.handoff_status_from_proto(h)
    except wire.WireError:
        return None  # a phase this operator does not know: no facts rather than wrong ones
    return HandoffFacts(figures_of(status), status.phase, status.to_instance, status.message)


def _instance(m: ctl.InstanceStatus) -> InstanceFacts | None:
    try:
        i = wire.instance_status_from_proto(m)
    except wire.WireError:
        return None  # unspecified or unknown role: not an instance the rollout can reason about
    return InstanceFacts(i.instance_id, i.pod_name, i.strategy, i.version, i.role)


def book_of(listing: ctl.ListInstancesResponse) -> tuple[BookEntry, ...]:
    """The listing's strategies (none from a gateway that predates the book)."""
    return tuple(
        BookEntry(s.name, s.epoch, s.active_instance_id, s.standby.divergences)
        for s in listing.strategies
    )


async def gateway_facts(
    control: ControlClient, handoff_id: str, strategy: str | None
) -> GatewayFacts:
    """The gateway as ``strategy``'s rollout sees it: every attached instance, and the strategy's
    own epoch and ACTIVE instance (``standing_of``)."""
    try:
        listing = await control.list_instances()
    except ControlError as exc:
        return GatewayFacts(reachable=False, error=str(exc))
    instances = tuple(
        facts
        for i in sorted(listing.instances, key=lambda i: i.attached_ms)
        if (facts := _instance(i)) is not None
    )
    handoff: HandoffFacts | None = None
    missing = False
    if handoff_id:
        try:
            handoff = handoff_facts(await control.get(handoff_id))
        except ControlError as exc:
            if exc.code != "NOT_FOUND":
                return GatewayFacts(reachable=False, error=str(exc))
            missing = True
    standing = standing_of(
        strategy,
        book_of(listing),
        epoch=listing.epoch,
        active_instance=listing.active_instance_id,
    )
    return GatewayFacts(
        epoch=standing.epoch,
        active_instance=standing.active_instance,
        divergences=standing.divergences,
        instances=instances,
        handoff=handoff,
        handoff_missing=missing,
    )


@dataclass(frozen=True)
class World:
    """One observation: the raw object (for writes) and the machine's facts."""

    obj: dict[str, Any]
    observed: Observed


async def observe(
    kube: Kube, control: ControlClient, namespace: str, name: str, now: float
) -> World | None:
    obj = await kube.get_sv(namespace, name)
    if obj is None:
        return None
    meta = obj.get("metadata") or {}
    progress = progress_from_status(obj.get("status"))
    spec: Any
    try:
        spec = parse_spec(obj.get("spec") or {})
    except SpecError as exc:
        spec = exc
    strategy = spec.strategy if not isinstance(spec, SpecError) else None
    siblings = tuple(
        sibling_from_object(other)
        for other in await kube.list_svs(namespace)
        if (other.get("spec") or {}).get("strategy") == strategy
        and (other.get("metadata") or {}).get("uid") != meta.get("uid")
    )
    pod = await kube.get_pod(namespace, progress.pod) if progress.pod else None
    # The other pod of the pair (a hot standby's; looked at for every SV, so that a terminal
    # one's is deleted whatever its spec says now).
    standby_pod = None
    if progress.pod:
        primary, secondary = pod_pair_for(str(meta.get("name")), str(meta.get("uid")))
        other = primary if progress.pod == secondary else secondary
        standby_pod = await kube.get_pod(namespace, other)
    gateway = await gateway_facts(control, progress.handoff.handoff_id, strategy)
    observed = Observed(
        name=str(meta.get("name")),
        uid=str(meta.get("uid")),
        created=parse_time(meta.get("creationTimestamp")) or now,
        spec=spec,
        progress=progress,
        pod=pod_facts(pod) if pod is not None else None,
        gateway=gateway,
        siblings=siblings,
        now=now,
        deleting=bool(meta.get("deletionTimestamp")),
        standby_pod=pod_facts(standby_pod) if standby_pod is not None else None,
    )
    return World(obj, observed)
