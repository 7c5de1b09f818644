"""The gateway's ``/metrics`` with real processes: scraped over HTTP while the clock runs, and
checked against the ledger the same gateway writes.

A consistent read without stopping anything: the evaluation counters move once per tick, right
after the ledger flush, so between two ticks they equal the ledger's rows. A scrape, then the
ledger, then a second scrape that all agree were taken between the same two flushes; the test
waits (bounded) for such a read.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from baton.common import ProcessFailed, Service, spawn_baton
from baton.control import ControlClient, phase_name
from baton.gateway.core.records import MISSED_OUTCOMES
from baton.gateway.metrics import GatewayMetrics, MetricsServer
from baton.v1 import control_pb2 as ctl
from tests.procs import (
    SLOTS,
    StartGateway,
    StartStrategy,
    count,
    query,
    run_ticks,
    wait_until,
)
from tests.scrape import Samples, sample, scrape

V2 = "baton.strategy.examples.momentum_v2:MomentumV2"
FAST = ctl.HandoffPolicy(shadow_ticks=2, bake_s=0.6, step_timeout_s=10)
MISSED = {o.value for o in MISSED_OUTCOMES}


def evaluation_counts(samples: Samples) -> Counter[tuple[str, str]]:
    """``baton_evaluations_total`` as {(slot, outcome): n}, zeros left out."""
    out: Counter[tuple[str, str]] = Counter()
    for (name, labels), v in samples.items():
        if name == "baton_evaluations_total" and v:
            d = dict(labels)
            out[(d["slot"], d["outcome"])] = int(v)
    return out


def ledger_counts(ledger: Path) -> Counter[tuple[str, str]]:
    rows = query(ledger, "SELECT slot_id, outcome, count(*) FROM evaluations GROUP BY 1, 2")
    return Counter({(str(slot), str(outcome)): int(n) for slot, outcome, n in rows})


async def consistent_read(addr: str, ledger: Path) -> tuple[Samples, Counter[tuple[str, str]]]:
    """A scrape and the ledger rows taken between the same two flushes (see the module doc)."""
    found: list[tuple[Samples, Counter[tuple[str, str]]]] = []

    def agree() -> bool:
        before = scrape(addr)
        rows = ledger_counts(ledger)
        after = scrape(addr)
        if evaluation_counts(before) == rows == evaluation_counts(after):
            found.append((before, rows))
            return True
        return False

    await wait_until(agree, timeout_s=20, what="a scrape that agrees with the ledger")
    return found[-1]


async def handoff(gateway: Service, green: Service) -> ctl.HandoffStatus:
    async with ControlClient(gateway.ready["grpc_addr"]) as client:
        started = await client.promote(green.ready["instance_id"], FAST)
        return await asyncio.wait_for(client.wait(started.handoff_id), 30)


async def test_metrics_agree_with_the_ledger_while_the_clock_runs(
    start_gateway: StartGateway, start_strategy: StartStrategy, ledger: Path
) -> None:
    gateway = await start_gateway()
    addr = gateway.ready["metrics_addr"]
    host, _, port = addr.rpartition(":")
    assert host == "127.0.0.1"
    assert int(port) > 0, "port 0 is announced as the bound port"
    await start_strategy(gateway)
    await run_ticks(ledger, 4)
    green = await start_strategy(gateway, V2)
    status = await handoff(gateway, green)
    assert phase_name(status.phase) == "completed", status.message
    await run_ticks(ledger, 8)

    samples, rows = await consistent_read(addr, ledger)

    # Evaluations: per slot and outcome as in the ledger (the read above), every slot answered.
    executed = {slot: n for (slot, outcome), n in rows.items() if outcome == "executed"}
    assert len(executed) == SLOTS, rows
    assert all(n > 0 for n in executed.values()), rows
    for slot in executed:
        missed = sum(n for (s, outcome), n in rows.items() if s == slot and outcome in MISSED)
        assert sample(samples, "baton_evaluations_missed_total", slot=slot) == missed
    # One latency per executed decision, committed with it.
    latencies = sample(samples, "baton_decision_latency_seconds_count")
    assert latencies == sum(executed.values())
    mean = sample(samples, "baton_decision_latency_seconds_sum") / latencies
    assert 0 < mean < 1.0, "loopback answers arrive well within the 1 s cadence"
    # Every tick in the ledger was dispatched (and its lag observed) before it was flushed.
    ticks = count(ledger, "SELECT count(DISTINCT scheduled_ms) FROM evaluations")
    assert sample(samples, "baton_tick_dispatch_lag_seconds_count") >= ticks > 0
    assert sample(samples, "baton_ledger_write_seconds_count") > 0

    # The handoff, as the ledger recorded it.
    (pause_ms,) = query(ledger, "SELECT pause_ms FROM handoffs WHERE result = 'completed'")[0]
    assert sample(samples, "baton_handoffs_total", result="completed") == 1
    assert sample(samples, "baton_handoffs_total", result="aborted") == 0
    assert sample(samples, "baton_handoff_pause_seconds_count") == 1
    assert sample(samples, "baton_handoff_pause_seconds_sum") == pytest.approx(pause_ms / 1000)

    # Membership: v2 ACTIVE under epoch 2, v1 drained and gone (or going).
    # (per strategy of the book: the one strategy here is momentum)
    assert sample(samples, "baton_instances", strategy="momentum", role="ACTIVE") == 1
    assert sample(samples, "baton_instances", strategy="momentum", role="SHADOW") == 0
    assert sample(samples, "baton_epoch", strategy="momentum") == 2
    assert sample(samples, "baton_slots") == SLOTS

    # The exchange feed: one connection, up, klines received, nothing malformed.
    assert sample(samples, "baton_exchange_connected", connection="0") == 1
    assert sample(samples, "baton_exchange_messages_total", kind="kline") > 0
    assert sample(samples, "baton_exchange_messages_malformed_total") == 0
    # No *_created series from the gateway process (half a scrape's size).
    assert not [name for name, _ in samples if name.endswith("_created")]


def _sim_fault(sim: Service, path: str) -> dict[str, object]:
    with urllib.request.urlopen(sim.ready["rest_url"] + path, timeout=5) as resp:
        result: dict[str, object] = json.loads(resp.read())
        return result


async def test_a_malformed_exchange_frame_is_counted(
    sim: Service, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway()
    addr = gateway.ready["metrics_addr"]
    await wait_until(
        lambda: sample(scrape(addr), "baton_exchange_messages_total", kind="kline") > 0,
        timeout_s=20,
        what="klines from the simulator",
    )
    assert sample(scrape(addr), "baton_exchange_messages_malformed_total") == 0
    _sim_fault(sim, "/_sim/faults/malformed?count=3")
    await wait_until(
        lambda: sample(scrape(addr), "baton_exchange_messages_malformed_total") >= 3,
        timeout_s=20,
        what="3 malformed frames counted",
    )
    samples = scrape(addr)
    assert sample(samples, "baton_exchange_messages_malformed_total") == 3
    assert sample(samples, "baton_exchange_messages_total", kind="malformed") == 3
    # Skipped, not fatal: the connection stays up.
    assert sample(samples, "baton_exchange_connected", connection="0") == 1
    assert sample(samples, "baton_exchange_reconnects_total") == 0


async def test_bad_metrics_listen_fails_at_start_naming_the_setting(log_dir: Path) -> None:
    with pytest.raises(ProcessFailed) as info:
        await spawn_baton(
            "gateway-bad-metrics",
            ["gateway"],
            log_dir=log_dir,
            env={"BATON_METRICS__LISTEN": "localhost"},
            ready_timeout_s=20,
        )
    message = str(info.value)
    assert "exited with 2" in message
    assert "invalid setting metrics.listen" in message


async def test_metrics_port_in_use_fails_at_start_naming_the_setting(
    start_gateway: StartGateway,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(ProcessFailed) as info:
            await start_gateway(BATON_METRICS__LISTEN=listen)
    assert f"cannot serve metrics on {listen} (metrics.listen)" in str(info.value)


async def test_metrics_off_serves_nothing(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(BATON_METRICS__LISTEN="off")
    assert gateway.ready["metrics_addr"] is None


async def test_metrics_server_serves_one_registry_and_stops() -> None:
    """In process: the endpoint serves its own registry, not the library's global one."""
    metrics = GatewayMetrics(["BTC/5m"], CollectorRegistry())
    server = MetricsServer(metrics.registry)
    addr = server.start("127.0.0.1:0")
    try:
        samples = await asyncio.to_thread(scrape, addr)
        assert sample(samples, "baton_slots") == 1
        assert not [name for name, _ in samples if name.startswith("python_")]
    finally:
        await server.stop()
    with pytest.raises(OSError, match="Connection refused"):
        await asyncio.to_thread(scrape, addr)
