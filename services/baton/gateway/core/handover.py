"""``ControlService.Handover`` (``baton gateway handover``): whether a replica takes the request,
and what it answers (docs/gateway-standby.md, "Planned handover").

A handover asked over gRPC is the SIGTERM path: at the next tick boundary the leader dispatches
the tick, resolves and writes it, ends its run, closes its port and releases the lease; then
it answers, and the process exits 0 (one term per process: its supervisor starts it again, as
a follower). Only a leading replica hands over, and only once: a second request while one is
under way is told so and starts nothing. Nothing here reads the time or does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from baton.gateway.core.replica import Phase


class Refusal(enum.Enum):
    """Why a handover request is refused (gRPC ``FAILED_PRECONDITION`` for each)."""

    NOT_A_REPLICA = "not a replica"
    NOT_LEADING = "not leading"
    STARTING = "starting"
    UNDER_WAY = "under way"
    STOPPING = "stopping"


class HandoverRefused(Exception):
    def __init__(self, refusal: Refusal, message: str) -> None:
        super().__init__(message)
        self.refusal = refusal
        self.code = "FAILED_PRECONDITION"


NOT_A_REPLICA = HandoverRefused(
    Refusal.NOT_A_REPLICA,
    "this gateway is not a replica (leader.backend = off): there is no other replica to hand "
    "over to; a restart of it is the only way (docs/gateway-standby.md)",
)


def admit(phase: Phase, *, under_way: bool, identity: str, term: int) -> HandoverRefused | None:
    """None when a replica in ``phase`` hands over now; else the refusal to answer with.

    >>> admit(Phase.LEADING, under_way=False, identity="gw-a", term=2) is None
    True
    >>> admit(Phase.FOLLOWING, under_way=False, identity="gw-b", term=0).refusal
    <Refusal.NOT_LEADING: 'not leading'>
    """
    if under_way:
        return HandoverRefused(
            Refusal.UNDER_WAY,
            f"a handover of term {term} by {identity} is already under way: this request starts "
            "no second one (the first request gets the result)",
        )
    if phase is Phase.LEADING:
        return None
    if phase is Phase.FOLLOWING:
        return HandoverRefused(
            Refusal.NOT_LEADING,
            f"{identity} is a follower, not the leader: ask the replica that leads",
        )
    if phase is Phase.STARTING:
        return HandoverRefused(
            Refusal.STARTING,
            f"{identity} was elected (term {term}) and is still starting its gateway: ask again "
            "once it leads",
        )
    return HandoverRefused(
        Refusal.STOPPING,
        f"{identity} is already stopping (term {term}): its lease is released as it stops",
    )


@dataclass(frozen=True, slots=True)
class HandoverResult:
    from_replica: str
    term: int
    last_tick_ms: int  # the scheduled time of its last tick (0: the clock never ran)
    asked_ms: int
    released_ms: int
    to_replica: str = ""  # the next leader, when seen before answering
    new_term: int = 0
