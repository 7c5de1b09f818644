"""The leadership machine: acquiring, renewing, stepping down, fencing, handing over.

Table tests drive replicas through the real transitions (``follower``, ``leader``) and compare
the role, the changes and the call. A property test runs two or three replicas against one
simulated store, with drifting clocks, slow, lost and abandoned calls, crashes and handovers,
and checks that no two of them ever execute at the same real moment.
"""

from __future__ import annotations

import doctest
import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from baton.gateway.core.leadership import (
    Call,
    CallKind,
    Check,
    Conflict,
    Deposed,
    Elected,
    Event,
    Failed,
    Leadership,
    LeaseRecord,
    Read,
    Resign,
    Role,
    SetEligible,
    SettingError,
    Settings,
    Step,
    TermSeen,
    Tick,
    Wrote,
    executing,
    start,
    step,
)

S = Settings()  # lease 4 s, renew deadline 3 s, retry 0.5 s
LD, RD, RP = S.lease_duration_ms, S.renew_deadline_ms, S.retry_period_ms
A, B = "gw-a", "gw-b"
T0 = 100_000


def rec(holder: str, term: int, version: str, duration: int = LD) -> LeaseRecord:
    return LeaseRecord(holder, term, duration, version)


def feed(s: Step, events: Sequence[Event]) -> tuple[Step, list[object]]:
    """Apply ``events`` in order: the last step and every change on the way."""
    changes: list[object] = list(s.changes)
    for e in events:
        s = step(s.leadership, e)
        changes.extend(s.changes)
    return s, changes


def follower(record: LeaseRecord | None, *, now: int = T0, eligible: bool = True) -> Step:
    """Replica A, having read ``record`` at ``now``."""
    return step(start(A, S, now, eligible=eligible).leadership, Read(now, record))


def leader(term: int = 3, *, now: int = T0) -> Step:
    """Replica A, LEADER of ``term``: it read a free lease of ``term - 1`` and acquired it."""
    s = follower(rec("", term - 1, "v1"), now=now)
    assert s.call is not None
    assert s.call.kind is CallKind.ACQUIRE
    s = step(s.leadership, Wrote(now + 5, CallKind.ACQUIRE, now, rec(A, term, "v2")))
    assert s.leadership.role is Role.LEADER
    return s


def call(kind: CallKind, record: LeaseRecord | None, expected: str | None, deadline: int) -> Call:
    return Call(kind, record, expected, deadline)


def test_the_docstring_examples_hold() -> None:
    import baton.gateway.core.leadership as module

    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"retry_period_ms": 0}, "leader.retry_period_ms"),
        ({"retry_period_ms": -5}, "leader.retry_period_ms"),
        ({"renew_deadline_ms": 500}, "leader.renew_deadline_ms"),
        ({"renew_deadline_ms": 4_000}, "leader.renew_deadline_ms"),
        ({"lease_duration_ms": 2_000}, "leader.renew_deadline_ms"),
        ({"lease_duration_ms": 4.5}, "leader.lease_duration_ms"),
        ({"retry_period_ms": True}, "leader.retry_period_ms"),
    ],
    ids=[
        "retry-period-zero",
        "retry-period-negative",
        "renew-deadline-not-above-retry",
        "renew-deadline-equal-to-lease",
        "lease-shorter-than-renew-deadline",
        "lease-not-an-integer",
        "a-bool-is-not-a-number",
    ],
)
def test_a_wrong_setting_fails_naming_it(kwargs: dict[str, object], setting: str) -> None:
    with pytest.raises(SettingError) as err:
        Settings(**kwargs)  # type: ignore[arg-type]
    assert err.value.setting == setting
    assert str(err.value).startswith(f"invalid setting {setting}: ")


def test_defaults_and_the_failover_bound() -> None:
    assert (LD, RD, RP) == (4_000, 3_000, 500)
    assert S.failover_bound_ms == 4_500  # under one 5 s cadence: at most one tick missed


def test_an_empty_identity_is_refused() -> None:
    with pytest.raises(SettingError, match=r"leader\.identity"):
        start("", S, T0)


# -- a follower -------------------------------------------------------------------------------


def test_a_new_replica_reads_first() -> None:
    s = start(A, S, T0)
    assert s.call == call(CallKind.READ, None, None, T0 + RD)
    assert s.leadership.role is Role.FOLLOWER


@pytest.mark.parametrize(
    ("record", "expected_call"),
    [
        (None, call(CallKind.ACQUIRE, LeaseRecord(A, 1, LD), None, T0 + RD)),
        (rec("", 6, "v9"), call(CallKind.ACQUIRE, LeaseRecord(A, 7, LD), "v9", T0 + RD)),
        (rec(B, 6, "v9"), call(CallKind.READ, None, None, T0 + RP + RD)),
    ],
    ids=[
        "no-lease-yet-creates-term-1",
        "released-lease-acquired-at-once-term-plus-1",
        "held-lease-is-waited-on",
    ],
)
def test_what_a_follower_does_after_a_read(record: LeaseRecord | None, expected_call: Call) -> None:
    s = follower(record)
    if expected_call.kind is CallKind.READ:
        assert s.call is None
        assert s.wake_ms == T0 + RP  # the next read
        s = step(s.leadership, Tick(T0 + RP))
    assert s.call == expected_call
    assert s.changes == ()


def test_a_held_lease_is_taken_over_once_unchanged_for_a_lease_duration() -> None:
    s = follower(rec(B, 6, "v9"))
    # Reads keep seeing the same version: the age counts from the first sight.
    while s.wake_ms < T0 + LD:
        t = s.wake_ms
        s = step(s.leadership, Tick(t))
        assert s.call is not None
        assert s.call.kind is CallKind.READ
        s = step(s.leadership, Read(t + 2, rec(B, 6, "v9")))
        assert s.call is None
    assert s.wake_ms == T0 + LD  # it wakes exactly at the expiry
    s = step(s.leadership, Tick(T0 + LD))
    assert s.call == call(CallKind.ACQUIRE, LeaseRecord(A, 7, LD), "v9", T0 + LD + RD)


def test_a_renewed_lease_is_not_taken_over() -> None:
    s = follower(rec(B, 6, "v9"))
    s = step(s.leadership, Read(T0 + 3_900, rec(B, 6, "v10")))  # B renewed: a new version
    assert s.leadership.expiry_ms == T0 + 3_900 + LD
    s, _ = feed(s, [Tick(T0 + LD), Read(T0 + LD + 1, rec(B, 6, "v10"))])
    assert s.call is None


def test_a_held_lease_that_vanishes_is_waited_out_from_the_read_that_found_it_gone() -> None:
    s = follower(rec(B, 6, "v9"))
    # Deleted by hand: B may still lead, and may have renewed (a version we never saw) just
    # before the deletion, so a whole lease is counted from this read, not from our last sight.
    s = step(s.leadership, Read(T0 + 1_000, None))
    assert s.call is None
    assert s.wake_ms == T0 + 1_000 + RP  # the next read, before the expiry
    assert s.leadership.expiry_ms == T0 + 1_000 + LD
    s = step(s.leadership, Read(T0 + 1_000 + RP, None))  # still gone: the count goes on
    assert s.leadership.expiry_ms == T0 + 1_000 + LD
    s = step(s.leadership, Tick(T0 + LD))
    assert s.call is None or s.call.kind is CallKind.READ
    s = step(s.leadership, Tick(T0 + 1_000 + LD))
    assert s.call == call(CallKind.ACQUIRE, LeaseRecord(A, 7, LD), None, T0 + 1_000 + LD + RD)


def test_a_replica_that_never_saw_a_lease_creates_it_at_once() -> None:
    s = follower(None)
    assert s.call == call(CallKind.ACQUIRE, LeaseRecord(A, 1, LD), None, T0 + RD)


def test_the_lease_duration_is_the_records_not_the_followers() -> None:
    s = follower(rec(B, 6, "v9", duration=10_000))
    assert s.leadership.expiry_ms == T0 + 10_000


def test_an_ineligible_follower_never_acquires_and_keeps_reading() -> None:
    s = follower(rec("", 6, "v9"), eligible=False)
    assert s.call is None
    assert s.wake_ms == T0 + RP
    s = step(s.leadership, Tick(T0 + RP))
    assert s.call is not None
    assert s.call.kind is CallKind.READ
    s = step(s.leadership, SetEligible(T0 + RP + 1, True))
    assert s.call == call(CallKind.ACQUIRE, LeaseRecord(A, 7, LD), "v9", T0 + RP + 1 + RD)


def test_a_follower_tracks_the_highest_term_seen() -> None:
    s = follower(rec(B, 6, "v9"))
    assert s.leadership.term == 6
    s = step(s.leadership, TermSeen(T0 + 1, 9, "host h1"))
    assert (s.leadership.term, s.changes) == (9, ())
    s = step(s.leadership, TermSeen(T0 + 2, 4, "host h1"))
    assert s.leadership.term == 9


# -- acquiring --------------------------------------------------------------------------------


def test_winning_the_acquisition_elects_with_the_written_term() -> None:
    s = follower(rec("", 2, "v1"))
    s = step(s.leadership, Wrote(T0 + 7, CallKind.ACQUIRE, T0, rec(A, 3, "v2")))
    lead = s.leadership
    assert (lead.role, lead.term, s.changes) == (Role.LEADER, 3, (Elected(3),))
    assert lead.deadline_ms == T0 + RD  # counted from the send, not the answer
    assert executing(lead, T0 + 7)
    assert executing(lead, T0 + RD - 1)
    assert not executing(lead, T0 + RD)
    assert s.call is None
    assert s.wake_ms == T0 + RP


def test_losing_the_race_stays_follower_and_waits_for_the_winners_lease() -> None:
    s = follower(rec("", 2, "v1"))
    s = step(s.leadership, Conflict(T0 + 4, CallKind.ACQUIRE, rec(B, 3, "v2")))
    lead = s.leadership
    assert (lead.role, lead.term, s.changes, s.call) == (Role.FOLLOWER, 3, (), None)
    assert lead.expiry_ms == T0 + 4 + LD


def test_a_failed_acquisition_is_retried_a_retry_period_later_not_at_once() -> None:
    s = follower(rec("", 2, "v1"))
    s = step(s.leadership, Failed(T0 + 4, CallKind.ACQUIRE, "connection refused"))
    assert s.call is None
    assert s.wake_ms == T0 + 4 + RP
    s = step(s.leadership, Tick(T0 + 4 + RP))
    assert s.call is not None
    assert s.call.kind is CallKind.ACQUIRE


def test_an_acquisition_answered_after_the_renew_deadline_does_not_elect() -> None:
    s = follower(rec("", 2, "v1"))
    s = step(s.leadership, Wrote(T0 + RD, CallKind.ACQUIRE, T0, rec(A, 3, "v2")))
    assert (s.leadership.role, s.changes) == (Role.FOLLOWER, ())
    assert s.leadership.expiry_ms == T0 + RD + LD  # its own lease: waited out like any other


# -- a leader ---------------------------------------------------------------------------------


def test_a_leader_renews_every_retry_period_and_each_renewal_moves_the_deadline() -> None:
    s = leader(term=3)
    s = step(s.leadership, Tick(T0 + RP))
    assert s.call == call(CallKind.RENEW, LeaseRecord(A, 3, LD), "v2", T0 + RD)
    s = step(s.leadership, Wrote(T0 + RP + 9, CallKind.RENEW, T0 + RP, rec(A, 3, "v3")))
    assert s.leadership.deadline_ms == T0 + RP + RD
    assert (s.leadership.role, s.changes, s.wake_ms) == (Role.LEADER, (), T0 + 2 * RP)


def test_renewals_failing_until_the_renew_deadline_step_down_before_the_lease_expires() -> None:
    s = leader(term=3)
    t = T0 + RP
    changes: list[object] = []
    while s.leadership.role is Role.LEADER:
        s = step(s.leadership, Tick(t))
        changes.extend(s.changes)
        if s.call is not None:
            assert s.call.kind is CallKind.RENEW
            s = step(s.leadership, Failed(t + 50, CallKind.RENEW, "timeout"))
            changes.extend(s.changes)
        stopped_at, t = t, s.wake_ms
    assert changes == [Deposed(3, "renew deadline passed")]
    assert stopped_at == T0 + RD
    # A follower that saw the leader's last write (sent at T0) can take over at T0 + LD at the
    # earliest: the leader stopped a full second before.
    assert T0 + LD - (T0 + RD) == 1_000


def test_a_renewal_that_hangs_is_given_up_at_the_deadline() -> None:
    s = step(leader(term=3).leadership, Tick(T0 + RP))
    assert s.call is not None
    assert s.call.deadline_ms == T0 + RD
    s = step(s.leadership, Failed(T0 + RD, CallKind.RENEW, "no answer by the deadline"))
    assert (s.leadership.role, s.changes) == (Role.FOLLOWER, (Deposed(3, "renew deadline passed"),))


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (Conflict(T0 + RP, CallKind.RENEW, rec(B, 4, "v7")), "fenced: gw-b holds term 4"),
        (
            Conflict(T0 + RP, CallKind.RENEW, rec("", 3, "v7")),
            "fenced: the lease was released (term 3)",
        ),
        (Conflict(T0 + RP, CallKind.RENEW, None), "fenced: the lease changed under the leader"),
        (TermSeen(T0 + RP, 4, "strategy host h1"), "fenced: term 4 seen from strategy host h1"),
        (Read(T0 + RP, rec(B, 4, "v7")), "fenced: gw-b holds term 4"),
    ],
    ids=[
        "renewal-conflicts-with-a-newer-holder",
        "renewal-finds-the-lease-released",
        "renewal-conflicts-store-cannot-say",
        "a-strategy-host-has-seen-a-newer-term",
        "a-read-shows-another-holder",
    ],
)
def test_a_leader_that_sees_a_newer_term_is_fenced_at_once(event: Event, reason: str) -> None:
    s = step(leader(term=3).leadership, event)
    assert s.changes == (Deposed(3, reason),)
    assert s.leadership.role is Role.FOLLOWER
    assert not executing(s.leadership, event.now_ms)


def test_an_older_or_equal_term_seen_does_not_fence() -> None:
    s = step(leader(term=3).leadership, TermSeen(T0 + 1, 3, "host"))
    assert (s.leadership.role, s.changes) == (Role.LEADER, ())


def test_a_renewal_given_up_that_landed_after_all_is_adopted_and_renewed_again() -> None:
    s = step(leader(term=3).leadership, Tick(T0 + RP))
    s = step(s.leadership, Conflict(T0 + RP + 3, CallKind.RENEW, rec(A, 3, "v5")))
    assert (s.leadership.role, s.changes) == (Role.LEADER, ())
    assert s.call == call(CallKind.RENEW, LeaseRecord(A, 3, LD), "v5", T0 + RD)
    assert s.leadership.deadline_ms == T0 + RD  # not moved: nothing confirmed it


# -- planned handover -------------------------------------------------------------------------


def test_planned_handover_stops_first_releases_and_the_follower_takes_term_plus_1() -> None:
    a = step(leader(term=3).leadership, Resign(T0 + 100))
    assert a.changes == (Deposed(3, "handover"),)
    assert not executing(a.leadership, T0 + 100)
    assert a.call == call(CallKind.RELEASE, rec("", 3, "v2"), "v2", T0 + 100 + RD)
    a = step(a.leadership, Wrote(T0 + 104, CallKind.RELEASE, T0 + 100, rec("", 3, "v3")))
    assert (a.leadership.role, a.leadership.eligible, a.call) == (Role.FOLLOWER, False, None)
    # B has been waiting on A's lease; its next read finds it free and acquires at once.
    b = step(start(B, S, T0).leadership, Read(T0, rec(A, 3, "v2")))
    b = step(b.leadership, Read(T0 + 110, rec("", 3, "v3")))
    assert b.call == call(CallKind.ACQUIRE, LeaseRecord(B, 4, LD), "v3", T0 + 110 + RD)
    b = step(b.leadership, Wrote(T0 + 113, CallKind.ACQUIRE, T0 + 110, rec(B, 4, "v4")))
    assert b.changes == (Elected(4),)
    # Told of the release (Check), B reads at once instead of at its next period.
    c = step(start(B, S, T0).leadership, Read(T0, rec(A, 3, "v2")))
    c = step(c.leadership, Check(T0 + 105))
    assert c.call == call(CallKind.READ, None, None, T0 + 105 + RD)
    # A, not eligible, does not take it back.
    a, _ = feed(a, [Tick(T0 + 104 + RP), Read(T0 + 105 + RP, rec("", 3, "v3"))])
    assert a.call is None


def test_a_release_that_fails_is_retried_until_the_lease_would_have_run_out() -> None:
    a = step(leader(term=3).leadership, Resign(T0 + 100))
    a = step(a.leadership, Failed(T0 + 150, CallKind.RELEASE, "io error"))
    assert a.call is None
    assert a.wake_ms == T0 + 150 + RP
    a = step(a.leadership, Tick(T0 + 150 + RP))
    assert a.call is not None
    assert a.call.kind is CallKind.RELEASE
    a = step(a.leadership, Failed(T0 + 5 + LD, CallKind.RELEASE, "io error"))
    assert a.leadership.releasing is False
    assert a.call is None or a.call.kind is CallKind.READ


def test_resigning_as_a_follower_only_makes_it_ineligible() -> None:
    s = step(follower(rec(B, 3, "v2")).leadership, Resign(T0 + 1))
    assert (s.changes, s.leadership.eligible, s.leadership.releasing) == ((), False, False)


# -- never two leaders: a simulation ----------------------------------------------------------

# Clock rates within 5 % of real time: renew_deadline / 0.95 = 3158 ms < lease / 1.05 = 3810 ms.
RATES = st.floats(0.95, 1.05)


@dataclass
class Replica:
    name: str
    rate: float
    offset: float
    lead: Leadership
    alive: bool = True
    call_id: int = 0  # the call in flight (0: none)
    call: Call | None = None
    sent_local: int = 0
    intervals: list[tuple[float, float]] = field(default_factory=list)

    def local(self, t: float) -> int:
        return int(self.offset + self.rate * t)

    def real(self, local: int) -> float:
        return (local - self.offset) / self.rate


@dataclass(frozen=True)
class Answer:
    call_id: int
    call: Call
    sent_local: int
    conflict: bool
    record: LeaseRecord | None


@dataclass
class Store:
    record: LeaseRecord | None = None
    versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def apply(self, c: Call, now_wall: int) -> tuple[str, LeaseRecord | None]:
        current_version = self.record.version if self.record is not None else None
        if c.kind is CallKind.READ:
            return "ok", self.record
        assert c.record is not None
        if c.expected_version != current_version:
            return "conflict", self.record
        self.record = replace(c.record, version=f"v{next(self.versions)}", renewed_ms=now_wall)
        return "ok", self.record


@dataclass(frozen=True)
class Plan:
    rates: list[float]
    latencies: list[int]  # each call's one-way delay, ms, drawn in turn
    lost: list[int]  # each call: 0 answered, 1 request lost, 2 applied but the answer lost
    crash_at: list[int | None]  # real ms a replica dies (None: never)
    # Real ms a replica is cut off from the store: [start, end) or None.
    partition: list[tuple[int, int] | None]
    resign_at: int | None
    delete_at: int | None = None  # real ms the lease is deleted by hand


# Mostly a loopback's, now and then slow, now and then past a renew deadline.
LATENCIES_MS = (1, 1, 1, 1, 5, 40, 300, 1_200, 3_500)


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    n = draw(st.integers(2, 3))
    return Plan(
        rates=[draw(RATES) for _ in range(n)],
        latencies=draw(st.lists(st.sampled_from(LATENCIES_MS), min_size=1, max_size=40)),
        lost=draw(st.lists(st.sampled_from([0, 0, 0, 0, 0, 1, 2]), min_size=1, max_size=40)),
        crash_at=[draw(st.one_of(st.none(), st.integers(0, 20_000))) for _ in range(n)],
        partition=[
            draw(st.tuples(st.integers(0, 15_000), st.integers(0, 12_000))) for _ in range(n)
        ],
        resign_at=draw(st.one_of(st.none(), st.integers(0, 20_000))),
        delete_at=draw(st.one_of(st.none(), st.integers(0, 20_000))),
    )


def simulate(plan: Plan, horizon_ms: int = 30_000) -> list[Replica]:
    """Replicas and one linearisable store, in real time: each call reaches the store after a
    delay and is applied there at once; its answer comes back after another (or is lost); the
    caller gives up at the call's deadline on its own clock. Returns the replicas with the real
    intervals during which each was executing."""
    store = Store()
    seq = itertools.count(1)  # call ids: 0 is "no call in flight"
    latency = itertools.cycle(plan.latencies)
    lost = itertools.cycle(plan.lost)
    queue: list[tuple[float, int, int, str, object]] = []
    replicas: list[Replica] = []
    for i, rate in enumerate(plan.rates):
        r = Replica(f"gw-{i}", rate, 1_000.0 * (i + 1) * 7919 % 100_000, lead=None)  # type: ignore[arg-type]
        replicas.append(r)

    def push(t: float, i: int, kind: str, payload: object = None) -> None:
        heapq.heappush(queue, (t, next(seq), i, kind, payload))

    def carry(i: int, s: Step, t: float) -> None:
        r = replicas[i]
        r.lead = s.leadership
        # Executing intervals: from now until the local deadline, as the gateway's check sees it.
        if executing(r.lead, r.local(t)):
            deadline = r.lead.deadline_ms
            assert deadline is not None
            end = r.real(deadline)
            if r.intervals and r.intervals[-1][1] >= t:
                r.intervals[-1] = (r.intervals[-1][0], max(r.intervals[-1][1], end))
            else:
                r.intervals.append((t, end))
        elif r.intervals and r.intervals[-1][1] > t:
            r.intervals[-1] = (r.intervals[-1][0], t)
        if s.call is not None:
            r.call_id = next(seq)
            r.call, r.sent_local = s.call, r.local(t)
            push(t + next(latency), i, "arrive", r.call_id)
            push(r.real(s.call.deadline_ms), i, "give_up", r.call_id)
        else:
            r.call_id = 0
            push(r.real(s.wake_ms), i, "wake", s.wake_ms)

    for i, r in enumerate(replicas):
        carry(i, start(r.name, S, r.local(0)), 0.0)
        if plan.crash_at[i] is not None:
            push(float(plan.crash_at[i] or 0), i, "crash")
    if plan.resign_at is not None:
        push(float(plan.resign_at), -1, "resign")
    if plan.delete_at is not None:
        push(float(plan.delete_at), -1, "delete")

    while queue:
        t, _, i, kind, payload = heapq.heappop(queue)
        if t > horizon_ms:
            break
        if kind == "delete":
            # Outside the guarantee (docs/gateway-standby.md): a deletion while a replica that
            # never saw the lease has a create in flight. That create lands as a first one, with
            # the same term as the holder's: nothing can tell them apart. So the deletion waits.
            if any(r.lead.record is None and r.alive for r in replicas):
                push(t + 50, -1, "delete")
            else:
                store.record = None
            continue
        if kind == "resign":
            for j, r in enumerate(replicas):
                if r.alive and r.lead.role is Role.LEADER and r.call_id == 0:
                    carry(j, step(r.lead, Resign(r.local(t))), t)
            continue
        r = replicas[i]
        if not r.alive:
            continue
        now = r.local(t)
        if kind == "crash":
            r.alive = False
            if r.intervals and r.intervals[-1][1] > t:
                r.intervals[-1] = (r.intervals[-1][0], t)
            continue
        if kind == "wake":
            if r.call_id == 0:
                assert isinstance(payload, int)
                carry(i, step(r.lead, Tick(max(now, payload))), t)
        elif kind == "arrive" and payload == r.call_id and r.call is not None:
            loss = next(lost)
            cut = plan.partition[i]
            if cut is not None and cut[0] <= t < cut[0] + cut[1]:
                continue  # cut off: neither applied nor answered
            if loss == 1:
                continue
            outcome, record = store.apply(r.call, int(t))
            if loss == 0:
                answer = Answer(r.call_id, r.call, r.sent_local, outcome == "conflict", record)
                push(t + next(latency), i, "answer", answer)
        elif kind == "answer":
            assert isinstance(payload, Answer)
            if payload.call_id != r.call_id:
                continue  # given up already
            c, record = payload.call, payload.record
            event: Event
            if payload.conflict:
                event = Conflict(now, c.kind, record)
            elif c.kind is CallKind.READ:
                event = Read(now, record)
            else:
                assert record is not None
                event = Wrote(now, c.kind, payload.sent_local, record)
            carry(i, step(r.lead, event), t)
        elif kind == "give_up" and payload == r.call_id and r.call is not None:
            carry(i, step(r.lead, Failed(max(now, r.call.deadline_ms), r.call.kind, "gave up")), t)
    return replicas


# The lease deleted by hand in the ~10 ms between the leader's renewal and the follower's read:
# a follower that took a vanished lease for a free one would lead while the old leader still did.
DELETED_BETWEEN_RENEWAL_AND_READ = Plan(
    rates=[1.0, 1.0],
    latencies=[1],
    lost=[0],
    crash_at=[None, None],
    partition=[None, None],
    resign_at=None,
    delete_at=2_010,
)


# Found by the simulation (hypothesis): the holder renewed after gw-0's last read and just before
# the deletion; gw-0 counted the vanished lease's age from its older sight and took over 33 ms
# before the holder's renew deadline. A vanished lease's age now counts from the read that
# found it gone.
DELETED_AFTER_AN_UNSEEN_RENEWAL = Plan(
    rates=[0.96875, 1.0, 1.0],
    latencies=[3500, 1, 1200, 300, 1, 1, 1, 300, 1, 1, 1200, 1, 1, 1, 1200, 1, 300],
    lost=[0],
    crash_at=[None, None, 2205],
    partition=[(0, 0), (0, 0), (0, 0)],
    resign_at=None,
    delete_at=12508,
)


@settings(max_examples=300, deadline=None)
@example(plan=DELETED_BETWEEN_RENEWAL_AND_READ)
@example(plan=DELETED_AFTER_AN_UNSEEN_RENEWAL)
@given(plan=plans())
def test_never_two_replicas_execute_at_the_same_moment(plan: Plan) -> None:
    replicas = simulate(plan)
    spans = [(a, b, r.name) for r in replicas for a, b in r.intervals if b > a]
    for (a1, b1, n1), (a2, b2, n2) in itertools.combinations(spans, 2):
        if n1 != n2:
            assert b1 <= a2 or b2 <= a1, (
                f"{n1} executes [{a1:.0f}, {b1:.0f}), {n2} [{a2:.0f}, {b2:.0f})"
            )
    terms = [r.lead.term for r in replicas]
    assert all(t >= 0 for t in terms)


def test_the_simulation_elects_someone_and_fails_over_after_a_crash() -> None:
    plan = Plan(
        rates=[1.0, 1.0],
        latencies=[2],
        lost=[0],
        crash_at=[5_000, None],
        partition=[None, None],
        resign_at=None,
    )
    replicas = simulate(plan, horizon_ms=20_000)
    first, second = replicas
    assert first.intervals
    assert first.intervals[0][0] < 50
    assert second.intervals, "the survivor was never elected"
    takeover = second.intervals[0][0] - 5_000
    assert LD - RP - 10 <= takeover <= S.failover_bound_ms + 10
    assert second.lead.term == first.lead.term + 1
