"""Keeping a strategy's state alive when its ACTIVE instance dies (docs/standby.md): checkpoints,
digest checks, the hot standby's sync and the take-over after a death.

Pure: ``step(keeping, event)`` returns the next value and the actions the gateway carries out.
It reads no clock and does no I/O; the gateway's keeper (``gateway/standby_keeper.py``) feeds it
what it observes, with a view of the lane's instances (``Member``), and carries the actions out.

One ``Keeping`` per strategy of the book. What it does, by the ACTIVE instance's policy:

- **Checkpoints** (CHECKPOINT and HOT): right after a tick's dispatch, every
  ``checkpoint_every_ticks`` ticks, the ACTIVE's state is asked for in its stream (an export:
  it covers exactly what was sent before it). The gateway keeps the last ones in its ledger and
  journals everything it sends the ACTIVE after the latest one.
- **Digest checks** (every ``verify_every_ticks``): a digest-only export asked of the ACTIVE and,
  at the same point of its stream, of the hot standby. Two copies that differ are a divergence
  (a non-deterministic strategy), reported, and the standby is synced again.
- **Hot standby** (HOT): an attached instance of the ACTIVE's version that is not in a handoff is
  synced: the ACTIVE's state is exported, imported into it, and it follows as SHADOW from the
  export on (the journal since the export is replayed first).
- **Take-over** after the ACTIVE died: to the hot standby at once (what the dead instance owed is
  executed with the standby's answers: 0 missed); else, with a checkpoint, the next instance
  imports it, replays the journal as SHADOW and takes over at the first tick boundary it is
  caught up at (the ticks in between are missed: ``no_active``); else (NONE, or no checkpoint
  yet) the next instance is made ACTIVE with an empty state, as before.

Every take-over is a ``Failover``: how long the strategy was without an ACTIVE and whether the
state it goes on with is verified: ``exact`` when the new ACTIVE's digest at the last point the
dead instance reported one (a digest check, or the checkpoint) is the same.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from baton.model import Role, StandbyMode, StandbyPolicy

#: Digest checks remembered (the most recent): enough to verify a take-over after a replay of a
#: whole checkpoint interval, and no more.
PROBES_KEPT = 64
#: A sync or a recovery step that takes longer than this is given up (a stuck import).
STEP_TIMEOUT_MS = 30_000

CHECKPOINT_PREFIX = "ckpt-"
PROBE_PREFIX = "dig-"
SYNC_PREFIX = "sync-"
RECOVERY_PREFIX = "rec-"
PREFIXES = (CHECKPOINT_PREFIX, PROBE_PREFIX, SYNC_PREFIX, RECOVERY_PREFIX)


def is_keeping_id(export_id: str) -> bool:
    """Whether an export or import id is the keeper's (else it is a handoff's)."""
    return export_id.startswith(PREFIXES)


@dataclass(frozen=True, slots=True)
class Member:
    """An attached instance of the strategy, as the keeper needs to see it."""

    instance_id: str
    version: str
    state_schema: int
    role: Role
    caught_up: bool = True  # a SHADOW that answered everything it was sent


@dataclass(frozen=True, slots=True)
class Roster:
    """The lane's instances right now, and whether a handoff runs in it."""

    members: tuple[Member, ...] = ()
    handoff_running: bool = False

    @property
    def active(self) -> Member | None:
        return next((m for m in self.members if m.role is Role.ACTIVE), None)

    def get(self, instance_id: str) -> Member | None:
        return next((m for m in self.members if m.instance_id == instance_id), None)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    checkpoint_id: str
    instance_id: str
    version: str
    tick_index: int
    taken_ms: int
    digest: str
    state_bytes: int


@dataclass(frozen=True, slots=True)
class Probe:
    """One digest check: who answered it with which digest (the ACTIVE, the standby)."""

    probe_id: str
    tick_index: int
    digests: tuple[tuple[str, str], ...] = ()  # (instance id, digest), in arrival order

    def digest_of(self, instance_id: str) -> str | None:
        return next((d for i, d in self.digests if i == instance_id), None)


class SyncPhase(enum.Enum):
    EXPORTING = "exporting"  # the ACTIVE's state asked for
    IMPORTING = "importing"  # sent to the standby
    FOLLOWING = "following"  # SHADOW since the export: a hot standby


@dataclass(frozen=True, slots=True)
class Sync:
    instance_id: str
    sync_id: str
    phase: SyncPhase
    since_ms: int


class RecoveryPhase(enum.Enum):
    WAITING = "waiting"  # no instance to take over yet
    IMPORTING = "importing"  # the candidate imports the checkpoint
    REPLAYING = "replaying"  # the candidate replays the journal as SHADOW


@dataclass(frozen=True, slots=True)
class Recovery:
    recovery_id: str
    phase: RecoveryPhase
    since_ms: int
    candidate: str = ""


class FailoverState(enum.Enum):
    """What the state a take-over goes on with is known to be."""

    PENDING = "pending"  # the digest to compare has not arrived yet
    EXACT = "exact"  # same digest as the dead instance's at the last point it reported one
    DIVERGED = "diverged"  # a different digest: the strategy is not deterministic
    UNVERIFIED = "unverified"  # no digest to compare (another version, no check yet)
    EMPTY = "empty"  # nothing to restore from: the new ACTIVE started with an empty state


@dataclass(frozen=True, slots=True)
class Failover:
    failover_id: str
    strategy: str
    mode: StandbyMode
    dead: str
    dead_version: str
    died_ms: int
    to: str = ""
    to_version: str = ""
    took_over_ms: int | None = None
    checkpoint_id: str = ""
    verify_probe: str = ""  # the last digest check the dead instance answered
    expected_digest: str = ""
    state: FailoverState = FailoverState.PENDING
    failed: bool = False
    message: str = ""

    @property
    def takeover_ms(self) -> int | None:
        return None if self.took_over_ms is None else self.took_over_ms - self.died_ms

    @property
    def result(self) -> str:
        if self.took_over_ms is None:
            return "running"
        return "failed" if self.failed else "completed"

    @property
    def done(self) -> bool:
        return self.took_over_ms is not None and self.state is not FailoverState.PENDING


@dataclass(frozen=True, slots=True)
class Keeping:
    strategy: str
    nonce: str = ""  # in every id this makes: ids stay unique across the gateway's runs
    policy: StandbyPolicy = field(default_factory=StandbyPolicy)
    active: str = ""  # the ACTIVE instance journaled and checkpointed
    active_version: str = ""
    checkpoint: Checkpoint | None = None  # the latest of ``active``'s (or the dead one's)
    checkpoint_asked: str = ""  # a checkpoint export asked, not answered
    probes: tuple[Probe, ...] = ()
    sync: Sync | None = None
    recovery: Recovery | None = None
    failover: Failover | None = None  # the running take-over (recorded when done)
    divergences: int = 0
    numbered: int = 0  # ids are the strategy's name and this count: deterministic


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AfterDispatch:
    """A tick was dispatched (its requests are queued ahead of anything asked now)."""

    t_ms: int
    tick_index: int
    roster: Roster
    policy: StandbyPolicy  # the ACTIVE instance's


@dataclass(frozen=True, slots=True)
class AtBoundary:
    """A tick boundary, before its dispatch: the only place a recovered instance takes over."""

    t_ms: int
    roster: Roster


@dataclass(frozen=True, slots=True)
class Gone:
    """An instance detached. ``roster``: after the handoff (if any) reacted to it."""

    t_ms: int
    instance_id: str
    roster: Roster


@dataclass(frozen=True, slots=True)
class Attached:
    t_ms: int
    instance_id: str
    roster: Roster


@dataclass(frozen=True, slots=True)
class Exported:
    t_ms: int
    instance_id: str
    export_id: str
    digest: str
    state_bytes: int
    error: str = ""


@dataclass(frozen=True, slots=True)
class Imported:
    t_ms: int
    instance_id: str
    import_id: str
    ok: bool
    digest: str
    error: str = ""


@dataclass(frozen=True, slots=True)
class JournalLost:
    """The journal outgrew its bound (checkpoints kept failing): the checkpoint no longer has
    the journal that leads from it to the ACTIVE's state, so it cannot be recovered from."""

    t_ms: int


Event = AfterDispatch | AtBoundary | Gone | Attached | Exported | Imported | JournalLost


# -- actions -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AskExport:
    """Send ExportState(``export_id``) to ``instance_id``. ``journal_mark``: for the ACTIVE, the
    journal restarts after this message once the export is kept (checkpoint) or used (sync)."""

    instance_id: str
    export_id: str
    digest_only: bool


@dataclass(frozen=True, slots=True)
class KeepCheckpoint:
    """The ACTIVE's export ``checkpoint.checkpoint_id`` is the new checkpoint: store it (ledger),
    and the journal now starts after its ExportState."""

    checkpoint: Checkpoint


@dataclass(frozen=True, slots=True)
class SendImport:
    """ImportState(``import_id``) to ``instance_id``: the export ``export_id``'s snapshot (the
    sync's export, or the checkpoint)."""

    instance_id: str
    import_id: str
    export_id: str


@dataclass(frozen=True, slots=True)
class Follow:
    """``instance_id`` becomes SHADOW: first the journal since export ``export_id``, in order."""

    instance_id: str
    export_id: str


@dataclass(frozen=True, slots=True)
class Unfollow:
    """``instance_id`` stops following (back to STANDBY): a standby that diverged or went stale."""

    instance_id: str
    why: str


@dataclass(frozen=True, slots=True)
class TakeOver:
    """Flip: ``instance_id`` ACTIVE under a new epoch; what the dead instance owed moves to it."""

    instance_id: str


@dataclass(frozen=True, slots=True)
class Hold:
    """While a recovery runs, an attaching instance is not made ACTIVE by itself."""

    on: bool


@dataclass(frozen=True, slots=True)
class Journal:
    """Journal what is sent to ``instance_id`` (the new ACTIVE); "" stops. Drops the old one."""

    instance_id: str


@dataclass(frozen=True, slots=True)
class Diverged:
    """Two copies of the state differ at ``probe_id`` (reported: log, metric, span event)."""

    probe_id: str
    a: str
    a_digest: str
    b: str
    b_digest: str


@dataclass(frozen=True, slots=True)
class RecordFailover:
    failover: Failover


Action = (
    AskExport
    | KeepCheckpoint
    | SendImport
    | Follow
    | Unfollow
    | TakeOver
    | Hold
    | Journal
    | Diverged
    | RecordFailover
)


@dataclass(frozen=True, slots=True)
class Step:
    keeping: Keeping
    actions: tuple[Action, ...] = ()


# -- the machine -------------------------------------------------------------------------------


def step(k: Keeping, event: Event) -> Step:
    """The next value of ``k`` and what to carry out, given ``event``."""
    if isinstance(event, AfterDispatch):
        return _after_dispatch(k, event)
    if isinstance(event, AtBoundary):
        return _at_boundary(k, event)
    if isinstance(event, Gone):
        return _gone(k, event)
    if isinstance(event, Attached):
        return _attached(k, event)
    if isinstance(event, Exported):
        return _exported(k, event)
    if isinstance(event, JournalLost):
        if k.recovery is not None:
            return Step(k)  # a recovery replays what it has; nothing is added meanwhile
        return Step(replace(k, checkpoint=None, checkpoint_asked=""))
    return _imported(k, event)


def _next_id(k: Keeping, prefix: str) -> tuple[Keeping, str]:
    n = k.numbered + 1
    return replace(
        k, numbered=n
    ), f"{prefix}{k.strategy}-{k.nonce}-{n}" if k.nonce else f"{prefix}{k.strategy}-{n}"


def _track_active(k: Keeping, roster: Roster) -> Step:
    """The ACTIVE changed (a handoff flipped, a take-over, the first attach): journal the new
    one, and its first checkpoint is due at once (the old one's does not fit its stream)."""
    active = roster.active
    now_id = active.instance_id if active else ""
    if now_id == k.active or k.recovery is not None:
        return Step(k)
    k = replace(
        k,
        active=now_id,
        active_version=active.version if active else "",
        checkpoint=None,
        checkpoint_asked="",
        probes=(),
    )
    actions: list[Action] = [Journal(now_id)]
    sync = k.sync
    if sync is not None and sync.instance_id == now_id:
        # The standby itself was promoted (a handoff to it): it is the ACTIVE, not a standby.
        return Step(replace(k, sync=None), tuple(actions))
    if sync is not None and (
        active is None or _member_version(roster, sync.instance_id) != active.version
    ):
        # The standby followed another version's ACTIVE: it no longer is one.
        k = replace(k, sync=None)
        if sync.phase is SyncPhase.FOLLOWING and roster.get(sync.instance_id) is not None:
            actions.append(Unfollow(sync.instance_id, "the ACTIVE is another version now"))
    return Step(k, tuple(actions))


def _member_version(roster: Roster, instance_id: str) -> str | None:
    member = roster.get(instance_id)
    return member.version if member else None


def _after_dispatch(k: Keeping, e: AfterDispatch) -> Step:
    k = replace(k, policy=e.policy)
    tracked = _track_active(k, e.roster)
    k, actions = tracked.keeping, list(tracked.actions)
    active = e.roster.active
    if active is None or k.recovery is not None:
        return Step(k, tuple(actions))
    policy = k.policy
    stuck = k.sync
    if (
        stuck is not None
        and stuck.phase is not SyncPhase.FOLLOWING
        and e.t_ms - stuck.since_ms > STEP_TIMEOUT_MS
    ):
        k = replace(k, sync=None)
        actions.append(Unfollow(stuck.instance_id, f"sync stuck in {stuck.phase.value}"))
    # Checkpoint and digest check: one export of the ACTIVE, asked after this tick's requests.
    due_checkpoint = (
        policy.mode.checkpoints
        and not k.checkpoint_asked
        and (
            k.checkpoint is None
            or e.tick_index - k.checkpoint.tick_index >= policy.checkpoint_every_ticks
        )
    )
    due_probe = policy.verify_every_ticks > 0 and e.tick_index % policy.verify_every_ticks == 0
    if due_checkpoint or due_probe:
        prefix = CHECKPOINT_PREFIX if due_checkpoint else PROBE_PREFIX
        k, export_id = _next_id(k, prefix)
        actions.append(AskExport(active.instance_id, export_id, digest_only=not due_checkpoint))
        if due_checkpoint:
            k = replace(k, checkpoint_asked=export_id)
        k = replace(k, probes=(*k.probes, Probe(export_id, e.tick_index))[-PROBES_KEPT:])
        if k.sync is not None and k.sync.phase is SyncPhase.FOLLOWING:
            actions.append(AskExport(k.sync.instance_id, export_id, digest_only=True))
    # A hot standby to sync: an instance of the ACTIVE's version doing nothing.
    if policy.mode is StandbyMode.HOT and k.sync is None and not e.roster.handoff_running:
        candidate = _standby_candidate(e.roster, active)
        if candidate is not None:
            k, sync_id = _next_id(k, SYNC_PREFIX)
            k = replace(k, sync=Sync(candidate.instance_id, sync_id, SyncPhase.EXPORTING, e.t_ms))
            actions.append(AskExport(active.instance_id, sync_id, digest_only=False))
            # A point of the ACTIVE's stream with a digest too, in stream order with the checks.
            k = replace(k, probes=(*k.probes, Probe(sync_id, e.tick_index))[-PROBES_KEPT:])
    if policy.mode is not StandbyMode.HOT and k.sync is not None:
        dropped = k.sync
        k = replace(k, sync=None)
        if roster_has(e.roster, dropped.instance_id):
            actions.append(Unfollow(dropped.instance_id, f"standby mode is {policy.mode.value}"))
    return Step(k, tuple(actions))


def roster_has(roster: Roster, instance_id: str) -> bool:
    return roster.get(instance_id) is not None


def _standby_candidate(roster: Roster, active: Member) -> Member | None:
    """The newest STANDBY instance of the ACTIVE's version and schema."""
    fits = [
        m
        for m in roster.members
        if m.role is Role.STANDBY
        and m.version == active.version
        and m.state_schema == active.state_schema
    ]
    return fits[-1] if fits else None


def _recovery_candidate(roster: Roster, dead_version: str) -> Member | None:
    """The instance to rebuild the dead one's state in: a STANDBY, the dead one's version first
    (the others, e.g. green of an interrupted handoff, import it by migration)."""
    standbys = [m for m in roster.members if m.role is Role.STANDBY]
    same = [m for m in standbys if m.version == dead_version]
    pool = same or standbys
    return pool[-1] if pool else None


def _at_boundary(k: Keeping, e: AtBoundary) -> Step:
    rec = k.recovery
    if rec is not None:
        promoted = e.roster.active
        if promoted is not None and promoted.instance_id != rec.candidate:
            # Someone made another instance ACTIVE meanwhile (a Promote): it is the successor;
            # the candidate stops replaying.
            why = f"{promoted.instance_id} was promoted during the recovery"
            k = replace(k, failover=_failed(k.failover, why))
            out: list[Action] = []
            if rec.candidate and e.roster.get(rec.candidate) is not None:
                out.append(Unfollow(rec.candidate, why))
            return _took_over(k, e.t_ms, promoted, state=FailoverState.UNVERIFIED, actions=out)
        if rec.phase is RecoveryPhase.REPLAYING:
            member = e.roster.get(rec.candidate)
            if member is not None and member.caught_up:
                return _took_over(k, e.t_ms, member)
        if rec.phase is not RecoveryPhase.WAITING and e.t_ms - rec.since_ms > STEP_TIMEOUT_MS:
            member = e.roster.get(rec.candidate)
            if member is not None:
                k = replace(k, failover=_failed(k.failover, f"recovery stuck in {rec.phase.value}"))
                return _took_over(k, e.t_ms, member, state=FailoverState.UNVERIFIED)
        return Step(k)
    fo = k.failover
    if fo is not None and fo.took_over_ms is None:
        # No recovery (NONE, or no checkpoint): whoever the router made ACTIVE took over.
        active = e.roster.active
        if active is not None:
            return _took_over(k, e.t_ms, active, state=FailoverState.EMPTY)
    if (
        fo is not None
        and fo.took_over_ms is not None
        and e.t_ms - fo.took_over_ms > STEP_TIMEOUT_MS
    ):
        # The new ACTIVE never reported the digest to compare (it shed that point, or an
        # old host that answers no digest-only export): say so rather than wait for ever.
        why = f"no digest from {fo.to} at {fo.verify_probe} to compare"
        fo = replace(fo, state=FailoverState.UNVERIFIED, message=_joined(fo.message, why))
        k, done = _settle(replace(k, failover=fo))
        return Step(k, tuple(done))
    return Step(k)


def _failed(fo: Failover | None, message: str) -> Failover | None:
    return None if fo is None else replace(fo, failed=True, message=message)


def _gone(k: Keeping, e: Gone) -> Step:
    actions: list[Action] = []
    if k.sync is not None and k.sync.instance_id == e.instance_id:
        k = replace(k, sync=None)
    rec = k.recovery
    if rec is not None and rec.candidate == e.instance_id:
        # The candidate died: wait for (or take) the next one; the checkpoint is still there.
        k = replace(
            k, recovery=replace(rec, phase=RecoveryPhase.WAITING, candidate="", since_ms=e.t_ms)
        )
        return _start_recovery(k, e.t_ms, e.roster, actions)
    if e.instance_id != k.active:
        return Step(k, tuple(actions))
    if e.roster.active is not None:
        # Someone else is ACTIVE already (the handoff took over from its blue): follow it.
        tracked = _track_active(k, e.roster)
        return Step(tracked.keeping, (*actions, *tracked.actions))
    k, failover_id = _next_id(k, "f-")
    fo = Failover(
        failover_id,
        k.strategy,
        k.policy.mode,
        e.instance_id,
        k.active_version,
        e.t_ms,
        checkpoint_id=k.checkpoint.checkpoint_id if k.checkpoint else "",
    )
    # The journal stays: it is what a recovery replays after the checkpoint.
    k = replace(k, active="", failover=fo, checkpoint_asked="")
    sync = k.sync
    if sync is not None and sync.phase is SyncPhase.FOLLOWING:
        standby = e.roster.get(sync.instance_id)
        if standby is not None:
            k = replace(k, sync=None)
            return _took_over(k, e.t_ms, standby, actions=actions)
    if sync is not None:
        k = replace(k, sync=None)  # its export died with the ACTIVE: the standby tries to recover
    if k.policy.mode.checkpoints and k.checkpoint is not None:
        k, recovery_id = _next_id(k, RECOVERY_PREFIX)
        k = replace(k, recovery=Recovery(recovery_id, RecoveryPhase.WAITING, e.t_ms))
        actions.append(Hold(True))
        return _start_recovery(k, e.t_ms, e.roster, actions)
    return Step(k, tuple(actions))


def _start_recovery(k: Keeping, t_ms: int, roster: Roster, actions: list[Action]) -> Step:
    rec, checkpoint, fo = k.recovery, k.checkpoint, k.failover
    assert rec is not None
    assert checkpoint is not None
    assert fo is not None
    if rec.phase is not RecoveryPhase.WAITING:
        return Step(k, tuple(actions))
    candidate = _recovery_candidate(roster, fo.dead_version)
    if candidate is None:
        return Step(k, tuple(actions))
    k = replace(
        k,
        recovery=replace(
            rec, phase=RecoveryPhase.IMPORTING, candidate=candidate.instance_id, since_ms=t_ms
        ),
    )
    actions.append(SendImport(candidate.instance_id, rec.recovery_id, checkpoint.checkpoint_id))
    return Step(k, tuple(actions))


def _attached(k: Keeping, e: Attached) -> Step:
    if k.recovery is not None and k.recovery.phase is RecoveryPhase.WAITING:
        return _start_recovery(k, e.t_ms, e.roster, [])
    return Step(k)


def _exported(k: Keeping, e: Exported) -> Step:
    actions: list[Action] = []
    probe = next((p for p in k.probes if p.probe_id == e.export_id), None)
    if probe is not None and e.digest and not e.error:
        answered = replace(probe, digests=(*probe.digests, (e.instance_id, e.digest)))
        k = replace(k, probes=tuple(answered if p is probe else p for p in k.probes))
        k, more = _compare(k, answered)
        actions.extend(more)
    # Only the ACTIVE's answer settles a checkpoint: the hot standby is asked the same export
    # id (digest only, to compare) and may answer first.
    if e.export_id == k.checkpoint_asked and e.instance_id == k.active:
        k = replace(k, checkpoint_asked="")
        if e.digest and not e.error:
            tick = probe.tick_index if probe is not None else 0
            checkpoint = Checkpoint(
                e.export_id,
                e.instance_id,
                k.active_version,
                tick,
                e.t_ms,
                e.digest,
                e.state_bytes,
            )
            k = replace(k, checkpoint=checkpoint)
            actions.append(KeepCheckpoint(checkpoint))
    sync = k.sync
    if sync is not None and sync.sync_id == e.export_id and sync.phase is SyncPhase.EXPORTING:
        if e.error or not e.digest:
            k = replace(k, sync=None)
            actions.append(Unfollow(sync.instance_id, f"the ACTIVE's export failed: {e.error}"))
        else:
            k = replace(k, sync=replace(sync, phase=SyncPhase.IMPORTING, since_ms=e.t_ms))
            actions.append(SendImport(sync.instance_id, sync.sync_id, sync.sync_id))
    return Step(k, tuple(actions))


def _compare(k: Keeping, probe: Probe) -> tuple[Keeping, list[Action]]:
    """A digest arrived for ``probe``: the standby against the ACTIVE, or a take-over's new
    ACTIVE against the dead instance's last word."""
    actions: list[Action] = []
    fo = k.failover
    if fo is not None and fo.state is FailoverState.PENDING and fo.verify_probe == probe.probe_id:
        got = probe.digest_of(fo.to) if fo.to else None
        if got is not None:
            k, more = _verified(k, fo, got, probe.probe_id)
            actions.extend(more)
    sync = k.sync
    if sync is not None and sync.phase is SyncPhase.FOLLOWING and k.active:
        a, b = probe.digest_of(k.active), probe.digest_of(sync.instance_id)
        if a is not None and b is not None and a != b:
            k = replace(k, sync=None, divergences=k.divergences + 1)
            actions.append(Diverged(probe.probe_id, k.active, a, sync.instance_id, b))
            actions.append(Unfollow(sync.instance_id, f"state diverged at {probe.probe_id}"))
    return k, actions


def _verified(k: Keeping, fo: Failover, got: str, probe_id: str) -> tuple[Keeping, list[Action]]:
    actions: list[Action] = []
    if got == fo.expected_digest:
        fo = replace(fo, state=FailoverState.EXACT)
    else:
        fo = replace(
            fo,
            state=FailoverState.DIVERGED,
            message=_joined(
                fo.message, f"state differs at {probe_id}: the strategy is not deterministic"
            ),
        )
        k = replace(k, divergences=k.divergences + 1)
        actions.append(Diverged(probe_id, fo.dead, fo.expected_digest, fo.to, got))
    k, done = _settle(replace(k, failover=fo))
    return k, [*actions, *done]


def _settle(k: Keeping) -> tuple[Keeping, list[Action]]:
    fo = k.failover
    if fo is not None and fo.done:
        return replace(k, failover=None), [RecordFailover(fo)]
    return k, []


def _joined(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _imported(k: Keeping, e: Imported) -> Step:
    sync = k.sync
    if sync is not None and sync.sync_id == e.import_id and e.instance_id == sync.instance_id:
        expected = next(
            (p.digest_of(k.active) for p in k.probes if p.probe_id == sync.sync_id), None
        )
        if not e.ok or (expected is not None and e.digest != expected):
            k = replace(k, sync=None)
            why = e.error or f"digest {e.digest} != exported {expected}"
            return Step(k, (Unfollow(sync.instance_id, f"standby import failed: {why}"),))
        k = _answered(k, sync.sync_id, e.instance_id, e.digest)
        k = replace(k, sync=replace(sync, phase=SyncPhase.FOLLOWING, since_ms=e.t_ms))
        return Step(k, (Follow(sync.instance_id, sync.sync_id),))
    rec = k.recovery
    if rec is None or rec.recovery_id != e.import_id or e.instance_id != rec.candidate:
        return Step(k)
    checkpoint = k.checkpoint
    assert checkpoint is not None
    if not e.ok or e.digest != checkpoint.digest:
        # Nothing to restore into this instance: rather an ACTIVE with an empty state than none.
        why = e.error or f"digest {e.digest} != checkpoint {checkpoint.digest}"
        k = replace(k, failover=_failed(k.failover, f"checkpoint import failed: {why}"))
        return _took_over(k, e.t_ms, None, state=FailoverState.EMPTY, instance=e.instance_id)
    k = _answered(k, checkpoint.checkpoint_id, e.instance_id, e.digest)
    k = replace(k, recovery=replace(rec, phase=RecoveryPhase.REPLAYING, since_ms=e.t_ms))
    return Step(k, (Follow(e.instance_id, checkpoint.checkpoint_id),))


def _answered(k: Keeping, probe_id: str, instance_id: str, digest: str) -> Keeping:
    """``instance_id``'s state at ``probe_id``'s point of the stream has ``digest`` (an import
    of that export: the same point)."""
    probes = tuple(
        replace(p, digests=(*p.digests, (instance_id, digest))) if p.probe_id == probe_id else p
        for p in k.probes
    )
    return replace(k, probes=probes)


def _took_over(
    k: Keeping,
    t_ms: int,
    member: Member | None,
    *,
    state: FailoverState | None = None,
    actions: Sequence[Action] = (),
    instance: str = "",
) -> Step:
    """``member`` (or ``instance``) is the strategy's ACTIVE from now: the failover is decided,
    its state verified now or when the new ACTIVE answers the digest check it replays."""
    fo = k.failover
    assert fo is not None
    to = member.instance_id if member is not None else instance
    to_version = member.version if member is not None else fo.dead_version
    out: list[Action] = list(actions)
    if member is None or member.role is not Role.ACTIVE:
        out.append(TakeOver(to))
    if k.recovery is not None:
        out.append(Hold(False))
    fo = replace(fo, to=to, to_version=to_version, took_over_ms=t_ms)
    fo = _what_to_verify(k, fo) if state is None else replace(fo, state=state)
    # A new journal for the new ACTIVE, and its first checkpoint at once: the old checkpoint
    # and the dead instance's journal do not describe its stream.
    k = replace(
        k,
        recovery=None,
        failover=fo,
        active=to,
        active_version=to_version,
        checkpoint=None,
        checkpoint_asked="",
    )
    out.append(Journal(to))
    if fo.state is FailoverState.PENDING:
        probe = next((p for p in k.probes if p.probe_id == fo.verify_probe), None)
        got = probe.digest_of(to) if probe is not None else None
        if got is not None:
            k, more = _verified(k, fo, got, fo.verify_probe)
            return Step(k, (*out, *more))
    k, done = _settle(k)
    return Step(k, (*out, *done))


def _what_to_verify(k: Keeping, fo: Failover) -> Failover:
    """The last digest the dead instance reported (a digest check, its checkpoint, a sync's
    export): the new ACTIVE must report the same one at that point of its stream."""
    if fo.to_version != fo.dead_version:
        why = f"state migrated from {fo.dead_version} to {fo.to_version}: nothing to compare"
        return replace(fo, state=FailoverState.UNVERIFIED, message=_joined(fo.message, why))
    last = next((p for p in reversed(k.probes) if p.digest_of(fo.dead) is not None), None)
    expected = last.digest_of(fo.dead) if last is not None else None
    if last is None or expected is None:
        return replace(fo, state=FailoverState.UNVERIFIED, message="no digest to compare")
    return replace(fo, verify_probe=last.probe_id, expected_digest=expected)
