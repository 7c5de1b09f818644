"""One gateway replica's life under leader election (docs/gateway-standby.md): the pure machine.

A replica process follows until it is elected, then builds and starts its gateway from the
ledger (the restart path), leads, and ends. It leads **at most one term in its life**: deposed,
it stops and exits (``Exit.DEPOSED``) and its supervisor starts a new process, which follows
again. That is what kube-controller-manager and kube-scheduler do when they lose their lease, and
it keeps a deposed leader's in-memory state (routers, venues, pending evaluations, written as of
a term that is over) from ever being reused: a new process rebuilds from the ledger.

``step(life, event)`` returns the next value and what the shell (``gateway/replica.py``) does
now. Time is never read here; nothing here does I/O.

Stopping on purpose (SIGTERM) while leading stops the gateway first (the tick in flight is
resolved and written) and then releases the lease, so the other replica takes over at once
instead of a lease duration later. Deposed, the lease is not ours to release.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


class Phase(enum.Enum):
    FOLLOWING = "following"  # no gateway: waiting to be elected
    STARTING = "starting"  # elected; the gateway is being built and started
    LEADING = "leading"  # the gateway runs its clock and executes
    STOPPING = "stopping"  # the gateway is being stopped (then the process ends)
    DONE = "done"


class Exit(enum.Enum):
    """How the process ends, and its exit status."""

    STOPPED = "stopped"  # asked to stop (SIGTERM): 0
    DEPOSED = "deposed"  # lost the leadership: 3, the supervisor starts a new follower
    FAILED = "failed"  # elected but the gateway could not start: 1

    @property
    def code(self) -> int:
        return {Exit.STOPPED: 0, Exit.DEPOSED: 3, Exit.FAILED: 1}[self]


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Elected:
    term: int


@dataclass(frozen=True, slots=True)
class Started:
    pass


@dataclass(frozen=True, slots=True)
class StartFailed:
    error: str


@dataclass(frozen=True, slots=True)
class Deposed:
    reason: str


@dataclass(frozen=True, slots=True)
class StopAsked:
    pass


@dataclass(frozen=True, slots=True)
class Stopped:
    """The gateway has stopped (and the lease was released if the stop said so)."""


Event = Elected | Started | StartFailed | Deposed | StopAsked | Stopped


# -- actions -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartGateway:
    term: int


@dataclass(frozen=True, slots=True)
class StopGateway:
    """Stop the gateway (if one was built), then release the lease when ``release``."""

    release: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Finish:
    exit: Exit


Action = StartGateway | StopGateway | Finish


@dataclass(frozen=True, slots=True)
class Life:
    phase: Phase = Phase.FOLLOWING
    term: int = 0  # the term led (0: never elected)
    exit: Exit | None = None  # decided when stopping starts


@dataclass(frozen=True, slots=True)
class Step:
    life: Life
    actions: tuple[Action, ...] = ()
    note: str = ""  # why an event changed nothing (for the shell's log)


def step(life: Life, event: Event) -> Step:
    phase = life.phase
    if phase is Phase.DONE:
        return Step(life, note="already done")
    if isinstance(event, Elected):
        if phase is not Phase.FOLLOWING:
            # One term per process: a second election cannot happen (the elector deposes before
            # it elects again, and a deposed replica stops).
            return Step(life, note=f"elected again (term {event.term}) while {phase.value}")
        starting = replace(life, phase=Phase.STARTING, term=event.term)
        return Step(starting, (StartGateway(event.term),))
    if isinstance(event, Started):
        if phase is not Phase.STARTING:
            return Step(life, note=f"started while {phase.value}")
        return Step(replace(life, phase=Phase.LEADING))
    if isinstance(event, StartFailed):
        if phase is not Phase.STARTING:
            return Step(life, note=f"start failed while {phase.value}")
        # Release: the other replica should not wait a lease duration for a leader that never ran.
        return _stopping(life, Exit.FAILED, release=True, reason=f"start failed: {event.error}")
    if isinstance(event, Deposed):
        if phase in (Phase.STARTING, Phase.LEADING):
            return _stopping(life, Exit.DEPOSED, release=False, reason=event.reason)
        return Step(life, note=f"deposed ({event.reason}) while {phase.value}")
    if isinstance(event, StopAsked):
        if phase is Phase.FOLLOWING:
            return Step(replace(life, phase=Phase.DONE, exit=Exit.STOPPED), (Finish(Exit.STOPPED),))
        if phase in (Phase.STARTING, Phase.LEADING):
            return _stopping(life, Exit.STOPPED, release=True, reason="asked to stop")
        return Step(life, note="already stopping")
    # Stopped
    if phase is not Phase.STOPPING or life.exit is None:
        return Step(life, note=f"stopped while {phase.value}")
    return Step(replace(life, phase=Phase.DONE), (Finish(life.exit),))


def _stopping(life: Life, exit_: Exit, *, release: bool, reason: str) -> Step:
    return Step(
        replace(life, phase=Phase.STOPPING, exit=exit_),
        (StopGateway(release=release, reason=reason),),
    )


def failover_seq_gap(cadence_ms: int, last_commit_ms: int | None, now_ms: int) -> int:
    """Seqs a new leader skips per slot after a failover: one per tick boundary in
    ``(last_commit_ms, now_ms]``, the ticks its predecessor may have dispatched after the last
    commit this ledger holds (ticks fall on multiples of the cadence, for every replica).

    Not more: a tick's seqs are reserved by the flush that follows its dispatch, so every tick
    dispatched before that commit is in this ledger, and the new leader's first tick is after
    ``now_ms``. Skipping more (``1 + elapsed / cadence`` did) numbers ticks that never were: the
    report counted them as unaccounted evaluations, a tick counted twice. ``None`` (no commit
    known): one, as before.

    >>> failover_seq_gap(1000, 10_020, 12_900)  # ticks 11,000 and 12,000
    2
    >>> failover_seq_gap(1000, 10_020, 10_900)  # no boundary since the last commit
    0
    """
    if last_commit_ms is None:
        return 1
    return max(0, now_ms // cadence_ms - last_commit_ms // cadence_ms)
