"""Whether a standby with a ledger of its own may take over: the pure rule
(docs/gateway-standby.md, "Replicas with ledgers of their own").

A standby is a candidate only when nothing a leader wrote, and so nothing a strategy was told,
can be missing from its ledger:
- it is **caught up** (it held the leader's announced head), and is **not cut off**: its
  replication stream broke, yet the lease showed the leader renewing well after the break. A
  leader that dies breaks the stream and renews no more, so its standby stays a candidate; a
  leader alive behind a broken stream goes on committing (its fills then go out without the
  standby: there is none to wait for), so that standby holds less than the strategies were told.
  Cut off ends when the stream is back and the standby holds the head it announces.
- or nobody can hold more: the lease was **never held** (a new pair), or ``leader.bootstrap``
  says so (every replica was down; this one's ledger is known to be the newest).

``margin_ms`` absorbs the last renewal of a leader that died being seen after the break (a
follower reads the lease once a retry period, and reads can be late). Time is passed in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Why(enum.Enum):
    CAUGHT_UP = "caught up"
    NEVER_HELD = "lease never held"
    BOOTSTRAP = "bootstrap"
    BEHIND = "not caught up"
    CUT_OFF = "cut off from a live leader"


@dataclass(frozen=True, slots=True)
class Standing:
    """What a standby sees at one instant (one clock: ms)."""

    caught_up: bool
    connected: bool  # its replication stream is open
    lag: int  # commits behind the head the leader announced
    disconnected_ms: int | None  # when its stream last broke (None: never connected or up)
    renewal_seen_ms: int | None  # when it first saw the held lease's latest version (None: free)
    never_held: bool = False
    bootstrap: bool = False


@dataclass(frozen=True, slots=True)
class Eligibility:
    eligible: bool
    cut_off: bool
    why: Why


def cut_off_margin_ms(retry_period_ms: int) -> int:
    """Two lease reads and a second of lateness: a renewal seen later than this after the
    stream broke was made by a leader that outlived the stream."""
    return 2 * retry_period_ms + 1000


def judge(standing: Standing, *, was_cut_off: bool, margin_ms: int) -> Eligibility:
    s = standing
    cut_off = was_cut_off
    if s.connected and s.caught_up and s.lag == 0:
        cut_off = False
    elif (
        not s.connected
        and s.disconnected_ms is not None
        and s.renewal_seen_ms is not None
        and s.renewal_seen_ms > s.disconnected_ms + margin_ms
    ):
        cut_off = True
    if s.bootstrap:
        return Eligibility(True, cut_off, Why.BOOTSTRAP)
    if s.never_held:
        return Eligibility(True, cut_off, Why.NEVER_HELD)
    if cut_off:
        return Eligibility(False, cut_off, Why.CUT_OFF)
    if s.caught_up:
        return Eligibility(True, cut_off, Why.CAUGHT_UP)
    return Eligibility(False, cut_off, Why.BEHIND)
