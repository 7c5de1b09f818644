"""``baton demo --gateway-handovers N`` / ``--gateway-kills N``: the gateway as two replicas.

Two ``baton gateway`` replicas with leader election on a local lease (docs/gateway-standby.md),
sharing the demo's ledger, each on an address of its own (as two pods): the leader serves its
address, the other follows with its exchange feed warm and no port open. A handover is asked of
the leader with ``ControlService.Handover`` (``baton gateway handover``: it finishes its tick,
writes it, releases the lease and exits 0; the follower leads at its next read); a kill is a
SIGKILL at a random moment (the follower leads a lease duration later). Each time a new
follower is started in the old leader's place and on its address, as a StatefulSet would
restart its pod. The strategy hosts are given both addresses (``--gateway A,B``): attached to
the leader, they keep dialling the other, so they attach to a new leader within one attempt of
its start.
"""

from __future__ import annotations

import asyncio
import random
import socket
import sys
import time
from dataclasses import dataclass, field

from baton.common import ProcessFailed, Service
from baton.control.client import ControlClient
from baton.local import GatewayOptions, Processes

# A replica announces its leadership within a lease duration plus a retry and its start.
LEAD_TIMEOUT_S = 20.0
# A handover waits for the next tick boundary and that tick's deadline, then its writes.
HANDOVER_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Change:
    """One leadership change as the demo saw it (the ledger has the rest: ``baton presence``)."""

    kind: str  # "handover" | "failover"
    old: str
    new: str
    term: int
    elected_after_ms: float  # from the handover request / SIGKILL to the new leader's start


@dataclass
class Replicas:
    procs: Processes
    sim: Service
    options: GatewayOptions
    addrs: tuple[str, str] = field(
        default_factory=lambda: (f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}")
    )
    leader: Service | None = None
    follower: Service | None = None
    started: int = 0
    addr_of: dict[str, str] = field(default_factory=dict)  # replica name -> its address
    changes: list[Change] = field(default_factory=list)

    @property
    def addr(self) -> str:
        """What strategy hosts are given: both replicas' addresses (``--gateway A,B``)."""
        return ",".join(self.addrs)

    async def start(self) -> str:
        """The first leader and its follower; the addresses strategy hosts attach to."""
        first = await self._replica(self.addrs[0])
        await first.wait_announced("role", "leader", timeout_s=LEAD_TIMEOUT_S)
        self.leader = first
        self.follower = await self._replica(self.addrs[1])
        return self.addr

    async def _replica(self, addr: str) -> Service:
        name = f"gateway-{chr(ord('a') + self.started)}"
        self.started += 1
        self.addr_of[name] = addr
        env = {
            "BATON_GATEWAY__LISTEN": addr,
            "BATON_LEADER__BACKEND": "local",
            "BATON_LEADER__IDENTITY": name,
        }
        return await self.procs.gateway(name, self.sim, self.options, env=env)

    async def change(self, kind: str) -> Change:
        """A handover (asked of the leader) or a failover (SIGKILL); then a new follower."""
        old, new = self.leader, self.follower
        assert old is not None
        assert new is not None
        t0 = time.monotonic()
        if kind == "handover":
            # As the chart's preStop hook does: `baton gateway handover` (ControlService.Handover)
            # answers once the lease is released; then the old leader exits 0 by itself.
            async with ControlClient(self.addr_of[old.name], timeout_s=HANDOVER_TIMEOUT_S) as c:
                await c.handover("demo")
            async with asyncio.timeout(HANDOVER_TIMEOUT_S):
                await old.proc.wait()
            code = await self.procs.reap(old)
            if code != 0:
                raise ProcessFailed(f"{old.name} exited with {code}:\n{old.log_tail()}")
        else:
            await self.procs.kill(old)
        led = await new.wait_announced("role", "leader", timeout_s=LEAD_TIMEOUT_S)
        change = Change(kind, old.name, new.name, int(led["term"]), (time.monotonic() - t0) * 1000)
        self.changes.append(change)
        self.leader, self.follower = new, await self._replica(self.addr_of[old.name])
        print(
            f"demo: gateway {kind} {len(self.changes)}: {old.name} -> {new.name}, term "
            f"{change.term}, the new leader's gateway started {change.elected_after_ms:.0f} ms "
            f"after the {'handover request' if kind == 'handover' else 'SIGKILL'}",
            file=sys.stderr,
        )
        return change

    async def stop(self, timeout_s: float) -> None:
        """The follower first (it must not take over), then the leader (a clean stop)."""
        if self.follower is not None:
            await self.procs.reap(self.follower)
        if self.leader is not None:
            code = await self.procs.reap(self.leader, timeout_s=timeout_s)
            if code != 0:
                leader = self.leader
                raise ProcessFailed(f"{leader.name} exited with {code}:\n{leader.log_tail()}")


async def run_changes(
    replicas: Replicas,
    *,
    handovers: int,
    kills: int,
    duration_s: float,
    cadence_s: float,
    seed: int,
) -> None:
    """Spread the handovers and kills over ``duration_s`` (handovers first, alternating when
    both are asked); each kill at a random moment inside a tick."""
    loop = asyncio.get_running_loop()
    end = loop.time() + duration_s
    rng = random.Random(seed)
    plan = _interleave(handovers, kills)
    for i, kind in enumerate(plan):
        share = (end - loop.time()) / (len(plan) - i + 1)
        jitter = rng.uniform(0, cadence_s) if kind == "failover" else 0.0
        # The demo's schedule (a random moment for a kill), not a wait on a state.
        await asyncio.sleep(max(0.0, share - jitter) + jitter)
        await replicas.change(kind)
    await asyncio.sleep(max(0.0, end - loop.time()))


def _interleave(handovers: int, kills: int) -> list[str]:
    out: list[str] = []
    while handovers or kills:
        if handovers:
            out.append("handover")
            handovers -= 1
        if kills:
            out.append("failover")
            kills -= 1
    return out
