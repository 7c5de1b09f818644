"""The handoff state machine: moving a strategy's state from blue to green and flipping
between two ticks (docs/handoff.md: the steps, the failures, guarantees G1-G5).

Pure: ``transition(handoff, event)`` returns the next value and the actions the gateway must
carry out. It reads no clock (times arrive in events) and does no I/O; the gateway's async layer
observes facts (an export arrived, a tick boundary was reached, an instance went away), feeds
them in, and executes the actions.

    EXPORTING --exported--> IMPORTING --imported, digest ok--> SHADOWING
        --`shadow_ticks` whole live ticks shadowed, green caught up--> BAKING (flip: green
        ACTIVE, new epoch; blue SHADOWs green) --bake window over--> DRAINING --blue drained-->
        COMPLETED

Before the flip any failure ends in ABORTED with blue untouched (it never stopped being
ACTIVE). Inside the bake window a failure of green hands back to blue (ROLLED_BACK): blue has
shadowed green, so its state is current and nothing flows back over the wire.

Blue dying is the exception: there is nothing left to abort to. Once its snapshot has left it
(IMPORTING, SHADOWING) green has everything blue had, the snapshot plus the journal of what blue
was sent after it, so the handoff fails over: green takes over as soon as its import is
confirmed (at once when it is already shadowing). Only a blue that dies before its export
(EXPORTING) takes the current state with it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from baton.model import HandoffPhase, HandoffPolicy, HandoffStatus, HandoffStep

# The phases and the policy are the model's (one definition for the gateway, the control client
# and the operator); this machine knows them by these names.
Phase = HandoffPhase
Policy = HandoffPolicy
Step = HandoffStep


GREEN_GONE_STEP = "green gone"
# The first boundary green shadows through: the tick dispatched there is the first it is sent
# whole (it started shadowing between two boundaries, when its import landed).
LIVE_SHADOW_STEP = "live shadow"


@dataclass(frozen=True, slots=True)
class Handoff:
    """Everything known about one handoff. A new value per transition."""

    handoff_id: str
    strategy: str
    blue: str
    green: str
    from_version: str
    to_version: str
    policy: Policy
    phase: Phase
    started_ms: int
    phase_since_ms: int
    epoch_before: int
    epoch_after: int = 0
    state_bytes: int = 0
    export_digest: str = ""
    import_digest: str = ""
    migrated_digest: str = ""
    export_requested_ms: int = 0
    imported_ms: int | None = None
    # Boundaries green was caught up at, each after at least one whole live tick shadowed.
    caught_up_boundaries: int = 0
    compared: int = 0
    divergences: int = 0
    divergence_examples: tuple[str, ...] = ()
    bake_faults: int = 0
    flipped_ms: int | None = None
    pause_ms: float | None = None
    blue_gone: bool = False
    finished_ms: int | None = None
    message: str = ""
    steps: tuple[Step, ...] = field(default=())

    @property
    def green_gone(self) -> bool:
        """Green went away after the point of no return (recorded as a step, not a field: the
        ledger rebuilds a handoff from its columns and steps)."""
        return any(step.name == GREEN_GONE_STEP for step in self.steps)

    @property
    def shadowing_live(self) -> bool:
        """Green has been sent whole live ticks as SHADOW (a step, like ``green_gone``)."""
        return any(step.name == LIVE_SHADOW_STEP for step in self.steps)

    @property
    def transfer_ms(self) -> int | None:
        if self.imported_ms is None:
            return None
        return self.imported_ms - self.export_requested_ms


def status(h: Handoff, missed: int) -> HandoffStatus:
    """What the control service reports of ``h``; ``missed``: the evaluations missed while it
    ran (the coordinator counts them, the machine does not see the ledger)."""
    return HandoffStatus(
        handoff_id=h.handoff_id,
        strategy=h.strategy,
        from_instance=h.blue,
        to_instance=h.green,
        from_version=h.from_version,
        to_version=h.to_version,
        phase=h.phase,
        message=h.message,
        epoch_before=h.epoch_before,
        epoch_after=h.epoch_after,
        state_bytes=h.state_bytes,
        export_digest=h.export_digest,
        import_digest=h.import_digest,
        migrated_digest=h.migrated_digest,
        pause_ms=h.pause_ms,
        missed=missed,
        divergences=h.divergences,
        compared=h.compared,
        steps=h.steps,
        started_ms=h.started_ms,
        finished_ms=h.finished_ms,
        transfer_ms=float(h.transfer_ms) if h.transfer_ms is not None else None,
    )


# -- events (facts in) -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Exported:
    t_ms: int
    state_bytes: int
    digest: str
    error: str = ""


@dataclass(frozen=True, slots=True)
class ExportSent:
    """The ExportState command went out (right after a tick's dispatch, so that blue has a
    whole cadence to export before its next evaluations queue up behind the export)."""

    t_ms: int


@dataclass(frozen=True, slots=True)
class Imported:
    t_ms: int
    ok: bool
    digest: str
    migrated_digest: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class Boundary:
    """A tick boundary, before the tick is dispatched. ``green_caught_up``: green has answered
    every evaluation it was sent (replayed and live), so its state has seen every earlier tick."""

    t_ms: int
    green_caught_up: bool


@dataclass(frozen=True, slots=True)
class Compared:
    """Green's shadow decision against blue's executed one for the same (slot, seq)."""

    t_ms: int
    slot_id: str
    seq: int
    blue_action: str
    green_action: str

    @property
    def diverged(self) -> bool:
        return self.blue_action != self.green_action


@dataclass(frozen=True, slots=True)
class FirstGreenTick:
    pause_ms: float


@dataclass(frozen=True, slots=True)
class GreenFault:
    """Green, ACTIVE inside the bake window, errored or missed a deadline."""

    t_ms: int
    what: str


@dataclass(frozen=True, slots=True)
class Gone:
    t_ms: int
    instance_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Drained:
    t_ms: int


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop it: an operator's rollback, or a newer promotion superseding this one."""

    t_ms: int
    reason: str


Event = (
    ExportSent
    | Exported
    | Imported
    | Boundary
    | Compared
    | FirstGreenTick
    | GreenFault
    | Gone
    | Drained
    | Cancel
)


# -- actions (what the gateway carries out) ---------------------------------------------------


class Act(enum.Enum):
    REQUEST_IMPORT = "request_import"  # send blue's snapshot to green
    START_SHADOW = "start_shadow"  # green -> SHADOW; replay what blue got after the snapshot
    KEEP_JOURNAL = "keep_journal"  # blue went away mid-import: keep its journal for green
    STOP_SHADOW = "stop_shadow"  # green -> STANDBY; forget the journal (abort before the flip)
    FLIP = "flip"  # new epoch: green ACTIVE, blue SHADOW (or gone)
    HAND_BACK = "hand_back"  # new epoch: blue ACTIVE again, green out
    DRAIN_BLUE = "drain_blue"  # send Drain to blue
    RELEASE_GREEN = "release_green"  # green failed after a hand-back: drain it out
    FINISHED = "finished"  # terminal: record the handoff


@dataclass(frozen=True, slots=True)
class Transition:
    handoff: Handoff
    actions: tuple[Act, ...] = ()


def start(
    *,
    handoff_id: str,
    strategy: str,
    blue: str,
    green: str,
    from_version: str,
    to_version: str,
    policy: Policy,
    epoch: int,
    now_ms: int,
) -> Transition:
    """A new handoff. With state transfer it starts by exporting blue's state (the caller sends
    the ExportState and starts journaling blue's stream); without, green shadows from now."""
    phase = Phase.SHADOWING if policy.skip_state_transfer else Phase.EXPORTING
    h = Handoff(
        handoff_id,
        strategy,
        blue,
        green,
        from_version,
        to_version,
        policy,
        phase,
        started_ms=now_ms,
        phase_since_ms=now_ms,
        epoch_before=epoch,
        export_requested_ms=now_ms,
        steps=(Step("start", now_ms, f"{from_version} -> {to_version}"),),
    )
    if policy.skip_state_transfer:
        return Transition(_step(h, "shadow", now_ms, "no state transfer"), (Act.START_SHADOW,))
    return Transition(_step(h, "export", now_ms, f"requested from {blue}"))


def _step(h: Handoff, name: str, t_ms: int, detail: str = "") -> Handoff:
    return replace(h, steps=(*h.steps, Step(name, t_ms, detail)))


def _to(h: Handoff, phase: Phase, t_ms: int, name: str, detail: str = "") -> Handoff:
    return _step(replace(h, phase=phase, phase_since_ms=t_ms), name, t_ms, detail)


def _end(h: Handoff, phase: Phase, t_ms: int, message: str, *acts: Act) -> Transition:
    done = replace(_to(h, phase, t_ms, phase.value, message), finished_ms=t_ms, message=message)
    return Transition(done, (*acts, Act.FINISHED))


def _abort(h: Handoff, t_ms: int, message: str) -> Transition:
    """Before the flip: blue was never touched; green goes back to STANDBY if it shadowed."""
    acts = (Act.STOP_SHADOW,) if h.phase is Phase.SHADOWING else ()
    return _end(h, Phase.ABORTED, t_ms, message, *acts)


def _hand_back(h: Handoff, t_ms: int, message: str) -> Transition:
    return _end(h, Phase.ROLLED_BACK, t_ms, message, Act.HAND_BACK, Act.RELEASE_GREEN)


def transition(h: Handoff, event: Event) -> Transition:
    """The next value of ``h`` and the actions to carry out, given ``event``.

    Events that do not apply to the current phase change nothing (they can race: a shadow
    answer may arrive just after the flip).
    """
    if h.phase.terminal:
        return Transition(h)
    if isinstance(event, Cancel):
        if h.phase is Phase.DRAINING or h.blue_gone:
            # Nothing to hand back or abort to any more: green holds the only current state.
            return Transition(h)
        if h.phase.flipped:
            return _hand_back(h, event.t_ms, event.reason)
        return _abort(h, event.t_ms, event.reason)
    if isinstance(event, Gone):
        return _gone(h, event)
    if h.phase is Phase.EXPORTING:
        return _exporting(h, event)
    if h.phase is Phase.IMPORTING:
        return _importing(h, event)
    if h.phase is Phase.SHADOWING:
        return _shadowing(h, event)
    if h.phase is Phase.BAKING:
        return _baking(h, event)
    return _draining(h, event)


def _timed_out(h: Handoff, event: Event) -> bool:
    return isinstance(event, Boundary) and event.t_ms - h.phase_since_ms > h.policy.step_timeout_ms


def _exporting(h: Handoff, event: Event) -> Transition:
    if isinstance(event, ExportSent):
        return Transition(
            _step(replace(h, export_requested_ms=event.t_ms), "export sent", event.t_ms)
        )
    if isinstance(event, Exported):
        if event.error or not event.digest:
            return _abort(h, event.t_ms, f"blue's export failed: {event.error or 'no digest'}")
        h = replace(h, state_bytes=event.state_bytes, export_digest=event.digest)
        h = _to(h, Phase.IMPORTING, event.t_ms, "import", f"{event.state_bytes} bytes")
        return Transition(h, (Act.REQUEST_IMPORT,))
    if _timed_out(h, event):
        assert isinstance(event, Boundary)
        return _abort(h, event.t_ms, "blue did not export its state in time")
    return Transition(h)


def _importing(h: Handoff, event: Event) -> Transition:
    if isinstance(event, Imported):
        if not event.ok:
            return _abort(h, event.t_ms, f"green's import failed: {event.error}")
        if event.digest != h.export_digest:
            return _abort(
                h,
                event.t_ms,
                f"state digest mismatch: exported {h.export_digest}, imported {event.digest}",
            )
        h = replace(
            h,
            import_digest=event.digest,
            migrated_digest=event.migrated_digest,
            imported_ms=event.t_ms,
        )
        h = _to(h, Phase.SHADOWING, event.t_ms, "shadow", "green follows as SHADOW")
        if h.blue_gone:
            # Fail-over: green replays blue's journal, then takes over right away.
            detail = "blue went away: green takes over after its import"
            return _take_over(h, event.t_ms, detail, replay=True)
        return Transition(h, (Act.START_SHADOW,))
    if _timed_out(h, event):
        assert isinstance(event, Boundary)
        return _abort(h, event.t_ms, "green did not import the state in time")
    return Transition(h)


def _shadowing(h: Handoff, event: Event) -> Transition:
    if isinstance(event, Compared):
        h = replace(h, compared=h.compared + 1)
        if not event.diverged:
            return Transition(h)
        examples = h.divergence_examples
        if len(examples) < 5:
            example = (
                f"{event.slot_id}#{event.seq}: blue {event.blue_action}, green {event.green_action}"
            )
            examples = (*examples, example)
        h = replace(h, divergences=h.divergences + 1, divergence_examples=examples)
        limit = h.policy.max_divergence
        if limit is not None and h.divergences > limit:
            return _abort(h, event.t_ms, f"{h.divergences} shadow divergences > {limit}")
        return Transition(h)
    if isinstance(event, Boundary):
        if not h.shadowing_live:
            # Green joined the tick before this boundary halfway (its import landed between two
            # boundaries), so that tick was never compared whole: counting it would let the
            # default policy flip with nothing compared. Live shadowing starts with this tick.
            h = _step(h, LIVE_SHADOW_STEP, event.t_ms, "green is sent every request from now")
        elif event.green_caught_up:
            # Caught up: green answered every tick it was sent whole, each compared with blue.
            h = replace(h, caught_up_boundaries=h.caught_up_boundaries + 1)
            if h.caught_up_boundaries >= h.policy.shadow_ticks:
                detail = f"epoch {h.epoch_before + 1}, {h.compared} decisions compared"
                h = replace(h, flipped_ms=event.t_ms, epoch_after=h.epoch_before + 1)
                h = _to(h, Phase.BAKING, event.t_ms, "flip", detail)
                return Transition(h, (Act.FLIP,))
            return Transition(h)
        if not event.green_caught_up and _timed_out(h, event):
            return _abort(h, event.t_ms, "green did not catch up in time")
    return Transition(h)


def _baking(h: Handoff, event: Event) -> Transition:
    if isinstance(event, FirstGreenTick):
        return Transition(
            _step(
                replace(h, pause_ms=event.pause_ms),
                "first green tick",
                h.phase_since_ms,
                f"pause {event.pause_ms:.2f} ms",
            )
        )
    if isinstance(event, GreenFault):
        h = _step(replace(h, bake_faults=h.bake_faults + 1), "green fault", event.t_ms, event.what)
        if h.policy.auto_rollback and not h.blue_gone and h.bake_faults > h.policy.max_bake_faults:
            return _hand_back(h, event.t_ms, f"green failed inside the bake window: {event.what}")
        return Transition(h)
    if isinstance(event, Boundary):
        assert h.flipped_ms is not None
        if event.t_ms - h.flipped_ms >= h.policy.bake_ms:
            if h.blue_gone:
                return _end(h, Phase.COMPLETED, event.t_ms, "")
            h = _to(h, Phase.DRAINING, event.t_ms, "drain", f"blue {h.blue}")
            return Transition(h, (Act.DRAIN_BLUE,))
    return Transition(h)


def _draining(h: Handoff, event: Event) -> Transition:
    if isinstance(event, Drained):
        return _end(h, Phase.COMPLETED, event.t_ms, _drained_message(h))
    if _timed_out(h, event):
        assert isinstance(event, Boundary)
        # Blue holds nothing the system needs any more: finish, and let it be detached.
        late = "blue did not confirm its drain in time"
        return _end(h, Phase.COMPLETED, event.t_ms, _said(_drained_message(h), late))
    return Transition(h)


def _drained_message(h: Handoff) -> str:
    # Past the point of no return the handoff completes whatever green does, but a green that
    # died meanwhile leaves nobody ACTIVE: the final status must say so, not look clean.
    return "green went away while blue drained: nobody is ACTIVE" if h.green_gone else ""


def _take_over(h: Handoff, t_ms: int, detail: str, *, replay: bool = False) -> Transition:
    """Blue is gone and green's state follows blue's: flip now (G4 still holds: nobody else
    is ACTIVE, and what blue owed moves to green with its shadow answers). ``replay``: green
    has just imported, so it first gets the journal (START_SHADOW), then the flip."""
    h = replace(h, blue_gone=True, flipped_ms=t_ms, epoch_after=h.epoch_before + 1)
    h = _to(h, Phase.BAKING, t_ms, "flip", detail)
    return Transition(h, (Act.START_SHADOW, Act.FLIP) if replay else (Act.FLIP,))


def _said(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _gone(h: Handoff, event: Gone) -> Transition:
    who = "green" if event.instance_id == h.green else "blue" if event.instance_id == h.blue else ""
    if not who:
        return Transition(h)
    why = f"{who} went away" + (f" ({event.reason})" if event.reason else "")
    if not h.phase.flipped:
        if who == "blue" and h.phase is Phase.SHADOWING:
            # Blue died while green was shadowing: green's state follows blue's, so take over
            # now rather than leave the bot without an ACTIVE instance.
            return _take_over(h, event.t_ms, f"{why}: green takes over")
        if who == "blue" and h.phase is Phase.IMPORTING and not h.blue_gone:
            # The snapshot has left blue and the gateway keeps the journal of what blue was
            # sent after it (KEEP_JOURNAL): green can still finish its import and take over.
            h = replace(h, blue_gone=True)
            h = _step(h, "blue gone", event.t_ms, f"{why}: green takes over after its import")
            return Transition(h, (Act.KEEP_JOURNAL,))
        return _abort(h, event.t_ms, f"{why} during {h.phase.value}")
    if h.phase is Phase.BAKING:
        if who == "green":
            if h.policy.auto_rollback and not h.blue_gone:
                return _hand_back(h, event.t_ms, f"{why} inside the bake window")
            return _end(
                h, Phase.COMPLETED, event.t_ms, f"{why} inside the bake window; no rollback"
            )
        return Transition(_step(replace(h, blue_gone=True), "blue gone", event.t_ms, why))
    # DRAINING
    if who == "blue":
        detached = "" if event.reason == "drained" else why
        return _end(h, Phase.COMPLETED, event.t_ms, _said(_drained_message(h), detached))
    if h.green_gone:
        return Transition(h)
    return Transition(_step(h, GREEN_GONE_STEP, event.t_ms, why))
