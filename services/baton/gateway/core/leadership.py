"""Which gateway replica leads: the leadership machine (docs/gateway-standby.md).

Pure: ``step(leadership, event)`` returns the next value, the store call to make now (at most
one: the elector makes one call at a time) and when to wake it if nothing else happens. It
reads no clock: ``now_ms`` is the replica's own monotonic clock, passed in every event. It does
no I/O: the elector (``gateway/election.py``) makes the calls on a ``LeaseStore`` and feeds the
outcomes back.

The lease record lives in a coordination service (a Kubernetes Lease, or a local file under
``flock``) that offers compare-and-swap on a version. The rules, after client-go's
leaderelection:

- **A follower** reads the record every ``retry_period``. It counts a lease's age from the
  moment *it* saw the record's version change (its own clock), never from a time written in
  the record, so the replicas' clocks need not agree on the time of day. When
  ``lease_duration`` has passed since then without a change, or the record names no holder (a
  released lease), or there is none, it tries to acquire: a write of itself as holder with the
  term one higher, expecting the version it saw. A conflict is a lost race.
- **A leader** renews every ``retry_period`` (a write expecting its own last version). It leads
  ("executes") only while less than ``renew_deadline`` has passed since it *sent* its last
  successful write: past that it steps down by itself, whether its calls fail, hang or never
  return. Since ``renew_deadline < lease_duration`` and a follower's count starts only once it
  has seen that write, the leader stops before anyone may take over, as long as the two clocks'
  rates differ by less than ``lease_duration / renew_deadline`` (see ``Settings``).
- **The term** is the number of acquisitions (Kubernetes: ``leaseTransitions``): every
  acquisition writes the term seen plus one, a renewal keeps it. A leader that sees a newer term
  (a conflicting write by another holder, or a strategy host that has seen it) is fenced: it
  steps down at once.
- **A planned handover** (``Resign``): the leader stops executing first, then writes the lease
  free (no holder, same term); a follower that reads a free lease acquires it at once with the
  next term. The resigning replica is no longer eligible, so it does not take the lease back.

Only an eligible follower acquires: the gateway marks a standby eligible when its ledger and
market state are current (``SetEligible``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

# The reference workload's settings (5 s cadence): see docs/gateway-standby.md for why.
DEFAULT_LEASE_DURATION_MS = 4_000
DEFAULT_RENEW_DEADLINE_MS = 3_000
DEFAULT_RETRY_PERIOD_MS = 500


class SettingError(ValueError):
    """A leadership setting is wrong; ``setting`` is its dotted name as in the gateway's
    configuration (the config layer turns it into a ``ConfigError``)."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"invalid setting {setting}: {problem}")
        self.setting = setting
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Settings:
    """How long a lease lasts, how long a leader may go without a renewal, how often to try.

    Validated once: ``lease_duration_ms > renew_deadline_ms > retry_period_ms > 0``.

    The clock assumption: a leader whose clock runs slow and a follower whose clock runs fast
    must still see the leader stop first. With clock rates within ``1 +- e`` of real time that
    holds when ``renew_deadline / (1 - e) + (the time to stop) < lease_duration / (1 + e)``.
    The defaults (4 s / 3 s / 0.5 s) leave 1 s for the stop and tolerate e up to 1/7 (14 %),
    against the ~0.01 % of an unsynchronised quartz clock: the margin is for the stop, not the
    clocks. Offsets (the time of day) never matter.

    >>> Settings().failover_bound_ms
    4500
    >>> try:
    ...     Settings(lease_duration_ms=4_000, renew_deadline_ms=4_000, retry_period_ms=500)
    ... except SettingError as err:
    ...     print(err)
    invalid setting leader.renew_deadline_ms: must be < leader.lease_duration_ms (4000), got 4000
    """

    lease_duration_ms: int = DEFAULT_LEASE_DURATION_MS
    renew_deadline_ms: int = DEFAULT_RENEW_DEADLINE_MS
    retry_period_ms: int = DEFAULT_RETRY_PERIOD_MS

    def __post_init__(self) -> None:
        for name in ("lease_duration_ms", "renew_deadline_ms", "retry_period_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise SettingError(f"leader.{name}", f"must be an integer, got {value!r}")
        if self.retry_period_ms <= 0:
            raise SettingError("leader.retry_period_ms", f"must be > 0, got {self.retry_period_ms}")
        if self.renew_deadline_ms <= self.retry_period_ms:
            raise SettingError(
                "leader.renew_deadline_ms",
                f"must be > leader.retry_period_ms ({self.retry_period_ms}),"
                f" got {self.renew_deadline_ms}",
            )
        if self.renew_deadline_ms >= self.lease_duration_ms:
            raise SettingError(
                "leader.renew_deadline_ms",
                f"must be < leader.lease_duration_ms ({self.lease_duration_ms}),"
                f" got {self.renew_deadline_ms}",
            )

    @property
    def failover_bound_ms(self) -> int:
        """The longest a dead leader's lease keeps a follower waiting, store latency aside: the
        follower sees the leader's last write within one retry period of it, then waits one
        lease duration from that moment (it wakes exactly then)."""
        return self.lease_duration_ms + self.retry_period_ms


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The lease as the coordination service holds it. ``holder`` ``""``: free (released).
    ``version``: the store's compare-and-swap token (Kubernetes: ``resourceVersion``), opaque.
    ``acquired_ms``/``renewed_ms``: wall times the holder's store wrote, for people only; the
    machine never compares them with its own clock."""

    holder: str
    term: int
    lease_duration_ms: int
    version: str = ""
    acquired_ms: int = 0
    renewed_ms: int = 0

    @property
    def free(self) -> bool:
        return self.holder == ""


class Role(enum.Enum):
    FOLLOWER = "follower"
    LEADER = "leader"


class CallKind(enum.Enum):
    READ = "read"
    ACQUIRE = "acquire"
    RENEW = "renew"
    RELEASE = "release"


@dataclass(frozen=True, slots=True)
class Call:
    """A store call to make now. ``record``: what to write (none for a read), expecting the
    store to be at ``expected_version`` (``None``: no record yet, create it). ``deadline_ms``:
    give up waiting for the answer then and feed ``Failed`` (a leader's is its renew deadline,
    so a hung call cannot keep it leading)."""

    kind: CallKind
    record: LeaseRecord | None
    expected_version: str | None
    deadline_ms: int


@dataclass(frozen=True, slots=True)
class Elected:
    term: int


@dataclass(frozen=True, slots=True)
class Deposed:
    term: int
    reason: str


Change = Elected | Deposed


@dataclass(frozen=True, slots=True)
class Leadership:
    """One replica's view. ``term``: the term it leads under (LEADER), else the highest seen."""

    identity: str
    settings: Settings
    role: Role = Role.FOLLOWER
    term: int = 0
    eligible: bool = True
    record: LeaseRecord | None = None
    # When this replica first saw ``record``'s version (a follower's lease age counts from it).
    observed_ms: int = 0
    # LEADER: when the last successful acquire or renew was sent: it leads until + renew_deadline.
    sent_ms: int = 0
    releasing: bool = False
    # When the next periodic call (read, renew, or a release retried) is due.
    due_ms: int = 0
    # A follower tries no acquisition before this (a retry period after a failed or lost one).
    hold_ms: int = 0
    # Whether the store was read (or written) at least once: before that nothing is known.
    seen: bool = False
    # The held lease last seen is gone from the store (deleted by hand): it is waited out as if
    # unchanged, then created anew.
    vanished: bool = False

    @property
    def deadline_ms(self) -> int | None:
        """LEADER: the moment it stops executing unless a renewal lands first."""
        if self.role is not Role.LEADER:
            return None
        return self.sent_ms + self.settings.renew_deadline_ms

    @property
    def expiry_ms(self) -> int | None:
        """The moment the observed lease may be taken over (own clock); ``None``: free now."""
        if self.record is None or self.record.free:
            return None
        return self.observed_ms + self.record.lease_duration_ms


def executing(leadership: Leadership, now_ms: int) -> bool:
    """Whether the replica may execute now: a leader within its renew deadline. The gateway asks
    this before each execution, so even a leader whose elector has not run since its deadline
    passed does not execute."""
    deadline = leadership.deadline_ms
    return deadline is not None and now_ms < deadline


# -- events (facts in) -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tick:
    """The wake-up time came (or the elector was poked)."""

    now_ms: int


@dataclass(frozen=True, slots=True)
class Read:
    """A read answered: the record, or none (no lease yet)."""

    now_ms: int
    record: LeaseRecord | None


@dataclass(frozen=True, slots=True)
class Wrote:
    """An acquire, renew or release was written: ``record`` as stored (its new version).
    ``sent_ms``: when the call was sent (the lease counts from there, not from the answer)."""

    now_ms: int
    kind: CallKind
    sent_ms: int
    record: LeaseRecord


@dataclass(frozen=True, slots=True)
class Conflict:
    """The store was not at the expected version: someone else wrote. ``record``: the current
    one, when the store could say."""

    now_ms: int
    kind: CallKind
    record: LeaseRecord | None


@dataclass(frozen=True, slots=True)
class Failed:
    """A call failed or was given up at its deadline; it may or may not have been applied."""

    now_ms: int
    kind: CallKind
    error: str


@dataclass(frozen=True, slots=True)
class SetEligible:
    now_ms: int
    eligible: bool


@dataclass(frozen=True, slots=True)
class Resign:
    """A planned handover: stop executing now, then write the lease free."""

    now_ms: int


@dataclass(frozen=True, slots=True)
class Check:
    """Read the store now rather than at the next period: a hint that the lease changed (the
    leader handing over tells the standby it released)."""

    now_ms: int


@dataclass(frozen=True, slots=True)
class TermSeen:
    """A term seen outside the store (a strategy host refusing an older one, a peer)."""

    now_ms: int
    term: int
    source: str


Event = Tick | Read | Wrote | Conflict | Failed | SetEligible | Resign | Check | TermSeen


@dataclass(frozen=True, slots=True)
class Step:
    """The next value; ``changes``: role changes to carry out (a ``Deposed`` always before the
    calls that follow it); ``call``: the store call to make now, if any; ``wake_ms``: feed a
    ``Tick`` then if nothing happened before (only meaningful when ``call`` is ``None``)."""

    leadership: Leadership
    changes: tuple[Change, ...]
    call: Call | None
    wake_ms: int


# -- the machine -----------------------------------------------------------------------------


def start(identity: str, settings: Settings, now_ms: int, *, eligible: bool = True) -> Step:
    """A replica that knows nothing yet: it reads the record first."""
    if not identity:
        raise SettingError("leader.identity", "must not be empty")
    return _plan(
        Leadership(identity=identity, settings=settings, eligible=eligible, due_ms=now_ms),
        now_ms,
        (),
    )


def step(lead: Leadership, event: Event) -> Step:
    now = event.now_ms
    changes: tuple[Change, ...] = ()
    if isinstance(event, Read):
        lead = _observe(lead, event.record, now)
        lead = replace(lead, due_ms=now + lead.settings.retry_period_ms)
        if lead.role is Role.LEADER and not _ours(lead, event.record):
            lead, changes = _depose(lead, _fenced_reason(event.record))
    elif isinstance(event, Wrote):
        lead, changes = _wrote(lead, event)
    elif isinstance(event, Conflict):
        lead, changes = _conflict(lead, event)
    elif isinstance(event, Failed):
        lead = replace(lead, due_ms=now + lead.settings.retry_period_ms)
        if event.kind is CallKind.ACQUIRE:
            lead = replace(lead, hold_ms=now + lead.settings.retry_period_ms)
        expiry = lead.expiry_ms
        if event.kind is CallKind.RELEASE and expiry is not None and now >= expiry:
            lead = replace(lead, releasing=False)  # it has run out anyway
    elif isinstance(event, SetEligible):
        lead = replace(lead, eligible=event.eligible)
    elif isinstance(event, Resign):
        lead = replace(lead, eligible=False)
        if lead.role is Role.LEADER:
            lead, changes = _depose(lead, "handover")
            lead = replace(lead, releasing=True, due_ms=now)
    elif isinstance(event, Check) and lead.role is Role.FOLLOWER:
        lead = replace(lead, due_ms=min(lead.due_ms, now))
    elif isinstance(event, TermSeen) and event.term > lead.term:
        if lead.role is Role.LEADER:
            lead, changes = _depose(lead, f"fenced: term {event.term} seen from {event.source}")
        lead = replace(lead, term=event.term)
    return _plan(lead, now, changes)


def _ours(lead: Leadership, record: LeaseRecord | None) -> bool:
    return record is not None and record.holder == lead.identity and record.term == lead.term


def _fenced_reason(record: LeaseRecord | None) -> str:
    if record is None:
        return "fenced: the lease is gone"
    if record.free:
        return f"fenced: the lease was released (term {record.term})"
    return f"fenced: {record.holder} holds term {record.term}"


def _observe(lead: Leadership, record: LeaseRecord | None, now: int) -> Leadership:
    """Take in a record read or returned by the store. Its age counts from now only if its
    version is new to this replica. A held lease that disappears is not a free one: its holder
    may lead until it notices, so it is waited out, counted from the first read that found it
    gone. Not from the last version seen: the holder may have renewed after that read and just
    before the deletion (a version this replica never saw), and then leads until a renew
    deadline after that renewal, which was sent before the deletion, so before this read."""
    if record is None and lead.record is not None and not lead.record.free:
        if lead.vanished:
            return replace(lead, seen=True)
        return replace(lead, seen=True, vanished=True, observed_ms=now)
    lead = replace(lead, vanished=False)
    same = record is not None and lead.record is not None and record.version == lead.record.version
    if not same:
        lead = replace(lead, record=record, observed_ms=now)
    return replace(lead, seen=True)


def _depose(lead: Leadership, reason: str) -> tuple[Leadership, tuple[Change, ...]]:
    return replace(lead, role=Role.FOLLOWER, sent_ms=0), (Deposed(lead.term, reason),)


def _wrote(lead: Leadership, event: Wrote) -> tuple[Leadership, tuple[Change, ...]]:
    now, s = event.now_ms, lead.settings
    record = event.record
    # Our own write: its age counts from now for this replica too (as for any observer).
    lead = replace(lead, record=record, observed_ms=now, seen=True)
    if event.kind is CallKind.ACQUIRE:
        lead = replace(lead, due_ms=event.sent_ms + s.retry_period_ms)
        if lead.role is Role.FOLLOWER and now < event.sent_ms + s.renew_deadline_ms:
            lead = replace(lead, role=Role.LEADER, term=record.term, sent_ms=event.sent_ms)
            return lead, (Elected(record.term),)
        return lead, ()
    if event.kind is CallKind.RENEW:
        lead = replace(lead, due_ms=event.sent_ms + s.retry_period_ms)
        if lead.role is Role.LEADER and record.term == lead.term:
            lead = replace(lead, sent_ms=max(lead.sent_ms, event.sent_ms))
        return lead, ()
    # RELEASE
    return replace(lead, releasing=False, due_ms=now + s.retry_period_ms), ()


def _conflict(lead: Leadership, event: Conflict) -> tuple[Leadership, tuple[Change, ...]]:
    now = event.now_ms
    lead = replace(lead, due_ms=now + lead.settings.retry_period_ms)
    if event.kind is CallKind.ACQUIRE:
        lead = replace(lead, hold_ms=now + lead.settings.retry_period_ms)
    if event.record is None:
        # The store could not say what it holds: read it at the next period.
        if lead.role is Role.LEADER:
            return _depose(lead, "fenced: the lease changed under the leader")
        return replace(lead, releasing=False), ()
    if (
        lead.role is Role.LEADER
        and event.kind is CallKind.RENEW
        and event.record.holder == lead.identity
        and event.record.term == lead.term
    ):
        # An earlier renewal that was given up landed after all: take its version, renew again
        # at once. The deadline still counts from the last renewal confirmed.
        return replace(lead, record=event.record, observed_ms=now, due_ms=now), ()
    lead = _observe(lead, event.record, now)
    if event.kind is CallKind.RELEASE:
        lead = replace(lead, releasing=False)
    if lead.role is Role.LEADER:
        return _depose(lead, _fenced_reason(event.record))
    return lead, ()


def _plan(lead: Leadership, now: int, changes: tuple[Change, ...]) -> Step:
    """Depose a leader past its deadline, then the call to make now, or when to wake."""
    s = lead.settings
    deadline = lead.deadline_ms
    if deadline is not None and now >= deadline:
        lead, more = _depose(lead, "renew deadline passed")
        changes = (*changes, *more)
        deadline = None
    record = lead.record
    if deadline is None and record is not None and record.term > lead.term:
        lead = replace(lead, term=record.term)  # a follower's term: the highest seen
    if lead.releasing and (record is None or record.holder != lead.identity):
        lead = replace(lead, releasing=False)  # not ours any more: nothing to release
    if lead.releasing and record is not None:
        if now < lead.due_ms:
            return Step(lead, changes, None, lead.due_ms)
        free = replace(record, holder="")
        call = Call(CallKind.RELEASE, free, record.version, now + s.renew_deadline_ms)
        return Step(lead, changes, call, now)
    if deadline is not None:  # a leader renews when due, and wakes at its deadline at the latest
        if now < lead.due_ms or record is None:
            return Step(lead, changes, None, min(lead.due_ms, deadline))
        renewal = LeaseRecord(
            lead.identity, lead.term, s.lease_duration_ms, acquired_ms=record.acquired_ms
        )
        return Step(lead, changes, Call(CallKind.RENEW, renewal, record.version, deadline), now)
    # A follower acquires a free or expired lease when eligible, else reads when due.
    acquire_at = _acquire_at(lead)
    if acquire_at is not None and now >= acquire_at:
        term = max(lead.term, record.term if record is not None else 0) + 1
        claim = LeaseRecord(lead.identity, term, s.lease_duration_ms)
        expected = record.version if record is not None and not lead.vanished else None
        return Step(
            lead, changes, Call(CallKind.ACQUIRE, claim, expected, now + s.renew_deadline_ms), now
        )
    if now >= lead.due_ms:
        return Step(lead, changes, Call(CallKind.READ, None, None, now + s.renew_deadline_ms), now)
    wake = lead.due_ms if acquire_at is None else min(lead.due_ms, acquire_at)
    return Step(lead, changes, None, wake)


def _acquire_at(lead: Leadership) -> int | None:
    """When this follower may try to acquire: never before it has read the store once, nor while
    it is not eligible; a free or absent lease at once, another's once it has expired; never
    sooner than ``hold_ms`` (a retry period after a failed or lost attempt)."""
    if not (lead.eligible and lead.seen):
        return None
    expiry = lead.expiry_ms
    return max(lead.hold_ms, expiry if expiry is not None else 0)
