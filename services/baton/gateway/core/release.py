"""When a fill or a settlement may reach the strategy: the pure rule (docs/gateway-standby.md).

A strategy that hears of a fill believes it holds that bet; the gateway that leads next believes
only its ledger. If the two ever disagree, the next leader can place a bet the strategy already
holds (the window's limit passed twice) or settle one twice. So a fill or a settlement is told
only once the ledger holds its rows (the commit that wrote them), and, when a standby follows
this ledger, once the standby acknowledged that commit: whoever leads next holds every bet a
strategy was told of. Bounded: a message held ``wait_ms`` goes out anyway (a failing disk, a
standby that stopped acknowledging): a strategy never waits long for its own fills, and the
release says so.

Messages go out in the order they were held (a fill before its settlement). ``release`` looks
at the oldest ones and says how many go now and how; time is passed in.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass


class Release(enum.Enum):
    REPLICATED = "replicated"  # the standby acknowledged the commit that holds it
    COMMITTED = "committed"  # written, and no standby follows: nobody else could hold it
    TIMED_OUT = "timed_out"  # held wait_ms: out before the ledger (or the standby) holds it


@dataclass(frozen=True, slots=True)
class Held:
    """A held message: when it was held, and the commit that wrote its rows (None: not yet)."""

    held_ms: int
    position: int | None = None


@dataclass(frozen=True, slots=True)
class Standby:
    """The standby as the leader's replicator sees it at this instant."""

    following: bool  # a follower's stream is open
    acked: int  # the last position it acknowledged


def release(
    held: Sequence[Held], *, standby: Standby | None, now_ms: int, wait_ms: int
) -> list[Release]:
    """How each of the oldest held messages goes out now, in order; the first that may not go
    yet stops the list (the ones after it wait too). ``standby`` None: this ledger has no
    replication (a single gateway, or replicas sharing one ledger file)."""
    out: list[Release] = []
    for h in held:
        at = h.position
        if at is not None and (standby is None or not standby.following):
            out.append(Release.COMMITTED)
        elif at is not None and standby is not None and standby.acked >= at:
            out.append(Release.REPLICATED)
        elif now_ms - h.held_ms >= wait_ms:
            out.append(Release.TIMED_OUT)
        else:
            break
    return out


def next_check_ms(held: Sequence[Held], wait_ms: int) -> int | None:
    """When the oldest held message times out (None: nothing is held)."""
    return held[0].held_ms + wait_ms if held else None
