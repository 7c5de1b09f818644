"""Ledger replication on real SQLite files over real gRPC on loopback (docs/gateway-standby.md,
"Replication"): a leader's ``Ledger`` and ``Replicator`` served on a port, a ``Follower`` with
a ledger file of its own (in this process, or as a process of its own that is SIGKILLed).

Every test ends by comparing the two files table by table, row ids included."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from baton.gateway.core.replication import BacklogSettings, FollowerSettings, Position
from baton.gateway.follower import Follower
from baton.gateway.ledger import Ledger, LedgerReader, ReplicationRefused
from baton.gateway.metrics import ReplicationMetrics
from baton.gateway.replication import Replicator, add_replication_servicer
from tests.ledger_workload import slot_ids, start_run, tables, tick

SLOTS = slot_ids(16)
FAST = FollowerSettings(connect_timeout_s=1.0, backoff_initial_s=0.02, backoff_max_s=0.2)
WAIT_S = 10.0  # any wait on loopback, bounded; a pass takes milliseconds
REPO = Path(__file__).resolve().parents[2]


class Leader:
    """A leader's ledger, its replicator and the ReplicationService on a loopback port."""

    def __init__(self, path: Path, *, term: int, backlog: BacklogSettings | None = None) -> None:
        self.registry = CollectorRegistry()
        self.ledger = Ledger(path, term=term)
        self.replicator = Replicator(
            self.ledger, backlog, metrics=ReplicationMetrics(self.registry, "leader")
        )
        self.server = grpc.aio.server()
        add_replication_servicer(self.server, self.replicator)
        self.port = 0

    async def start(self, port: int = 0) -> str:
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        await self.server.start()
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        await self.server.stop(grace=None)
        self.ledger.close()


@pytest.fixture
async def leader(tmp_path: Path) -> AsyncIterator[Leader]:
    lead = Leader(tmp_path / "leader.sqlite", term=1)
    await lead.start()
    yield lead
    await lead.stop()


@contextlib.asynccontextmanager
async def following(
    path: Path, leader: Leader, replica: str = "gw-b", registry: CollectorRegistry | None = None
) -> AsyncIterator[Follower]:
    metrics = ReplicationMetrics(registry, "follower") if registry is not None else None
    follower = Follower(path, f"127.0.0.1:{leader.port}", replica, settings=FAST, metrics=metrics)
    task = asyncio.create_task(follower.run())
    try:
        yield follower
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        follower.close()


async def caught_up(follower: Follower, leader: Leader) -> None:
    head = leader.replicator.head
    assert await follower.wait_position(head, WAIT_S), (follower.position, head)
    assert await leader.replicator.wait_acked(head, WAIT_S), leader.replicator.acked_position


def assert_identical(a: Path, b: Path) -> dict[str, int]:
    ta, tb = tables(a), tables(b)
    assert ta.keys() == tb.keys()
    for name in ta:
        assert ta[name] == tb[name], f"table {name} differs"
    return {name: len(rows) for name, rows in ta.items()}


# -- the copy -------------------------------------------------------------------------------------


async def test_the_followers_ledger_is_the_leaders_row_for_row(
    leader: Leader, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    led = leader.ledger
    start_run(led, SLOTS)
    async with following(tmp_path / "follower.sqlite", leader, registry=registry) as follower:
        assert await follower.wait_caught_up(WAIT_S)
        for n in range(1, 41):
            tick(led, n, SLOTS)
            if n == 20:  # the book changes too: written at once, each its own commit
                led.retire_strategy("momentum", retired_ms=1)
                start_run(led, SLOTS, started_ms=2)
            if n % 10 == 0:  # the follower applies while the leader writes
                await caught_up(follower, leader)
        await caught_up(follower, leader)
        assert follower.caught_up
        assert follower.lag == 0
        assert follower.snapshots_installed == leader.replicator.snapshots_sent == 0
    counts = assert_identical(led.path, tmp_path / "follower.sqlite")
    # Every table written, so the comparison covers each statement.
    for table in ("runs", "strategies", "evaluations", "bets", "settlements", "candles",
                  "dropped_decisions", "instance_events", "connection_events", "handoffs",
                  "checkpoints", "failovers", "slot_seqs", "replication"):  # fmt: skip
        assert counts[table] > 0, table
    assert counts["runs"] == 2
    assert counts["checkpoints"] == 2
    with LedgerReader(tmp_path / "follower.sqlite") as r:
        assert [run.term for run in r.runs()] == [1, 1]
        assert r.last_commit() == Position(leader.replicator.head, 1)
    head = leader.replicator.head
    assert registry.get_sample_value("baton_replication_position", {"role": "follower"}) == head
    assert registry.get_sample_value("baton_replication_lag_batches") == 0
    assert registry.get_sample_value("baton_replication_caught_up") == 1
    assert registry.get_sample_value("baton_replication_apply_seconds_count") == head
    lead = leader.registry
    assert lead.get_sample_value("baton_replication_position", {"role": "leader"}) == head
    assert lead.get_sample_value("baton_replication_acked_position") == head


async def test_a_follower_stopped_mid_stream_resumes_from_its_position(
    leader: Leader, tmp_path: Path
) -> None:
    path = tmp_path / "follower.sqlite"
    led = leader.ledger
    start_run(led, SLOTS)
    async with following(path, leader) as follower:
        await caught_up(follower, leader)
        for n in range(1, 21):
            tick(led, n, SLOTS)
        # Stopped (its task cancelled) with the stream half through these 20 batches.
        assert await follower.wait_position(leader.replicator.head - 15, WAIT_S)
        stopped_at = follower.position
    assert stopped_at < leader.replicator.head
    for n in range(21, 31):  # written while it is away
        tick(led, n, SLOTS)
    async with following(path, leader) as follower:
        assert follower.position == stopped_at
        await caught_up(follower, leader)
        assert follower.snapshots_installed == 0
    assert leader.replicator.snapshots_sent == 0
    assert_identical(led.path, path)


async def test_a_follower_reconnects_after_a_leader_restart(tmp_path: Path) -> None:
    path, leader_path = tmp_path / "follower.sqlite", tmp_path / "leader.sqlite"
    first = Leader(leader_path, term=1)
    await first.start()
    start_run(first.ledger, SLOTS)
    async with following(path, first) as follower:
        for n in range(1, 6):
            tick(first.ledger, n, SLOTS)
        await caught_up(follower, first)
        await first.stop()  # the stream breaks; the follower retries
        second = Leader(leader_path, term=2)
        await second.start(first.port)
        try:
            start_run(second.ledger, SLOTS, started_ms=3)
            for n in range(6, 11):
                tick(second.ledger, n, SLOTS)
            await caught_up(follower, second)
            # It was at the restarted leader's head: no snapshot, only the new batches.
            assert follower.snapshots_installed == 0
            assert follower.connects >= 2
        finally:
            await second.stop()
    assert_identical(leader_path, path)


# -- divergence -----------------------------------------------------------------------------------


async def test_a_follower_with_a_tail_the_leader_never_had_gets_a_snapshot(
    tmp_path: Path,
) -> None:
    """The follower was the leader of term 1: it wrote positions 1..6 and only 1..5 reached
    the new leader (term 2), which wrote its own 6.. since. Same position, other term."""
    path, leader_path = tmp_path / "follower.sqlite", tmp_path / "leader.sqlite"
    old = Ledger(path, term=1)
    shared: list[Any] = []
    old.on_commit = shared.append
    start_run(old, SLOTS)
    for n in range(1, 4):
        tick(old, n, SLOTS)
    new = Ledger(leader_path)
    for batch in shared:
        new.apply(batch)
    tick(old, 4, SLOTS)  # never replicated: the divergent tail
    old.close()
    new.close()
    lead = Leader(leader_path, term=2)
    addr = await lead.start()
    try:
        for n in range(4, 9):  # term 2's own tick 4 onwards
            tick(lead.ledger, n, SLOTS)
        with LedgerReader(path) as r:
            tail = r.last_commit()
        assert tail.term == 1
        assert lead.ledger.term_at(tail.position) == 2
        async with following(path, lead) as follower:
            await caught_up(follower, lead)
            assert follower.snapshots_installed == 1
            assert follower.kept_files == [
                path.with_name(f"{path.name}.diverged-{tail.term}-{tail.position}")
            ]
            for n in range(9, 12):  # batches follow the snapshot
                tick(lead.ledger, n, SLOTS)
            await caught_up(follower, lead)
        assert lead.replicator.snapshots_sent == 1
        assert_identical(leader_path, path)
        with LedgerReader(follower.kept_files[0]) as kept:  # the old file, for inspection
            assert kept.last_commit() == tail
        assert addr.endswith(str(lead.port))
    finally:
        await lead.stop()


async def test_a_follower_behind_what_the_leader_holds_gets_a_snapshot(tmp_path: Path) -> None:
    lead = Leader(tmp_path / "leader.sqlite", term=1, backlog=BacklogSettings(max_batches=3))
    await lead.start()
    path = tmp_path / "follower.sqlite"
    try:
        start_run(lead.ledger, SLOTS)
        for n in range(1, 11):
            tick(lead.ledger, n, SLOTS)
        async with following(path, lead) as follower:
            await caught_up(follower, lead)
            assert follower.snapshots_installed == 1
            assert follower.kept_files == []
        assert_identical(lead.ledger.path, path)
        assert not path.with_name(path.name + ".snapshot-tmp").exists()
    finally:
        await lead.stop()


def test_the_backlog_is_bounded_by_count_and_by_bytes(tmp_path: Path) -> None:
    with Ledger(tmp_path / "by-count.sqlite", term=1) as led:
        rep = Replicator(led, BacklogSettings(max_batches=5))
        start_run(led, SLOTS)
        for n in range(1, 11):
            tick(led, n, SLOTS)
        assert rep.held == (rep.head - 4, rep.head)
    with Ledger(tmp_path / "by-bytes.sqlite", term=1) as led:
        rep = Replicator(led, BacklogSettings(max_bytes=30_000))
        start_run(led, SLOTS)
        for n in range(1, 11):  # ~6-9 KB a batch at 16 slots
            tick(led, n, SLOTS)
        held = rep.held
        assert held is not None
        assert held[1] == rep.head
        assert 2 <= held[1] - held[0] + 1 <= 5


async def test_a_follower_that_knows_a_newer_term_refuses_a_stale_leader(
    leader: Leader, tmp_path: Path
) -> None:
    path = tmp_path / "follower.sqlite"
    with Ledger(path, term=5) as newer:  # it followed (or led) a term 5 already
        start_run(newer, SLOTS)
    before = tables(path)
    start_run(leader.ledger, SLOTS)
    async with following(path, leader) as follower:
        deadline = time.monotonic() + WAIT_S
        while follower.last_error is None or "stale" not in follower.last_error:
            assert time.monotonic() < deadline, follower.last_error
            await asyncio.sleep(0.02)
        assert follower.last_error.startswith("FAILED_PRECONDITION")
        assert not follower.caught_up
    assert tables(path) == before


async def test_batches_out_of_order_or_of_an_older_term_are_refused_with_nothing_written(
    tmp_path: Path,
) -> None:
    batches: list[Any] = []
    led = Ledger(tmp_path / "leader.sqlite", term=2, on_commit=batches.append)
    start_run(led, SLOTS)
    for n in range(1, 4):
        tick(led, n, SLOTS)
    follower = Ledger(tmp_path / "follower.sqlite")
    for batch in batches[:2]:
        follower.apply(batch)
    before = tables(follower.path)
    gap = r"position 4 does not follow the ledger's last position 2 \(expected 3\)"
    with pytest.raises(ReplicationRefused, match=gap):
        follower.apply(batches[3])
    older = type(batches[2])(3, 1, 0, batches[2].writes)
    with pytest.raises(ReplicationRefused, match=r"term 1, older than the newest applied \(2 at"):
        follower.apply(older)
    assert tables(follower.path) == before
    assert follower.last_commit == Position(2, 2)
    for batch in batches[2:]:
        follower.apply(batch)
    led.close()
    follower.close()
    assert_identical(led.path, follower.path)


# -- acknowledgements, a second follower ----------------------------------------------------------


async def test_wait_acked_resolves_on_the_ack_and_times_out_cleanly(
    leader: Leader, tmp_path: Path
) -> None:
    led, rep = leader.ledger, leader.replicator
    start_run(led, SLOTS)
    async with following(tmp_path / "follower.sqlite", leader) as follower:
        await caught_up(follower, leader)
        tick(led, 1, SLOTS)
        waited = asyncio.create_task(rep.wait_acked(rep.head, WAIT_S))
        assert await waited
        assert rep.acked_position == rep.head
    tick(led, 2, SLOTS)  # nobody follows now
    started = time.monotonic()
    assert not await rep.wait_acked(rep.head, 0.2)
    assert 0.2 <= time.monotonic() - started < 2.0
    assert rep._waiters == []


async def test_a_second_follower_replaces_the_first(leader: Leader, tmp_path: Path) -> None:
    start_run(leader.ledger, SLOTS)
    async with following(tmp_path / "a.sqlite", leader, "gw-a") as first:
        assert await first.wait_caught_up(WAIT_S)
        async with following(tmp_path / "b.sqlite", leader, "gw-b") as second:
            deadline = time.monotonic() + WAIT_S
            while not (first.last_error or "").startswith("ABORTED"):
                assert time.monotonic() < deadline, first.last_error
                await asyncio.sleep(0.01)
            assert "replaced by a newer follower (gw-b)" in (first.last_error or "")
            assert await second.wait_caught_up(WAIT_S)


async def test_a_leader_that_stops_replicating_ends_the_stream(
    leader: Leader, tmp_path: Path
) -> None:
    start_run(leader.ledger, SLOTS)
    async with following(tmp_path / "follower.sqlite", leader) as follower:
        await caught_up(follower, leader)
        leader.replicator.close("deposed")
        deadline = time.monotonic() + WAIT_S
        while "stopped replicating: deposed" not in (follower.last_error or ""):
            assert time.monotonic() < deadline, follower.last_error
            await asyncio.sleep(0.01)
        assert (follower.last_error or "").startswith("UNAVAILABLE")
        tick(leader.ledger, 1, SLOTS)  # no longer replicated, no longer held
        assert leader.replicator.head == follower.position
        assert leader.replicator.held is not None
        assert leader.replicator.held[1] == follower.position
        assert follower.caught_up  # a leader that stepped down leaves its standby eligible


# -- a follower process, SIGKILLed --------------------------------------------------------------


async def _line(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    async with asyncio.timeout(WAIT_S):
        raw = await proc.stdout.readline()
    assert raw, "the follower process exited"
    line: dict[str, Any] = json.loads(raw)
    return line


async def _until_position(proc: asyncio.subprocess.Process, position: int) -> dict[str, Any]:
    while True:
        line = await _line(proc)
        if line.get("position", -1) >= position and line.get("caught_up", True):
            return line


async def _spawn(path: Path, leader: Leader) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.follower_proc", "--ledger", str(path),
        "--leader", f"127.0.0.1:{leader.port}", "--replica", "gw-b",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


async def test_a_sigkilled_follower_process_catches_up_when_started_again(
    leader: Leader, tmp_path: Path
) -> None:
    path, led = tmp_path / "follower.sqlite", leader.ledger
    start_run(led, SLOTS)
    proc = await _spawn(path, leader)
    try:
        assert (await _line(proc))["event"] == "started"
        for n in range(1, 11):
            tick(led, n, SLOTS)
        await _until_position(proc, leader.replicator.head)
        for n in range(11, 31):  # the kill lands while these stream
            tick(led, n, SLOTS)
        killed_at = (await _until_position(proc, leader.replicator.head - 15))["position"]
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        for n in range(31, 36):
            tick(led, n, SLOTS)
        proc = await _spawn(path, leader)
        started = await _line(proc)
        # Each batch is its own transaction: what it had applied when killed is what it has
        # (more than it last said, if it applied some between its line and the kill).
        assert killed_at <= started["position"] <= leader.replicator.head
        line = await _until_position(proc, leader.replicator.head)
        assert line["snapshots"] == 0
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
    assert leader.replicator.snapshots_sent == 0
    assert_identical(led.path, path)
