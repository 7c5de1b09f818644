"""The data plane end to end with real processes: simulator -> gateway -> strategy -> decisions
-> bets -> settlements, all read back from the gateway's SQLite ledger."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from baton.common import ProcessFailed, Service, spawn_baton
from baton.gateway.core.records import EvalOutcome
from baton.gateway.ledger import LedgerReader
from tests.procs import (
    FAULTY,
    SLOTS,
    StartGateway,
    StartStrategy,
    assert_every_scheduled_evaluation_accounted,
    contiguous_candles,
    count,
    evaluations,
    gateway_env,
    query,
    run_ticks,
    sim_fault,
    wait_until,
)


async def test_simulator_to_settlements_every_evaluation_accounted(
    start_gateway: StartGateway, start_strategy: StartStrategy, ledger: Path
) -> None:
    gateway = await start_gateway()
    await start_strategy(gateway)
    await run_ticks(ledger, 24)
    # Bets settle when their window's candle closes (every 0.5 s real at 600x).
    await wait_until(
        lambda: count(ledger, "SELECT count(*) FROM settlements") > 0,
        timeout_s=15,
        what="a settled bet",
    )
    assert await gateway.stop() == 0

    assert_every_scheduled_evaluation_accounted(ledger)
    with LedgerReader(ledger) as reader:
        evals = reader.evaluations()
        bets = reader.bets()
        settlements = reader.settlements()
        instances = reader.instance_events()
    outcomes = {e.outcome for e in evals}
    assert outcomes == {EvalOutcome.EXECUTED}, f"unexpected outcomes {outcomes}"
    assert all(e.decided_ms is not None and e.decided_ms < e.deadline_ms for e in evals)
    assert all(e.version == "v1" and e.epoch == 1 for e in evals)
    # Every bet comes from an executed UP/DOWN decision, at most one per slot-window.
    by_bet = {e.bet_id: e for e in evals if e.bet_id}
    assert {b.fill.bet_id for b in bets} == set(by_bet)
    assert all(by_bet[b.fill.bet_id].action in ("UP", "DOWN") for b in bets)
    windows = [(b.fill.slot_id, b.fill.window_start_ms) for b in bets]
    assert len(windows) == len(set(windows))
    # Settlements follow the venue's rule: UP iff close >= open.
    placed = {b.fill.bet_id: b.fill for b in bets}
    for s in settlements:
        assert s.bet_id in placed
        assert s.outcome.value == ("UP" if s.close_price >= s.open_price else "DOWN")
        assert s.won == (s.outcome == placed[s.bet_id].side)
    assert [e.event for e in instances][:1] == ["attached"]


async def test_strategy_exception_is_recorded_and_the_clock_keeps_time(
    start_gateway: StartGateway, start_strategy: StartStrategy, ledger: Path
) -> None:
    gateway = await start_gateway()
    await start_strategy(gateway, FAULTY, json.dumps({"raise_every": 3}))
    await run_ticks(ledger, 9)
    assert await gateway.stop() == 0

    assert_every_scheduled_evaluation_accounted(ledger)
    rows = query(ledger, "SELECT seq, outcome, error FROM evaluations")
    for seq, outcome, error in rows:
        if seq % 3 == 0:
            assert outcome == EvalOutcome.ERROR.value
            assert "FaultyError" in error
            assert "injected failure" in error
        else:
            assert outcome == EvalOutcome.EXECUTED.value, (seq, outcome, error)


async def test_strategy_timeout_is_recorded_late_answers_dropped_and_the_clock_keeps_time(
    start_gateway: StartGateway, start_strategy: StartStrategy, ledger: Path
) -> None:
    gateway = await start_gateway()
    # Every 6th tick the strategy spends 16 x 80 ms > one cadence (1 s) evaluating.
    await start_strategy(gateway, FAULTY, json.dumps({"delay_every": 6, "delay_ms": 80}))
    await run_ticks(ledger, 12)
    assert await gateway.stop() == 0

    assert_every_scheduled_evaluation_accounted(ledger)
    rows = query(ledger, "SELECT seq, outcome FROM evaluations")
    timeouts = {seq for seq, outcome in rows if outcome == EvalOutcome.TIMEOUT.value}
    assert timeouts, "the slow ticks must time out"
    # Only the slow tick and the ones queued behind it can be late; then the strategy catches
    # up and the clock, which never waited, finds it answering in time again.
    assert all(seq % 6 in (0, 1, 2) for seq in timeouts), sorted(timeouts)
    assert {outcome for seq, outcome in rows if seq % 6 in (4, 5)} == {"executed"}
    late = query(ledger, "SELECT DISTINCT reason FROM dropped_decisions")
    assert ("late",) in late


async def test_invalid_config_fails_naming_the_setting(log_dir: Path) -> None:
    with pytest.raises(ProcessFailed) as info:
        await spawn_baton(
            "gateway-bad",
            ["gateway"],
            log_dir=log_dir,
            env={"BATON_GATEWAY__CADENCE_S": "-1"},
            ready_timeout_s=20,
        )
    message = str(info.value)
    assert "exited with 2" in message
    assert "gateway.cadence_s" in message


@pytest.mark.parametrize(
    ("taken", "flags", "setting"),
    [
        pytest.param("grpc_addr", ["--listen"], "gateway.listen", id="grpc-port-in-use"),
        pytest.param("metrics_addr", ["--metrics-listen"], "metrics.listen", id="metrics-in-use"),
    ],
)
async def test_a_second_gateway_on_a_port_in_use_exits_saying_which(
    start_gateway: StartGateway,
    sim: Service,
    tmp_path: Path,
    log_dir: Path,
    taken: str,
    flags: list[str],
    setting: str,
) -> None:
    """Two gateways on one machine: the second must not start on the first's port. (gRPC's
    default SO_REUSEPORT let it, and the kernel then split the strategy hosts between them.)"""
    first = await start_gateway()
    address = first.ready[taken]
    env = gateway_env(sim, tmp_path / "second.sqlite")
    with pytest.raises(ProcessFailed) as info:
        await spawn_baton(
            "gateway-second",
            ["gateway", *flags, address],
            log_dir=log_dir,
            env=env,
            ready_timeout_s=20,
        )
    message = str(info.value)
    assert "exited with 1" in message, message
    assert f"baton gateway: cannot listen on {address} ({setting})" in message or (
        f"baton gateway: cannot serve metrics on {address} ({setting})" in message
    ), message
    assert "Traceback" not in message, message


async def test_exchange_drop_is_backfilled_without_a_missing_candle(
    sim: Service, start_gateway: StartGateway, start_strategy: StartStrategy, ledger: Path
) -> None:
    gateway = await start_gateway()
    await start_strategy(gateway)
    await run_ticks(ledger, 4)

    def reconnects() -> int:
        return count(ledger, "SELECT count(*) FROM connection_events WHERE event = 'connected'")

    before = reconnects()
    sim_fault(sim, "/_sim/faults/drop")
    await wait_until(lambda: reconnects() > before, timeout_s=15, what="a reconnect")
    # Enough time for several 5m candles (0.5 s each) to close across the reconnect.
    target = evaluations(ledger) + 8 * SLOTS
    await wait_until(lambda: evaluations(ledger) >= target, timeout_s=20, what="8 more ticks")
    assert await gateway.stop() == 0

    per_stream = contiguous_candles(ledger)
    assert len(per_stream) == SLOTS
    assert all(n >= 2 for (_, tf), n in per_stream.items() if tf == "5m")
    assert_every_scheduled_evaluation_accounted(ledger)
    assert count(ledger, "SELECT count(*) FROM evaluations WHERE outcome != 'executed'") == 0


async def test_malformed_frames_are_skipped_and_the_clock_keeps_time(
    sim: Service, start_gateway: StartGateway, start_strategy: StartStrategy, ledger: Path
) -> None:
    gateway = await start_gateway()
    await start_strategy(gateway)
    await run_ticks(ledger, 3)
    sim_fault(sim, "/_sim/faults/malformed?count=20")
    target = evaluations(ledger) + 6 * SLOTS
    await wait_until(lambda: evaluations(ledger) >= target, timeout_s=20, what="6 more ticks")
    assert await gateway.stop() == 0

    skipped = [
        json.loads(line)
        for line in gateway.log_path.read_text().splitlines()
        if "malformed exchange message skipped" in line
    ]
    assert len(skipped) >= 1
    assert all(entry["why"] for entry in skipped)
    assert_every_scheduled_evaluation_accounted(ledger)
    contiguous_candles(ledger)


async def test_demo_json_report_with_a_live_handoff(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "baton",
        "demo",
        "--duration",
        "6",
        "--cadence-s",
        "0.5",
        "--time-scale",
        "600",
        "--handoffs",
        "1",
        "--bake-s",
        "0.5",
        "--json",
        "--workdir",
        str(tmp_path / "demo"),
    ]
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(90):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    for key in (
        "slots",
        "scheduled",
        "evaluated",
        "missed",
        "max_gap_ms",
        "bets",
        "settled",
        "win_rate",
        "handoffs",
    ):
        assert key in report
    assert report["slots"] == SLOTS
    assert report["pricing"] == "random_walk"  # the venue's default model priced the bets
    assert report["missed"] == 0
    assert report["scheduled"] >= 5 * SLOTS
    assert report["evaluated"] == report["scheduled"]
    (handoff,) = report["handoffs"]
    assert (handoff["from_version"], handoff["to_version"], handoff["result"]) == (
        "v1",
        "v2",
        "completed",
    )
    assert handoff["missed"] == 0
    assert handoff["state_bytes"] > 0
    assert 0 <= handoff["pause_ms"] < 1000
    # The demo's default policy: green shadowed one whole live tick of every slot before the
    # flip, each of its decisions compared with blue's.
    assert handoff["compared"] >= SLOTS
    assert 0 <= handoff["divergences"] <= handoff["compared"]


async def test_demo_with_two_strategies_reports_each_and_hands_off_one(tmp_path: Path) -> None:
    """Issue 16's acceptance: ``baton demo --strategies 2 --handoffs N --json``: per_strategy
    (momentum and reversion) with 0 missed each, the handoffs momentum's, the pricing named."""
    command = [
        sys.executable, "-m", "baton", "demo", "--strategies", "2", "--duration", "8",
        "--cadence-s", "0.5", "--time-scale", "600", "--handoffs", "2", "--bake-s", "0.5",
        "--json", "--workdir", str(tmp_path / "demo"),
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["pricing"] == "random_walk"
    rows = {row["name"]: row for row in report["per_strategy"]}
    assert list(rows) == ["momentum", "reversion"]
    for row in rows.values():
        for key in ("scheduled", "evaluated", "missed", "stale", "bets", "pnl"):
            assert key in row
        assert row["missed"] == 0, row
        assert row["scheduled"] >= 5 * SLOTS
        assert row["evaluated"] == row["scheduled"]
    assert report["scheduled"] == sum(row["scheduled"] for row in rows.values())
    assert report["bets"] == sum(row["bets"] for row in rows.values())
    assert [h["strategy"] for h in report["handoffs"]] == ["momentum", "momentum"]
    assert [h["result"] for h in report["handoffs"]] == ["completed", "completed"]
    # The ledger keeps the strategy and the pricing model on every bet.
    ledger = tmp_path / "demo" / "ledger.sqlite"
    bets = query(ledger, "SELECT strategy, pricing, count(*) FROM bets GROUP BY 1, 2")
    assert {(s, p) for s, p, _ in bets} <= {
        ("momentum", "random_walk"),
        ("reversion", "random_walk"),
    }
