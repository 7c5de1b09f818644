"""The operator SIGKILLed in a step of the gateway's handoff, then restarted (issue 6).

``test_operator.py`` kills the operator in each of its own phases (Pending, Starting,
HandingOff, Active); here the kill is placed by the gateway's handoff itself: the test watches
the handoff (``WatchHandoff``, the step hook) and kills the operator when it reports the step.
The handoff goes on in the gateway without its caller; the restarted operator must find it
(Promote is idempotent on the object's uid: no second handoff), carry v2 to Active, retire v1
and delete its pod, with every evaluation executed.

Steps covered, and why not the others:

- shadowing (before the flip) and baking (after it): the operator treats a running handoff in
  two ways only, not yet flipped (a failing green pod cancels it) or flipped (it waits for the
  end), so these two cover what it can do.
- exporting and importing last a few ms after the tick the Promote lands on (blue answers
  the ExportState, green the import, at once), and here the operator, not the test, chooses
  when to promote: they cannot be hit reliably. Holding them open would mean stopping blue (it
  is ACTIVE: it would miss evaluations) or green's pod before the operator promotes (a race).
  The matrix of ``tests/integration/test_handoff_matrix.py`` kills the caller in exporting.
- draining: the same for the operator as baking (flipped, not finished); it lasts as long as
  blue takes to confirm its drain (ms).
"""

from __future__ import annotations

import asyncio

import pytest

from baton.control import TERMINAL_PHASES, ControlClient, ControlError, phase_name
from baton.v1 import control_pb2 as ctl
from tests.e2e.stack import V1, V2, StartStack, eventually, presence_kept, sv_yaml
from tests.procs import query, run_ticks

pytestmark = pytest.mark.timeout(240)


async def handoff_to(client: ControlClient, version: str) -> str:
    """The id of the handoff to ``version``, once the operator has asked for it."""

    async def probe() -> str | None:
        try:
            status = await client.get()
        except ControlError as exc:
            if exc.code == "NOT_FOUND":
                return None
            raise
        return status.handoff_id if status.to_version == version else None

    return await eventually(probe, timeout_s=60, what=f"a handoff to {version}", poll_s=0.02)


async def until_phase(client: ControlClient, handoff_id: str, phase: str) -> None:
    async def watch() -> None:
        async for status in client.watch(handoff_id):
            if phase_name(status.phase) == phase:
                return
            assert status.phase not in TERMINAL_PHASES, (
                f"ended {phase_name(status.phase)} before {phase}: {status.message}"
            )
        raise AssertionError(f"watch ended before {phase}")

    await asyncio.wait_for(watch(), 30)


@pytest.mark.parametrize("step", ["shadowing", "baking"])
async def test_operator_killed_in_a_handoff_step_converges(
    start_stack: StartStack, step: str
) -> None:
    s = await start_stack()
    s.apply(sv_yaml("mom-v1", "v1", V1))
    v1 = await s.wait_phase("mom-v1", "Active")
    await run_ticks(s.ledger, 2)

    async with ControlClient(s.gateway.ready["grpc_addr"]) as client:
        s.apply(sv_yaml("mom-v2", "v2", V2, handoff={"shadowTicks": 3, "bakeSeconds": 3}))
        handoff_id = await handoff_to(client, "v2")
        await until_phase(client, handoff_id, step)
        await s.kill_operator()
        await s.start_operator()
        final: ctl.HandoffStatus = await asyncio.wait_for(client.wait(handoff_id), 30)
        assert phase_name(final.phase) == "completed", final.message

        v2 = await s.wait_phase("mom-v2", "Active", "Failed", timeout_s=90)
        assert v2["status"]["phase"] == "Active", v2["status"]["message"]
        assert v2["status"]["handoff"]["id"] == handoff_id
        assert v2["status"]["handoff"]["missed"] == 0
        retired = await s.wait_phase("mom-v1", "Retired", timeout_s=60)
        assert retired["status"]["pod"] == v1["status"]["pod"]
        await s.pod_gone(v1["status"]["pod"])
        listing = await client.list_instances()
        active = next(i for i in listing.instances if i.instance_id == listing.active_instance_id)
        assert active.version == "v2"
    await presence_kept(s, 3)
    # The restarted operator found the handoff: it did not start another one.
    assert query(s.ledger, "SELECT handoff_id, result FROM handoffs") == [(handoff_id, "completed")]
