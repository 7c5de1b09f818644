"""Two gateway replicas with leader election on a local lease (docs/gateway-standby.md), as real
processes: the simulator, two ``baton gateway`` replicas on one ledger and one address (the
one-machine case: a replica binds the port only once elected), a strategy host.

What is asserted: one replica leads at a time (from the ledger: the runs' executed evaluations
never overlap in time), the other takes over within the bound when the leader is SIGKILLed or
cut off from the lease, at once when the leader is stopped on purpose, and every scheduled
evaluation is accounted for across the change. The host re-attaches by itself (same address).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest

from baton.common import ProcessFailed, Service
from baton.gateway.core.leadership import Settings
from baton.gateway.report import presence_report
from baton.gateway.report_gateways import GatewayChange
from tests.integration.replica_helpers import (
    EXECUTED,
    Pair,
    executed_spans,
    executed_ticks,
)
from tests.integration.replica_helpers import pair as pair
from tests.ledger_workload import tables
from tests.procs import (
    SLOTS,
    assert_every_scheduled_evaluation_accounted,
    count,
    run_ticks,
    seqs_by_run,
    wait_until,
)

S = Settings()  # the reference settings: lease 4 s, renew deadline 3 s, retry 0.5 s
# How late a process may notice something under CI's load (2 cores, everything running).
LATE_MS = 1500


def assert_one_leader_at_a_time(ledger: Path, *, crashed: bool) -> GatewayChange:
    """Two runs (one per term), whose executed evaluations never overlap in time; the second
    continues every slot's seqs, never reusing one (a crash may leave the reserved seqs of the
    ticks in flight as a hole); nothing executed twice, nothing missed."""
    spans = executed_spans(ledger)
    assert len(spans) == 2, f"expected two leading runs, got {spans}"
    (_, _, old_last), (_, new_first, _) = spans
    assert old_last < new_first, f"two replicas executed at once: {spans}"
    runs = seqs_by_run(ledger)
    assert sorted(runs) == [1, 2]
    for slot_id, before in runs[1].items():
        after = runs[2][slot_id]
        assert max(before) < min(after), (slot_id, before, after)
        assert min(after) - max(before) - 1 <= (2 if crashed else 0), (slot_id, before, after)
    if not crashed:
        assert_every_scheduled_evaluation_accounted(ledger)
    report = presence_report(ledger)
    assert report.runs == 2
    assert report.missed == 0
    print(f"report: not_scheduled {report.not_scheduled}, max_gap_ms {report.max_gap_ms}")
    # The change as the report tells it, from the ledger alone.
    changes = (*report.gateway_handovers, *report.gateway_failovers)
    assert len(changes) == 1, changes
    (change,) = changes
    assert (change.term, change.from_run, change.to_run) == (2, 1, 2)
    assert change.from_replica.startswith("gw-a-")
    assert change.to_replica.startswith("gw-b-")
    assert change.result == "completed"
    # The ticks between the two runs, counted missed for the change: those nobody scheduled
    # and those a killed leader dispatched and never recorded (its seqs' hole, unaccounted).
    assert change.missed_ticks * SLOTS == report.not_scheduled + report.unaccounted
    print(f"report: gateway {change.kind}: {change}")
    return change


async def first_term_running(pair: Pair) -> tuple[Service, Service]:
    a = await pair.replica("gw-a")
    led = await a.wait_announced("role", "leader", timeout_s=10)
    assert led["term"] == 1
    b = await pair.replica("gw-b")
    assert b.ready["role"] == "follower"
    await pair.strategy()
    await run_ticks(pair.ledger, 4)
    return a, b


async def test_the_leader_sigkilled_the_follower_leads_within_the_bound(pair: Pair) -> None:
    a, b = await first_term_running(pair)
    killed = time.monotonic()
    assert await pair.procs.kill(a) == -9
    led = await b.wait_announced("role", "leader", timeout_s=15)
    takeover_ms = (time.monotonic() - killed) * 1000
    print(f"\nleader SIGKILLed -> the follower leads (gateway started) after {takeover_ms:.0f} ms")
    assert led["term"] == 2
    assert takeover_ms <= S.failover_bound_ms + LATE_MS
    # The host finds the new leader at the same address and its ticks are executed again.
    await executed_ticks(pair.ledger, 3, "three ticks executed by the new leader")
    assert await pair.procs.reap(b) == 0
    change = assert_one_leader_at_a_time(pair.ledger, crashed=True)
    assert (change.kind, change.ended) == ("failover", "")  # a killed run says nothing
    assert change.missed_ticks >= 1


async def test_the_leader_stopped_hands_over_at_a_tick_boundary_and_no_tick_is_lost(
    pair: Pair,
) -> None:
    # The handover fits in the cadence that follows the old leader's last tick: the follower's
    # next read of the lease (0.5 s at most), its gateway built around its warm feed, the host's
    # re-attach. 2 s leaves room for CI's load.
    pair.cadence_s = 2.0
    a, b = await first_term_running(pair)
    asked = time.monotonic()
    assert await pair.procs.reap(a) == 0  # SIGTERM: finishes its tick, then releases the lease
    exited = time.monotonic()
    led = await b.wait_announced("role", "leader", timeout_s=10)
    after_exit_ms = (time.monotonic() - exited) * 1000
    print(
        f"\nplanned stop: the leader stopped in {(exited - asked) * 1000:.0f} ms, the follower"
        f" led {after_exit_ms:.0f} ms after its exit"
    )
    assert led["term"] == 2
    # A released lease is taken at the follower's next read: a retry period, not a lease.
    assert after_exit_ms <= S.retry_period_ms + LATE_MS
    await executed_ticks(pair.ledger, 3, "three ticks executed by the new leader")
    assert await pair.procs.reap(b) == 0
    change = assert_one_leader_at_a_time(pair.ledger, crashed=False)
    # The old leader stopped right after a tick; the new one dispatched the very next one.
    assert (change.kind, change.ended) == ("handover", "handover")
    assert (change.missed, change.missed_ticks) == (0, 0)
    assert change.pause_ms is not None
    assert 0 <= change.pause_ms < pair.cadence_s * 1000


async def test_a_leader_cut_off_from_the_lease_stops_exits_deposed_and_the_other_leads(
    pair: Pair, tmp_path: Path
) -> None:
    # gw-a reaches the lease through a link we can cut; gw-b through the real folder.
    shared, void = tmp_path / "lease-dir", tmp_path / "void"
    shared.mkdir()
    (void / "lease.lock").mkdir(parents=True)  # a lock that cannot be opened: calls fail
    view = tmp_path / "a-view"
    view.symlink_to(shared)
    a = await pair.replica("gw-a", view / "lease")
    await a.wait_announced("role", "leader", timeout_s=10)
    b = await pair.replica("gw-b", shared / "lease")
    await pair.strategy()
    await run_ticks(pair.ledger, 3)

    cut = time.monotonic()
    tmp_link = tmp_path / "a-view.new"
    tmp_link.symlink_to(void)
    os.replace(tmp_link, view)  # atomic: from now on every call of gw-a fails
    led = await b.wait_announced("role", "leader", timeout_s=15)
    elected_ms = (time.monotonic() - cut) * 1000
    code = await a.proc.wait()
    print(f"\nleader cut off from the lease: the other leads {elected_ms:.0f} ms after the cut")
    assert code == 3, "a deposed replica exits 3 (its supervisor starts a new follower)"
    assert led["term"] == 2
    assert elected_ms <= S.lease_duration_ms + S.retry_period_ms + LATE_MS
    await executed_ticks(pair.ledger, 3, "three ticks executed by the new leader")
    assert await pair.procs.reap(b) == 0
    # Deposed, it resolved its tick in flight (missed: it may not execute) and wrote it.
    change = assert_one_leader_at_a_time(pair.ledger, crashed=False)
    assert (change.kind, change.ended) == ("failover", "deposed")
    log = a.log_path.read_text()
    assert "renew deadline passed" in log
    assert "clock stopped: no longer leading" in log or "gateway stopped" in log


async def test_demo_hands_the_gateway_over_and_kills_it_and_the_report_tells_each(
    tmp_path: Path,
) -> None:
    """Issue 15's demo: ``--gateway-handovers 2 --gateway-kills 1 --json``: the report adds
    ``gateway_handovers`` (0 missed each) and ``gateway_failovers`` (misses within the bound)."""
    command = [
        sys.executable, "-m", "baton", "demo", "--duration", "24", "--cadence-s", "2",
        "--time-scale", "600", "--gateway-handovers", "2", "--gateway-kills", "1", "--json",
        "--workdir", str(tmp_path / "demo"),
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(150):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    handovers, failovers = report["gateway_handovers"], report["gateway_failovers"]
    assert len(handovers) == 2, handovers
    assert len(failovers) == 1, failovers
    changes = sorted([*handovers, *failovers], key=lambda c: c["term"])
    assert [c["term"] for c in changes] == [2, 3, 4]  # one term per leader, in order
    for h in handovers:
        assert (h["missed"], h["result"]) == (0, "completed"), h
        assert 0 <= h["pause_ms"] < 2000
        assert h["from"] != h["to"]
    (f,) = failovers
    assert f["result"] == "completed"
    # A takeover within lease + retry (4.5 s), the host's re-attach and the next boundary: the
    # ticks in between are its misses, at most ceil(takeover / cadence) + the killed one.
    assert f["takeover_ms"] is not None
    assert f["missed_ticks"] <= -(-f["takeover_ms"] // 2000) + 1
    assert f["missed"] == f["missed_ticks"] * SLOTS
    assert report["missed"] == 0  # nothing recorded missed: the gaps are the changes'
    assert report["runs"] == 4
    print(f"\ndemo: handovers {handovers}\nfailover {f}")


async def test_replicas_with_ledgers_of_their_own_fail_over_and_hand_over_from_their_copies(
    pair: Pair, tmp_path: Path
) -> None:
    """Each replica keeps its own ledger, a copy of the leader's (``leader.replicate_from``):
    the SIGKILLed leader's standby takes over from its copy (nothing it had is lost, no seq is
    reused); a new, empty standby is seeded with a snapshot, catches up and takes a handover
    with 0 missed; the last two ledgers are then the same row for row."""
    # The handover must fit in the cadence after the old leader's last tick: its stop (the
    # standby's ack of its last commit, its port closed), the lease read, the new gateway, the
    # host's re-attach. 3 s leaves room for CI's load (one of 17 runs at 2 s failed under load,
    # its output not kept).
    pair.cadence_s = 3.0
    ledgers = {name: tmp_path / f"{name}.sqlite" for name in ("a", "b", "c")}
    a = await pair.replica("gw-a", own_ledger=ledgers["a"])
    await a.wait_announced("role", "leader", timeout_s=15)
    b = await pair.replica("gw-b", own_ledger=ledgers["b"])
    await pair.strategy()
    await executed_ticks(ledgers["a"], 3, "three ticks led by gw-a")
    await wait_until(
        lambda: count(ledgers["b"], EXECUTED) >= count(ledgers["a"], EXECUTED) - 2 * SLOTS,
        timeout_s=10,
        what="gw-b's copy within a tick of gw-a's ledger",
    )
    assert await pair.procs.kill(a) == -9
    led = await b.wait_announced("role", "leader", timeout_s=15)
    assert led["term"] == 2
    await executed_ticks(ledgers["b"], 2, "two ticks led by gw-b")

    c = await pair.replica("gw-c", own_ledger=ledgers["c"])  # empty: seeded by a snapshot
    await wait_until(
        lambda: (
            count(ledgers["c"], EXECUTED) >= count(ledgers["b"], EXECUTED) - 2 * SLOTS
            and count(ledgers["c"], EXECUTED) > 0
        ),
        timeout_s=20,
        what="gw-c caught up with gw-b",
    )
    assert await pair.procs.reap(b) == 0  # a handover at a tick boundary, to gw-c
    led = await c.wait_announced("role", "leader", timeout_s=15)
    assert led["term"] == 3
    await executed_ticks(ledgers["c"], 2, "two ticks led by gw-c")
    assert await pair.procs.reap(c) == 0

    report = presence_report(ledgers["c"])
    assert report.runs == 3
    assert report.missed == 0
    failover, handover = report.gateway_failovers, report.gateway_handovers
    assert [(f.term, f.from_replica[:4], f.to_replica[:4]) for f in failover] == [
        (2, "gw-a", "gw-b")
    ]
    assert [(h.term, h.missed, h.result) for h in handover] == [(3, 0, "completed")]
    # Seqs never reused across the three runs (the failover skips what gw-a may have sent).
    runs = seqs_by_run(ledgers["c"])
    for slot_id, first in runs[1].items():
        assert max(first) < min(runs[2][slot_id])
        assert max(runs[2][slot_id]) < min(runs[3][slot_id])
    # gw-b's ledger (closed at its handover) is a prefix of gw-c's: same rows, same ids; its
    # last writes (the detachments, the run's end) included.
    b_rows, c_rows = tables(ledgers["b"]), tables(ledgers["c"])
    for table in ("runs", "evaluations", "bets", "settlements", "instance_events", "replication"):
        assert c_rows[table][: len(b_rows[table])] == b_rows[table], table
    print(f"\nown ledgers: {failover[0]}\n{handover[0]}")


async def test_a_replica_that_cannot_know_it_is_current_waits_unless_told_to_bootstrap(
    pair: Pair, tmp_path: Path
) -> None:
    """Every replica down, the lease left held by the dead leader: a replica with a ledger of
    its own cannot know whether it holds the last leader's last commit, so it does not lead
    (a stale standby must never take over); ``leader.bootstrap`` on the one known to be
    newest lets it lead, from its own ledger."""
    ledger = tmp_path / "a.sqlite"
    a = await pair.replica("gw-a", own_ledger=ledger)
    await a.wait_announced("role", "leader", timeout_s=15)
    await pair.strategy()
    await executed_ticks(ledger, 2, "two ticks led by gw-a")
    assert await pair.procs.kill(a) == -9
    waiting = await pair.replica("gw-a2", own_ledger=ledger)
    with pytest.raises(ProcessFailed, match="did not announce"):
        await waiting.wait_announced("role", "leader", timeout_s=S.failover_bound_ms / 1000 + 3)
    assert await pair.procs.reap(waiting) == 0
    told = await pair.replica("gw-a3", own_ledger=ledger, bootstrap=True)
    led = await told.wait_announced("role", "leader", timeout_s=15)
    assert led["term"] == 2
    await executed_ticks(ledger, 2, "two ticks led by gw-a3 from the same ledger")
    assert await pair.procs.reap(told) == 0
