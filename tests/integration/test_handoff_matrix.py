"""The kill matrix: SIGKILL blue, green or the control client that called Promote, in each
step of a handoff, with real processes (issue 6, "chaos at every step").

Every kill is placed by the handoff's own progress: ``WatchHandoff`` reporting the step (the
step hook), never a sleep. Steps too short to hit are held open deterministically:

- exporting: Promote right after a tick was dispatched (its rows just reached the ledger), so
  the ExportState goes out only at the next tick, a whole cadence later;
- importing: green, which must answer the import, is SIGSTOPped before Promote;
- shadowing: ``shadow_ticks`` 3; baking: ``bake_s`` 2;
- draining: blue, which must confirm its drain, is SIGSTOPped once the handoff is baking
  (blue is a SHADOW then: nothing it owes is executed).

Each cell then checks that the kill really landed in its step (the step timestamps of the
final status), the final status and who is ACTIVE against ``EXPECTED``, and the ledger: every
scheduled evaluation has exactly one outcome, none missed, every bet placed once by one
executed evaluation. Blue and green bet UP on every evaluation, so bets are placed throughout.

One cell ends with nobody ACTIVE, so evaluations after the kill are missed (``no_active``);
the test pins that, and that nothing before the kill was missed. This is not the handoff
losing anything: the process killed held the only current copy of the state.

- green-draining: after the bake window the handoff is past its point of no return; blue,
  draining, no longer follows evaluations, so there is nothing current to hand back to. The
  handoff completes (blue drains) with nobody ACTIVE, and its message says so.

blue-exporting: the state never left blue, so the handoff aborts; but the gateway checkpoints
the ACTIVE's state (docs/standby.md), so green, attached and idle, imports blue's last
checkpoint, replays the journal since and takes over (``recovered``: a failover in the ledger).
The evaluations between the kill and the take-over are missed (``gap``), nothing after.

blue-importing fails over: the gateway keeps blue's journal (what blue was sent after the
snapshot) when blue goes away, green finishes its import, replays the journal and takes over.
The evaluations between the kill and the take-over have nobody to answer them (``gap``); from
the tick after the take-over on nothing is missed. The test resumes green only once the gateway
has detached blue, so the cell always takes the fail-over path (a green let go first could
import before blue's death is noticed: the ordinary shadowing fail-over).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from baton.common import Service
from baton.control import ControlClient, phase_name
from baton.v1 import control_pb2 as ctl
from tests.integration.handoff_helpers import (
    StartPair,
    active_version,
    finish_and_check,
    policy,
    until_phase,
)
from tests.integration.handoff_helpers import start_pair as start_pair
from tests.procs import CADENCE_S, POLL_S, count, evaluations, query, wait_until

UP = json.dumps({"action": "UP"})
STEPS = ("exporting", "importing", "shadowing", "baking", "draining")
CADENCE_MS = int(CADENCE_S * 1000)
POLICY = policy(shadow_ticks=3, bake_s=2, step_timeout_s=10)

# The step that starts each phase, in the handoff's steps (handoff.py).
PHASE_STEP = {
    "start": "exporting",
    "import": "importing",
    "shadow": "shadowing",
    "flip": "baking",
    "drain": "draining",
}


@dataclass(frozen=True)
class Expect:
    phase: str  # the handoff's final phase
    active: str | None  # the version ACTIVE at the end; None: nobody (see the module doc)
    why: str  # a regex found in the final message or a step's detail ("": nothing to say)
    gap: bool = False  # nobody ACTIVE from the kill until green took over (see the module doc)
    recovered: bool = False  # green took over from blue's checkpoint after the handoff ended


_COMPLETED = Expect("completed", "v2", "")
EXPECTED: dict[tuple[str, str], Expect] = {
    ("blue", "exporting"): Expect(
        "aborted", "v2", "blue went away.* during exporting", gap=True, recovered=True
    ),
    ("blue", "importing"): Expect("completed", "v2", "green takes over after its import", gap=True),
    # Fail-over flip: green's state follows blue's, it takes over at once.
    ("blue", "shadowing"): Expect("completed", "v2", "green takes over"),
    ("blue", "baking"): Expect("completed", "v2", "blue went away"),
    ("blue", "draining"): Expect("completed", "v2", "blue went away"),
    ("green", "exporting"): Expect("aborted", "v1", "green went away.* during exporting"),
    ("green", "importing"): Expect("aborted", "v1", "green went away.* during importing"),
    ("green", "shadowing"): Expect("aborted", "v1", "green went away.* during shadowing"),
    ("green", "baking"): Expect("rolled_back", "v1", "green went away.* inside the bake window"),
    ("green", "draining"): Expect("completed", None, "green went away while blue drained"),
    # The handoff runs in the gateway: its caller going away changes nothing.
    ("control-client", "exporting"): _COMPLETED,
    ("control-client", "baking"): _COMPLETED,
}
# The control client in the other steps is left out, as equivalent: the gateway knows its
# caller only as a WatchHandoff stream, and the handoff runs on the gateway's clock whatever
# the step. Killed right after Promote returned (exporting) and past the flip (baking) covers
# both sides of the flip; test_handoff_faults.py closes the caller's channel while shadowing.
CELLS = [(v, s) for v in ("blue", "green") for s in STEPS] + [
    ("control-client", "exporting"),
    ("control-client", "baking"),
]

# The control client that calls Promote and then watches, as its own process (like `baton
# handoff` or the operator): it says "ready" once imported, promotes when told to on stdin
# (so that the Promote can be placed right after a tick), prints the handoff id, then watches.
CALLER = """
import asyncio, sys
from baton.control import ControlClient
from baton.v1 import control_pb2 as ctl

async def main() -> None:
    address, instance, policy = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
    async with ControlClient(address) as client:
        print("ready", flush=True)
        sys.stdin.readline()
        status = await client.promote(instance, ctl.HandoffPolicy.FromString(policy))
        print(status.handoff_id, flush=True)
        async for _ in client.watch(status.handoff_id):
            pass

asyncio.run(main())
"""


class Caller:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, address: str, instance: str, log: Path) -> Caller:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                CALLER,
                address,
                instance,
                POLICY.SerializeToString().hex(),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        caller = cls(proc)
        assert await caller._line() == "ready"
        return caller

    async def _line(self) -> str:
        assert self.proc.stdout is not None
        return (await asyncio.wait_for(self.proc.stdout.readline(), 30)).decode().strip()

    async def promote(self) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        await self.proc.stdin.drain()
        handoff_id = await self._line()
        assert handoff_id.startswith("h-"), handoff_id
        return handoff_id

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


async def right_after_a_tick(ledger: Path) -> None:
    """Return just after a tick's dispatch: the gateway writes the previous tick's rows right
    after dispatching the next, so new rows mean a tick went out a moment ago."""
    before = evaluations(ledger)
    await wait_until(lambda: evaluations(ledger) > before, timeout_s=10, what="a tick's rows")


async def gone(client: ControlClient, instance_id: str) -> None:
    """Until the gateway has detached ``instance_id`` (its stream ended)."""

    async def attached() -> bool:
        listing = await client.list_instances()
        return any(i.instance_id == instance_id for i in listing.instances)

    async with asyncio.timeout(10):
        while True:
            if not await attached():
                return
            await asyncio.sleep(POLL_S)


def phase_at(status: ctl.HandoffStatus, t_ms: int) -> str:
    """The phase the handoff was in at ``t_ms``, from the steps of its final status."""
    phase = ""
    for step in status.steps:
        if step.t_ms <= t_ms and step.name in PHASE_STEP:
            phase = PHASE_STEP[step.name]
    return phase


def assert_every_bet_placed_once(ledger: Path) -> None:
    twice = query(
        ledger, "SELECT slot_id, seq, count(*) FROM bets GROUP BY 1, 2 HAVING count(*) > 1"
    )
    assert twice == [], f"bets placed twice: {twice}"
    # A bet belongs to one executed evaluation of the same (slot, seq), and back.
    orphans = query(
        ledger,
        "SELECT b.bet_id FROM bets b LEFT JOIN evaluations e ON e.bet_id = b.bet_id "
        "AND e.slot_id = b.slot_id AND e.seq = b.seq AND e.outcome = 'executed' "
        "WHERE e.id IS NULL",
    )
    assert orphans == [], f"bets no executed evaluation placed: {orphans}"
    unbooked = query(
        ledger,
        "SELECT e.bet_id FROM evaluations e LEFT JOIN bets b ON b.bet_id = e.bet_id "
        "WHERE e.bet_id IS NOT NULL AND b.id IS NULL",
    )
    assert unbooked == [], f"evaluations naming a bet the ledger does not have: {unbooked}"
    assert count(ledger, "SELECT count(*) FROM bets") > 0, "no bets: the check proves nothing"


@pytest.mark.parametrize(
    ("victim", "step"),
    [pytest.param(v, s, id=f"{v}-{s}") for v, s in CELLS],
)
async def test_kill_in_step(
    victim: str, step: str, start_pair: StartPair, ledger: Path, log_dir: Path
) -> None:
    expect = EXPECTED[(victim, step)]
    gateway, blue, green = await start_pair(UP, UP)
    address, green_id = gateway.ready["grpc_addr"], green.ready["instance_id"]
    stopped: list[Service] = []
    caller = (
        await Caller.start(address, green_id, log_dir / "caller.log")
        if victim == "control-client"
        else None
    )
    try:
        async with ControlClient(address) as client:
            if step == "importing":
                green.proc.send_signal(signal.SIGSTOP)  # it must answer the import
                stopped.append(green)
            await right_after_a_tick(ledger)
            if caller is not None:
                handoff_id = await caller.promote()
            else:
                handoff_id = (await client.promote(green_id, POLICY)).handoff_id
            if step == "draining":
                await until_phase(client, handoff_id, "baking")
                blue.proc.send_signal(signal.SIGSTOP)  # it must confirm its drain
                stopped.append(blue)
            await until_phase(client, handoff_id, step)

            killed_ms = wall_ms()
            target = {"blue": blue, "green": green}.get(victim)
            if target is not None:
                target.proc.kill()
            elif caller is not None:
                await caller.kill()
            if target is not None:
                # Resume the held process only once the gateway has seen the kill: a green let
                # go first could answer its import before blue's death is noticed.
                await gone(client, target.ready["instance_id"])
            for service in stopped:
                if service is not target:
                    service.proc.send_signal(signal.SIGCONT)

            final = await asyncio.wait_for(client.wait(handoff_id), 30)
            assert phase_at(final, killed_ms) == step, [(s.name, s.t_ms) for s in final.steps]
            said = " | ".join([final.message, *(s.detail for s in final.steps)])
            outcome = (phase_name(final.phase), bool(re.search(expect.why, said)))
            assert outcome == (expect.phase, True), said
            took_over_ms = next((s.t_ms for s in final.steps if s.name == "flip"), None)
            if expect.recovered:
                failover = "SELECT took_over_ms, to_version, result FROM failovers"
                await wait_until(
                    lambda: bool(query(ledger, failover + " WHERE took_over_ms IS NOT NULL")),
                    timeout_s=30,
                    what="the take-over from blue's checkpoint",
                )
                ((took_over_ms, to_version, result),) = query(ledger, failover)
                assert (to_version, result) == ("v2", "completed")
            if expect.active is None:
                assert (await client.list_instances()).active_instance_id == ""
            else:
                assert await active_version(client) == (expect.active, "ACTIVE")
            if expect.phase == "completed" and expect.active is not None:
                assert final.missed == 0 or expect.gap
                assert final.import_digest == final.export_digest != ""
    finally:
        if caller is not None:
            await caller.kill()
    gap = expect.gap or expect.active is None
    await finish_and_check(
        gateway,
        ledger,
        missed_from_ms=killed_ms - CADENCE_MS if gap else None,
        missed_until_ms=took_over_ms if expect.gap else None,
    )
    assert_every_bet_placed_once(ledger)
