"""Leader election on the local lease (a file under flock): the store's compare-and-swap across
processes, and two electors on it: who is elected, how fast the other takes over when the
leader dies (task cancelled, process SIGKILLed), a leader cut off from the lease stepping down
before its lease can expire, a planned handover (docs/gateway-standby.md, measured figures).

The settings are the reference ones (lease 4 s, renew deadline 3 s, retry 0.5 s): the failover
bound they promise is 4.5 s plus a store call.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from baton.gateway.core.leadership import LeaseRecord, Role, Settings
from baton.gateway.election import monotonic_ms
from baton.gateway.lease import LeaseConflict, LeaseUnavailable, LocalLease
from baton.gateway.metrics import LeaderMetrics
from tests.integration.election_helpers import (
    leader_of,
    replica,
    replicas,
    takeover_after_sigkill,
    wait_for,
)

S = Settings()
LD, RD, RP = S.lease_duration_ms, S.renew_deadline_ms, S.retry_period_ms
# A store call on a file, an event loop's wake-up and the 5 ms poll of these tests, on 2 busy cores.
# How late a callback or an API call may come on 2 busy cores (the whole suite runs beside it:
# a tight figure here failed under CI's load) and how early a measured moment may look (the
# polls of these tests): the bounds the design claims are the rest of each assertion.
LATE_MS = 1500
EARLY_MS = 250
REPO = Path(__file__).resolve().parents[2]
CHILD = (sys.executable, "-m", "tests.integration.elector_proc")


# -- the store ------------------------------------------------------------------------------


async def test_two_stores_on_one_file_compare_and_swap(tmp_path: Path) -> None:
    a, b = LocalLease(tmp_path / "lease"), LocalLease(tmp_path / "lease")
    assert await a.read() is None
    won = await a.try_acquire(LeaseRecord("gw-a", 1, LD), None)
    assert (won.holder, won.term, won.version) == ("gw-a", 1, "1")
    assert won.acquired_ms > 0
    with pytest.raises(LeaseConflict) as lost:
        await b.try_acquire(LeaseRecord("gw-b", 1, LD), None)
    assert lost.value.current == won
    renewed = await a.renew(LeaseRecord("gw-a", 1, LD), won.version)
    assert (renewed.version, renewed.acquired_ms) == ("2", won.acquired_ms)
    with pytest.raises(LeaseConflict):
        await b.renew(LeaseRecord("gw-b", 2, LD), won.version)  # a stale version
    released = await a.release(LeaseRecord("", 1, LD), renewed.version)
    assert (released.holder, released.term, released.version) == ("", 1, "3")
    assert await b.read() == released
    taken = await b.try_acquire(LeaseRecord("gw-b", 2, LD), released.version)
    assert (taken.holder, taken.term) == ("gw-b", 2)


async def test_beside_the_ledger_and_an_unreadable_record(tmp_path: Path) -> None:
    store = LocalLease.beside(tmp_path / "baton.db")
    assert store.where == str(tmp_path / "baton.db.lease")
    (tmp_path / "baton.db.lease").write_text("{not json")
    with pytest.raises(LeaseUnavailable, match="unreadable lease record"):
        await store.read()


def test_compare_and_swap_excludes_across_processes(tmp_path: Path) -> None:
    """Three processes each add 100 to the term by read-then-swap at once: none is lost."""
    lease, rounds, n = tmp_path / "lease", 100, 3
    start_at = str(monotonic_ms() + 2_000)  # after all three have started

    def args(i: int) -> list[str]:
        return [
            *CHILD, "--lease", str(lease), "--identity", f"p{i}", "--cas-rounds", str(rounds),
            "--start-at-ms", start_at,
        ]  # fmt: skip

    procs = [
        subprocess.Popen(args(i), cwd=REPO, stdout=subprocess.PIPE, text=True) for i in range(n)
    ]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert [r["wins"] for r in results] == [rounds] * n
    record = json.loads(lease.read_text())
    assert record["term"] == rounds * n
    assert record["version"] == str(rounds * n)
    conflicts = sum(r["conflicts"] for r in results)
    print(f"\ncas across {n} processes: {conflicts} conflicts")
    assert conflicts > 0  # they did contend


# -- electors ---------------------------------------------------------------------------------


async def test_one_is_elected_and_the_other_follows(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    a = replica("gw-a", LocalLease(tmp_path / "lease"), S, metrics=LeaderMetrics(registry, "gw-a"))
    async with replicas(a):
        await wait_for(lambda: bool(a.elected), 2, "gw-a elected")
        b = replica("gw-b", LocalLease(tmp_path / "lease"), S)
        async with replicas(b):
            await asyncio.sleep(2 * RP / 1000)  # b reads a few times, and waits
            assert leader_of(a, b) is a
            assert (a.elector.term, b.elector.term, b.elector.role) == (1, 1, Role.FOLLOWER)
            assert registry.get_sample_value("baton_gateway_leader", {"replica": "gw-a"}) == 1
            assert registry.get_sample_value("baton_gateway_term") == 1
            assert (
                registry.get_sample_value(
                    "baton_gateway_leadership_changes_total", {"change": "elected"}
                )
                == 1
            )
    assert a.deposed[-1][1] == "stopped"
    assert registry.get_sample_value("baton_gateway_leader", {"replica": "gw-a"}) == 0


async def test_the_leaders_task_cancelled_the_follower_takes_over_within_the_bound(
    tmp_path: Path,
) -> None:
    takeovers = []
    lease = tmp_path / "lease"
    survivors = []
    leader = replica("gw-0", LocalLease(lease), S)
    await wait_for(lambda: bool(leader.elected), 2, "the first leader")
    for k in range(1, 4):
        follower = replica(f"gw-{k}", LocalLease(lease), S)
        await asyncio.sleep(RP / 1000 + (k * 0.37) % 0.5)  # it has read the lease; a random phase
        died = monotonic_ms()
        await leader.stop()
        await wait_for(lambda f=follower: bool(f.elected), 10, f"gw-{k} elected")  # type: ignore[misc]
        takeovers.append(follower.elected[0][0] - died)
        assert follower.elected[0][1] == leader.elected[-1][1] + 1
        survivors.append(leader)
        leader = follower
    await leader.stop()
    print(f"\nlocal lease takeover after the leader's task was cancelled: {takeovers} ms")
    for t in takeovers:
        # Not earlier than a lease after the leader's last renewal, which a starved leader
        # (CI's load) makes earlier than the kill: from outside only the upper bound is fixed.
        assert 0 < t <= S.failover_bound_ms + LATE_MS


async def test_the_leader_process_sigkilled_the_other_takes_over_within_the_bound(
    tmp_path: Path,
) -> None:
    lease = tmp_path / "lease"
    args = (*CHILD, "--lease", str(lease), "--identity", "gw-child")
    takeover = await takeover_after_sigkill(args, LocalLease(lease), S, cwd=REPO, timeout_s=10)
    print(f"\nlocal lease takeover after SIGKILL of the leader process: {takeover} ms")
    # Not earlier than a lease after the leader's last renewal, which a starved leader (CI's
    # load) makes earlier than the kill: from outside only the upper bound is a fixed figure.
    assert 0 < takeover <= S.failover_bound_ms + LATE_MS


@pytest.mark.parametrize("fault", ["fail", "hang"], ids=["store-refuses", "store-never-answers"])
async def test_a_leader_cut_off_from_the_lease_stops_before_it_expires(
    tmp_path: Path, fault: str
) -> None:
    a = replica("gw-a", LocalLease(tmp_path / "lease"), S)
    async with replicas(a):
        await wait_for(lambda: bool(a.elected), 2, "gw-a elected")
        b = replica("gw-b", LocalLease(tmp_path / "lease"), S)
        async with replicas(b):
            await asyncio.sleep(1.1)
            getattr(a.store, fault)()
            cut = a.store.cut_at_ms
            await wait_for(lambda: bool(b.elected), 10, "gw-b elected")
            last = a.store.last_write_sent_ms
            assert cut is not None
            assert last is not None
            stopped, reason = a.deposed[0]
            assert reason == "renew deadline passed"
            # a stopped executing within the renew deadline of its last good renewal...
            assert stopped - last <= RD + LATE_MS
            assert not a.elector.executing()
            # ...and b was elected only after the lease could have expired: a whole lease
            # duration after a's last write, which b saw.
            elected = b.elected[0][0]
            assert elected - last >= LD
            margin = elected - stopped
            assert margin >= LD - RD - EARLY_MS
            print(
                f"\n{fault}: a stopped {stopped - cut} ms after the cut ({stopped - last} ms"
                f" after its last renewal), b elected {elected - cut} ms after the cut,"
                f" {margin} ms after a stopped"
            )
            a.store.heal()
            # A call that hung is given up at its deadline (a renew deadline), then a reads.
            await wait_for(lambda: a.elector.term == 2, (RD + 2 * RP) / 1000 + 1, "a back")
            assert leader_of(a, b) is b  # a came back as a follower of the new term
            assert b.elector.term == 2


async def test_a_planned_handover_stops_the_leader_first_and_the_follower_takes_term_plus_1(
    tmp_path: Path,
) -> None:
    a = replica("gw-a", LocalLease(tmp_path / "lease"), S)
    async with replicas(a):
        await wait_for(lambda: bool(a.elected), 2, "gw-a elected")
        b = replica("gw-b", LocalLease(tmp_path / "lease"), S)
        async with replicas(b):
            await asyncio.sleep(0.7)
            started = monotonic_ms()
            await a.elector.resign()
            assert not a.elector.executing()
            b.elector.check()  # the leader tells the standby (over gRPC, next)
            await wait_for(lambda: bool(b.elected), 2, "gw-b elected")
            stopped, reason = a.deposed[0]
            elected, term = b.elected[0]
            assert (reason, term) == ("handover", 2)
            assert started <= stopped <= elected
            print(f"\nplanned handover: the follower leads {elected - started} ms after resign()")
            assert elected - started < 200
            await asyncio.sleep(2 * RP / 1000)
            assert leader_of(a, b) is b  # a, no longer eligible, does not take it back
            a.elector.set_eligible(True)
            await asyncio.sleep(2 * RP / 1000)
            assert leader_of(a, b) is b
