"""The gateway term on the wire, with a real gateway (in this process, so that the test holds
its term provider: the elector is not wired into the gateway process yet), a real simulator
process feeding it and real strategy hosts, over loopback gRPC (docs/gateway-standby.md,
"Fencing").

A gateway whose term goes down stands for a deposed leader that has not noticed yet: the host,
having seen the newer term, refuses its messages, and the gateway learns it is fenced.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from baton.common import Backoff, Service
from baton.gateway.app import Gateway
from baton.gateway.config import GatewayConfig, LeaderBackend, load_gateway_config
from baton.gateway.core.records import EvalOutcome
from baton.gateway.execution import OTHER_TERM
from baton.gateway.lease import LocalLease
from baton.gateway.ledger import LedgerReader
from baton.gateway.replica import Exit, Replica
from baton.strategy.core.strategy import Strategy
from baton.strategy.examples.faulty import Faulty
from baton.strategy.examples.momentum_v1 import MomentumV1
from baton.strategy.host import HostExit, StrategyHost
from tests.procs import gateway_env, wait_until

pytestmark = pytest.mark.timeout(90)

WAIT_S = 20.0  # bound on every wait for the gateway's clock (ticks every 0.5 s)
FAST_BACKOFF = Backoff(initial_s=0.02, factor=2.0, max_s=0.2, jitter=0.0)


@dataclass
class Term:
    """A gateway's term provider that the test moves, and what its on_fenced hook was told."""

    value: int
    fenced: list[tuple[int, str]] = field(default_factory=list)
    told: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self) -> int:
        return self.value

    def on_fenced(self, term: int, source: str) -> None:
        self.fenced.append((term, source))
        self.told.set()


def config(sim: Service, ledger: Path, listen: str = "127.0.0.1:0") -> GatewayConfig:
    env = gateway_env(sim, ledger) | {
        "BATON_GATEWAY__LISTEN": listen,
        "BATON_GATEWAY__MARKETS": "BTC,ETH",
        "BATON_GATEWAY__TIMEFRAMES": "5m",
        "BATON_GATEWAY__CADENCE_S": "0.5",
    }
    return load_gateway_config(environ=env)


@contextlib.asynccontextmanager
async def running_gateway(cfg: GatewayConfig, term: Term) -> AsyncIterator[Gateway]:
    gateway = Gateway(cfg)
    # What the composition root will do with the elector: its term, its term_seen.
    gateway.instances.term = term
    gateway.instances.on_fenced = term.on_fenced
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


@contextlib.asynccontextmanager
async def running_host(strategy: Strategy[Any], address: str) -> AsyncIterator[StrategyHost]:
    host = StrategyHost(strategy, address, backoff=FAST_BACKOFF, pod_name="blue")
    task = asyncio.create_task(host.run())
    try:
        yield host
    finally:
        host.stop()
        assert await asyncio.wait_for(task, WAIT_S) is HostExit.STOPPED
        host.close()


@contextlib.asynccontextmanager
async def served(
    sim: Service, ledger: Path, term: Term, strategy: Strategy[Any]
) -> AsyncIterator[tuple[Gateway, StrategyHost]]:
    """A gateway of ``term`` and a host of ``strategy`` attached to it."""
    async with (
        running_gateway(config(sim, ledger), term) as gateway,
        running_host(strategy, f"127.0.0.1:{gateway.port}") as host,
    ):
        await asyncio.wait_for(host.wait_attached(), WAIT_S)
        yield gateway, host


def fenced_samples(gateway: Gateway, what: str) -> float:
    value = gateway.metrics.registry.get_sample_value("baton_gateway_fenced_total", {"what": what})
    return value or 0.0


async def until(predicate: Callable[[], bool], what: str) -> None:
    await wait_until(predicate, timeout_s=WAIT_S, what=what, poll_s=0.01)


async def test_a_host_refuses_a_deposed_gateways_term_and_the_gateway_learns_it(
    sim: Service, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.sqlite"
    term = Term(2)
    async with served(sim, ledger, term, MomentumV1({})) as (gateway, host):
        assert host.term == 2  # adopted from the Welcome
        await until(lambda: host.evaluations >= 4, "two ticks evaluated at term 2")

        term.value = 1  # deposed, and it does not know yet
        await asyncio.wait_for(term.told.wait(), WAIT_S)
        # Everything of term 2 was read before the first refusal: the state is final now.
        digest, evaluations = await host.state_digest(), host.evaluations
        # The gateway's checkpoints and digest checks (export_state) are refused too.
        await until(lambda: fenced_samples(gateway, "evaluate_batch") >= 3, "3 ticks refused")
        assert await host.state_digest() == digest
        assert host.evaluations == evaluations
        assert host.term == 2
        instance = host.instance_id
        assert term.fenced[0] == (2, f"strategy host blue ({instance})")
        assert host.fenced >= 3

    with LedgerReader(ledger) as reader:
        evals = reader.evaluations()
    executed = [e for e in evals if e.outcome is EvalOutcome.EXECUTED]
    fenced = [e for e in evals if e.reason == "fenced: the host has seen term 2"]
    # (The answers of term 2 still in flight when the term went down are dropped: other term.)
    assert len(executed) >= 2
    assert len(fenced) >= 4  # two slots, two ticks or more
    assert {e.outcome for e in fenced} == {EvalOutcome.TIMEOUT}
    # Nothing was executed after the first refused tick.
    assert max(e.seq for e in executed) < min(e.seq for e in fenced)


async def test_answers_to_a_batch_of_another_term_are_dropped_not_executed(
    sim: Service, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.sqlite"
    term = Term(2)
    # Slow answers: a batch of term 2 is still being evaluated when the term moves on.
    async with served(sim, ledger, term, Faulty({"delay_ms": 150})) as (gateway, host):
        (lane,) = gateway.lanes
        await until(lambda: bool(lane.router.pending), "a batch of term 2 in flight")
        term.value = 3  # a newer term for this gateway (the same answer for an older one)
        await until(lambda: host.term == 3, "the host at term 3")
        start = host.evaluations
        await until(lambda: host.evaluations >= start + 4, "two ticks at term 3")
        assert term.fenced == []  # the host refused nothing: its terms only went up

    with LedgerReader(ledger) as reader:
        dropped = reader.dropped_decisions()
        evals = reader.evaluations()
    other = [d for d in dropped if d.reason == OTHER_TERM]
    assert other, dropped
    executed = {(e.slot_id, e.seq) for e in evals if e.outcome is EvalOutcome.EXECUTED}
    assert not executed & {(d.slot_id, d.seq) for d in other}
    assert executed  # the ticks of term 3 were answered and executed


@contextlib.asynccontextmanager
async def host_left_by(
    sim: Service, tmp_path: Path, term: Term
) -> AsyncIterator[tuple[StrategyHost, str]]:
    """A host served by a gateway of ``term`` (a tick evaluated), which then went: the host
    keeps the term, and its address is free for the next gateway."""
    gone = contextlib.AsyncExitStack()
    a = await gone.enter_async_context(running_gateway(config(sim, tmp_path / "a.db"), term))
    address = f"127.0.0.1:{a.port}"
    try:
        async with running_host(MomentumV1({}), address) as host:
            await asyncio.wait_for(host.wait_attached(), WAIT_S)
            await until(lambda: host.evaluations >= 2, f"a tick evaluated at term {term.value}")
            await gone.aclose()
            yield host, address
    finally:
        await gone.aclose()


async def test_a_host_refuses_the_welcome_of_an_older_gateway_on_its_address(
    sim: Service, tmp_path: Path
) -> None:
    # Gateway A leads term 2; it goes, and a gateway of term 1 (deposed, unaware) comes up on the
    # same address: the host takes no role from it. When it learns a newer term (3) the host is
    # served again, with the state it kept.
    older = Term(1)
    async with (
        host_left_by(sim, tmp_path, Term(2)) as (host, address),
        running_gateway(config(sim, tmp_path / "b.db", address), older) as b,
    ):
        await asyncio.wait_for(older.told.wait(), WAIT_S)
        assert older.fenced[0][0] == 2
        assert fenced_samples(b, "welcome") >= 1
        assert not host.attached
        assert host.attach_count == 1
        digest = await host.state_digest()
        older.value = 3
        await asyncio.wait_for(host.wait_attached(), WAIT_S)
        assert (host.term, host.attach_count) == (3, 2)
        assert await host.state_digest() == digest


async def test_a_replica_a_host_fences_is_deposed_and_exits(sim: Service, tmp_path: Path) -> None:
    """The wiring: a replica's gateway stamps the term it was elected with, and a host's refusal
    reaches its elector (``on_fenced`` = ``term_seen``): deposed at once, it stops and its
    process would exit 3. Here: the host saw term 2 from a gateway that went; a fresh replica
    (a lease of its own, so term 1: the split a partition makes) comes up on the address."""
    async with host_left_by(sim, tmp_path, Term(2)) as (host, address):
        cfg = config(sim, tmp_path / "b.db", address)
        leader = replace(cfg.leader, backend=LeaderBackend.LOCAL, identity="gw-b-1")
        replica = Replica(
            replace(cfg, leader=leader, metrics_listen=None),
            LocalLease(tmp_path / "lease"),
            announce=lambda **_: None,
        )
        exit_ = await asyncio.wait_for(replica.run(), WAIT_S)
        assert exit_ is Exit.DEPOSED
        assert replica.life.term == 1
        assert replica.elector.term == 2  # it learnt the newer term from the host
        assert not host.attached
        assert host.term == 2
