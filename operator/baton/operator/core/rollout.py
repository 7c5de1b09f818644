"""The rollout state machine: observed facts in, a decision (actions + status) out.

One StrategyVersion (SV) is reconciled at a time. Its progress lives in its status (``Progress``),
so an operator that restarts anywhere observes the same facts again and decides the same thing:
every action is idempotent (deterministic pod name, ``Promote`` keyed by the SV's uid, deletes
that tolerate "already gone").

Phases of one SV::

    Pending ──► Starting ──► HandingOff ──► Active ──► Retired
       │           │   │          │           (a newer version took over; its pod is deleted)
       │           │   └─► Active (first version of a strategy: nothing to hand off from)
       ▼           ▼              ▼
    Superseded  Failed         Failed / Superseded (aborted or rolled back: blue stays ACTIVE)

The gateway does the handoff itself (export, import, shadow, flip, bake, drain); this machine
decides when to ask for it and what each outcome means for the SV's status and pods. Time is
passed in (``Observed.now``), never read here.

Hot standby (``spec.standby.mode: Hot``): the SV runs two pods of its version, the pair
``pod_pair_for`` names. ``Progress.pod`` is the one whose instance serves (the one promoted, or
ACTIVE on attach); the other is its standby, which the gateway syncs and keeps following by
itself: this machine never promotes it. When the serving instance dies the gateway makes the
standby ACTIVE; the machine sees the ACTIVE instance in the other pod of the pair, records the
failover (``Progress.pod`` moves to it, an Event) and recreates the dead pod, which the gateway
syncs as the next standby. Either pod being ACTIVE is the SV being ACTIVE.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace

from baton.model import HandoffPhase, HandoffStatus, Role
from baton.operator.core.spec import (
    BookShape,
    DeletionPolicy,
    HandoffSpec,
    SpecError,
    StrategyVersionSpec,
)


class Phase(enum.Enum):
    PENDING = "Pending"  # accepted; its pod is not created yet
    STARTING = "Starting"  # pod created; waiting for it to attach to the gateway
    HANDING_OFF = "HandingOff"  # the gateway is moving state into it and flipping
    ACTIVE = "Active"  # its decisions are the ones executed
    RETIRED = "Retired"  # a newer version took over; pod deleted
    SUPERSEDED = "Superseded"  # a newer version was applied before this one went live
    FAILED = "Failed"  # it never went live (or was rolled back); the previous one is untouched

    @property
    def terminal(self) -> bool:
        return self in (Phase.RETIRED, Phase.SUPERSEDED, Phase.FAILED)


# -- observed facts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HandoffFigures:
    """What the status reports of a handoff (copied from the gateway's HandoffStatus)."""

    handoff_id: str = ""
    phase: str = ""  # a HandoffPhase's value, as the status shows it
    from_instance: str = ""
    from_version: str = ""
    pause_ms: float | None = None
    missed: int = 0
    state_bytes: int = 0
    export_digest: str = ""
    import_digest: str = ""
    transfer_ms: float | None = None
    compared: int = 0  # green's shadow decisions compared with blue's before the flip
    divergences: int = 0
    epoch: int = 0


def figures_of(h: HandoffStatus) -> HandoffFigures:
    """The figures of the gateway's status of a handoff that the SV's status keeps."""
    return HandoffFigures(
        handoff_id=h.handoff_id,
        phase=h.phase.value,
        from_instance=h.from_instance,
        from_version=h.from_version,
        pause_ms=h.pause_ms,
        missed=h.missed,
        state_bytes=h.state_bytes,
        export_digest=h.export_digest,
        import_digest=h.import_digest,
        transfer_ms=h.transfer_ms,
        compared=h.compared,
        divergences=h.divergences,
        epoch=h.epoch,
    )


class StandbyState(enum.Enum):
    """``status.standby.state``: the hot standby as the gateway and Kubernetes show it."""

    READY = "Ready"  # attached and following the ACTIVE as SHADOW: a failover loses nothing
    SYNCING = "Syncing"  # attached, not following yet (being synced, or its version not live)
    STARTING = "Starting"  # its pod exists, not attached to the gateway yet
    MISSING = "Missing"  # no pod (being recreated) or its pod is being deleted
    FAILING = "Failing"  # its pod failed or is crash-looping (more than startup.maxRestarts)


@dataclass(frozen=True)
class StandbyFigures:
    """What the status reports of a hot standby (``status.standby``)."""

    state: str = ""  # a StandbyState's value; "" without a hot standby (or once terminal)
    pod: str = ""  # the standby's pod: the pair's pod that is not ``Progress.pod``
    instance_id: str = ""
    failovers: int = 0  # times the ACTIVE instance moved to the other pod of the pair
    last_failover_at: float | None = None
    last_failover_from: str = ""  # the pod the ACTIVE instance left (it died)
    divergences: int = 0  # the gateway's count for the strategy (``GatewayFacts.divergences``)


@dataclass(frozen=True)
class Progress:
    """The SV's status as last written: where the rollout is."""

    phase: Phase | None = None
    message: str = ""
    pod: str = ""
    instance_id: str = ""
    started_at: float | None = None  # pod created (epoch seconds)
    handoff: HandoffFigures = HandoffFigures()
    request_id: str = ""  # the Promote idempotency key in use
    active: bool = False
    epoch: int = 0
    superseded_by: str = ""
    standby: StandbyFigures = StandbyFigures()


@dataclass(frozen=True)
class PodFacts:
    name: str
    phase: str = "Pending"  # Pending | Running | Succeeded | Failed
    ready: bool = False
    restarts: int = 0
    waiting_reason: str = ""  # e.g. CrashLoopBackOff
    last_exit_code: int | None = None
    reason: str = ""  # pod-level reason, e.g. UnsupportedImage
    message: str = ""
    terminating: bool = False


@dataclass(frozen=True)
class InstanceFacts:
    instance_id: str
    pod_name: str
    strategy: str
    version: str
    role: Role


@dataclass(frozen=True)
class HandoffFacts:
    figures: HandoffFigures
    phase: HandoffPhase
    to_instance: str
    message: str = ""


@dataclass(frozen=True)
class GatewayFacts:
    """The gateway as one strategy's rollout sees it. A gateway serves a book of strategies:
    ``epoch`` and ``active_instance`` are this SV's strategy's own (``facts.standing_of``), never
    another strategy's; ``instances`` are every attached instance (found by pod name)."""

    reachable: bool = True
    error: str = ""
    epoch: int = 0  # the strategy's epoch
    active_instance: str = ""  # the strategy's ACTIVE instance, "" when none
    # The strategy's digest checks that found two different states (a hot standby or a replay
    # unlike the ACTIVE: a non-deterministic strategy), since the gateway started.
    divergences: int = 0
    instances: tuple[InstanceFacts, ...] = ()
    handoff: HandoffFacts | None = None  # the one ``Progress.handoff.handoff_id`` names
    handoff_missing: bool = False  # that id is unknown to the gateway (it restarted)

    def by_pod(self, pod: str) -> InstanceFacts | None:
        if not pod:
            return None
        # A pod that re-attached shows up twice for a moment; the newest registration is last.
        found = [i for i in self.instances if i.pod_name == pod]
        return found[-1] if found else None


@dataclass(frozen=True)
class Sibling:
    """Another SV of the same strategy in the same namespace."""

    name: str
    created: float
    phase: Phase | None
    instance_id: str = ""
    shape: BookShape | None = None  # its spec's slots and stake; None when it cannot be read


@dataclass(frozen=True)
class Observed:
    name: str
    uid: str
    created: float  # creationTimestamp, epoch seconds: "newer" means applied later
    spec: StrategyVersionSpec | SpecError
    progress: Progress
    pod: PodFacts | None
    gateway: GatewayFacts
    siblings: tuple[Sibling, ...]
    now: float
    deleting: bool = False
    # The other pod of the SV's pair (``pod_pair_for``): not ``progress.pod``; None when absent.
    # Only a hot standby's SV has one, but it is looked at for every SV (clean-up).
    standby_pod: PodFacts | None = None

    def newer(self, s: Sibling) -> bool:
        return (s.created, s.name) > (self.created, self.name)


# -- decisions --------------------------------------------------------------------------------


class EventType(enum.Enum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True)
class CreatePod:
    name: str


@dataclass(frozen=True)
class DeletePod:
    name: str
    reason: str


@dataclass(frozen=True)
class Promote:
    instance_id: str
    request_id: str
    policy: HandoffSpec


@dataclass(frozen=True)
class Rollback:
    handoff_id: str
    reason: str


@dataclass(frozen=True)
class Event:
    type: EventType
    reason: str
    message: str


Action = CreatePod | DeletePod | Promote | Rollback | Event


@dataclass(frozen=True)
class Decision:
    """Carry out ``actions`` in order, then write ``progress`` (when it changed).

    If a ``Promote`` fails, the executor does not write ``progress`` (the SV stays where it was and
    the next reconcile tries again). ``release`` (only while deleting) lets the object go.
    """

    progress: Progress
    actions: tuple[Action, ...] = ()
    requeue_s: float = 5.0
    release: bool = False


# Requeue intervals: fast while something moves, slow when steady. Events also wake the loop
# (pod and SV changes), so these only bound how stale a gateway-side fact can get.
FAST_S = 0.5
STEADY_S = 5.0
REFUSED_S = 5.0


def pod_name_for(name: str, uid: str) -> str:
    """Deterministic, so a restarted operator finds (or re-creates) the same pod."""
    return f"{name[:52]}-{uid.replace('-', '')[:6]}"


STANDBY_SUFFIX = "-standby"


def pod_pair_for(name: str, uid: str) -> tuple[str, str]:
    """The SV's two pod names with a hot standby: ``pod_name_for``'s and the same with
    ``-standby`` (the SV's name cut shorter, so both stay DNS labels). Neither is "the standby"
    for good: the one whose instance serves is ``Progress.pod``, the other is its standby."""
    return pod_name_for(name, uid), f"{pod_name_for(name[:44], uid)}{STANDBY_SUFFIX}"


def request_id_for(uid: str) -> str:
    return f"sv-{uid}"


def decide(o: Observed) -> Decision:
    """The one entry point: what to do about this SV now."""
    p = o.progress
    if o.deleting:
        return _deleting(o)
    if isinstance(o.spec, SpecError):
        if p.phase is Phase.FAILED:
            return Decision(p, requeue_s=STEADY_S * 12)
        return _fail(o, f"invalid spec: {o.spec}", reason="InvalidSpec")
    spec = o.spec
    phase = p.phase or Phase.PENDING
    if phase.terminal:
        return _terminal(o)
    if phase is Phase.PENDING:
        return _pending(o, spec)
    if phase is Phase.STARTING:
        return _with_standby(o, _starting(o, spec))
    if phase is Phase.HANDING_OFF:
        return _with_standby(o, _handing_off(o, spec))
    return _with_standby(o, _active(o))


def pod_refused(o: Observed, pod: str, why: str) -> Decision:
    """The API server refused to create this version's pod as invalid (HTTP 400 or 422): a spec
    that passed the CRD's schema and ``parse_spec`` but not the Pod's validation (requests over
    limits, an unknown resource name, an object stored before the schema's rules). The same
    manifest would be refused forever, so fail the rollout now, quoting the server, instead of
    retrying until ``startup.timeoutSeconds`` with a message that does not say why."""
    return _fail(
        o,
        f"the API server refused pod {pod}: {why}; fix the spec and apply it as a new "
        "StrategyVersion; the running version is untouched",
        reason="PodRefused",
    )


def _newer_live(o: Observed) -> Sibling | None:
    """The newest later-applied sibling that has not ended, if any."""
    newer = [s for s in o.siblings if o.newer(s) and not (s.phase and s.phase.terminal)]
    return max(newer, key=lambda s: (s.created, s.name)) if newer else None


def _move(
    o: Observed,
    phase: Phase,
    message: str,
    *,
    reason: str,
    warning: bool = False,
    actions: Sequence[Action] = (),
    requeue_s: float = FAST_S,
    **changes: object,
) -> Decision:
    """A transition: new phase and message, an Event telling the story."""
    progress = replace(o.progress, phase=phase, message=message, **changes)  # type: ignore[arg-type]
    event = Event(EventType.WARNING if warning else EventType.NORMAL, reason, message)
    return Decision(progress, (*actions, event), requeue_s=requeue_s)


def _stay(o: Observed, message: str, requeue_s: float = FAST_S, **changes: object) -> Decision:
    """No transition; refresh the message and figures (no Event: nothing happened)."""
    return Decision(replace(o.progress, message=message, **changes), requeue_s=requeue_s)  # type: ignore[arg-type]


def _delete_own_pod(o: Observed, reason: str) -> tuple[Action, ...]:
    """Delete the SV's pods: its serving pod and, with a hot standby, the other of the pair."""
    return tuple(
        DeletePod(pod.name, reason)
        for pod in (o.pod, o.standby_pod)
        if pod is not None and not pod.terminating
    )


def _other_pod(o: Observed, pod: str) -> str:
    """The pod of the SV's pair that is not ``pod``."""
    primary, secondary = pod_pair_for(o.name, o.uid)
    return primary if pod == secondary else secondary


def _pod_facts(o: Observed, name: str) -> PodFacts | None:
    for pod in (o.pod, o.standby_pod):
        if pod is not None and pod.name == name:
            return pod
    return None


def _own_active(o: Observed) -> InstanceFacts | None:
    """The SV's instance that is its strategy's ACTIVE one, in either pod of its pair."""
    if not o.gateway.reachable:
        return None
    for pod in pod_pair_for(o.name, o.uid):
        instance = o.gateway.by_pod(pod)
        if instance is not None and instance.role is Role.ACTIVE:
            return instance
    return None


def _standby_state(o: Observed, spec: StrategyVersionSpec, pod: str) -> StandbyFigures:
    """The standby in ``pod`` as the status reports it (failover figures kept)."""
    facts = _pod_facts(o, pod)
    instance = o.gateway.by_pod(pod) if o.gateway.reachable else None
    if facts is None or facts.terminating:
        state = StandbyState.MISSING
    elif instance is not None:
        # Attached: restarts it had before do not matter any more.
        state = StandbyState.READY if instance.role is Role.SHADOW else StandbyState.SYNCING
    elif _pod_failure_of(facts, spec) is not None:
        state = StandbyState.FAILING
    else:
        state = StandbyState.STARTING
    return replace(
        o.progress.standby,
        state=state.value,
        pod=pod,
        instance_id=instance.instance_id if instance is not None else "",
    )


def _with_standby(o: Observed, d: Decision) -> Decision:
    """A live hot-standby SV's decision, completed: its standby pod recreated when missing, and
    ``status.standby`` as observed. Terminal decisions and deletions are left alone (their pods
    are deleted), and so is everything of an SV without a hot standby."""
    spec = o.spec
    phase = d.progress.phase
    if o.deleting or not isinstance(spec, StrategyVersionSpec) or not spec.standby.hot:
        return d
    if phase is None or phase.terminal:
        figures = replace(d.progress.standby, state="", instance_id="")
        return replace(d, progress=replace(d.progress, standby=figures))
    other = _other_pod(o, d.progress.pod)
    figures = _standby_state(o, spec, other)
    figures = replace(
        figures,
        failovers=d.progress.standby.failovers,
        last_failover_at=d.progress.standby.last_failover_at,
        last_failover_from=d.progress.standby.last_failover_from,
    )
    actions = d.actions
    if o.gateway.reachable:
        figures = replace(figures, divergences=o.gateway.divergences)
        if o.gateway.divergences > o.progress.standby.divergences:
            # Told once per new count (a restarted gateway counts from 0 again: no Event).
            actions = (
                *actions,
                Event(
                    EventType.WARNING,
                    "StateDiverged",
                    f"the gateway found the standby's state unlike the ACTIVE's "
                    f"({o.gateway.divergences} digest checks so far): the strategy is not "
                    "deterministic, so a failover may not restore its exact state; the "
                    "gateway syncs the standby again (docs/standby.md)",
                ),
            )
    creating = any(isinstance(a, CreatePod) and a.name == other for a in actions)
    deleting = any(isinstance(a, DeletePod) for a in actions)
    facts = _pod_facts(o, other)
    extra: Action | None = None
    if facts is None and not creating and not deleting:
        # Not there: never created (an operator restarted between the two creates), deleted by
        # someone, or the pod the ACTIVE instance died in. The gateway syncs it once attached.
        extra = CreatePod(other)
    elif (
        facts is not None
        and facts.phase in ("Failed", "Succeeded")
        and not facts.terminating
        and not deleting
    ):
        # Ended for good (evicted, or its host exited 0): a pod never runs again once it has;
        # delete it, and the next round recreates it.
        extra = DeletePod(other, f"standby pod {other} {facts.phase.lower()}; recreating it")
    if extra is not None:
        events = tuple(a for a in actions if isinstance(a, Event))
        others = tuple(a for a in actions if not isinstance(a, Event))
        actions = (*others, extra, *events)
    return replace(d, progress=replace(d.progress, standby=figures), actions=actions)


def _fail(o: Observed, message: str, *, reason: str = "Failed", **changes: object) -> Decision:
    return _move(
        o,
        Phase.FAILED,
        message,
        reason=reason,
        warning=True,
        actions=_delete_own_pod(o, message),
        requeue_s=STEADY_S,
        active=False,
        **changes,
    )


def _supersede(o: Observed, by: Sibling) -> Decision:
    return _move(
        o,
        Phase.SUPERSEDED,
        f"superseded by {by.name}, applied later, before this version went live",
        reason="Superseded",
        actions=_delete_own_pod(o, f"superseded by {by.name}"),
        requeue_s=STEADY_S,
        superseded_by=by.name,
        active=False,
    )


def _shape_differs(o: Observed, spec: StrategyVersionSpec) -> Decision | None:
    """A version asking for another shape of the book (slots, stake) than its strategy's
    running version: the gateway would refuse its pod's attach (every instance of a strategy
    shares one shape; a handoff moves state, not the book's shape), and the pod would only
    crash-loop. Fail it before a pod is made, saying why."""
    for s in o.siblings:
        if s.phase is not Phase.ACTIVE or s.shape is None:
            continue
        why = spec.shape.unlike(s.shape)
        if why:
            return _fail(
                o,
                f"spec asks for {why}, another shape than {s.name}, the running version of "
                f"{spec.strategy}: every version of a strategy evaluates the same slots with "
                "the same stake; apply this version with the running one's, or run the new "
                "shape as another strategy. The running version is untouched",
                reason="ShapeDiffers",
            )
    return None


def _pending(o: Observed, spec: StrategyVersionSpec) -> Decision:
    newer = _newer_live(o)
    if newer is not None:
        return _supersede(o, newer)
    refused = _shape_differs(o, spec)
    if refused is not None:
        return refused
    pod, standby = pod_pair_for(o.name, o.uid)
    if spec.standby.hot:
        message = (
            f"created pod {pod} and its hot standby {standby}; waiting for them to attach to "
            "the gateway"
        )
        creates: tuple[Action, ...] = (CreatePod(pod), CreatePod(standby))
    else:
        message = f"created pod {pod}; waiting for it to attach to the gateway"
        creates = (CreatePod(pod),)
    return _move(
        o,
        Phase.STARTING,
        message,
        reason="Starting",
        actions=creates,
        pod=pod,
        started_at=o.now,
        request_id=request_id_for(o.uid),
    )


def _pod_failure(o: Observed, spec: StrategyVersionSpec) -> str | None:
    """Why the pod will never serve, or None while it still might."""
    return _pod_failure_of(o.pod, spec)


def _pod_failure_of(pod: PodFacts | None, spec: StrategyVersionSpec) -> str | None:
    if pod is None:
        return None
    if pod.phase in ("Failed", "Succeeded"):
        why = pod.message or pod.reason or f"exit code {pod.last_exit_code}"
        return f"pod {pod.name} {pod.phase.lower()}: {why}"
    if pod.restarts > spec.startup.max_restarts:
        code = f", last exit code {pod.last_exit_code}" if pod.last_exit_code is not None else ""
        return (
            f"pod {pod.name} is crash-looping: restarted {pod.restarts} times "
            f"(startup.maxRestarts {spec.startup.max_restarts}){code}"
        )
    return None


def _starting(o: Observed, spec: StrategyVersionSpec) -> Decision:
    p = o.progress
    newer = _newer_live(o)
    serving = _own_active(o)
    # Superseded only if not already serving: a first version the gateway made ACTIVE on attach
    # is live, and deleting it would leave nothing ACTIVE; it goes Active and the newer version
    # hands off from it.
    if newer is not None and serving is None:
        return _supersede(o, newer)
    failure = _pod_failure(o, spec)
    if failure is not None:
        return _fail(o, failure + "; the running version is untouched", reason="StartFailed")
    started = p.started_at if p.started_at is not None else o.now
    if o.now - started > spec.startup.timeout_s:
        return _fail(
            o,
            f"not live within startup.timeoutSeconds={spec.startup.timeout_s:g} "
            f"(last: {p.message}); the running version is untouched",
            reason="StartTimeout",
        )
    if o.pod is None:
        # Not there (yet): the create was lost with a restart, or somebody deleted the pod.
        return Decision(p, (CreatePod(p.pod or pod_name_for(o.name, o.uid)),), requeue_s=FAST_S)
    if not o.gateway.reachable:
        return _stay(o, f"waiting for the gateway: {o.gateway.error}")
    for own in (o.gateway.by_pod(pod) for pod in pod_pair_for(o.name, o.uid)):
        if own is not None and (own.strategy, own.version) != (spec.strategy, spec.version):
            return _fail(
                o,
                f"pod {own.pod_name} runs {own.strategy}/{own.version} but the spec says "
                f"{spec.strategy}/{spec.version}: check spec.entrypoint",
                reason="WrongCode",
            )
    if serving is not None:
        # Nothing was ACTIVE: the gateway made the first attached instance ACTIVE by itself
        # (with a hot standby, whichever of the two pods attached first: it serves).
        return _activate(o, serving, "first version of the strategy: ACTIVE on attach")
    instance = o.gateway.by_pod(p.pod)
    if instance is None:
        return _stay(o, f"waiting for pod {p.pod} to attach to the gateway")
    # Only the SV's serving pod is promoted, never its standby: the gateway syncs that one by
    # itself once this version is ACTIVE.
    return _move(
        o,
        Phase.HANDING_OFF,
        f"attached as {instance.instance_id}; asked the gateway to hand off to it",
        reason="HandoffStarted",
        actions=(
            Promote(instance.instance_id, p.request_id or request_id_for(o.uid), spec.handoff),
        ),
        instance_id=instance.instance_id,
    )


def _activate(o: Observed, instance: InstanceFacts, message: str) -> Decision:
    return _move(
        o,
        Phase.ACTIVE,
        message,
        reason="Activated",
        requeue_s=STEADY_S,
        pod=instance.pod_name,
        instance_id=instance.instance_id,
        active=o.gateway.active_instance == instance.instance_id,
        epoch=o.gateway.epoch,
    )


def _handing_off(o: Observed, spec: StrategyVersionSpec) -> Decision:
    p = o.progress
    gw = o.gateway
    if not gw.reachable:
        return _stay(o, f"handing off; the gateway is unreachable: {gw.error}")
    if gw.handoff is None:
        instance = gw.by_pod(p.pod)
        serving = _own_active(o)
        if gw.handoff_missing and serving is not None:
            return _activate(o, serving, "ACTIVE (the gateway no longer knows the handoff)")
        if gw.handoff_missing or not p.handoff.handoff_id:
            if instance is None:
                return _fail(
                    o,
                    "the handoff was lost and the pod is not attached (the gateway restarted "
                    "mid-handoff?)",
                    reason="HandoffLost",
                )
            # Promote was asked but its answer never reached the status: ask again, same key.
            return Decision(
                p,
                (
                    Promote(
                        instance.instance_id, p.request_id or request_id_for(o.uid), spec.handoff
                    ),
                ),
                requeue_s=FAST_S,
            )
        return _stay(o, p.message)
    h = gw.handoff
    figures = h.figures
    newer = _newer_live(o)
    if h.phase is HandoffPhase.COMPLETED:
        # ACTIVE in either pod (its standby took over if it died after the flip).
        instance = _own_active(o) or gw.by_pod(p.pod)
        if instance is None:
            return _stay(o, "handoff completed; waiting to see the pod attached", handoff=figures)
        pause = f"{figures.pause_ms:.2f} ms" if figures.pause_ms is not None else "n/a"
        return _move(
            o,
            Phase.ACTIVE,
            f"handoff {figures.handoff_id} from {figures.from_version or 'nothing'} completed: "
            f"pause {pause}, compared {figures.compared} ({figures.divergences} diverged), "
            f"missed {figures.missed}, state {figures.state_bytes} bytes",
            reason="HandoffCompleted",
            requeue_s=STEADY_S,
            handoff=figures,
            pod=instance.pod_name,
            instance_id=instance.instance_id,
            active=gw.active_instance == instance.instance_id,
            epoch=gw.epoch,
        )
    if h.phase is HandoffPhase.ABORTED:
        if newer is not None and "superseded" in h.message:
            return _supersede(o, newer)
        return _fail(
            o,
            f"handoff {figures.handoff_id} aborted before the flip: {h.message}; "
            f"{figures.from_version or 'the running version'} stays ACTIVE",
            reason="HandoffAborted",
            handoff=figures,  # the gateway's last word: aborted, what it missed
        )
    if h.phase is HandoffPhase.ROLLED_BACK:
        return _fail(
            o,
            f"handoff {figures.handoff_id} rolled back inside the bake window: {h.message}; "
            f"{figures.from_version or 'the previous version'} is ACTIVE again",
            reason="RolledBack",
            handoff=figures,
        )
    # Still running. A newer version supersedes it only before the flip; the gateway cancels
    # this handoff itself when the newer one is promoted, so nothing to do here but report.
    failure = _pod_failure(o, spec)
    if failure is not None and not h.phase.flipped:
        return Decision(
            replace(p, message=f"{failure}; cancelling the handoff", handoff=figures),
            (Rollback(figures.handoff_id, failure),),
            requeue_s=FAST_S,
        )
    note = f"; {newer.name} is waiting to supersede it" if newer is not None else ""
    return _stay(o, f"handoff {figures.handoff_id}: {h.phase.value}{note}", handoff=figures)


def _active(o: Observed) -> Decision:
    p = o.progress
    gw = o.gateway
    if not gw.reachable:
        return _stay(o, f"ACTIVE; the gateway is unreachable: {gw.error}", STEADY_S)
    instance = gw.by_pod(p.pod)
    if instance is not None and instance.role is Role.ACTIVE:
        changes: dict[str, object] = {"active": True, "epoch": gw.epoch}
        if instance.instance_id != p.instance_id:  # the pod re-attached: same pod, new instance
            changes["instance_id"] = instance.instance_id
        return _stay(o, "ACTIVE", STEADY_S, **changes)
    moved = _own_active(o)
    if moved is not None:
        return _failover(o, moved)
    successor = next(
        (
            s
            for s in o.siblings
            if s.phase is Phase.ACTIVE and s.instance_id and s.instance_id == gw.active_instance
        ),
        None,
    )
    if successor is not None:
        return _move(
            o,
            Phase.RETIRED,
            f"handed over to {successor.name}; pod {p.pod} deleted"
            + (f" (and its standby {o.standby_pod.name})" if o.standby_pod is not None else ""),
            reason="Retired",
            actions=_delete_own_pod(o, f"handed over to {successor.name}"),
            requeue_s=STEADY_S,
            active=False,
        )
    if o.pod is None and p.pod:
        # Its pod was deleted (`kubectl delete pod`, a node drained) and nothing took over:
        # a pod is never recreated by Kubernetes, so the operator does it. The new instance
        # takes over as the gateway's standby policy says (checkpoint + journal replay, or an
        # empty state with mode None); with a hot standby the gateway has usually failed over
        # before this round, and the pod comes back as the standby instead (``_failover``).
        message = f"ACTIVE version, but pod {p.pod} is gone: recreating it"
        return Decision(
            replace(p, message=message, active=False),
            (CreatePod(p.pod), Event(EventType.WARNING, "PodRecreated", message)),
            requeue_s=FAST_S,
        )
    if instance is None:
        return _stay(
            o,
            f"ACTIVE version, but pod {p.pod} is not attached to the gateway",
            FAST_S,
            active=False,
        )
    return _stay(
        o,
        f"ACTIVE version; the gateway has it as {instance.role.value} while a handoff runs",
        FAST_S,
        active=False,
    )


def _failover(o: Observed, instance: InstanceFacts) -> Decision:
    """The SV's ACTIVE instance is in the other pod of its pair: the serving one died and the
    gateway made its hot standby ACTIVE. The SV stays Active, serving from that pod; the dead
    pod is recreated (``_with_standby``) and becomes the next standby."""
    p = o.progress
    gw = o.gateway
    figures = replace(
        p.standby,
        failovers=p.standby.failovers + 1,
        last_failover_at=o.now,
        last_failover_from=p.pod,
    )
    return _move(
        o,
        Phase.ACTIVE,
        f"failed over: the ACTIVE instance moved from pod {p.pod} to its standby "
        f"{instance.pod_name} ({instance.instance_id}, epoch {gw.epoch}); {p.pod} is recreated "
        "as the next standby",
        reason="FailedOver",
        warning=True,
        requeue_s=FAST_S,
        pod=instance.pod_name,
        instance_id=instance.instance_id,
        active=gw.active_instance == instance.instance_id,
        epoch=gw.epoch,
        standby=figures,
    )


def _terminal(o: Observed) -> Decision:
    # Make sure a terminal version holds no pod (a delete lost with an operator restart).
    actions = _delete_own_pod(o, f"version is {o.progress.phase.value if o.progress.phase else ''}")
    return Decision(o.progress, actions, requeue_s=STEADY_S * 12)


def _deleting(o: Observed) -> Decision:
    p = o.progress
    phase = p.phase or Phase.PENDING
    pod_gone = _delete_own_pod(o, "StrategyVersion deleted")
    if phase is Phase.HANDING_OFF and o.gateway.handoff and not o.gateway.handoff.phase.terminal:
        h = o.gateway.handoff
        return Decision(
            replace(p, message="deleted mid-handoff; cancelling the handoff"),
            (Rollback(h.figures.handoff_id, "StrategyVersion deleted"),),
            requeue_s=FAST_S,
        )
    if phase is not Phase.ACTIVE:
        return Decision(p, pod_gone, release=True)
    still_active = not o.gateway.reachable or _own_active(o) is not None
    if not still_active:
        return Decision(p, pod_gone, release=True)
    spec = o.spec
    if isinstance(spec, StrategyVersionSpec) and spec.deletion_policy is DeletionPolicy.ALLOW:
        return Decision(
            p,
            (
                *pod_gone,
                Event(
                    EventType.WARNING,
                    "DeletingActive",
                    "deleting the ACTIVE version with no successor (deletionPolicy: Allow): "
                    "the strategy stops evaluating",
                ),
            ),
            release=True,
        )
    incoming = [s for s in o.siblings if s.phase in (Phase.STARTING, Phase.HANDING_OFF)]
    if incoming:
        return _stay(o, f"deletion waits for the handoff to {incoming[0].name}")
    message = (
        "deletion refused: this is the ACTIVE version and no newer version has taken over, so "
        "the strategy would stop evaluating. Apply a new StrategyVersion first, or set "
        "spec.deletionPolicy: Allow"
    )
    events: tuple[Action, ...] = ()
    if p.message != message:
        events = (Event(EventType.WARNING, "DeletionRefused", message),)
    return Decision(replace(p, message=message), events, requeue_s=REFUSED_S)


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str = ""


def conditions(progress: Progress) -> tuple[Condition, ...]:
    """The status conditions a Progress implies (the executor keeps transition times)."""
    phase = progress.phase or Phase.PENDING
    moving = phase in (Phase.PENDING, Phase.STARTING, Phase.HANDING_OFF)
    return (
        Condition("Progressing", moving, phase.value, progress.message if moving else ""),
        Condition(
            "Active",
            phase is Phase.ACTIVE and progress.active,
            "Serving" if phase is Phase.ACTIVE and progress.active else phase.value,
        ),
        Condition(
            "Failed",
            phase is Phase.FAILED,
            "Failed" if phase is Phase.FAILED else "NotFailed",
            progress.message if phase is Phase.FAILED else "",
        ),
    )
