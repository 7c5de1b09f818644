"""The rollout state machine, phase by phase and edge by edge (table tests, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from baton.model import HandoffPhase, Role
from baton.operator.core.rollout import (
    FAST_S,
    REFUSED_S,
    CreatePod,
    Decision,
    DeletePod,
    Event,
    EventType,
    GatewayFacts,
    HandoffFacts,
    HandoffFigures,
    InstanceFacts,
    Observed,
    Phase,
    PodFacts,
    Progress,
    Promote,
    Rollback,
    Sibling,
    StandbyFigures,
    conditions,
    decide,
    pod_name_for,
    pod_pair_for,
    pod_refused,
    request_id_for,
)
from baton.operator.core.spec import (
    BookShape,
    DeletionPolicy,
    HandoffSpec,
    SpecError,
    StandbyKind,
    StandbySpec,
    StartupSpec,
    StrategyVersionSpec,
    parse_spec,
)

NOW = 1_000_000.0
UID = "0f1e2d3c-aaaa-bbbb-cccc-000000000002"
POD = pod_name_for("mom-v2", UID)
SPEC = StrategyVersionSpec(
    strategy="momentum",
    version="2",
    image="baton:dev",
    entrypoint="baton.strategy.examples.momentum_v2:MomentumV2",
    startup=StartupSpec(timeout_s=60, max_restarts=2),
)
BLUE = InstanceFacts("i-blue", "mom-v1-aaaaaa", "momentum", "1", Role.ACTIVE)
GREEN = InstanceFacts("i-green", POD, "momentum", "2", Role.STANDBY)
V1 = Sibling("mom-v1", NOW - 3600, Phase.ACTIVE, "i-blue")
V3 = Sibling("mom-v3", NOW - 1, Phase.PENDING)  # applied after mom-v2


def gateway(*instances: InstanceFacts, active: str = "i-blue", **kw: object) -> GatewayFacts:
    kw.setdefault("epoch", 7)
    return GatewayFacts(active_instance=active, instances=instances, **kw)  # type: ignore[arg-type]


def handoff(phase: HandoffPhase, message: str = "") -> HandoffFacts:
    figures = HandoffFigures(
        handoff_id="h-1",
        phase=phase.value,
        from_version="1",
        pause_ms=3.2 if phase.flipped else None,
        state_bytes=1234,
        compared=16 if phase.flipped else 0,
        divergences=2 if phase.flipped else 0,
    )
    return HandoffFacts(figures, phase, "i-green", message)


NEW = Progress()
STARTING = Progress(
    phase=Phase.STARTING,
    message="created pod",
    pod=POD,
    started_at=NOW - 5,
    request_id=request_id_for(UID),
)
HANDING_OFF = replace(
    STARTING,
    phase=Phase.HANDING_OFF,
    instance_id="i-green",
    handoff=HandoffFigures(handoff_id="h-1", phase="exporting"),
)
ACTIVE = replace(STARTING, phase=Phase.ACTIVE, instance_id="i-green", active=True, epoch=8)


def observed(
    progress: Progress = NEW,
    *,
    pod: PodFacts | None = None,
    gw: GatewayFacts | None = None,
    siblings: tuple[Sibling, ...] = (V1,),
    spec: StrategyVersionSpec | SpecError = SPEC,
    deleting: bool = False,
    now: float = NOW,
    standby_pod: PodFacts | None = None,
) -> Observed:
    return Observed(
        name="mom-v2",
        uid=UID,
        created=NOW - 10,
        spec=spec,
        progress=progress,
        pod=pod,
        gateway=gw if gw is not None else gateway(BLUE),
        siblings=siblings,
        now=now,
        deleting=deleting,
        standby_pod=standby_pod,
    )


RUNNING = PodFacts(POD, phase="Running", ready=True)


@dataclass(frozen=True)
class Case:
    o: Observed
    phase: Phase | None  # expected phase after
    actions: tuple[type, ...] = ()  # expected action types, in order (Events included)
    message: str = ""  # a substring of the new status message
    release: bool = False
    # With a hot standby: the pods created / deleted (in order), the serving pod, the
    # standby's state and the failovers counted, after the decision (None: not checked).
    pods: tuple[str, ...] | None = None
    serving: str | None = None
    standby: str | None = None
    failovers: int | None = None


CASES = [
    # -- Pending
    pytest.param(
        Case(observed(), Phase.STARTING, (CreatePod, Event), "created pod"),
        id="pending-creates-pod",
    ),
    pytest.param(
        Case(observed(siblings=(V1, V3)), Phase.SUPERSEDED, (Event,), "superseded by mom-v3"),
        id="pending-superseded-by-newer",
    ),
    pytest.param(
        Case(
            observed(siblings=(V1, replace(V3, phase=Phase.FAILED))),
            Phase.STARTING,
            (CreatePod, Event),
        ),
        id="pending-ignores-failed-newer",
    ),
    pytest.param(
        Case(
            observed(
                spec=replace(SPEC, slots=("BTC/5m",)),
                siblings=(replace(V1, shape=BookShape(("ETH/5m",))),),
            ),
            Phase.FAILED,
            (Event,),
            "spec asks for slots BTC/5m (running: ETH/5m), another shape than mom-v1, the "
            "running version of momentum",
        ),
        id="pending-slots-unlike-the-running-versions-fails-before-a-pod",
    ),
    pytest.param(
        Case(
            observed(
                spec=replace(SPEC, slots=("BTC/5m",)), siblings=(replace(V1, shape=BookShape()),)
            ),
            Phase.FAILED,
            (Event,),
            "slots BTC/5m (running: all the gateway's)",
        ),
        id="pending-a-subset-of-all-slots-fails",
    ),
    pytest.param(
        Case(
            observed(
                spec=replace(SPEC, stake=2.0), siblings=(replace(V1, shape=BookShape(stake=5.0)),)
            ),
            Phase.FAILED,
            (Event,),
            "spec asks for stake 2 (running: 5)",
        ),
        id="pending-another-stake-fails",
    ),
    pytest.param(
        Case(
            observed(
                spec=replace(SPEC, slots=("BTC/5m",), stake=2.0),
                siblings=(replace(V1, shape=BookShape(("ETH/5m",), 5.0)),),
            ),
            Phase.FAILED,
            (Event,),
            "slots BTC/5m (running: ETH/5m) and stake 2 (running: 5)",
        ),
        id="pending-both-differ-both-named",
    ),
    pytest.param(
        Case(
            observed(
                spec=replace(SPEC, slots=("ETH/5m", "BTC/5m"), stake=2.0),
                siblings=(replace(V1, shape=BookShape(("BTC/5m", "ETH/5m"), 2.0)),),
            ),
            Phase.STARTING,
            (CreatePod, Event),
        ),
        id="pending-same-shape-slots-in-another-order-starts",
    ),
    pytest.param(
        Case(
            observed(spec=replace(SPEC, stake=5.0), siblings=(replace(V1, shape=BookShape()),)),
            Phase.FAILED,
            (Event,),
            "spec asks for stake 5 (running: the gateway's default)",
        ),
        # As the gateway compares them: an unset stake follows venue.stake wherever it goes,
        # a set one does not, so they are two asks even when the values agree today.
        id="pending-set-stake-against-an-unset-one-fails",
    ),
    pytest.param(
        Case(
            observed(
                spec=replace(SPEC, slots=("BTC/5m",)),
                siblings=(replace(V1, phase=Phase.RETIRED, shape=BookShape(("ETH/5m",))),),
            ),
            Phase.STARTING,
            (CreatePod, Event),
        ),
        id="pending-only-the-running-versions-shape-counts",
    ),
    pytest.param(
        Case(
            observed(spec=SpecError("spec.entrypoint: 'x' must be MODULE:CLASS")),
            Phase.FAILED,
            (Event,),
            "invalid spec: spec.entrypoint",
        ),
        id="invalid-spec-fails",
    ),
    # -- Starting
    pytest.param(
        Case(observed(STARTING, pod=None), Phase.STARTING, (CreatePod,)),
        id="starting-recreates-missing-pod",
    ),
    pytest.param(
        Case(observed(STARTING, pod=RUNNING), Phase.STARTING, (), "waiting for pod"),
        id="starting-waits-for-attach",
    ),
    pytest.param(
        Case(
            observed(STARTING, pod=RUNNING, gw=GatewayFacts(reachable=False, error="refused")),
            Phase.STARTING,
            (),
            "waiting for the gateway: refused",
        ),
        id="starting-gateway-unreachable",
    ),
    pytest.param(
        Case(
            observed(STARTING, pod=RUNNING, gw=gateway(BLUE, GREEN)),
            Phase.HANDING_OFF,
            (Promote, Event),
            "asked the gateway to hand off",
        ),
        id="starting-attached-promotes",
    ),
    pytest.param(
        Case(
            observed(
                STARTING,
                pod=RUNNING,
                gw=gateway(replace(GREEN, role=Role.ACTIVE), active="i-green"),
                siblings=(),
            ),
            Phase.ACTIVE,
            (Event,),
            "first version",
        ),
        id="starting-first-version-active-on-attach",
    ),
    pytest.param(
        Case(
            observed(STARTING, pod=RUNNING, gw=gateway(BLUE, replace(GREEN, version="9"))),
            Phase.FAILED,
            (DeletePod, Event),
            "runs momentum/9 but the spec says momentum/2",
        ),
        id="starting-wrong-code-fails",
    ),
    pytest.param(
        Case(
            observed(
                STARTING,
                pod=replace(
                    RUNNING, restarts=3, waiting_reason="CrashLoopBackOff", last_exit_code=2
                ),
            ),
            Phase.FAILED,
            (DeletePod, Event),
            "crash-looping: restarted 3 times",
        ),
        id="starting-crash-loop-fails",
    ),
    pytest.param(
        Case(
            observed(STARTING, pod=replace(RUNNING, restarts=2)),
            Phase.STARTING,
            (),
            "waiting for pod",
        ),
        id="starting-restarts-within-limit",
    ),
    pytest.param(
        Case(
            observed(
                STARTING,
                pod=PodFacts(POD, phase="Failed", reason="UnsupportedImage", message="not baton"),
            ),
            Phase.FAILED,
            (DeletePod, Event),
            "pod " + POD + " failed: not baton",
        ),
        id="starting-pod-failed",
    ),
    pytest.param(
        Case(
            observed(STARTING, pod=RUNNING, now=NOW + 120),
            Phase.FAILED,
            (DeletePod, Event),
            "not live within startup.timeoutSeconds=60",
        ),
        id="starting-timeout",
    ),
    pytest.param(
        Case(
            observed(
                STARTING,
                pod=RUNNING,
                gw=gateway(replace(GREEN, role=Role.ACTIVE), active="i-green"),
                siblings=(V3,),
            ),
            Phase.ACTIVE,
            (Event,),
            "first version",
        ),
        id="starting-already-active-is-not-superseded",
    ),
    pytest.param(
        Case(
            observed(STARTING, pod=RUNNING, siblings=(V1, V3)),
            Phase.SUPERSEDED,
            (DeletePod, Event),
            "superseded by mom-v3",
        ),
        id="starting-superseded-deletes-pod",
    ),
    # -- HandingOff
    pytest.param(
        Case(
            observed(
                HANDING_OFF,
                pod=RUNNING,
                gw=gateway(BLUE, GREEN, handoff=handoff(HandoffPhase.IMPORTING)),
            ),
            Phase.HANDING_OFF,
            (),
            "handoff h-1: importing",
        ),
        id="handing-off-reports-progress",
    ),
    pytest.param(
        Case(
            observed(
                HANDING_OFF,
                pod=RUNNING,
                gw=gateway(
                    BLUE,
                    replace(GREEN, role=Role.ACTIVE),
                    active="i-green",
                    handoff=handoff(HandoffPhase.COMPLETED),
                ),
            ),
            Phase.ACTIVE,
            (Event,),
            "completed: pause 3.20 ms, compared 16 (2 diverged), missed 0",
        ),
        id="handing-off-completed-active",
    ),
    pytest.param(
        Case(
            observed(
                HANDING_OFF,
                pod=RUNNING,
                gw=gateway(BLUE, GREEN, handoff=handoff(HandoffPhase.ABORTED, "import failed")),
            ),
            Phase.FAILED,
            (DeletePod, Event),
            "aborted before the flip: import failed; 1 stays ACTIVE",
        ),
        id="handing-off-aborted-fails",
    ),
    pytest.param(
        Case(
            observed(
                HANDING_OFF,
                pod=RUNNING,
                gw=gateway(
                    BLUE, GREEN, handoff=handoff(HandoffPhase.ROLLED_BACK, "green timed out")
                ),
            ),
            Phase.FAILED,
            (DeletePod, Event),
            "rolled back inside the bake window: green timed out",
        ),
        id="handing-off-rolled-back-fails",
    ),
    pytest.param(
        Case(
            observed(
                HANDING_OFF,
                pod=RUNNING,
                siblings=(V1, V3),
                gw=gateway(
                    BLUE,
                    GREEN,
                    handoff=handoff(HandoffPhase.ABORTED, "superseded by a promotion of i-v3"),
                ),
            ),
            Phase.SUPERSEDED,
            (DeletePod, Event),
            "superseded by mom-v3",
        ),
        id="handing-off-cancelled-by-newer-superseded",
    ),
    pytest.param(
        Case(
            observed(
                HANDING_OFF,
                pod=replace(RUNNING, restarts=5),
                gw=gateway(BLUE, GREEN, handoff=handoff(HandoffPhase.SHADOWING)),
            ),
            Phase.HANDING_OFF,
            (Rollback,),
            "cancelling the handoff",
        ),
        id="handing-off-crash-loop-cancels",
    ),
    pytest.param(
        Case(
            observed(HANDING_OFF, pod=RUNNING, gw=gateway(BLUE, GREEN, handoff_missing=True)),
            Phase.HANDING_OFF,
            (Promote,),
        ),
        id="handing-off-unknown-handoff-asks-again",
    ),
    pytest.param(
        Case(
            observed(
                HANDING_OFF,
                pod=RUNNING,
                gw=gateway(
                    replace(GREEN, role=Role.ACTIVE), active="i-green", handoff_missing=True
                ),
            ),
            Phase.ACTIVE,
            (Event,),
        ),
        id="handing-off-lost-record-but-active",
    ),
    pytest.param(
        Case(
            observed(HANDING_OFF, pod=None, gw=gateway(BLUE, handoff_missing=True)),
            Phase.FAILED,
            (Event,),
            "handoff was lost",
        ),
        id="handing-off-lost-and-detached-fails",
    ),
    pytest.param(
        Case(
            observed(HANDING_OFF, pod=RUNNING, gw=GatewayFacts(reachable=False, error="down")),
            Phase.HANDING_OFF,
            (),
            "gateway is unreachable",
        ),
        id="handing-off-gateway-down-waits",
    ),
    # -- Active
    pytest.param(
        Case(
            observed(
                ACTIVE, pod=RUNNING, gw=gateway(replace(GREEN, role=Role.ACTIVE), active="i-green")
            ),
            Phase.ACTIVE,
            (),
            "ACTIVE",
        ),
        id="active-steady",
    ),
    pytest.param(
        Case(
            observed(
                ACTIVE,
                pod=RUNNING,
                gw=gateway(replace(GREEN, role=Role.DRAINING), BLUE, active="i-v3"),
                siblings=(Sibling("mom-v3", NOW, Phase.ACTIVE, "i-v3"),),
            ),
            Phase.RETIRED,
            (DeletePod, Event),
            "handed over to mom-v3",
        ),
        id="active-retires-after-successor",
    ),
    pytest.param(
        Case(
            observed(
                ACTIVE,
                pod=RUNNING,
                gw=gateway(replace(GREEN, role=Role.SHADOW), active="i-v3"),
                siblings=(Sibling("mom-v3", NOW, Phase.HANDING_OFF, "i-v3"),),
            ),
            Phase.ACTIVE,
            (),
            "while a handoff runs",
        ),
        id="active-keeps-pod-during-successor-bake",
    ),
    pytest.param(
        Case(
            observed(ACTIVE, pod=replace(RUNNING, restarts=1), gw=gateway(active="")),
            Phase.ACTIVE,
            (),
            "not attached",
        ),
        id="active-pod-restarting",
    ),
    pytest.param(
        Case(
            observed(ACTIVE, pod=None, gw=gateway(active="")),
            Phase.ACTIVE,
            (CreatePod, Event),
            f"pod {POD} is gone: recreating it",
        ),
        id="active-pod-deleted-with-nothing-taking-over-is-recreated",
    ),
    pytest.param(
        Case(
            observed(ACTIVE, pod=replace(RUNNING, terminating=True), gw=gateway(active="")),
            Phase.ACTIVE,
            (),
            "not attached",
        ),
        id="active-pod-being-deleted-is-waited-for",
    ),
    # -- terminal
    pytest.param(
        Case(
            observed(replace(ACTIVE, phase=Phase.RETIRED), pod=RUNNING), Phase.RETIRED, (DeletePod,)
        ),
        id="retired-cleans-leftover-pod",
    ),
    pytest.param(
        Case(observed(replace(ACTIVE, phase=Phase.FAILED), pod=None), Phase.FAILED, ()),
        id="failed-stays",
    ),
    # -- deleting
    pytest.param(
        Case(
            observed(STARTING, pod=RUNNING, deleting=True),
            Phase.STARTING,
            (DeletePod,),
            release=True,
        ),
        id="delete-starting-deletes-pod",
    ),
    pytest.param(
        Case(
            observed(
                HANDING_OFF,
                pod=RUNNING,
                deleting=True,
                gw=gateway(BLUE, GREEN, handoff=handoff(HandoffPhase.SHADOWING)),
            ),
            Phase.HANDING_OFF,
            (Rollback,),
            "cancelling",
        ),
        id="delete-mid-handoff-cancels-first",
    ),
    pytest.param(
        Case(
            observed(
                ACTIVE,
                pod=RUNNING,
                deleting=True,
                siblings=(),
                gw=gateway(replace(GREEN, role=Role.ACTIVE), active="i-green"),
            ),
            Phase.ACTIVE,
            (Event,),
            "deletion refused",
        ),
        id="delete-active-without-successor-refused",
    ),
    pytest.param(
        Case(
            observed(
                ACTIVE,
                pod=RUNNING,
                deleting=True,
                siblings=(),
                spec=replace(SPEC, deletion_policy=DeletionPolicy.ALLOW),
                gw=gateway(replace(GREEN, role=Role.ACTIVE), active="i-green"),
            ),
            Phase.ACTIVE,
            (DeletePod, Event),
            release=True,
        ),
        id="delete-active-allowed-by-policy",
    ),
    pytest.param(
        Case(
            observed(
                ACTIVE,
                pod=RUNNING,
                deleting=True,
                siblings=(Sibling("mom-v3", NOW, Phase.HANDING_OFF, "i-v3"),),
                gw=gateway(replace(GREEN, role=Role.ACTIVE), active="i-green"),
            ),
            Phase.ACTIVE,
            (),
            "waits for the handoff to mom-v3",
        ),
        id="delete-active-waits-for-incoming",
    ),
    pytest.param(
        Case(
            observed(
                ACTIVE,
                pod=RUNNING,
                deleting=True,
                siblings=(Sibling("mom-v3", NOW, Phase.ACTIVE, "i-v3"),),
                gw=gateway(replace(GREEN, role=Role.DRAINING), active="i-v3"),
            ),
            Phase.ACTIVE,
            (DeletePod,),
            release=True,
        ),
        id="delete-active-after-takeover",
    ),
    pytest.param(
        Case(
            observed(
                ACTIVE, pod=RUNNING, deleting=True, siblings=(), gw=GatewayFacts(reachable=False)
            ),
            Phase.ACTIVE,
            (Event,),
            "deletion refused",
        ),
        id="delete-active-gateway-down-refused",
    ),
]


# -- hot standby (spec.standby.mode: Hot): two pods, either may serve ------------------------

PRIMARY, SECONDARY = pod_pair_for("mom-v2", UID)
HOT = replace(SPEC, standby=StandbySpec(mode=StandbyKind.HOT))
STANDBY_RUNNING = PodFacts(SECONDARY, phase="Running", ready=True)
GREEN_SB = InstanceFacts("i-green-sb", SECONDARY, "momentum", "2", Role.STANDBY)
HOT_ACTIVE = replace(ACTIVE, standby=StandbyFigures("Ready", SECONDARY, "i-green-sb"))
# After a failover: the ACTIVE instance is in the secondary pod, the primary is the standby.
FAILED_OVER = replace(
    HOT_ACTIVE,
    pod=SECONDARY,
    instance_id="i-green-sb",
    standby=StandbyFigures("Missing", PRIMARY, "", 1, NOW - 30, PRIMARY),
)


def hot(progress: Progress = NEW, **kw: object) -> Observed:
    kw.setdefault("spec", HOT)
    return observed(progress, **kw)  # type: ignore[arg-type]


def active_in(instance: InstanceFacts) -> InstanceFacts:
    return replace(instance, role=Role.ACTIVE)


def shadow(instance: InstanceFacts) -> InstanceFacts:
    return replace(instance, role=Role.SHADOW)


HOT_CASES = [
    pytest.param(
        Case(
            hot(),
            Phase.STARTING,
            (CreatePod, CreatePod, Event),
            f"created pod {PRIMARY} and its hot standby {SECONDARY}",
            pods=(PRIMARY, SECONDARY),
            serving=PRIMARY,
        ),
        id="hot-pending-creates-both-pods",
    ),
    pytest.param(
        Case(
            hot(STARTING, pod=RUNNING, gw=gateway(BLUE)),
            Phase.STARTING,
            (CreatePod,),
            pods=(SECONDARY,),
            standby="Missing",
        ),
        id="hot-starting-recreates-the-missing-standby-pod",
    ),
    pytest.param(
        Case(
            hot(STARTING, pod=None, standby_pod=None),
            Phase.STARTING,
            (CreatePod, CreatePod),
            pods=(PRIMARY, SECONDARY),
        ),
        id="hot-starting-recreates-both-pods",
    ),
    pytest.param(
        Case(
            hot(STARTING, pod=RUNNING, standby_pod=STANDBY_RUNNING, gw=gateway(BLUE, GREEN_SB)),
            Phase.STARTING,
            (),
            f"waiting for pod {PRIMARY} to attach",
            standby="Syncing",
        ),
        id="hot-starting-standby-attached-alone-is-not-promoted",
    ),
    pytest.param(
        Case(
            hot(
                STARTING,
                pod=RUNNING,
                standby_pod=STANDBY_RUNNING,
                gw=gateway(BLUE, GREEN, GREEN_SB),
            ),
            Phase.HANDING_OFF,
            (Promote, Event),
            "asked the gateway to hand off",
            serving=PRIMARY,
            standby="Syncing",
        ),
        id="hot-starting-promotes-the-serving-pod-not-the-standby",
    ),
    pytest.param(
        Case(
            hot(
                STARTING,
                pod=RUNNING,
                standby_pod=STANDBY_RUNNING,
                siblings=(),
                gw=gateway(GREEN, active_in(GREEN_SB), active="i-green-sb"),
            ),
            Phase.ACTIVE,
            (Event,),
            "ACTIVE on attach",
            serving=SECONDARY,
            standby="Syncing",
        ),
        id="hot-first-version-standby-pod-attached-first-serves",
    ),
    pytest.param(
        Case(
            hot(
                STARTING,
                pod=RUNNING,
                standby_pod=STANDBY_RUNNING,
                gw=gateway(BLUE, GREEN, replace(GREEN_SB, version="1")),
            ),
            Phase.FAILED,
            (DeletePod, DeletePod, Event),
            f"pod {SECONDARY} runs momentum/1",
            pods=(PRIMARY, SECONDARY),
        ),
        id="hot-starting-wrong-code-in-the-standby-pod-fails",
    ),
    pytest.param(
        Case(
            hot(
                STARTING,
                pod=RUNNING,
                standby_pod=STANDBY_RUNNING,
                siblings=(V1, V3),
                gw=gateway(BLUE, GREEN, GREEN_SB),
            ),
            Phase.SUPERSEDED,
            (DeletePod, DeletePod, Event),
            pods=(PRIMARY, SECONDARY),
            standby="",
        ),
        id="hot-starting-superseded-deletes-both-pods",
    ),
    pytest.param(
        Case(
            hot(
                HANDING_OFF,
                pod=RUNNING,
                standby_pod=None,
                gw=gateway(BLUE, GREEN, handoff=handoff(HandoffPhase.SHADOWING)),
            ),
            Phase.HANDING_OFF,
            (CreatePod,),
            "shadowing",
            pods=(SECONDARY,),
        ),
        id="hot-handing-off-recreates-the-standby-pod",
    ),
    pytest.param(
        Case(
            hot(
                HANDING_OFF,
                pod=None,
                standby_pod=STANDBY_RUNNING,
                gw=gateway(
                    active_in(GREEN_SB),
                    active="i-green-sb",
                    handoff=handoff(HandoffPhase.COMPLETED),
                ),
            ),
            Phase.ACTIVE,
            (CreatePod, Event),
            "completed",
            pods=(PRIMARY,),
            serving=SECONDARY,
        ),
        id="hot-handing-off-completed-after-a-failover-in-the-bake",
    ),
    pytest.param(
        Case(
            hot(
                HOT_ACTIVE,
                pod=RUNNING,
                standby_pod=STANDBY_RUNNING,
                gw=gateway(active_in(GREEN), shadow(GREEN_SB), active="i-green"),
            ),
            Phase.ACTIVE,
            (),
            "ACTIVE",
            serving=PRIMARY,
            standby="Ready",
        ),
        id="hot-active-steady-standby-ready",
    ),
    pytest.param(
        Case(
            hot(
                HOT_ACTIVE,
                pod=RUNNING,
                standby_pod=STANDBY_RUNNING,
                gw=gateway(active_in(GREEN), GREEN_SB, active="i-green", divergences=1),
            ),
            Phase.ACTIVE,
            (Event,),
            standby="Syncing",
        ),
        id="hot-active-a-divergence-is-told",
    ),
    pytest.param(
        Case(
            hot(
                replace(HOT_ACTIVE, standby=replace(HOT_ACTIVE.standby, divergences=3)),
                pod=RUNNING,
                standby_pod=STANDBY_RUNNING,
                gw=gateway(active_in(GREEN), shadow(GREEN_SB), active="i-green", divergences=0),
            ),
            Phase.ACTIVE,
            (),
            standby="Ready",
        ),
        id="hot-active-a-restarted-gateways-count-is-not-a-divergence",
    ),
    pytest.param(
        Case(
            hot(
                HOT_ACTIVE,
                pod=RUNNING,
                standby_pod=STANDBY_RUNNING,
                gw=gateway(active_in(GREEN), GREEN_SB, active="i-green"),
            ),
            Phase.ACTIVE,
            (),
            standby="Syncing",
        ),
        id="hot-active-standby-syncing",
    ),
    pytest.param(
        Case(
            hot(
                HOT_ACTIVE,
                pod=RUNNING,
                standby_pod=None,
                gw=gateway(active_in(GREEN), active="i-green"),
            ),
            Phase.ACTIVE,
            (CreatePod,),
            pods=(SECONDARY,),
            serving=PRIMARY,
            standby="Missing",
        ),
        id="hot-active-recreates-the-deleted-standby-pod",
    ),
    pytest.param(
        Case(
            hot(
                HOT_ACTIVE,
                pod=RUNNING,
                standby_pod=replace(STANDBY_RUNNING, restarts=5, waiting_reason="CrashLoopBackOff"),
                gw=gateway(active_in(GREEN), active="i-green"),
            ),
            Phase.ACTIVE,
            (),
            standby="Failing",
        ),
        id="hot-active-crash-looping-standby-reported-failing",
    ),
    pytest.param(
        Case(
            hot(
                HOT_ACTIVE,
                pod=RUNNING,
                standby_pod=replace(STANDBY_RUNNING, restarts=5),
                gw=gateway(active_in(GREEN), shadow(GREEN_SB), active="i-green"),
            ),
            Phase.ACTIVE,
            (),
            standby="Ready",
        ),
        id="hot-active-restarts-of-an-attached-standby-do-not-matter",
    ),
    pytest.param(
        Case(
            hot(
                HOT_ACTIVE,
                pod=RUNNING,
                standby_pod=replace(STANDBY_RUNNING, phase="Failed", reason="Evicted"),
                gw=gateway(active_in(GREEN), active="i-green"),
            ),
            Phase.ACTIVE,
            (DeletePod,),
            pods=(SECONDARY,),
            standby="Failing",
        ),
        id="hot-active-ended-standby-pod-deleted-to-be-recreated",
    ),
    pytest.param(
        Case(
            hot(
                HOT_ACTIVE,
                pod=None,
                standby_pod=STANDBY_RUNNING,
                gw=gateway(active_in(GREEN_SB), active="i-green-sb", epoch=9),
            ),
            Phase.ACTIVE,
            (CreatePod, Event),
            f"failed over: the ACTIVE instance moved from pod {PRIMARY} to its standby {SECONDARY}",
            pods=(PRIMARY,),
            serving=SECONDARY,
            standby="Missing",
            failovers=1,
        ),
        id="hot-active-failover-seen-dead-pod-recreated",
    ),
    pytest.param(
        Case(
            hot(
                HOT_ACTIVE,
                pod=None,
                standby_pod=STANDBY_RUNNING,
                gw=gateway(shadow(GREEN_SB), active=""),
            ),
            Phase.ACTIVE,
            (CreatePod, Event),
            "is gone: recreating it",
            pods=(PRIMARY,),
            serving=PRIMARY,
        ),
        id="hot-active-pod-gone-before-the-gateway-failed-over-is-recreated",
    ),
    pytest.param(
        Case(
            hot(
                HOT_ACTIVE,
                pod=replace(RUNNING, terminating=True),
                standby_pod=STANDBY_RUNNING,
                gw=gateway(active_in(GREEN_SB), active="i-green-sb"),
            ),
            Phase.ACTIVE,
            (Event,),
            "failed over",
            serving=SECONDARY,
            standby="Missing",
            failovers=1,
        ),
        id="hot-active-failover-waits-for-the-dead-pod-to-go",
    ),
    pytest.param(
        Case(
            hot(
                FAILED_OVER,
                pod=STANDBY_RUNNING,
                standby_pod=RUNNING,
                gw=gateway(active_in(GREEN_SB), GREEN, active="i-green-sb"),
            ),
            Phase.ACTIVE,
            (),
            "ACTIVE",
            serving=SECONDARY,
            standby="Syncing",
            failovers=1,
        ),
        id="hot-active-after-failover-recreated-pod-syncs-as-next-standby",
    ),
    pytest.param(
        Case(
            hot(
                FAILED_OVER,
                pod=STANDBY_RUNNING,
                standby_pod=RUNNING,
                gw=gateway(active_in(GREEN), shadow(GREEN_SB), active="i-green"),
            ),
            Phase.ACTIVE,
            (Event,),
            f"moved from pod {SECONDARY} to its standby {PRIMARY}",
            serving=PRIMARY,
            standby="Ready",
            failovers=2,
        ),
        id="hot-active-second-failover-back-to-the-first-pod",
    ),
    pytest.param(
        Case(
            hot(
                HOT_ACTIVE,
                pod=RUNNING,
                standby_pod=STANDBY_RUNNING,
                gw=gateway(replace(GREEN, role=Role.DRAINING), shadow(GREEN_SB), active="i-v3"),
                siblings=(Sibling("mom-v3", NOW, Phase.ACTIVE, "i-v3"),),
            ),
            Phase.RETIRED,
            (DeletePod, DeletePod, Event),
            f"and its standby {SECONDARY}",
            pods=(PRIMARY, SECONDARY),
            standby="",
        ),
        id="hot-active-superseded-by-a-completed-handoff-deletes-both-pods",
    ),
    pytest.param(
        Case(
            hot(
                replace(HOT_ACTIVE, phase=Phase.RETIRED),
                pod=None,
                standby_pod=STANDBY_RUNNING,
            ),
            Phase.RETIRED,
            (DeletePod,),
            pods=(SECONDARY,),
        ),
        id="hot-retired-cleans-a-leftover-standby-pod",
    ),
    pytest.param(
        Case(
            hot(
                FAILED_OVER,
                pod=STANDBY_RUNNING,
                standby_pod=RUNNING,
                deleting=True,
                siblings=(),
                gw=gateway(active_in(GREEN_SB), GREEN, active="i-green-sb"),
            ),
            Phase.ACTIVE,
            (Event,),
            "deletion refused",
        ),
        id="hot-delete-active-after-failover-still-refused",
    ),
    pytest.param(
        Case(
            hot(STARTING, pod=RUNNING, standby_pod=STANDBY_RUNNING, deleting=True),
            Phase.STARTING,
            (DeletePod, DeletePod),
            pods=(PRIMARY, SECONDARY),
            release=True,
        ),
        id="hot-delete-starting-deletes-both-pods",
    ),
]


def _pods_acted_on(d: Decision) -> tuple[str, ...]:
    return tuple(a.name for a in d.actions if isinstance(a, CreatePod | DeletePod))


@pytest.mark.parametrize("case", CASES + HOT_CASES)
def test_decide(case: Case) -> None:
    d = decide(case.o)
    assert d.progress.phase is case.phase, d.progress.message
    assert tuple(type(a) for a in d.actions) == case.actions, d.actions
    assert case.message in d.progress.message
    assert d.release is case.release
    if case.pods is not None:
        assert _pods_acted_on(d) == case.pods
    if case.serving is not None:
        assert d.progress.pod == case.serving
        instance = case.o.gateway.by_pod(case.serving)
        if case.phase is Phase.ACTIVE and instance is not None:
            assert d.progress.instance_id == instance.instance_id
    if case.standby is not None:
        assert d.progress.standby.state == case.standby, d.progress.standby
        if case.standby:
            assert (
                d.progress.standby.pod == {PRIMARY: SECONDARY, SECONDARY: PRIMARY}[d.progress.pod]
            )
    if case.failovers is not None:
        assert d.progress.standby.failovers == case.failovers


@pytest.mark.parametrize("case", CASES + HOT_CASES)
def test_the_standby_pod_is_never_promoted(case: Case) -> None:
    """Whatever the facts, a Promote names the instance in the SV's serving pod: the gateway
    syncs the standby by itself, and promoting it would hand the version off to itself."""
    o = case.o
    for action in decide(o).actions:
        if isinstance(action, Promote):
            instance = o.gateway.by_pod(o.progress.pod)
            assert instance is not None
            assert action.instance_id == instance.instance_id
            assert instance.pod_name != SECONDARY or o.progress.pod == SECONDARY


def test_a_failover_is_told_once() -> None:
    """The round after a failover (its status written) is steady: one Event, one count."""
    o = hot(
        HOT_ACTIVE,
        pod=None,
        standby_pod=STANDBY_RUNNING,
        gw=gateway(active_in(GREEN_SB), active="i-green-sb", epoch=9),
    )
    first = decide(o)
    (event,) = [a for a in first.actions if isinstance(a, Event)]
    assert (event.type, event.reason) == (EventType.WARNING, "FailedOver")
    assert first.progress.standby.last_failover_from == PRIMARY
    assert first.progress.standby.last_failover_at == NOW
    assert (first.progress.active, first.progress.epoch) == (True, 9)
    # The next round: the dead pod recreated, attached, being synced by the gateway.
    after = replace(
        o,
        progress=first.progress,
        pod=STANDBY_RUNNING,
        standby_pod=RUNNING,
        gateway=gateway(active_in(GREEN_SB), GREEN, active="i-green-sb", epoch=9),
    )
    again = decide(after)
    assert not [a for a in again.actions if isinstance(a, Event)]
    assert again.progress.standby.failovers == 1
    assert again.progress.phase is Phase.ACTIVE
    assert again.progress.active


def test_a_divergence_is_a_warning_naming_the_count() -> None:
    o = hot(
        HOT_ACTIVE,
        pod=RUNNING,
        standby_pod=STANDBY_RUNNING,
        gw=gateway(active_in(GREEN), GREEN_SB, active="i-green", divergences=2),
    )
    d = decide(o)
    (event,) = d.actions
    assert isinstance(event, Event)
    assert (event.type, event.reason) == (EventType.WARNING, "StateDiverged")
    assert "2 digest checks" in event.message
    assert d.progress.standby.divergences == 2
    assert decide(replace(o, progress=d.progress)).actions == ()  # told once


def test_the_pod_pair_are_dns_labels() -> None:
    for name in ("m", "mom-v2", "a" * 80):
        primary, secondary = pod_pair_for(name, UID)
        assert primary == pod_name_for(name, UID)
        assert secondary.endswith("-standby")
        assert primary != secondary
        assert all(len(n) <= 63 for n in (primary, secondary))
    assert pod_pair_for("mom-v2", UID)[1] == f"{POD}-standby"


def test_without_a_hot_standby_nothing_of_it_is_reported() -> None:
    """Checkpoint (the default) and None: one pod, no status.standby."""
    for case in CASES:
        d = decide(case.values[0].o)  # type: ignore[union-attr]
        assert d.progress.standby == StandbyFigures()
        assert SECONDARY not in _pods_acted_on(d)


def test_every_phase_has_a_case() -> None:
    seen = {c.values[0].o.progress.phase or Phase.PENDING for c in CASES}  # type: ignore[union-attr]
    assert seen >= {Phase.PENDING, Phase.STARTING, Phase.HANDING_OFF, Phase.ACTIVE, Phase.RETIRED}


def test_decisions_are_repeatable() -> None:
    """Resuming after a restart: the same facts give the same decision (idempotent actions)."""
    for case in CASES:
        o = case.values[0].o  # type: ignore[union-attr]
        assert decide(o) == decide(o)


def test_promote_keyed_by_uid_survives_restart() -> None:
    """A restarted operator asks again with the same key, so the gateway returns the same one."""
    first = decide(observed(STARTING, pod=RUNNING, gw=gateway(BLUE, GREEN)))
    again = decide(
        observed(HANDING_OFF, pod=RUNNING, gw=gateway(BLUE, GREEN, handoff_missing=True))
    )
    keys = {a.request_id for d in (first, again) for a in d.actions if isinstance(a, Promote)}
    assert keys == {request_id_for(UID)}


@pytest.mark.parametrize("phase", [HandoffPhase.ABORTED, HandoffPhase.ROLLED_BACK])
def test_a_failed_handoff_leaves_its_final_figures_in_the_status(phase: HandoffPhase) -> None:
    """The status of a Failed rollout tells how its handoff ended (found on the real node: it
    kept the last running phase, "baking", after a rollback)."""
    h = handoff(phase, "green went away")
    d = decide(observed(HANDING_OFF, pod=RUNNING, gw=gateway(BLUE, GREEN, handoff=h)))
    assert d.progress.phase is Phase.FAILED
    assert d.progress.handoff == h.figures
    assert d.progress.handoff is not None
    assert d.progress.handoff.phase == phase.value


def test_promote_carries_the_spec_policy() -> None:
    spec = replace(SPEC, handoff=HandoffSpec(shadow_ticks=3, bake_s=2.5, auto_rollback=False))
    d = decide(observed(STARTING, pod=RUNNING, gw=gateway(BLUE, GREEN), spec=spec))
    promote = next(a for a in d.actions if isinstance(a, Promote))
    assert (promote.instance_id, promote.policy) == ("i-green", spec.handoff)


def test_refusal_event_is_not_repeated() -> None:
    o = observed(
        ACTIVE,
        pod=RUNNING,
        deleting=True,
        siblings=(),
        gw=gateway(replace(GREEN, role=Role.ACTIVE), active="i-green"),
    )
    first = decide(o)
    again = decide(replace(o, progress=first.progress))
    assert next(a for a in first.actions if isinstance(a, Event)).type is EventType.WARNING
    assert again.actions == ()
    assert again.requeue_s == REFUSED_S


def test_pod_name_is_deterministic_and_a_dns_label() -> None:
    name = pod_name_for("a" * 80, UID)
    assert name == pod_name_for("a" * 80, UID)
    assert len(name) <= 63


@pytest.mark.parametrize(
    ("progress", "expected"),
    [
        pytest.param(Progress(), {"Progressing": True, "Active": False, "Failed": False}, id="new"),
        pytest.param(ACTIVE, {"Progressing": False, "Active": True, "Failed": False}, id="active"),
        pytest.param(
            replace(ACTIVE, active=False),
            {"Progressing": False, "Active": False, "Failed": False},
            id="active-version-not-serving",
        ),
        pytest.param(
            replace(STARTING, phase=Phase.FAILED),
            {"Progressing": False, "Active": False, "Failed": True},
            id="failed",
        ),
    ],
)
def test_conditions(progress: Progress, expected: dict[str, bool]) -> None:
    assert {c.type: c.status for c in conditions(progress)} == expected


def test_fast_requeue_while_moving() -> None:
    d: Decision = decide(observed(STARTING, pod=RUNNING))
    assert d.requeue_s == FAST_S


def _spec_error(**changes: object) -> SpecError:
    raw = {
        "strategy": "momentum",
        "version": "v2",
        "image": "baton:dev",
        "entrypoint": "baton.strategy.examples.momentum_v2:MomentumV2",
        **changes,
    }
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    return err.value


@pytest.mark.parametrize(
    ("progress", "error", "field"),
    [
        pytest.param(NEW, _spec_error(version="v 1"), "spec.version", id="version-with-space"),
        pytest.param(
            NEW,
            _spec_error(resources={"limits": {"cpu": "lots"}}),
            "spec.resources.limits[cpu]",
            id="cpu-not-a-quantity",
        ),
        pytest.param(
            STARTING,
            _spec_error(resources={"requests": {"memory": "-1Gi"}}),
            "spec.resources.requests[memory]",
            id="negative-memory-while-starting",
        ),
    ],
)
def test_a_spec_past_the_crd_fails_the_rollout_naming_the_field(
    progress: Progress, error: SpecError, field: str
) -> None:
    """An object stored before the CRD's rules (or with them off) must not get stuck: the
    operator's own parse fails it at once, with a Warning, and creates no pod."""
    d = decide(observed(progress, spec=error))
    assert d.progress.phase is Phase.FAILED
    assert d.progress.message.startswith(f"invalid spec: {field}: "), d.progress.message
    assert [type(a) for a in d.actions] == [Event]
    (event,) = d.actions
    assert isinstance(event, Event)
    assert (event.type, event.reason) == (EventType.WARNING, "InvalidSpec")
    # Failed is terminal and stays so: the next rounds change nothing.
    again = decide(observed(d.progress, spec=error))
    assert (again.progress, again.actions) == (d.progress, ())


REFUSAL = (
    '422: Pod "mom-v2-0f1e2d" is invalid: spec.containers[0].resources.requests: '
    'Invalid value: "2": must be less than or equal to cpu limit of 1'
)


@pytest.mark.parametrize(
    "o",
    [
        pytest.param(observed(), id="pending-first-create"),
        pytest.param(observed(STARTING, pod=None), id="starting-re-create"),
    ],
)
def test_a_refused_pod_fails_the_rollout_quoting_the_server(o: Observed) -> None:
    d = pod_refused(o, POD, REFUSAL)
    assert d.progress.phase is Phase.FAILED
    assert not d.progress.active
    assert d.progress.message == (
        f"the API server refused pod {POD}: {REFUSAL}; fix the spec and apply it as a new "
        "StrategyVersion; the running version is untouched"
    )
    assert d.actions == (Event(EventType.WARNING, "PodRefused", d.progress.message),)
    # Terminal: the next round (the same facts, the status written) does nothing more.
    after = decide(replace(o, progress=d.progress))
    assert after.progress.phase is Phase.FAILED
    assert not any(isinstance(a, CreatePod) for a in after.actions)
