"""Issue 15's acceptance with real processes (docs/gateway-standby.md, "What is left" item 8).

Two ``baton gateway`` replicas on one address, each with a ledger of its own
(``leader.replicate_from``), the lease a local file with fast settings (lease 2 s, renew deadline
1.5 s, retry 0.25 s), the simulator, strategy hosts. A supervisor (this test) starts a new
follower after every kill on the dead leader's own ledger (a StatefulSet restarting the pod with
its volume): its unreplicated tail, if any, is cut and kept aside by a snapshot.

- ``test_twenty_leader_kills``: >= 20 SIGKILLs of the leader at random moments (seeded: the seed
  is printed; ``BATON_ACCEPTANCE_SEED`` replays one), a third of them right after a tick's
  dispatch (mid-tick), some in the middle of a strategy handoff (``Promote`` of the other host,
  the leader killed in the phase the handoff's watch reports). Each failover: taken over within
  lease + retry, its missed ticks within ceil(kill -> the new leader's first dispatch / cadence)
  plus the tick the dead leader may have dispatched unrecorded; a strategy handoff in flight ends
  with exactly one ACTIVE on the new leader, one of the two that hold the strategy's state.
  Then, from BOTH ledgers: nothing executed twice, the follower's copy a prefix of the leader's
  row for row, and ``baton presence --json`` counting every tick once.
- ``test_ten_planned_handovers_miss_nothing``: >= 10 SIGTERM handovers under a running clock,
  0 missed each, both ledgers checked the same way.
- ``test_a_leader_cut_off_from_the_lease_stops_before_the_standby_starts``: the old leader's last
  executed evaluation strictly before the new leader's first, from the ledgers; it exits 3.
- ``test_a_standby_killed_and_restarted_catches_up_and_leads_without_bootstrap``.

Measured numbers are printed and written to ``build/artifacts/gateway-acceptance-*.json``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from baton.common import Service
from baton.control import ControlClient, ControlError, phase_name, role_name
from baton.gateway.app import prefer_wait_ms
from baton.gateway.core.leadership import Settings
from baton.v1 import control_pb2 as ctl
from tests.integration.replica_helpers import (
    Pair,
    executed_spans,
    executed_ticks,
    metrics,
)
from tests.integration.replica_helpers import pair as pair
from tests.ledger_workload import tables
from tests.procs import SLOTS, count, log_entries, query, wait_until

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "artifacts"

FAST = Settings(lease_duration_ms=2000, renew_deadline_ms=1500, retry_period_ms=250)
# How late a process may notice something under CI's load (2 cores, everything running).
LATE_MS = 1500
KILLS = max(5, int(os.environ.get("BATON_ACCEPTANCE_KILLS", "20")))
HANDOVERS = 10
V1 = "baton.strategy.examples.momentum_v1:MomentumV1"
V2 = "baton.strategy.examples.momentum_v2:MomentumV2"
# The phases a handoff is killed in, in turn (the first status the watch reports in it).
HANDOFF_PHASES = ("importing", "shadowing", "baking")


def log_ms(entry: dict[str, Any]) -> int:
    """A JSON log line's ``ts`` (ISO 8601, UTC, ms) as epoch ms."""
    return int(datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).timestamp() * 1000)


def wall_ms() -> int:
    return int(time.time() * 1000)


def record(name: str, data: object) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / name).write_text(json.dumps(data, indent=2) + "\n")


def seed() -> int:
    raw = os.environ.get("BATON_ACCEPTANCE_SEED")
    value = int(raw) if raw else random.SystemRandom().randrange(1 << 30)
    print(f"\nseed {value} (BATON_ACCEPTANCE_SEED={value} replays it)")
    return value


# -- the supervisor ---------------------------------------------------------------------------


@dataclass
class Member:
    """A replica process and the ledger it keeps (its 'volume': kept across its restarts)."""

    service: Service
    ledger: Path


@dataclass
class Cluster:
    """Two replicas with ledgers of their own: the leader and its standby."""

    pair: Pair
    ledgers: tuple[Path, Path]
    leader: Member | None = None
    standby: Member | None = None
    started: int = 0

    async def start_replica(self, ledger: Path) -> Member:
        name = f"gw-{self.started:02d}"
        self.started += 1
        return Member(await self.pair.replica(name, own_ledger=ledger), ledger)

    async def start(self) -> None:
        self.leader = await self.start_replica(self.ledgers[0])
        await self.leader.service.wait_announced("role", "leader", timeout_s=20)
        self.standby = await self.start_replica(self.ledgers[1])

    async def standby_caught_up(self, timeout_s: float = 30) -> None:
        """The standby holds the leader's head (its metrics say so): it is a candidate."""
        assert self.standby is not None
        standby = self.standby.service
        await wait_until(
            lambda: metrics(standby).get("baton_replication_caught_up") == 1.0,
            timeout_s=timeout_s,
            what=f"{standby.name} caught up",
        )

    async def ready_to_swap(self) -> tuple[Member, Member, int]:
        """The leader executing, its standby caught up: (leader, standby, the leader's term)."""
        await self.leading_run_executes(1)
        await self.standby_caught_up()
        assert self.leader is not None
        assert self.standby is not None
        return self.leader, self.standby, int(self.leader.service.announced[-1]["term"])

    async def leading_run_executes(self, ticks: int = 2, timeout_s: float = 30) -> None:
        assert self.leader is not None
        await executed_ticks(self.leader.ledger, ticks, "the leader executes", timeout_s)

    def leader_run(self) -> int:
        assert self.leader is not None
        return count(self.leader.ledger, "SELECT max(id) FROM runs")


# -- the checks on one ledger -----------------------------------------------------------------


def presence_json(ledger: Path) -> dict[str, Any]:
    """``baton presence --ledger L --json``, as a user runs it."""
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "baton", "presence", "--ledger", str(ledger), "--json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def assert_nothing_twice(ledger: Path) -> None:
    """No evaluation twice (slot, seq) or (slot, tick); no bet twice for an evaluation or for a
    (slot, window, seq); no settlement twice; seqs increase with the run."""
    twice = {
        "an evaluation recorded twice": "SELECT slot_id, seq, count(*) FROM evaluations",
        "a tick evaluated twice": "SELECT slot_id, scheduled_ms, count(*) FROM evaluations",
        "an evaluation executed twice": "SELECT slot_id, seq, count(*) FROM bets",
    }
    for what, sql in twice.items():
        dup = query(ledger, sql + " GROUP BY 1, 2 HAVING count(*) > 1")
        assert not dup, f"{what}: {dup[:5]}"
    dup = query(ledger, "SELECT bet_id, count(*) FROM settlements GROUP BY 1 HAVING count(*) > 1")
    assert not dup, f"a settlement applied twice: {dup[:5]}"
    orphan = query(
        ledger,
        "SELECT bet_id FROM settlements WHERE bet_id NOT IN (SELECT bet_id FROM bets)",
    )
    assert not orphan, f"settlements of bets the ledger does not hold: {orphan[:5]}"
    unexecuted = query(
        ledger,
        "SELECT b.slot_id, b.seq FROM bets b LEFT JOIN evaluations e"
        " ON e.slot_id = b.slot_id AND e.seq = b.seq WHERE e.outcome IS NOT 'executed'",
    )
    assert not unexecuted, f"bets without an executed evaluation: {unexecuted[:5]}"
    # Each run's seqs all come after the previous runs' (per slot): a seq is never reused.
    highest: dict[str, int] = {}
    for run_id, slot_id, lo, hi in query(
        ledger,
        "SELECT run_id, slot_id, min(seq), max(seq) FROM evaluations GROUP BY 1, 2 ORDER BY 1",
    ):
        assert lo > highest.get(slot_id, 0), (run_id, slot_id, lo, highest.get(slot_id))
        highest[slot_id] = hi


def assert_every_tick_counted_once(ledger: Path, report: dict[str, Any]) -> None:
    """Per slot, every tick from its first to its last is one of: an evaluation (executed or a
    recorded miss with its reason), a seq nobody recorded (``unaccounted``: a tick a killed
    leader dispatched) or a tick nobody scheduled (``not_scheduled``, between two runs); none
    counted twice."""
    spans = query(
        ledger,
        "SELECT slot_id, count(*), (max(scheduled_ms) - min(scheduled_ms))"
        " / (min(deadline_ms - scheduled_ms)) + 1 FROM evaluations GROUP BY slot_id",
    )
    assert len(spans) == SLOTS
    rows = sum(int(n) for _, n, _ in spans)
    ticks = sum(int(t) for _, _, t in spans)
    assert report["evaluated"] + report["missed"] + report["errors"] == rows, report
    accounted = rows + report["unaccounted"] + report["not_scheduled"]
    assert accounted == ticks, (
        f"{ticks} ticks per slot summed, the report accounts for {accounted}: {rows} evaluations"
        f" + {report['unaccounted']} unaccounted + {report['not_scheduled']} not scheduled"
    )
    # A tick nobody evaluated inside a run is a recorded miss with its reason.
    assert sum(report["missed_by_reason"].values()) == report["missed"], report


def assert_one_leader_at_a_time(ledger: Path) -> list[tuple[int, int, int]]:
    spans = executed_spans(ledger)
    for (r1, _, last), (r2, first, _) in itertools.pairwise(spans):
        assert last < first, f"runs {r1} and {r2} executed at the same time: {spans}"
    return spans


def assert_prefix(shorter: Path, longer: Path) -> dict[str, int]:
    """``shorter`` (the standby's copy, stopped first) is a prefix of ``longer`` row for row,
    same ids; the runs too, but for the last run's end, written after the standby stopped."""
    s_rows, l_rows = tables(shorter), tables(longer)
    sizes: dict[str, int] = {}
    for table in (
        "evaluations",
        "bets",
        "settlements",
        "instance_events",
        "handoffs",
        "failovers",
        "replication",
        "slot_seqs",
    ):
        if table not in s_rows:
            continue
        if table == "slot_seqs":  # one row per slot, updated: the copy is at most behind
            continue
        assert l_rows[table][: len(s_rows[table])] == s_rows[table], table
        sizes[table] = len(s_rows[table])
    runs_s, runs_l = s_rows["runs"], l_rows["runs"]
    assert runs_s[:-1] == runs_l[: len(runs_s) - 1], "runs"
    assert runs_s[-1][:2] == runs_l[len(runs_s) - 1][:2], "runs"
    return sizes


def check_ledger(ledger: Path, cadence_ms: int) -> dict[str, Any]:
    report = presence_json(ledger)
    assert_nothing_twice(ledger)
    assert_every_tick_counted_once(ledger, report)
    assert_one_leader_at_a_time(ledger)
    terms = [int(t) for (t,) in query(ledger, "SELECT term FROM runs ORDER BY id")]
    assert terms == sorted(set(terms)), f"a term led twice, or out of order: {terms}"
    assert report["cadence_ms"] == cadence_ms
    return report


# -- handoffs -----------------------------------------------------------------------------------


async def instances(addr: str) -> ctl.ListInstancesResponse:
    async with ControlClient(addr, timeout_s=5) as client:
        return await client.list_instances()


def actives(listing: ctl.ListInstancesResponse) -> list[ctl.InstanceStatus]:
    return [i for i in listing.instances if role_name(i.role) == "ACTIVE"]


async def both_hosts_attached(addr: str, timeout_s: float = 30) -> ctl.ListInstancesResponse:
    """Both hosts attached to the leader, one ACTIVE: a handoff can start."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            listing = await instances(addr)
            if len(listing.instances) == 2 and len(actives(listing)) == 1:
                return listing
        except ControlError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("both strategy hosts attached to the leader, one ACTIVE")
        await asyncio.sleep(0.05)


async def handoff_reaches(addr: str, handoff_id: str, phase: str) -> str:
    """The handoff's watch until it reports ``phase`` (or anything past it); the phase seen."""
    order = ("exporting", "importing", "shadowing", "baking", "draining")
    async with ControlClient(addr, timeout_s=5) as client:
        async with asyncio.timeout(20):
            async for status in client.watch(handoff_id):
                name = phase_name(status.phase)
                if name in order and order.index(name) >= order.index(phase):
                    return name
                assert name in order, f"the handoff ended {name} before {phase}: {status.message}"
    raise AssertionError(f"the handoff's watch ended before {phase}")


async def first_dispatch(ledger: Path, run: int, what: str) -> int:
    """When run ``run`` dispatched its first tick (once it recorded it)."""
    any_sql = "SELECT count(*) FROM evaluations WHERE run_id = ?"
    sql = "SELECT min(dispatched_ms) FROM evaluations WHERE run_id = ?"
    await wait_until(
        lambda: count(ledger, any_sql, run) > 0,
        timeout_s=30,
        what=f"the new leader's first tick ({what})",
    )
    return count(ledger, sql, run)


def tick_in_flight(ledger: Path, cadence_ms: int, killed_ms: int) -> bool:
    """Whether a dead leader's ledger shows the tick of the kill's cadence dispatched (its seqs
    reserved: the flush right after the dispatch) and not all of its evaluations written (they
    go with the release gate's write a few ms after the tick's first fill, or with the next
    tick's flush): the kill fell mid-tick."""
    rows = query(
        ledger,
        "SELECT e.seq, e.scheduled_ms, s.last_seq FROM evaluations e"
        " JOIN slot_seqs s ON s.slot_id = e.slot_id ORDER BY e.seq DESC LIMIT 1",
    )
    if not rows:
        return False
    ((seq, scheduled, reserved),) = rows
    reserved_tick = int(scheduled) + (int(reserved) - int(seq)) * cadence_ms
    boundary = killed_ms // cadence_ms * cadence_ms
    if reserved_tick != boundary:
        return False
    written = count(ledger, "SELECT count(*) FROM evaluations WHERE scheduled_ms = ?", boundary)
    return written < SLOTS


# -- the test: kills --------------------------------------------------------------------------


@dataclass
class Kill:
    n: int
    mode: str  # random | mid_tick | handoff
    killed: str
    term_before: int
    offset_ms: int  # the kill's moment after its tick's boundary
    elected_ms: int  # kill -> the standby announced leader
    first_dispatch_ms: int | None = None  # kill -> the new leader's first dispatch
    missed_ticks: int | None = None
    takeover_ms: int | None = None  # the report's: the old leader's next tick -> the new first
    handoff_phase: str = ""
    active_before: str = ""  # the pod ACTIVE before the kill
    active_after: str = ""  # the pod ACTIVE on the new leader
    state_lost: bool = False  # the new ACTIVE is a host that did not hold the strategy's state
    in_flight: bool = False  # the dead leader's ledger: its tick dispatched, nothing of it written
    notes: list[str] = field(default_factory=list)


@pytest.mark.timeout(360)  # 20 kills: ~2-3 min on 2 loaded cores
async def test_twenty_leader_kills(pair: Pair, tmp_path: Path) -> None:
    rng = random.Random(seed())
    pair.cadence_s = 1.0
    pair.lease = FAST
    cadence_ms = 1000
    cluster = Cluster(pair, (tmp_path / "a.sqlite", tmp_path / "b.sqlite"))
    await cluster.start()
    hosts = {
        "pod-blue": await pair.strategy("blue", V1, "pod-blue"),
        "pod-green": await pair.strategy("green", V2, "pod-green"),
    }
    modes = ["random", "mid_tick", "random", "mid_tick", "handoff"] * (KILLS // 5)
    rng.shuffle(modes)
    kills: list[Kill] = []
    started = time.monotonic()
    for n, mode in enumerate(modes, 1):
        old, new, term = await cluster.ready_to_swap()
        phase = ""
        paused: Service | None = None
        listing = await both_hosts_attached(pair.addr)
        (active,) = actives(listing)
        if mode == "handoff":
            target = next(i for i in listing.instances if role_name(i.role) != "ACTIVE")
            phase = HANDOFF_PHASES[sum(k.mode == "handoff" for k in kills) % len(HANDOFF_PHASES)]
            async with ControlClient(pair.addr, timeout_s=5) as client:
                started_handoff = await client.promote(
                    target.instance_id,
                    ctl.HandoffPolicy(shadow_ticks=1, bake_s=30, step_timeout_s=10),
                )
            phase = await handoff_reaches(pair.addr, started_handoff.handoff_id, phase)
        elif mode == "mid_tick":
            # Mid-tick: the tick dispatched (its seqs reserved and flushed), its answers not
            # back. They come within milliseconds (and are written a few ms after the first
            # fill, the release gate's write), too soon to hit by a timer: the ACTIVE's host is
            # paused just before the boundary and let go right after the kill.
            now = wall_ms()
            boundary = (now // cadence_ms + 1) * cadence_ms
            await asyncio.sleep(max(0, boundary - now - 30) / 1000)
            paused = hosts[active.pod_name]
            os.kill(paused.proc.pid, signal.SIGSTOP)
            await asyncio.sleep(max(0, boundary - wall_ms() + rng.uniform(20, 60)) / 1000)
        else:
            await asyncio.sleep(rng.uniform(0, 2 * pair.cadence_s))
        killed_ms = wall_ms()
        t0 = time.monotonic()
        try:
            assert await pair.procs.kill(old.service) == -9
        finally:
            if paused is not None:
                os.kill(paused.proc.pid, signal.SIGCONT)
        led = await new.service.wait_announced("role", "leader", timeout_s=20)
        elected_ms = round((time.monotonic() - t0) * 1000)
        assert int(led["term"]) == term + 1
        kill = Kill(
            n,
            mode,
            old.service.name,
            term,
            killed_ms % cadence_ms,
            elected_ms,
            handoff_phase=phase,
            active_before=active.pod_name,
        )
        kills.append(kill)
        kill.in_flight = tick_in_flight(old.ledger, cadence_ms, killed_ms)
        # The dead leader's pod comes back on its own volume: a new follower.
        cluster.leader = new
        cluster.standby = await cluster.start_replica(old.ledger)
        first = await first_dispatch(new.ledger, cluster.leader_run(), f"kill {n}")
        kill.first_dispatch_ms = first - killed_ms
        # Exactly one ACTIVE on the new leader. Which one holds the strategy's state: the one
        # ACTIVE before; in a handoff past its import, both (green imported it and shadows;
        # after the flip blue shadows green).
        (after,) = actives(await both_hosts_attached(pair.addr))
        kill.active_after = after.pod_name
        both_hold = mode == "handoff" and phase in ("shadowing", "baking")
        kill.state_lost = not both_hold and kill.active_after != kill.active_before
        print(
            f"kill {n:2d} {mode:8s} {kill.killed} (term {term}) at +{kill.offset_ms} ms in its"
            f" tick: elected after {elected_ms} ms, first dispatch after"
            f" {kill.first_dispatch_ms} ms; ACTIVE {kill.active_before} -> {kill.active_after}"
            f" {phase}{' in-flight' if kill.in_flight else ''}"
            f"{' STATE LOST' if kill.state_lost else ''}"
        )
    await cluster.leading_run_executes(2)
    await cluster.standby_caught_up()
    loop_s = time.monotonic() - started
    assert cluster.leader is not None
    assert cluster.standby is not None
    # The standby first (it must not take over), then the leader: its last tick written.
    assert await pair.procs.reap(cluster.standby.service) == 0
    assert await pair.procs.reap(cluster.leader.service) == 0
    leader_ledger, standby_ledger = cluster.leader.ledger, cluster.standby.ledger

    reports = {str(p.name): check_ledger(p, cadence_ms) for p in (leader_ledger, standby_ledger)}
    sizes = assert_prefix(standby_ledger, leader_ledger)
    report = reports[leader_ledger.name]
    failovers = report["gateway_failovers"]
    assert len(failovers) == KILLS, [f["term"] for f in failovers]
    assert report["gateway_handovers"] == [] or len(report["gateway_handovers"]) == 0
    by_term = {int(f["term"]): f for f in failovers}
    for kill in kills:
        f = by_term[kill.term_before + 1]
        kill.missed_ticks = int(f["missed_ticks"])
        kill.takeover_ms = f["takeover_ms"]
        assert f["result"] == "completed", f
        assert kill.elected_ms <= FAST.failover_bound_ms + LATE_MS, kill
        assert kill.first_dispatch_ms is not None
        # The ticks scheduled from the kill to the new leader's first dispatch, plus the one
        # the dead leader may have dispatched and never recorded.
        bound = math.ceil(kill.first_dispatch_ms / cadence_ms) + 1
        assert kill.missed_ticks <= bound, (kill, f)
    elected = sorted(k.elected_ms for k in kills)
    # The mid-tick kills really fell between a tick's dispatch and the write of its answers
    # (most of them: under load a dispatch can come later than the kill).
    mid_tick = [k for k in kills if k.mode == "mid_tick"]
    confirmed = [k.n for k in mid_tick if k.in_flight]
    print(f"mid-tick kills with the tick in flight (from the dead leader's ledger): {confirmed}")
    assert len(confirmed) * 2 >= len(mid_tick), [(k.n, k.offset_ms) for k in mid_tick]
    dispatch = sorted(k.first_dispatch_ms or 0 for k in kills)
    lost = [k.n for k in kills if k.state_lost]
    # A new leader waits for the pod that held the strategy's state (Router.prefer_pod).
    assert not lost, [(k.n, k.mode, k.active_before, k.active_after) for k in kills]
    summary = {
        "settings": asdict(FAST),
        "cadence_ms": cadence_ms,
        "kills": [asdict(k) for k in kills],
        "elected_ms": {"median": elected[len(elected) // 2], "max": elected[-1]},
        "first_dispatch_ms": {"median": dispatch[len(dispatch) // 2], "max": dispatch[-1]},
        # Known gap (test_a_failover_keeps_the_state_of_the_strategy, xfail): the new leader
        # makes ACTIVE whichever host attaches first.
        "active_changed_to_a_host_without_the_state": lost,
        "missed_ticks": sorted(k.missed_ticks or 0 for k in kills),
        "mid_tick_in_flight": confirmed,
        "loop_s": round(loop_s, 1),
        "prefix_rows": sizes,
        "presence": {
            name: {k: r[k] for k in ("runs", "evaluated", "missed", "unaccounted", "not_scheduled")}
            for name, r in reports.items()
        },
    }
    record("gateway-acceptance-kills.json", summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "kills"}, indent=2))


# -- the test: planned handovers ----------------------------------------------------------------


async def test_ten_planned_handovers_miss_nothing(pair: Pair, tmp_path: Path) -> None:
    """SIGTERM of the leader (it hands over at a tick boundary once its standby holds every
    commit), ``HANDOVERS`` times under a running clock; a new follower on the old leader's
    ledger each time. 0 missed in each, nothing executed twice, from both ledgers."""
    pair.cadence_s = 2.0  # the handover fits in the cadence after the old leader's last tick
    pair.lease = FAST
    cadence_ms = 2000
    cluster = Cluster(pair, (tmp_path / "a.sqlite", tmp_path / "b.sqlite"))
    await cluster.start()
    await pair.strategy("blue", V1, "pod-blue")
    stops: list[dict[str, Any]] = []
    for n in range(1, HANDOVERS + 1):
        old, new, term = await cluster.ready_to_swap()
        t0 = time.monotonic()
        assert await pair.procs.reap(old.service) == 0
        stopped_ms = round((time.monotonic() - t0) * 1000)
        led = await new.service.wait_announced("role", "leader", timeout_s=20)
        assert int(led["term"]) == term + 1
        cluster.leader = new
        cluster.standby = await cluster.start_replica(old.ledger)
        stops.append({"n": n, "term": term + 1, "stop_ms": stopped_ms})
        print(
            f"handover {n:2d}: {old.service.name} -> {new.service.name} (term {term + 1}),"
            f" the old leader's stop took {stopped_ms} ms"
        )
    await cluster.leading_run_executes(2)
    await cluster.standby_caught_up()
    assert cluster.leader is not None
    assert cluster.standby is not None
    assert await pair.procs.reap(cluster.standby.service) == 0
    assert await pair.procs.reap(cluster.leader.service) == 0
    leader_ledger, standby_ledger = cluster.leader.ledger, cluster.standby.ledger
    reports = {p.name: check_ledger(p, cadence_ms) for p in (leader_ledger, standby_ledger)}
    assert_prefix(standby_ledger, leader_ledger)
    for name, report in reports.items():
        handovers = report["gateway_handovers"]
        assert report["gateway_failovers"] == [], (name, report["gateway_failovers"])
        assert len(handovers) >= HANDOVERS - (1 if name == standby_ledger.name else 0), name
        for h in handovers:
            assert (h["missed"], h["missed_ticks"], h["result"]) == (0, 0, "completed"), h
            assert 0 <= h["pause_ms"] < cadence_ms, h
        assert report["missed"] == 0, (name, report["missed_by_reason"])
        assert (report["unaccounted"], report["not_scheduled"]) == (0, 0), name
    pauses = sorted(int(h["pause_ms"]) for h in reports[leader_ledger.name]["gateway_handovers"])
    summary = {
        "settings": asdict(FAST),
        "cadence_ms": cadence_ms,
        "handovers": len(pauses),
        "pause_ms": {"median": pauses[len(pauses) // 2], "max": pauses[-1], "all": pauses},
        "stop_ms": sorted(s["stop_ms"] for s in stops),
    }
    record("gateway-acceptance-handovers.json", summary)
    print(json.dumps(summary, indent=2))


# -- the test: a leader cut off from the lock ---------------------------------------------------


async def test_a_leader_cut_off_from_the_lease_stops_before_the_standby_starts(
    pair: Pair, tmp_path: Path
) -> None:
    """The leader's lease calls fail from a moment on (its path swapped for an unopenable one):
    it stops executing at its renew deadline, exits 3, and its last executed evaluation is
    strictly before the standby's first, read from the two ledgers."""
    pair.lease = FAST
    shared, void = tmp_path / "lease-dir", tmp_path / "void"
    shared.mkdir()
    (void / "lease.lock").mkdir(parents=True)  # a lock that cannot be opened: calls fail
    view = tmp_path / "a-view"
    view.symlink_to(shared)
    a_ledger, b_ledger = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    a = await pair.replica("gw-a", view / "lease", own_ledger=a_ledger)
    await a.wait_announced("role", "leader", timeout_s=20)
    b = await pair.replica("gw-b", shared / "lease", own_ledger=b_ledger)
    await pair.strategy("blue", V1, "pod-blue")
    await executed_ticks(a_ledger, 3, "three ticks led by gw-a")
    await wait_until(
        lambda: metrics(b).get("baton_replication_caught_up") == 1.0,
        timeout_s=30,
        what="gw-b caught up",
    )
    cut = time.monotonic()
    tmp_link = tmp_path / "a-view.new"
    tmp_link.symlink_to(void)
    os.replace(tmp_link, view)  # atomic: from now on every lease call of gw-a fails
    led = await b.wait_announced("role", "leader", timeout_s=20)
    elected_ms = round((time.monotonic() - cut) * 1000)
    code = await a.proc.wait()
    exited_ms = round((time.monotonic() - cut) * 1000)
    assert code == 3, "a deposed replica exits 3 (its supervisor starts a new follower)"
    assert led["term"] == 2
    assert elected_ms <= FAST.lease_duration_ms + FAST.retry_period_ms + LATE_MS
    await executed_ticks(b_ledger, 3, "three ticks led by gw-b")
    assert await pair.procs.reap(b) == 0
    # From the ledgers: gw-a's own (its last run is its term) and gw-b's.
    (a_spans,) = [s for s in executed_spans(a_ledger) if s[0] == 1]
    b_spans = executed_spans(b_ledger)
    old_last = a_spans[2]
    new_first = next(first for run, first, _ in b_spans if run == 2)
    print(
        f"\ncut off: gw-b elected {elected_ms} ms after the cut, gw-a exited 3 after"
        f" {exited_ms} ms; gw-a's last execution {new_first - old_last} ms before gw-b's first"
    )
    assert old_last < new_first, (a_spans, b_spans)
    # gw-b's copy holds gw-a's run as gw-a wrote it, up to what gw-a wrote before its end.
    for path in (a_ledger, b_ledger):
        assert_nothing_twice(path)
        assert_one_leader_at_a_time(path)
    # And from the two processes' logs (one machine, one wall clock): gw-a stopped leading
    # before gw-b was elected, by about lease - renew deadline.
    (deposed,) = log_entries(a, "gateway replica stopped leading")
    (elected,) = log_entries(b, "gateway replica elected leader")
    assert deposed["reason"] == "renew deadline passed"
    stop_margin_ms = log_ms(elected) - log_ms(deposed)
    print(f"gw-a stopped leading {stop_margin_ms} ms before gw-b was elected")
    assert stop_margin_ms > 0
    record(
        "gateway-acceptance-cut-off.json",
        {
            "elected_ms": elected_ms,
            "exited_ms": exited_ms,
            "stop_margin_ms": stop_margin_ms,
            "execution_margin_ms": new_first - old_last,
        },
    )


# -- the test: the standby killed and restarted --------------------------------------------------


async def test_a_standby_killed_and_restarted_catches_up_and_leads_without_bootstrap(
    pair: Pair, tmp_path: Path
) -> None:
    """SIGKILL of the standby; the leader goes on; the standby started again on its own (now
    stale) ledger catches up by the stream (no snapshot: its ledger is a prefix), is a candidate
    again, and a leader kill then makes it lead (``leader.bootstrap`` off)."""
    pair.lease = FAST
    a_ledger, b_ledger = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    a = await pair.replica("gw-a", own_ledger=a_ledger)
    await a.wait_announced("role", "leader", timeout_s=20)
    b = await pair.replica("gw-b", own_ledger=b_ledger)
    await pair.strategy("blue", V1, "pod-blue")
    await executed_ticks(a_ledger, 2, "two ticks led by gw-a")
    await wait_until(
        lambda: metrics(b).get("baton_replication_caught_up") == 1.0,
        timeout_s=30,
        what="gw-b caught up",
    )
    assert await pair.procs.kill(b) == -9
    await executed_ticks(a_ledger, 3, "three more ticks led by gw-a, gw-b down")
    behind = count(b_ledger, "SELECT max(position) FROM replication")
    head = count(a_ledger, "SELECT max(position) FROM replication")
    assert behind < head, "the killed standby's ledger is stale"
    t0 = time.monotonic()
    b2 = await pair.replica("gw-b2", own_ledger=b_ledger)
    assert b2.ready["role"] == "follower"
    await wait_until(
        lambda: metrics(b2).get("baton_replication_caught_up") == 1.0,
        timeout_s=30,
        what="gw-b2 caught up",
    )
    caught_up_ms = round((time.monotonic() - t0) * 1000)
    m = metrics(b2)
    snapshots = {k: v for k, v in m.items() if k.startswith("baton_replication_snapshots_total")}
    assert not any(snapshots.values()), f"a stale prefix is caught up by the stream: {snapshots}"
    assert count(b_ledger, "SELECT max(position) FROM replication") > behind
    assert await pair.procs.kill(a) == -9
    led = await b2.wait_announced("role", "leader", timeout_s=20)
    assert led["term"] == 2
    await executed_ticks(b_ledger, 2, "two ticks led by gw-b2")
    assert await pair.procs.reap(b2) == 0
    assert_nothing_twice(b_ledger)
    assert_one_leader_at_a_time(b_ledger)
    report = presence_json(b_ledger)
    assert_every_tick_counted_once(b_ledger, report)
    assert [f["term"] for f in report["gateway_failovers"]] == [2]
    print(
        f"\nthe restarted standby caught up {caught_up_ms} ms after its start ({head - behind}"
        " batches behind), then led term 2"
    )
    record(
        "gateway-acceptance-standby-restart.json",
        {"caught_up_ms": caught_up_ms, "batches_behind": head - behind},
    )


# -- which host a new leader makes ACTIVE --------------------------------------------------------


async def blue_active_green_idle(
    pair: Pair, tmp_path: Path
) -> tuple[Service, Service, Service, Service, Path]:
    """gw-a leads, gw-b follows (caught up); blue (v1) ACTIVE with momentum's state, green (v2)
    an idle STANDBY with an empty one."""
    pair.lease = FAST
    a_ledger, b_ledger = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    a = await pair.replica("gw-a", own_ledger=a_ledger)
    await a.wait_announced("role", "leader", timeout_s=20)
    b = await pair.replica("gw-b", own_ledger=b_ledger)
    blue = await pair.strategy("blue", V1, "pod-blue")
    await executed_ticks(a_ledger, 1, "blue ACTIVE")
    green = await pair.strategy("green", V2, "pod-green")
    (active,) = actives(await both_hosts_attached(pair.addr))
    assert active.pod_name == "pod-blue"
    await executed_ticks(a_ledger, 2, "two ticks of blue's")
    await wait_until(
        lambda: metrics(b).get("baton_replication_caught_up") == 1.0,
        timeout_s=30,
        what="gw-b caught up",
    )
    return a, b, blue, green, b_ledger


async def test_a_failover_keeps_the_state_of_the_strategy(pair: Pair, tmp_path: Path) -> None:
    """The leader is killed while blue is slow to come back (SIGSTOPped until green has
    attached to the new leader): the new leader waits for blue, the pod its ledger last made
    ACTIVE, instead of going on with green's empty state (``Router.prefer_pod``)."""
    a, b, blue, _, b_ledger = await blue_active_green_idle(pair, tmp_path)
    os.kill(blue.proc.pid, signal.SIGSTOP)
    try:
        assert await pair.procs.kill(a) == -9
        await b.wait_announced("role", "leader", timeout_s=20)

        async def green_waits() -> bool:
            try:
                listing = await instances(pair.addr)
            except ControlError:
                return False
            pods = {i.pod_name: role_name(i.role) for i in listing.instances}
            return pods == {"pod-green": "STANDBY"}

        deadline = time.monotonic() + 15
        while not await green_waits():
            assert time.monotonic() < deadline, "green attached to gw-b, waiting as STANDBY"
            await asyncio.sleep(0.05)
    finally:
        os.kill(blue.proc.pid, signal.SIGCONT)
    await executed_ticks(b_ledger, 1, "a tick led by gw-b")
    (after,) = actives(await both_hosts_attached(pair.addr))
    assert after.pod_name == "pod-blue"
    assert not log_entries(b, "the pod that held the strategy's state did not attach")


async def test_a_failover_whose_active_host_died_too_goes_on_after_the_wait(
    pair: Pair, tmp_path: Path
) -> None:
    """Blue dies with the leader: the new leader waits its bound for it
    (``prefer_wait_ms``), then green goes on with its own state, and says so."""
    a, b, blue, _, b_ledger = await blue_active_green_idle(pair, tmp_path)
    assert await pair.procs.kill(blue) == -9
    assert await pair.procs.kill(a) == -9
    await b.wait_announced("role", "leader", timeout_s=20)
    elected = time.monotonic()
    await executed_ticks(b_ledger, 1, "a tick led by gw-b, green ACTIVE")
    waited_s = time.monotonic() - elected
    wait_s = prefer_wait_ms(int(pair.cadence_s * 1000)) / 1000
    print(f"\nthe new leader went on without blue {waited_s:.1f} s after its election")
    assert waited_s >= wait_s - 0.5, "green was made ACTIVE before the wait ended"
    (warning,) = log_entries(b, "the pod that held the strategy's state did not attach")
    assert warning["waited_for"] == "pod-blue"
    listing = await instances(pair.addr)
    assert [i.pod_name for i in actives(listing)] == ["pod-green"]
