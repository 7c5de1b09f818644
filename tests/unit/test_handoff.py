"""The handoff state machine: every phase, every failure edge, and its invariants (G3-G5).

Table tests drive a handoff into a phase through the real transitions (``in_phase``), feed it
events and compare the phase, the actions and the fields that matter. A property test feeds
random event sequences and checks what must hold whatever happens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.gateway.core.handoff import (
    Act,
    Boundary,
    Cancel,
    Compared,
    Drained,
    Event,
    Exported,
    ExportSent,
    FirstGreenTick,
    Gone,
    GreenFault,
    Handoff,
    Imported,
    Phase,
    Policy,
    Step,
    Transition,
    start,
    transition,
)

BLUE, GREEN, OTHER = "blue-1", "green-1", "other-1"
EPOCH = 7
POLICY = Policy()  # shadow_ticks 1, bake 10 s, step timeout 30 s, auto-rollback, 0 bake faults
TIMEOUT = POLICY.step_timeout_ms
BAKE = POLICY.bake_ms

# The timeline ``in_phase`` follows with the default policy.
T0 = 1_000_000  # start: export requested
T_EXPORTED = T0 + 50  # IMPORTING since
T_IMPORTED = T0 + 120  # SHADOWING since
T_LIVE = T0 + 1_000  # first boundary while shadowing: green is sent the whole tick from here
T_FLIP = T0 + 2_000  # caught up after that whole tick: BAKING since
T_DRAIN = T_FLIP + BAKE  # bake window over: DRAINING since

EXPORTED_OK = Exported(T_EXPORTED, 4096, "d1")
IMPORTED_OK = Imported(T_IMPORTED, True, "d1", migrated_digest="m1")

TERMINAL = (Phase.COMPLETED, Phase.ABORTED, Phase.ROLLED_BACK)
LIVE = tuple(p for p in Phase if not p.terminal)


def begin(policy: Policy = POLICY, now_ms: int = T0) -> Transition:
    return start(
        handoff_id="h-1",
        strategy="momentum",
        blue=BLUE,
        green=GREEN,
        from_version="v1",
        to_version="v2",
        policy=policy,
        epoch=EPOCH,
        now_ms=now_ms,
    )


def feed(h: Handoff, events: Sequence[Event]) -> tuple[Handoff, tuple[Act, ...]]:
    """Apply ``events`` in order; the final value and every action emitted on the way."""
    acts: list[Act] = []
    for event in events:
        t = transition(h, event)
        h = t.handoff
        acts.extend(t.actions)
    return h, tuple(acts)


def route(phase: Phase, policy: Policy = POLICY) -> tuple[Event, ...]:
    """The events that take a fresh handoff (with state transfer) into ``phase``."""
    # One boundary starts live shadowing, then one caught-up boundary per whole tick.
    flip_ms = T0 + 1_000 * (policy.shadow_ticks + 1)
    ticks = range(1, policy.shadow_ticks + 2)
    shadow: tuple[Event, ...] = tuple(Boundary(T0 + 1_000 * k, True) for k in ticks)
    to_shadow: tuple[Event, ...] = (EXPORTED_OK, IMPORTED_OK)
    to_bake: tuple[Event, ...] = (*to_shadow, *shadow)
    to_drain: tuple[Event, ...] = (*to_bake, Boundary(flip_ms + policy.bake_ms, True))
    routes: dict[Phase, tuple[Event, ...]] = {
        Phase.EXPORTING: (),
        Phase.IMPORTING: (EXPORTED_OK,),
        Phase.SHADOWING: to_shadow,
        Phase.BAKING: to_bake,
        Phase.DRAINING: to_drain,
        Phase.COMPLETED: (*to_drain, Drained(flip_ms + policy.bake_ms + 5)),
        Phase.ABORTED: (Cancel(T0 + 10, "operator"),),
        Phase.ROLLED_BACK: (*to_bake, Cancel(flip_ms + 10, "operator")),
    }
    return routes[phase]


def in_phase(phase: Phase, policy: Policy = POLICY) -> Handoff:
    """A handoff in ``phase``, reached through the real transitions."""
    h, _ = feed(begin(policy).handoff, route(phase, policy))
    assert h.phase is phase
    return h


def names(h: Handoff) -> list[str]:
    return [s.name for s in h.steps]


# -- start ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "phase", "acts", "steps"),
    [
        (POLICY, Phase.EXPORTING, (), ["start", "export"]),
        (
            Policy(skip_state_transfer=True),
            Phase.SHADOWING,
            (Act.START_SHADOW,),
            ["start", "shadow"],
        ),
    ],
    ids=["with-state-transfer-exports", "without-state-transfer-shadows-at-once"],
)
def test_start(policy: Policy, phase: Phase, acts: tuple[Act, ...], steps: list[str]) -> None:
    t = begin(policy)
    h = t.handoff
    assert (h.phase, t.actions, names(h)) == (phase, acts, steps)
    assert (h.started_ms, h.phase_since_ms, h.export_requested_ms) == (T0, T0, T0)
    assert (h.epoch_before, h.epoch_after, h.flipped_ms, h.finished_ms) == (EPOCH, 0, None, None)
    assert h.steps[0] == Step("start", T0, "v1 -> v2")
    assert h.transfer_ms is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shadow_ticks": 0},
        {"bake_ms": -1},
        {"step_timeout_ms": 0},
        {"max_bake_faults": -1},
        {"max_divergence": -1},
    ],
    ids=[
        "shadow-ticks-zero",
        "negative-bake",
        "zero-step-timeout",
        "negative-bake-faults",
        "negative-max-divergence",
    ],
)
def test_policy_rejects(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must"):
        Policy(**kwargs)  # type: ignore[arg-type]


# -- the table --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    phase: Phase  # where the handoff is before ``events``
    events: tuple[Event, ...]
    phase_after: Phase
    acts: tuple[Act, ...] = ()  # every action emitted while feeding ``events``, in order
    policy: Policy = POLICY
    fields: Mapping[str, object] = field(default_factory=dict)
    message: str = ""  # expected in ``message`` (exactly "" when empty and terminal)


def div(seq: int) -> Compared:
    return Compared(T_IMPORTED + seq, "BTC/5m", seq, "HOLD", "BUY_UP")


def fin(*acts: Act) -> tuple[Act, ...]:
    return (*acts, Act.FINISHED)


ABORT_SHADOW = fin(Act.STOP_SHADOW)
HAND_BACK = fin(Act.HAND_BACK, Act.RELEASE_GREEN)
FLIPPED = {"flipped_ms": T_FLIP, "epoch_after": EPOCH + 1}
NOT_FLIPPED = {"flipped_ms": None, "epoch_after": 0}

CASES = [
    # EXPORTING
    Case(
        "exporting-export-ok-requests-import",
        Phase.EXPORTING,
        (EXPORTED_OK,),
        Phase.IMPORTING,
        (Act.REQUEST_IMPORT,),
        fields={"state_bytes": 4096, "export_digest": "d1", "phase_since_ms": T_EXPORTED},
    ),
    Case(
        "exporting-export-error-aborts",
        Phase.EXPORTING,
        (Exported(T_EXPORTED, 0, "", error="boom"),),
        Phase.ABORTED,
        fin(),
        message="blue's export failed: boom",
    ),
    Case(
        "exporting-empty-digest-aborts",
        Phase.EXPORTING,
        (Exported(T_EXPORTED, 4096, ""),),
        Phase.ABORTED,
        fin(),
        message="blue's export failed: no digest",
    ),
    Case(
        "exporting-boundary-at-step-timeout-waits",
        Phase.EXPORTING,
        (Boundary(T0 + TIMEOUT, True),),
        Phase.EXPORTING,
    ),
    Case(
        "exporting-boundary-past-step-timeout-aborts",
        Phase.EXPORTING,
        (Boundary(T0 + TIMEOUT + 1, False),),
        Phase.ABORTED,
        fin(),
        message="blue did not export its state in time",
    ),
    Case(
        "exporting-ignores-stray-events",
        Phase.EXPORTING,
        (
            IMPORTED_OK,
            div(1),
            FirstGreenTick(1.0),
            GreenFault(T0 + 5, "x"),
            Drained(T0 + 6),
        ),
        Phase.EXPORTING,
        fields={"compared": 0, "bake_faults": 0, "pause_ms": None, "imported_ms": None},
    ),
    # IMPORTING
    Case(
        "importing-import-ok-starts-shadow",
        Phase.IMPORTING,
        (IMPORTED_OK,),
        Phase.SHADOWING,
        (Act.START_SHADOW,),
        fields={
            "import_digest": "d1",
            "migrated_digest": "m1",
            "imported_ms": T_IMPORTED,
            "transfer_ms": T_IMPORTED - T0,
            "phase_since_ms": T_IMPORTED,
        },
    ),
    Case(
        "importing-import-failed-aborts",
        Phase.IMPORTING,
        (Imported(T_IMPORTED, False, "", error="schema 3 unknown"),),
        Phase.ABORTED,
        fin(),
        message="green's import failed: schema 3 unknown",
        fields={"import_digest": "", "transfer_ms": None},
    ),
    Case(
        "importing-digest-mismatch-aborts",
        Phase.IMPORTING,
        (Imported(T_IMPORTED, True, "d2"),),
        Phase.ABORTED,
        fin(),
        message="state digest mismatch: exported d1, imported d2",
    ),
    Case(
        "importing-boundary-at-step-timeout-waits",
        Phase.IMPORTING,
        (Boundary(T_EXPORTED + TIMEOUT, False),),
        Phase.IMPORTING,
    ),
    Case(
        "importing-boundary-past-step-timeout-aborts",
        Phase.IMPORTING,
        (Boundary(T_EXPORTED + TIMEOUT + 1, True),),
        Phase.ABORTED,
        fin(),
        message="green did not import the state in time",
    ),
    Case(
        "importing-ignores-a-second-export",
        Phase.IMPORTING,
        (Exported(T_EXPORTED + 1, 1, "other"),),
        Phase.IMPORTING,
        fields={"export_digest": "d1", "state_bytes": 4096},
    ),
    # SHADOWING
    Case(
        # Green's import landed mid-tick: the tick before this boundary was not shadowed whole,
        # so even caught up it does not count (the default policy used to flip here, 0 compared).
        "shadowing-first-boundary-starts-live-shadowing-and-never-flips",
        Phase.SHADOWING,
        (Boundary(T_LIVE, True),),
        Phase.SHADOWING,
        fields={"caught_up_boundaries": 0, "shadowing_live": True, **NOT_FLIPPED},
    ),
    Case(
        "shadowing-boundary-not-caught-up-waits",
        Phase.SHADOWING,
        (Boundary(T_LIVE, True), Boundary(T_FLIP, False)),
        Phase.SHADOWING,
        fields={"caught_up_boundaries": 0, **NOT_FLIPPED},
    ),
    Case(
        "shadowing-caught-up-below-shadow-ticks-waits",
        Phase.SHADOWING,
        (Boundary(T_LIVE, True), Boundary(T_FLIP, True), Boundary(T_FLIP + 1_000, True)),
        Phase.SHADOWING,
        policy=Policy(shadow_ticks=3),
        fields={"caught_up_boundaries": 2, **NOT_FLIPPED},
    ),
    Case(
        "shadowing-caught-up-after-one-whole-tick-flips",
        Phase.SHADOWING,
        (Boundary(T_LIVE, True), Boundary(T_FLIP, True)),
        Phase.BAKING,
        (Act.FLIP,),
        fields={"caught_up_boundaries": 1, "phase_since_ms": T_FLIP, **FLIPPED},
    ),
    Case(
        "shadowing-flip-counts-the-decisions-compared-over-the-whole-tick",
        Phase.SHADOWING,
        (
            Boundary(T_LIVE, True),
            Compared(T_LIVE + 5, "BTC/5m", 2, "HOLD", "HOLD"),
            Compared(T_LIVE + 6, "ETH/5m", 2, "UP", "UP"),
            Boundary(T_FLIP, True),
        ),
        Phase.BAKING,
        (Act.FLIP,),
        fields={"compared": 2, "divergences": 0, **FLIPPED},
    ),
    Case(
        "shadowing-flips-on-the-third-caught-up-boundary",
        Phase.SHADOWING,
        (
            Boundary(T_LIVE, False),
            Boundary(T_FLIP - 500, True),
            Boundary(T_FLIP - 250, False),
            Boundary(T_FLIP - 100, True),
            Boundary(T_FLIP, True),
        ),
        Phase.BAKING,
        (Act.FLIP,),
        policy=Policy(shadow_ticks=3),
        fields={"caught_up_boundaries": 3, **FLIPPED},
    ),
    Case(
        "shadowing-caught-up-past-step-timeout-still-flips",
        Phase.SHADOWING,
        (Boundary(T_LIVE, True), Boundary(T_IMPORTED + TIMEOUT + 1, True)),
        Phase.BAKING,
        (Act.FLIP,),
        fields={"flipped_ms": T_IMPORTED + TIMEOUT + 1, "epoch_after": EPOCH + 1},
    ),
    Case(
        "shadowing-not-caught-up-at-step-timeout-waits",
        Phase.SHADOWING,
        (Boundary(T_IMPORTED + TIMEOUT, False),),
        Phase.SHADOWING,
    ),
    Case(
        "shadowing-not-caught-up-past-step-timeout-aborts",
        Phase.SHADOWING,
        (Boundary(T_IMPORTED + TIMEOUT + 1, False),),
        Phase.ABORTED,
        ABORT_SHADOW,
        message="green did not catch up in time",
    ),
    Case(
        "shadowing-equal-decisions-counted-not-diverged",
        Phase.SHADOWING,
        (Compared(T_IMPORTED + 1, "BTC/5m", 1, "HOLD", "HOLD"),),
        Phase.SHADOWING,
        fields={"compared": 1, "divergences": 0, "divergence_examples": ()},
    ),
    Case(
        "shadowing-divergences-up-to-the-limit-tolerated",
        Phase.SHADOWING,
        (div(1), div(2)),
        Phase.SHADOWING,
        policy=Policy(max_divergence=2),
        fields={
            "compared": 2,
            "divergences": 2,
            "divergence_examples": (
                "BTC/5m#1: blue HOLD, green BUY_UP",
                "BTC/5m#2: blue HOLD, green BUY_UP",
            ),
        },
    ),
    Case(
        "shadowing-divergence-past-the-limit-aborts",
        Phase.SHADOWING,
        (div(1), div(2), div(3)),
        Phase.ABORTED,
        ABORT_SHADOW,
        policy=Policy(max_divergence=2),
        fields={"divergences": 3, **NOT_FLIPPED},
        message="3 shadow divergences > 2",
    ),
    Case(
        "shadowing-max-divergence-zero-aborts-on-the-first",
        Phase.SHADOWING,
        (div(1),),
        Phase.ABORTED,
        ABORT_SHADOW,
        policy=Policy(max_divergence=0),
        message="1 shadow divergences > 0",
    ),
    Case(
        "shadowing-negative-max-divergence-never-aborts-examples-capped-at-5",
        Phase.SHADOWING,
        tuple(div(seq) for seq in range(1, 9)),
        Phase.SHADOWING,
        fields={
            "compared": 8,
            "divergences": 8,
            "divergence_examples": tuple(
                f"BTC/5m#{seq}: blue HOLD, green BUY_UP" for seq in range(1, 6)
            ),
        },
    ),
    Case(
        "shadowing-ignores-bake-events",
        Phase.SHADOWING,
        (FirstGreenTick(2.0), GreenFault(T_IMPORTED + 1, "x"), Drained(T_IMPORTED + 2)),
        Phase.SHADOWING,
        fields={"pause_ms": None, "bake_faults": 0},
    ),
    # Gone
    Case(
        "gone-green-while-exporting-aborts",
        Phase.EXPORTING,
        (Gone(T0 + 5, GREEN, "crashed"),),
        Phase.ABORTED,
        fin(),
        message="green went away (crashed) during exporting",
    ),
    Case(
        "gone-green-while-importing-aborts",
        Phase.IMPORTING,
        (Gone(T_EXPORTED + 5, GREEN),),
        Phase.ABORTED,
        fin(),
        message="green went away during importing",
    ),
    Case(
        "gone-blue-while-exporting-aborts",
        Phase.EXPORTING,
        (Gone(T0 + 5, BLUE, "crashed"),),
        Phase.ABORTED,
        fin(),
        message="blue went away (crashed) during exporting",
    ),
    Case(
        "gone-blue-while-importing-keeps-its-journal-and-waits-for-green",
        Phase.IMPORTING,
        (Gone(T_EXPORTED + 5, BLUE, "crashed"),),
        Phase.IMPORTING,
        (Act.KEEP_JOURNAL,),
        fields={"blue_gone": True, **NOT_FLIPPED},
    ),
    Case(
        "gone-blue-while-importing-then-import-ok-fails-over-to-green",
        Phase.IMPORTING,
        (Gone(T_EXPORTED + 5, BLUE, "crashed"), IMPORTED_OK),
        Phase.BAKING,
        (Act.KEEP_JOURNAL, Act.START_SHADOW, Act.FLIP),
        fields={
            "blue_gone": True,
            "flipped_ms": T_IMPORTED,
            "epoch_after": EPOCH + 1,
            "import_digest": "d1",
        },
    ),
    Case(
        "gone-blue-while-importing-then-import-failed-aborts",
        Phase.IMPORTING,
        (Gone(T_EXPORTED + 5, BLUE), Imported(T_IMPORTED, False, "", error="bad schema")),
        Phase.ABORTED,
        (Act.KEEP_JOURNAL, Act.FINISHED),
        message="green's import failed: bad schema",
    ),
    Case(
        "gone-blue-while-importing-then-step-timeout-aborts",
        Phase.IMPORTING,
        (Gone(T_EXPORTED + 5, BLUE), Boundary(T_EXPORTED + TIMEOUT + 1, False)),
        Phase.ABORTED,
        (Act.KEEP_JOURNAL, Act.FINISHED),
        message="green did not import the state in time",
    ),
    Case(
        "gone-blue-while-importing-then-cancel-changes-nothing",
        Phase.IMPORTING,
        (Gone(T_EXPORTED + 5, BLUE), Cancel(T_EXPORTED + 6, "superseded")),
        Phase.IMPORTING,
        (Act.KEEP_JOURNAL,),
        fields={"blue_gone": True},
    ),
    Case(
        "gone-blue-then-green-while-importing-aborts",
        Phase.IMPORTING,
        (Gone(T_EXPORTED + 5, BLUE), Gone(T_EXPORTED + 6, GREEN, "crashed")),
        Phase.ABORTED,
        (Act.KEEP_JOURNAL, Act.FINISHED),
        message="green went away (crashed) during importing",
    ),
    Case(
        "gone-green-while-shadowing-aborts-and-stops-shadow",
        Phase.SHADOWING,
        (Gone(T_IMPORTED + 5, GREEN, "crashed"),),
        Phase.ABORTED,
        ABORT_SHADOW,
        message="green went away (crashed) during shadowing",
    ),
    Case(
        "gone-blue-while-shadowing-fails-over-to-green",
        Phase.SHADOWING,
        (Gone(T_IMPORTED + 5, BLUE, "crashed"),),
        Phase.BAKING,
        (Act.FLIP,),
        fields={
            "blue_gone": True,
            "flipped_ms": T_IMPORTED + 5,
            "epoch_after": EPOCH + 1,
            "phase_since_ms": T_IMPORTED + 5,
        },
    ),
    Case(
        "gone-green-while-baking-rolls-back",
        Phase.BAKING,
        (Gone(T_FLIP + 5, GREEN, "crashed"),),
        Phase.ROLLED_BACK,
        HAND_BACK,
        fields=FLIPPED,
        message="green went away (crashed) inside the bake window",
    ),
    Case(
        "gone-green-while-baking-without-auto-rollback-completes",
        Phase.BAKING,
        (Gone(T_FLIP + 5, GREEN, "crashed"),),
        Phase.COMPLETED,
        fin(),
        policy=Policy(auto_rollback=False),
        message="green went away (crashed) inside the bake window; no rollback",
    ),
    Case(
        "gone-blue-while-baking-is-recorded",
        Phase.BAKING,
        (Gone(T_FLIP + 5, BLUE, "crashed"),),
        Phase.BAKING,
        fields={"blue_gone": True, **FLIPPED},
    ),
    Case(
        "gone-blue-while-baking-then-bake-end-completes-without-drain",
        Phase.BAKING,
        (Gone(T_FLIP + 5, BLUE), Boundary(T_FLIP + BAKE, True)),
        Phase.COMPLETED,
        fin(),
        fields={"blue_gone": True},
    ),
    Case(
        "gone-blue-while-baking-then-green-fault-has-nothing-to-hand-back-to",
        Phase.BAKING,
        (Gone(T_FLIP + 5, BLUE), GreenFault(T_FLIP + 6, "timeout")),
        Phase.BAKING,
        fields={"bake_faults": 1, "blue_gone": True},
    ),
    Case(
        "gone-blue-while-baking-then-cancel-changes-nothing",
        Phase.BAKING,
        (Gone(T_FLIP + 5, BLUE), Cancel(T_FLIP + 6, "operator")),
        Phase.BAKING,
    ),
    Case(
        "gone-blue-then-green-while-baking-completes-without-rollback",
        Phase.BAKING,
        (Gone(T_FLIP + 5, BLUE), Gone(T_FLIP + 6, GREEN)),
        Phase.COMPLETED,
        fin(),
        message="green went away inside the bake window; no rollback",
    ),
    Case(
        "gone-blue-while-draining-completes",
        Phase.DRAINING,
        (Gone(T_DRAIN + 5, BLUE, "crashed"),),
        Phase.COMPLETED,
        fin(),
        message="blue went away (crashed)",
    ),
    Case(
        "gone-blue-drained-while-draining-completes-quietly",
        Phase.DRAINING,
        (Gone(T_DRAIN + 5, BLUE, "drained"),),
        Phase.COMPLETED,
        fin(),
    ),
    Case(
        "gone-green-while-draining-is-recorded",
        Phase.DRAINING,
        (Gone(T_DRAIN + 5, GREEN, "crashed"),),
        Phase.DRAINING,
        fields={"green_gone": True},
    ),
    Case(
        "gone-green-while-draining-then-drained-completes-saying-nobody-is-active",
        Phase.DRAINING,
        (Gone(T_DRAIN + 5, GREEN, "crashed"), Drained(T_DRAIN + 50)),
        Phase.COMPLETED,
        fin(),
        message="green went away while blue drained: nobody is ACTIVE",
    ),
    Case(
        "gone-green-then-blue-while-draining-says-both",
        Phase.DRAINING,
        (Gone(T_DRAIN + 5, GREEN, "crashed"), Gone(T_DRAIN + 6, BLUE, "crashed")),
        Phase.COMPLETED,
        fin(),
        message="green went away while blue drained: nobody is ACTIVE; blue went away (crashed)",
    ),
    Case(
        "gone-green-while-draining-then-drain-timeout-says-both",
        Phase.DRAINING,
        (Gone(T_DRAIN + 5, GREEN), Boundary(T_DRAIN + TIMEOUT + 1, True)),
        Phase.COMPLETED,
        fin(),
        message=(
            "green went away while blue drained: nobody is ACTIVE; "
            "blue did not confirm its drain in time"
        ),
    ),
    # BAKING
    Case(
        "baking-first-green-tick-records-pause",
        Phase.BAKING,
        (FirstGreenTick(1.25),),
        Phase.BAKING,
        fields={"pause_ms": 1.25},
    ),
    Case(
        "baking-green-faults-within-max-bake-faults-tolerated",
        Phase.BAKING,
        (GreenFault(T_FLIP + 1, "error"), GreenFault(T_FLIP + 2, "timeout")),
        Phase.BAKING,
        policy=Policy(max_bake_faults=2),
        fields={"bake_faults": 2},
    ),
    Case(
        "baking-green-fault-past-max-bake-faults-rolls-back",
        Phase.BAKING,
        (
            GreenFault(T_FLIP + 1, "error"),
            GreenFault(T_FLIP + 2, "error"),
            GreenFault(T_FLIP + 3, "timeout"),
        ),
        Phase.ROLLED_BACK,
        HAND_BACK,
        policy=Policy(max_bake_faults=2),
        fields={"bake_faults": 3},
        message="green failed inside the bake window: timeout",
    ),
    Case(
        "baking-first-green-fault-rolls-back-by-default",
        Phase.BAKING,
        (GreenFault(T_FLIP + 1, "error"),),
        Phase.ROLLED_BACK,
        HAND_BACK,
        fields={"bake_faults": 1, **FLIPPED},
        message="green failed inside the bake window: error",
    ),
    Case(
        "baking-green-faults-without-auto-rollback-tolerated",
        Phase.BAKING,
        tuple(GreenFault(T_FLIP + i, "error") for i in range(1, 6)),
        Phase.BAKING,
        policy=Policy(auto_rollback=False),
        fields={"bake_faults": 5},
    ),
    Case(
        "baking-boundary-inside-the-window-waits",
        Phase.BAKING,
        (Boundary(T_FLIP + BAKE - 1, True),),
        Phase.BAKING,
    ),
    Case(
        "baking-window-end-drains-blue",
        Phase.BAKING,
        (Boundary(T_FLIP + BAKE, False),),
        Phase.DRAINING,
        (Act.DRAIN_BLUE,),
        fields={"phase_since_ms": T_FLIP + BAKE},
    ),
    Case(
        "baking-ignores-late-shadow-events",
        Phase.BAKING,
        (div(1), IMPORTED_OK, EXPORTED_OK, Drained(T_FLIP + 1)),
        Phase.BAKING,
        fields={"compared": 0, "divergences": 0},
    ),
    # DRAINING
    Case(
        "draining-drained-completes",
        Phase.DRAINING,
        (Drained(T_DRAIN + 50),),
        Phase.COMPLETED,
        fin(),
    ),
    Case(
        "draining-boundary-at-step-timeout-waits",
        Phase.DRAINING,
        (Boundary(T_DRAIN + TIMEOUT, True),),
        Phase.DRAINING,
    ),
    Case(
        "draining-timeout-completes-with-message",
        Phase.DRAINING,
        (Boundary(T_DRAIN + TIMEOUT + 1, True),),
        Phase.COMPLETED,
        fin(),
        message="blue did not confirm its drain in time",
    ),
    Case(
        "draining-ignores-green-faults",
        Phase.DRAINING,
        (GreenFault(T_DRAIN + 1, "error"),),
        Phase.DRAINING,
        fields={"bake_faults": 0},
    ),
    # Cancel
    Case(
        "cancel-while-exporting-aborts",
        Phase.EXPORTING,
        (Cancel(T0 + 5, "superseded"),),
        Phase.ABORTED,
        fin(),
        message="superseded",
    ),
    Case(
        "cancel-while-importing-aborts",
        Phase.IMPORTING,
        (Cancel(T_EXPORTED + 5, "superseded"),),
        Phase.ABORTED,
        fin(),
        message="superseded",
    ),
    Case(
        "cancel-while-shadowing-aborts-and-stops-shadow",
        Phase.SHADOWING,
        (Cancel(T_IMPORTED + 5, "operator"),),
        Phase.ABORTED,
        ABORT_SHADOW,
        message="operator",
    ),
    Case(
        "cancel-while-baking-hands-back",
        Phase.BAKING,
        (Cancel(T_FLIP + 5, "rollback requested"),),
        Phase.ROLLED_BACK,
        HAND_BACK,
        message="rollback requested",
    ),
    Case(
        "cancel-while-baking-hands-back-even-without-auto-rollback",
        Phase.BAKING,
        (Cancel(T_FLIP + 5, "rollback requested"),),
        Phase.ROLLED_BACK,
        HAND_BACK,
        policy=Policy(auto_rollback=False),
        message="rollback requested",
    ),
    Case(
        "cancel-while-draining-changes-nothing",
        Phase.DRAINING,
        (Cancel(T_DRAIN + 5, "rollback requested"),),
        Phase.DRAINING,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_transition(case: Case) -> None:
    before = in_phase(case.phase, case.policy)
    h, acts = feed(before, case.events)
    assert h.phase is case.phase_after
    assert acts == case.acts
    for name, want in case.fields.items():
        assert getattr(h, name) == want, name
    assert case.message in h.message
    # What holds for every transition.
    assert h.steps[: len(before.steps)] == before.steps  # steps are only ever appended
    # ``flipped`` is what the operator and the coordinator go by: it must say whether this
    # machine flipped (ROLLED_BACK did, ABORTED never does).
    assert h.phase.flipped == (h.flipped_ms is not None), h.phase
    if h.phase.terminal:
        t_last = getattr(case.events[-1], "t_ms")  # noqa: B009 (FirstGreenTick has none)
        assert h.finished_ms == t_last
        assert acts.count(Act.FINISHED) == 1
        assert acts[-1] is Act.FINISHED
        assert h.steps[-1] == Step(h.phase.value, t_last, h.message)
        if not case.message:
            assert h.message == ""
    else:
        assert h.finished_ms is None
        assert Act.FINISHED not in acts
    if h.phase is Phase.ABORTED:  # G5: blue untouched
        assert Act.FLIP not in acts
        assert Act.HAND_BACK not in acts
        assert (h.flipped_ms, h.epoch_after) == (None, 0)


@pytest.mark.parametrize("phase", LIVE, ids=[p.value for p in LIVE])
def test_gone_of_an_unrelated_instance_changes_nothing(phase: Phase) -> None:
    h = in_phase(phase)
    t = transition(h, Gone(T_DRAIN + 5, OTHER, "crashed"))
    assert (t.handoff, t.actions) == (h, ())


@pytest.mark.parametrize(
    "event",
    [
        EXPORTED_OK,
        IMPORTED_OK,
        Boundary(T0 + 10 * TIMEOUT, True),
        Boundary(T0 + 10 * TIMEOUT, False),
        div(1),
        FirstGreenTick(1.0),
        GreenFault(T0 + 10 * TIMEOUT, "error"),
        Gone(T0 + 10 * TIMEOUT, BLUE),
        Gone(T0 + 10 * TIMEOUT, GREEN),
        Drained(T0 + 10 * TIMEOUT),
        Cancel(T0 + 10 * TIMEOUT, "operator"),
    ],
    ids=[
        "exported",
        "imported",
        "boundary-caught-up",
        "boundary-lagging",
        "compared",
        "first-green-tick",
        "green-fault",
        "blue-gone",
        "green-gone",
        "drained",
        "cancel",
    ],
)
@pytest.mark.parametrize("phase", TERMINAL, ids=[p.value for p in TERMINAL])
def test_terminal_phases_ignore_every_event(phase: Phase, event: Event) -> None:
    h = in_phase(phase)
    assert h.finished_ms is not None
    t = transition(h, event)
    assert t.handoff is h
    assert t.actions == ()


BEFORE_BAKE = ["start", "export", "import", "shadow", "live shadow", "flip"]


@pytest.mark.parametrize(
    ("events", "steps"),
    [
        (
            (*route(Phase.DRAINING)[:4], FirstGreenTick(0.5), *route(Phase.COMPLETED)[4:]),
            [
                "start",
                "export",
                "import",
                "shadow",
                "live shadow",
                "flip",
                "first green tick",
                "drain",
                "completed",
            ],
        ),
        (
            (*route(Phase.BAKING), GreenFault(T_FLIP + 3, "error")),
            [*BEFORE_BAKE, "green fault", "rolled_back"],
        ),
        (
            (EXPORTED_OK, IMPORTED_OK, Gone(T_IMPORTED + 5, BLUE), Boundary(T_DRAIN, True)),
            ["start", "export", "import", "shadow", "flip", "completed"],
        ),
        (
            (*route(Phase.BAKING), Gone(T_FLIP + 3, BLUE), Boundary(T_DRAIN, True)),
            [*BEFORE_BAKE, "blue gone", "completed"],
        ),
        (
            (Exported(T_EXPORTED, 0, "", error="boom"),),
            ["start", "export", "aborted"],
        ),
    ],
    ids=["happy-path", "bake-rollback", "fail-over", "blue-gone-in-bake", "export-failed"],
)
def test_steps_are_appended_in_order(events: tuple[Event, ...], steps: list[str]) -> None:
    h, _ = feed(begin().handoff, events)
    assert names(h) == steps
    times = [s.t_ms for s in h.steps]
    assert times == sorted(times)


def test_happy_path_record() -> None:
    h, acts = feed(
        begin().handoff,
        (*route(Phase.DRAINING)[:4], FirstGreenTick(0.75), *route(Phase.COMPLETED)[4:]),
    )
    assert acts == (
        Act.REQUEST_IMPORT,
        Act.START_SHADOW,
        Act.FLIP,
        Act.DRAIN_BLUE,
        Act.FINISHED,
    )
    assert h.phase is Phase.COMPLETED
    assert (h.epoch_before, h.epoch_after, h.flipped_ms) == (EPOCH, EPOCH + 1, T_FLIP)
    assert (h.export_digest, h.import_digest, h.migrated_digest) == ("d1", "d1", "m1")
    assert (h.state_bytes, h.transfer_ms, h.pause_ms) == (4096, T_IMPORTED - T0, 0.75)
    assert (h.finished_ms, h.message, h.blue_gone) == (T_DRAIN + 5, "", False)
    assert h.steps[names(h).index("first green tick")].t_ms == T_FLIP
    assert h.steps[names(h).index("live shadow")].t_ms == T_LIVE


def test_transfer_ms_with_a_clock_starting_at_zero() -> None:
    h, _ = feed(
        begin(now_ms=0).handoff,
        (Exported(0, 10, "d1"), Imported(0, True, "d1")),
    )
    assert h.phase is Phase.SHADOWING
    assert h.transfer_ms == 0


# -- properties -------------------------------------------------------------------------------

policies = st.builds(
    Policy,
    shadow_ticks=st.integers(1, 3),
    max_divergence=st.none() | st.integers(0, 3),
    bake_ms=st.sampled_from([0, 1_000, 10_000]),
    auto_rollback=st.booleans(),
    max_bake_faults=st.integers(0, 2),
    step_timeout_ms=st.sampled_from([5_000, 30_000]),
    skip_state_transfer=st.booleans(),
)

# Weighted toward the happy path so that random runs reach every phase.
KINDS = (
    *("exported",) * 3,
    *("imported",) * 3,
    *("boundary",) * 6,
    *("compared",) * 2,
    *("first", "fault", "fault", "drained", "drained", "gone", "gone", "cancel"),
)


# Mostly one tick apart; now and then a long gap that crosses a bake window or a step timeout.
STEPS_MS = (0, 1, 250, *(1_000,) * 6, 10_000, 30_001)


@st.composite
def event_runs(draw: st.DrawFn) -> list[Event]:
    """A run of events with non-decreasing times, as the gateway would feed them."""
    t = T0
    run: list[Event] = []
    for _ in range(draw(st.integers(0, 30))):
        t += draw(st.sampled_from(STEPS_MS))
        kind = draw(st.sampled_from(KINDS))
        event: Event
        if kind == "exported":
            bad = draw(st.sampled_from(["", "", "", "error", "empty"]))
            event = Exported(
                t, 64, "" if bad == "empty" else "d1", error="boom" if bad == "error" else ""
            )
        elif kind == "imported":
            digest = draw(st.sampled_from(["d1", "d1", "d2"]))
            event = Imported(t, draw(st.sampled_from([True, True, False])), digest)
        elif kind == "boundary":
            event = Boundary(t, draw(st.sampled_from([True, True, False])))
        elif kind == "compared":
            green = draw(st.sampled_from(["HOLD", "BUY_UP"]))
            event = Compared(t, "BTC/5m", len(run), "HOLD", green)
        elif kind == "first":
            event = FirstGreenTick(draw(st.floats(0, 50)))
        elif kind == "fault":
            event = GreenFault(t, "error")
        elif kind == "gone":
            who = draw(st.sampled_from([BLUE, GREEN, OTHER]))
            event = Gone(t, who, draw(st.sampled_from(["", "crashed", "drained"])))
        elif kind == "drained":
            event = Drained(t)
        else:
            event = Cancel(t, "operator")
        run.append(event)
    return run


@settings(max_examples=400, deadline=None)
@given(policy=policies, run=event_runs())
def test_invariants_hold_for_any_event_sequence(policy: Policy, run: list[Event]) -> None:
    first = begin(policy)
    h = first.handoff
    emitted = list(first.actions)
    ever_flipped = False
    shadow_boundaries = 0  # boundaries fed while green shadowed
    for event in run:
        if isinstance(event, Boundary) and h.phase is Phase.SHADOWING:
            shadow_boundaries += 1
        t = transition(h, event)
        nxt = t.handoff
        emitted.extend(t.actions)
        if h.phase.terminal:  # once terminal, nothing changes
            assert t.handoff is h
            assert t.actions == ()
            continue
        assert nxt.steps[: len(h.steps)] == h.steps
        assert (Act.FINISHED in t.actions) == nxt.phase.terminal
        if nxt.phase.terminal:
            assert t.actions[-1] is Act.FINISHED
            assert nxt.finished_ms == getattr(event, "t_ms")  # noqa: B009
        else:
            assert nxt.finished_ms is None
        if Act.FLIP in t.actions:
            # From shadowing; or the fail-over after blue died mid-import, once green imported.
            fail_over = h.phase is Phase.IMPORTING and h.blue_gone
            assert h.phase is Phase.SHADOWING or fail_over, h.phase
            assert nxt.phase is Phase.BAKING
            # Green never goes ACTIVE before it was given blue's journal.
            flip_at = len(emitted) - len(t.actions) + t.actions.index(Act.FLIP)
            assert Act.START_SHADOW in emitted[:flip_at]
            if not nxt.blue_gone:
                # A planned flip: the boundary that started live shadowing, then one boundary
                # at least per whole tick the policy asks for.
                assert shadow_boundaries >= policy.shadow_ticks + 1
                assert nxt.shadowing_live
        if Act.KEEP_JOURNAL in t.actions:
            assert (h.phase, nxt.phase, nxt.blue_gone) == (Phase.IMPORTING, Phase.IMPORTING, True)
        if Act.HAND_BACK in t.actions:
            assert h.phase is Phase.BAKING
            assert nxt.phase is Phase.ROLLED_BACK
            assert not nxt.blue_gone
        if Act.DRAIN_BLUE in t.actions:
            assert not nxt.blue_gone
        ever_flipped = ever_flipped or nxt.phase.flipped
        h = nxt
        # Each value on its own.
        assert h.epoch_after in (0, h.epoch_before + 1)
        assert (h.epoch_after != 0) == (h.flipped_ms is not None) == h.phase.flipped
        assert h.divergences <= h.compared
        assert len(h.divergence_examples) == min(h.divergences, 5)
    assert emitted.count(Act.FINISHED) <= 1
    assert emitted.count(Act.FLIP) <= 1  # the fail-over flip is still the only flip
    assert emitted.count(Act.HAND_BACK) <= 1
    assert emitted.count(Act.DRAIN_BLUE) <= 1
    if h.phase is Phase.ABORTED:  # G5: never flipped, blue untouched
        assert not ever_flipped
        assert Act.FLIP not in emitted
        assert Act.HAND_BACK not in emitted
        assert h.flipped_ms is None
    if Act.HAND_BACK in emitted:
        assert Act.FLIP in emitted


def test_export_sent_after_the_next_dispatch_starts_the_transfer_clock() -> None:
    h, acts = feed(
        begin(now_ms=T0).handoff,
        (ExportSent(T0 + 40), Exported(T0 + 90, 10, "d1"), Imported(T0 + 130, True, "d1")),
    )
    assert acts == (Act.REQUEST_IMPORT, Act.START_SHADOW)
    assert h.export_requested_ms == T0 + 40
    assert h.transfer_ms == 90
    assert names(h)[:3] == ["start", "export", "export sent"]


def test_export_sent_outside_exporting_changes_nothing() -> None:
    shadowing, _ = feed(begin().handoff, (Exported(T0, 10, "d1"), Imported(T0, True, "d1")))
    assert transition(shadowing, ExportSent(T0 + 5)).handoff == shadowing
