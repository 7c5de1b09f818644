"""What the handoff fault tests share (test_handoff_faults.py, test_handoff_matrix.py): a
gateway with blue ACTIVE and green attached, the handoff's own progress as the step hook, and
the final ledger checks.

``start_pair`` is a fixture: a test module takes it with
``from handoff_helpers import start_pair as start_pair`` (the alias marks it as used)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from pathlib import Path
from typing import Protocol

import pytest

from baton.common import Service
from baton.control import TERMINAL_PHASES, ControlClient, phase_name, role_name
from baton.v1 import control_pb2 as ctl
from tests.procs import (
    CADENCE_S,
    SLOTS,
    StartGateway,
    StartStrategy,
    assert_every_scheduled_evaluation_accounted,
    evaluations,
    query,
    run_ticks,
    wait_until,
)

BLUE = "baton.strategy.examples.faulty:Faulty"
GREEN = "baton.strategy.examples.faulty:FaultyV2"
HOLD = json.dumps({"action": "HOLD"})


def policy(**kw: object) -> ctl.HandoffPolicy:
    base: dict[str, object] = {"shadow_ticks": 1, "bake_s": 0.5, "step_timeout_s": 10}
    base.update(kw)
    return ctl.HandoffPolicy(**base)  # type: ignore[arg-type]


async def until_phase(client: ControlClient, handoff_id: str, phase: str) -> ctl.HandoffStatus:
    """The step hook: the status once the handoff reports ``phase`` (fails if it ends first)."""

    async def watch() -> ctl.HandoffStatus:
        async for status in client.watch(handoff_id):
            if phase_name(status.phase) == phase:
                return status
            assert status.phase not in TERMINAL_PHASES, (
                f"ended {phase_name(status.phase)} before {phase}: {status.message}"
            )
        raise AssertionError(f"watch ended before {phase}")

    return await asyncio.wait_for(watch(), 20)


async def active_version(client: ControlClient) -> tuple[str, str]:
    listing = await client.list_instances()
    active = next(i for i in listing.instances if i.instance_id == listing.active_instance_id)
    return active.version, role_name(active.role)


async def finish_and_check(
    gateway: Service,
    ledger: Path,
    ticks_after: int = 3,
    *,
    missed_from_ms: int | None = None,
    missed_until_ms: int | None = None,
) -> None:
    """Let the clock run a little longer, stop the gateway, prove nothing was missed.

    ``missed_from_ms``: nobody is ACTIVE any more (the only instance holding the current state
    was killed): evaluations scheduled from then on may be missed, as ``no_active`` (or
    ``timeout`` for the tick the dead instance owed), and nothing scheduled before.
    ``missed_until_ms``: somebody took over then (a fail-over): nothing scheduled from the
    next tick on is missed.
    """
    target = evaluations(ledger) + ticks_after * SLOTS
    await wait_until(lambda: evaluations(ledger) >= target, timeout_s=20, what="more ticks")
    assert await gateway.stop() == 0
    assert_every_scheduled_evaluation_accounted(ledger)
    if missed_from_ms is None:
        missed = query(
            ledger,
            "SELECT outcome, count(*) FROM evaluations WHERE outcome != 'executed' GROUP BY 1",
        )
        assert missed == [], f"missed or errored evaluations: {missed}"
        return
    early = query(
        ledger,
        "SELECT outcome, count(*) FROM evaluations WHERE outcome != 'executed' "
        "AND (scheduled_ms < ? OR outcome NOT IN ('no_active', 'timeout')) GROUP BY 1",
        missed_from_ms,
    )
    assert early == [], f"missed before the kill, or not for want of an ACTIVE: {early}"
    cadence_ms = int(CADENCE_S * 1000)
    if missed_until_ms is not None:
        after = query(
            ledger,
            "SELECT outcome, count(*) FROM evaluations WHERE outcome != 'executed' "
            "AND scheduled_ms > ? GROUP BY 1",
            missed_until_ms + cadence_ms,
        )
        assert after == [], f"missed after the take-over: {after}"
        return
    # From the tick after the kill on, there was nobody to send it to.
    later = query(
        ledger,
        "SELECT DISTINCT outcome FROM evaluations WHERE scheduled_ms >= ?",
        missed_from_ms + 2 * cadence_ms,
    )
    assert later == [("no_active",)], later


class StartPair(Protocol):
    def __call__(
        self, green_config: str, blue_config: str = HOLD
    ) -> Awaitable[tuple[Service, Service, Service]]: ...


@pytest.fixture
def start_pair(
    start_gateway: StartGateway, start_strategy: StartStrategy, ledger: Path
) -> StartPair:
    """Gateway, blue (ACTIVE, ``blue_config``, 2 ticks in), then green with ``green_config``."""

    async def start(green_config: str, blue_config: str = HOLD) -> tuple[Service, Service, Service]:
        gateway = await start_gateway()
        blue = await start_strategy(gateway, BLUE, blue_config)
        await run_ticks(ledger, 2)
        return gateway, blue, await start_strategy(gateway, GREEN, green_config)

    return start
