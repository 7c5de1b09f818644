"""A live gateway whose disk is full: ``RLIMIT_FSIZE`` set to 0 on the running process (with
``prlimit``, from the test) makes every write to a file fail (EFBIG; Python ignores SIGXFSZ),
the way a full disk does, deterministically and for this process only. Its log goes to a pipe,
so the errors stay visible. Then the limit is lifted, as when space is freed. Throughout, the
control API (``ListInstances``, and ``baton instances`` as a process) reports the ledger's
health: ok, then failing with its error, then ok again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import sqlite3
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from baton.common import Service
from baton.control import ControlClient
from tests.procs import (
    CADENCE_S,
    SLOTS,
    StartStrategy,
    assert_every_scheduled_evaluation_accounted,
    evaluations,
    gateway_env,
    not_executed,
    query,
    run_ticks,
    wait_until,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="prlimit(2) on another process is Linux-only"
)


def metric(addr: str, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


@contextlib.asynccontextmanager
async def gateway_logging_to_a_pipe(
    sim: Service, ledger: Path, log_dir: Path
) -> AsyncIterator[tuple[Service, list[str]]]:
    """``baton gateway`` whose stderr (its log) is a pipe the test copies, not a file: a file
    would be under the same size limit."""
    os.makedirs(log_dir, exist_ok=True)
    log_path = log_dir / "gateway.log"
    env = gateway_env(sim, ledger)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "baton", "gateway",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, **env},
    )  # fmt: skip
    lines: list[str] = []

    async def copy() -> None:
        assert proc.stderr is not None
        with log_path.open("a") as out:
            async for raw in proc.stderr:
                line = raw.decode(errors="replace")
                lines.append(line)
                out.write(line)
                out.flush()

    copier = asyncio.create_task(copy())
    service = Service("gateway", proc, log_path)
    try:
        await service.wait_ready(30)
        yield service, lines
    finally:
        await service.stop()
        await copier


async def baton_instances(address: str) -> str:
    """``baton instances`` as a process: what it prints."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "baton", "instances", "--gateway", address,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    return out.decode()


def set_file_size_limit(pid: int, soft: int) -> None:
    _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))


async def test_full_disk_keeps_the_clock_and_loses_nothing_once_space_is_back(
    sim: Service, start_strategy: StartStrategy, ledger: Path, log_dir: Path
) -> None:
    async with (
        gateway_logging_to_a_pipe(sim, ledger, log_dir) as (gateway, log),
        ControlClient(gateway.ready["grpc_addr"]) as control,
    ):
        metrics = gateway.ready["metrics_addr"]
        await start_strategy(gateway)
        await run_ticks(ledger, 3)
        before = query(ledger, "SELECT * FROM evaluations ORDER BY id")
        executed = metric(metrics, "baton_evaluations_total", outcome="executed")
        healthy = (await control.list_instances()).ledger
        assert (healthy.ok, healthy.failed_flushes, healthy.pending_rows) == (True, 0, 0)
        assert (healthy.discarded_rows, healthy.last_error) == (0, "")
        assert healthy.last_ok_flush_ms > 0

        set_file_size_limit(gateway.pid, 0)  # the disk is full
        # One failed write per tick, plus at most one early write (a tick's answers, a held
        # fill: skipped once a write failed): 5 failures span 4 ticks at least.
        await wait_until(
            lambda: metric(metrics, "baton_ledger_write_errors_total") >= 5,
            timeout_s=10 * CADENCE_S,
            what="5 failed flushes",
        )
        # The clock kept time and the strategy kept answering; the rows wait in memory.
        assert metric(metrics, "baton_evaluations_total", outcome="executed") >= executed + (
            3 * SLOTS
        )
        assert metric(metrics, "baton_ledger_pending_rows") >= 3 * SLOTS
        assert metric(metrics, "baton_ledger_rows_discarded_total") == 0
        assert evaluations(ledger) <= len(before) + SLOTS  # at most a flush in flight landed
        assert any("ledger flush failed" in line for line in log)
        # The control API says so: the operator and `baton instances` see it, not only /metrics.
        failing = (await control.list_instances()).ledger
        assert not failing.ok
        assert failing.failed_flushes >= 4
        assert failing.pending_rows >= 3 * SLOTS
        assert failing.discarded_rows == 0
        assert "failed" in failing.last_error
        assert failing.last_ok_flush_ms >= healthy.last_ok_flush_ms
        printed = await baton_instances(gateway.ready["grpc_addr"])
        assert "ledger: FAILING (" in printed, printed

        set_file_size_limit(gateway.pid, resource.RLIM_INFINITY)  # space is back
        await wait_until(
            lambda: (
                metric(metrics, "baton_ledger_pending_rows") < SLOTS
                and evaluations(ledger) >= len(before) + 8 * SLOTS
            ),
            timeout_s=10 * CADENCE_S,
            what="the kept rows written",
        )
        assert any("ledger writes recovered" in line for line in log)
        recovered = (await control.list_instances()).ledger
        assert (recovered.ok, recovered.failed_flushes, recovered.pending_rows) == (True, 0, 0)
        assert recovered.last_ok_flush_ms > failing.last_ok_flush_ms
        assert recovered.last_error != ""  # kept as a record of the outage
        assert "ledger: ok (" in await baton_instances(gateway.ready["grpc_addr"])
        assert await gateway.stop() == 0

    conn = sqlite3.connect(ledger)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
    # Everything written before the disk filled up is intact, and nothing went missing since.
    assert query(ledger, "SELECT * FROM evaluations ORDER BY id")[: len(before)] == before
    assert_every_scheduled_evaluation_accounted(ledger)
    assert not_executed(ledger) == []
