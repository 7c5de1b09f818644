"""Handoff faults with real processes. Each ends with blue ACTIVE (abort or rollback) or green
ACTIVE (a fault after the point of no return), and 0 missed evaluations in the ledger (G5).

Faults are placed by the handoff's own progress (watching its phases), and by stopping a
process (SIGSTOP) where "in the middle of a step" must be held open: never by sleeping."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest

from baton.common import Service
from baton.control import ControlClient, ControlError, phase_name
from baton.v1 import control_pb2 as ctl
from tests.integration.handoff_helpers import (
    GREEN,
    HOLD,
    StartPair,
    active_version,
    finish_and_check,
    policy,
    until_phase,
)
from tests.integration.handoff_helpers import start_pair as start_pair
from tests.procs import StartStrategy, query


@pytest.fixture
async def pair(start_pair: StartPair) -> tuple[Service, Service, Service]:
    return await start_pair(HOLD)


async def test_green_dies_before_import_aborts_with_blue_untouched(
    pair: tuple[Service, Service, Service], ledger: Path
) -> None:
    gateway, _, green = pair
    green.proc.send_signal(signal.SIGSTOP)  # it will never answer the import
    async with ControlClient(gateway.ready["grpc_addr"]) as client:
        started = await client.promote(green.ready["instance_id"], policy())
        await until_phase(client, started.handoff_id, "importing")
        green.proc.kill()
        final = await asyncio.wait_for(client.wait(started.handoff_id), 20)
        assert phase_name(final.phase) == "aborted"
        assert "green went away" in final.message
        assert final.epoch_after == 0
        assert await active_version(client) == ("v1", "ACTIVE")
    await finish_and_check(gateway, ledger)


async def test_green_dies_while_shadowing_aborts_with_blue_untouched(
    pair: tuple[Service, Service, Service], ledger: Path
) -> None:
    gateway, _, green = pair
    async with ControlClient(gateway.ready["grpc_addr"]) as client:
        started = await client.promote(green.ready["instance_id"], policy(shadow_ticks=10_000))
        await until_phase(client, started.handoff_id, "shadowing")
        green.proc.kill()
        final = await asyncio.wait_for(client.wait(started.handoff_id), 20)
        assert phase_name(final.phase) == "aborted"
        assert final.import_digest == final.export_digest
        assert await active_version(client) == ("v1", "ACTIVE")
    await finish_and_check(gateway, ledger)


async def test_green_dies_right_after_the_flip_rolls_back_to_blue(
    pair: tuple[Service, Service, Service], ledger: Path
) -> None:
    gateway, blue, green = pair
    async with ControlClient(gateway.ready["grpc_addr"]) as client:
        started = await client.promote(green.ready["instance_id"], policy(bake_s=60))
        baking = await until_phase(client, started.handoff_id, "baking")
        assert await active_version(client) == ("v2", "ACTIVE")
        green.proc.kill()
        final = await asyncio.wait_for(client.wait(started.handoff_id), 20)
        assert phase_name(final.phase) == "rolled_back"
        assert "green went away" in final.message
        assert await active_version(client) == ("v1", "ACTIVE")
        listing = await client.list_instances()
        assert listing.epoch == baking.epoch_after + 1
    assert blue.proc.returncode is None
    await finish_and_check(gateway, ledger)


async def test_green_import_raising_aborts(start_pair: StartPair, ledger: Path) -> None:
    gateway, _, green = await start_pair(json.dumps({"fail_import": True}))
    async with ControlClient(gateway.ready["grpc_addr"]) as client:
        started = await client.promote(green.ready["instance_id"], policy())
        final = await asyncio.wait_for(client.wait(started.handoff_id), 20)
        assert phase_name(final.phase) == "aborted"
        assert "import failed" in final.message
        assert "FaultyError" in final.message
        assert await active_version(client) == ("v1", "ACTIVE")
    await finish_and_check(gateway, ledger)


async def test_green_answering_with_a_stale_epoch_is_fenced_and_rolled_back(
    start_pair: StartPair, ledger: Path
) -> None:
    gateway, _, green = await start_pair(json.dumps({"wrong_epoch": True}))
    async with ControlClient(gateway.ready["grpc_addr"]) as client:
        started = await client.promote(green.ready["instance_id"], policy(bake_s=60))
        final = await asyncio.wait_for(client.wait(started.handoff_id), 20)
        assert phase_name(final.phase) == "rolled_back", final.message
        assert "epoch" in final.message
        assert await active_version(client) == ("v1", "ACTIVE")
    await finish_and_check(gateway, ledger)
    # Green's fenced answers were recorded and never executed.
    fenced = query(
        ledger,
        "SELECT count(*) FROM dropped_decisions WHERE epoch > 1000 AND reason != 'shadow'",
    )
    assert fenced[0][0] >= 1
    executed_by_green = query(
        ledger, "SELECT count(*) FROM evaluations WHERE version = 'v2' AND epoch > 1000"
    )
    assert executed_by_green == [(0,)]


async def test_blue_dying_during_drain_still_completes(
    pair: tuple[Service, Service, Service], ledger: Path
) -> None:
    gateway, blue, green = pair
    async with ControlClient(gateway.ready["grpc_addr"]) as client:
        started = await client.promote(green.ready["instance_id"], policy(bake_s=0.5))
        await until_phase(client, started.handoff_id, "baking")
        blue.proc.send_signal(signal.SIGSTOP)  # it cannot confirm the drain
        await until_phase(client, started.handoff_id, "draining")
        blue.proc.kill()
        final = await asyncio.wait_for(client.wait(started.handoff_id), 20)
        assert phase_name(final.phase) == "completed"
        assert await active_version(client) == ("v2", "ACTIVE")
    await finish_and_check(gateway, ledger)


async def test_control_client_disconnecting_mid_handoff_does_not_stop_it(
    pair: tuple[Service, Service, Service], ledger: Path
) -> None:
    gateway, _, green = pair
    client = ControlClient(gateway.ready["grpc_addr"])
    started = await client.promote(green.ready["instance_id"], policy(shadow_ticks=4))
    await until_phase(client, started.handoff_id, "shadowing")
    await client.close()  # the operator goes away in the middle
    async with ControlClient(gateway.ready["grpc_addr"]) as again:
        final = await asyncio.wait_for(again.wait(started.handoff_id), 20)
        assert phase_name(final.phase) == "completed"
        assert await active_version(again) == ("v2", "ACTIVE")
    await finish_and_check(gateway, ledger)


async def test_two_racing_promotions_end_with_exactly_one_winner(
    pair: tuple[Service, Service, Service],
    start_strategy: StartStrategy,
    ledger: Path,
) -> None:
    gateway, _, green_a = pair
    green_b = await start_strategy(gateway, GREEN, HOLD)
    address = gateway.ready["grpc_addr"]
    async with ControlClient(address) as one, ControlClient(address) as two:
        results = await asyncio.gather(
            one.promote(green_a.ready["instance_id"], policy(shadow_ticks=3)),
            two.promote(green_b.ready["instance_id"], policy(shadow_ticks=3)),
            return_exceptions=True,
        )
        finals = []
        for result in results:
            if isinstance(result, ControlError):
                assert result.code == "FAILED_PRECONDITION"
                continue
            assert isinstance(result, ctl.HandoffStatus)
            finals.append(await asyncio.wait_for(one.wait(result.handoff_id), 20))
        phases = sorted(phase_name(f.phase) for f in finals)
        assert phases.count("completed") == 1, [(phase_name(f.phase), f.message) for f in finals]
        for f in finals:
            if phase_name(f.phase) == "aborted":
                assert "superseded" in f.message
        winner = next(f for f in finals if phase_name(f.phase) == "completed")
        listing = await one.list_instances()
        assert listing.active_instance_id == winner.to_instance
    await finish_and_check(gateway, ledger)


async def test_shadow_divergence_past_the_policy_limit_aborts_before_the_flip(
    start_pair: StartPair, ledger: Path
) -> None:
    # Green would bet UP everywhere blue holds: every shadow decision differs.
    gateway, _, green = await start_pair(json.dumps({"action": "UP"}))
    async with ControlClient(gateway.ready["grpc_addr"]) as client:
        started = await client.promote(
            green.ready["instance_id"], policy(shadow_ticks=20, max_divergence=3)
        )
        final = await asyncio.wait_for(client.wait(started.handoff_id), 20)
        assert phase_name(final.phase) == "aborted"
        assert "divergences" in final.message
        assert final.divergences == 4
        assert final.shadow_compared >= 4
        assert await active_version(client) == ("v1", "ACTIVE")
    await finish_and_check(gateway, ledger)
    # Blue's HOLDs were the only decisions executed: green never placed a bet.
    assert query(ledger, "SELECT count(*) FROM bets") == [(0,)]
