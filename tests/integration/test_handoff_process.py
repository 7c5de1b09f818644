"""Zero-gap handoffs with real processes: simulator, gateway, strategy hosts, control client.

Every assertion about presence is read back from the gateway's SQLite ledger (G1, G2), state
continuity from the handoff record (G3), the pause from the gateway (G4)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

from baton.common import Service
from baton.control import ControlClient, phase_name
from baton.v1 import control_pb2 as ctl
from tests.procs import (
    CADENCE_S,
    SLOTS,
    StartGateway,
    StartStrategy,
    assert_every_scheduled_evaluation_accounted,
    query,
    run_ticks,
)

V1 = "baton.strategy.examples.momentum_v1:MomentumV1"
V2 = "baton.strategy.examples.momentum_v2:MomentumV2"
FAST = ctl.HandoffPolicy(shadow_ticks=2, bake_s=0.6, step_timeout_s=10)


async def handoff(
    gateway: Service, green: Service, policy: ctl.HandoffPolicy = FAST
) -> ctl.HandoffStatus:
    async with ControlClient(gateway.ready["grpc_addr"]) as client:
        started = await client.promote(green.ready["instance_id"], policy)
        return await asyncio.wait_for(client.wait(started.handoff_id), 30)


def executed_versions(ledger: Path) -> list[tuple[int, str, int]]:
    """(seq, version, epoch) of BTC/5m's executed evaluations, in seq order."""
    return [
        (seq, version, epoch)
        for seq, version, epoch in query(
            ledger,
            "SELECT seq, version, epoch FROM evaluations WHERE slot_id = 'BTC/5m' ORDER BY seq",
        )
    ]


async def test_v1_to_v2_handoff_migrates_state_and_misses_nothing(
    start_gateway: StartGateway, start_strategy: StartStrategy, ledger: Path
) -> None:
    gateway = await start_gateway()
    blue = await start_strategy(gateway, V1)
    await run_ticks(ledger, 4)
    green = await start_strategy(gateway, V2)
    assert green.ready["role"] == "STANDBY"

    status = await handoff(gateway, green)

    assert phase_name(status.phase) == "completed", status.message
    assert status.missed == 0
    assert status.from_version == "v1"
    assert status.to_version == "v2"
    assert status.epoch_after == status.epoch_before + 1
    # G3: green imported exactly the bytes blue exported; v2 migrated them to its schema.
    assert status.export_digest.startswith("sha256:")
    assert status.import_digest == status.export_digest
    assert status.migrated_digest
    assert status.migrated_digest != status.export_digest
    assert status.state_bytes > 1000
    # G4: green's first tick went out before its deadline (the ms figures are bench/'s job).
    assert 0 <= status.pause_ms < CADENCE_S * 1000
    steps = [s.name for s in status.steps]
    for name in ("export", "import", "shadow", "flip", "first green tick", "drain", "completed"):
        assert name in steps
    # Blue drained and exited on its own.
    assert await asyncio.wait_for(blue.proc.wait(), 10) == 0

    await run_ticks(ledger, len(executed_versions(ledger)) + 3)
    assert await gateway.stop() == 0

    # G1/G2 from the ledger: every (slot, seq) exactly once, all executed, v1 then v2.
    assert_every_scheduled_evaluation_accounted(ledger)
    outcomes = query(ledger, "SELECT outcome, count(*) FROM evaluations GROUP BY outcome")
    assert outcomes == [("executed", outcomes[0][1])]
    timeline = executed_versions(ledger)
    versions = [v for _, v, _ in timeline]
    flip = versions.index("v2")
    assert set(versions[:flip]) == {"v1"}
    assert set(versions[flip:]) == {"v2"}
    assert {e for _, v, e in timeline if v == "v2"} == {status.epoch_after}
    # v2 decided on v1's migrated state: its first ACTIVE answers never warm up from nothing.
    first_green = query(
        ledger,
        "SELECT reason FROM evaluations WHERE version = 'v2' AND seq = ?",
        timeline[flip][0],
    )
    assert len(first_green) == SLOTS
    assert not any("warming up" in reason for (reason,) in first_green)
    # Shadow decisions were recorded, never executed.
    shadow = query(ledger, "SELECT count(*) FROM dropped_decisions WHERE reason = 'shadow'")
    assert shadow[0][0] >= 2 * SLOTS


async def test_many_consecutive_handoffs_alternating_versions(
    start_gateway: StartGateway, start_strategy: StartStrategy, ledger: Path
) -> None:
    gateway = await start_gateway()
    blue = await start_strategy(gateway, V1)
    await run_ticks(ledger, 2)
    statuses = []
    for i in range(6):
        green = await start_strategy(gateway, V2 if i % 2 == 0 else V1)
        status = await handoff(gateway, green)
        statuses.append(status)
        assert phase_name(status.phase) == "completed", status.message
        assert await asyncio.wait_for(blue.proc.wait(), 10) == 0
        blue = green
    assert await gateway.stop() == 0

    assert [s.missed for s in statuses] == [0] * 6
    assert all(s.import_digest == s.export_digest for s in statuses)
    assert [s.epoch_after for s in statuses] == list(range(2, 8))
    assert_every_scheduled_evaluation_accounted(ledger)
    assert query(ledger, "SELECT count(*) FROM evaluations WHERE outcome != 'executed'") == [(0,)]


async def _baton(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "baton",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_handoff_by_hand_with_the_cli(
    start_gateway: StartGateway, start_strategy: StartStrategy, ledger: Path
) -> None:
    gateway = await start_gateway()
    await start_strategy(gateway, V1)
    green = await start_strategy(gateway, V2)
    address = gateway.ready["grpc_addr"]

    code, out, _ = await _baton("instances", "--gateway", address)
    assert code == 0
    assert green.ready["instance_id"] in out
    assert "STANDBY" in out
    assert "ACTIVE" in out

    code, out, _ = await _baton("instances", "--gateway", address, "--json")
    assert code == 0
    listing = json.loads(out)  # stdout is exactly one JSON document
    roles = {i["instance_id"]: i["role"] for i in listing["instances"]}
    assert roles[green.ready["instance_id"]] == "STANDBY"
    assert listing["active_instance_id"] in roles

    code, out, err = await _baton(
        "handoff",
        "--gateway",
        address,
        "--to",
        green.ready["instance_id"],
        "--bake-s",
        "0.5",
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert (result["result"], result["from_version"], result["to_version"]) == (
        "completed",
        "v1",
        "v2",
    )
    assert result["missed"] == 0
    # The default policy shadows one whole live tick: every slot's decision compared.
    assert result["compared"] >= SLOTS
    assert "flip" in err  # each step is printed as it happens, on stderr
    step_lines = err.strip().splitlines()
    assert not any(line.rstrip().endswith(":") for line in step_lines), err
    assert any(line.endswith(" export sent") for line in step_lines), err

    # Without --json: the summary line, every figure measured (a completed handoff has a pause).
    third = await start_strategy(gateway, V1)
    code, out, err = await _baton(
        "handoff", "--gateway", address, "--to", third.ready["instance_id"], "--bake-s", "0.5"
    )
    assert code == 0, err
    (summary,) = out.splitlines()
    assert summary.startswith("completed: v2 -> v1, pause "), summary
    compared = re.search(r", compared (\d+) \(\d+ diverged\), missed 0,", summary)
    assert compared is not None, summary
    assert int(compared.group(1)) >= SLOTS

    code, _, err = await _baton("handoff", "--gateway", address, "--to", "i99-nobody")
    assert code == 2
    assert "NOT_FOUND" in err
