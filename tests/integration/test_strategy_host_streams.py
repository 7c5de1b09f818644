"""A strategy host given two gateway addresses (``--gateway A,B``, docs/gateway-standby.md
"Strategy hosts on both replicas"), against two scripted gateways over real gRPC: one runtime
and one state across both streams; the stream of the highest term is obeyed; the older one's
requests are refused (``Fenced``) once the newer term is seen, handoff commands included."""

from __future__ import annotations

import asyncio

from baton.demo_replicas import free_port
from baton.strategy.examples.momentum_v1 import MomentumV1
from baton.strategy.host import HostExit, StrategyHost
from baton.v1 import gateway_pb2 as gw
from tests.integration.test_strategy_host import (
    FAST_BACKOFF,
    WAIT,
    ScriptedGateway,
    at,
    evaluation,
    start_gateway,
)
from tests.procs import wait_until


async def test_two_streams_one_state_the_newer_term_obeyed_the_older_fenced() -> None:
    old = await start_gateway(ScriptedGateway(term=1))
    new_addr = f"127.0.0.1:{free_port()}"  # the follower: nothing listens there yet
    host = StrategyHost(MomentumV1({}), f"{old.address},{new_addr}", backoff=FAST_BACKOFF)
    task = asyncio.create_task(host.run())
    new = None
    try:
        a = await old.servicer.next_session()
        await asyncio.wait_for(host.wait_attached(), WAIT)
        assert (host.term, host.attached_gateways, host.obeyed_gateway) == (
            1,
            (old.address,),
            old.address,
        )
        a.send(**at(1, evaluation(1)))
        assert (await a.recv("decisions")).term == 1

        # The other replica is elected and starts listening: the host, dialling it all along,
        # attaches while the old leader's stream is still open.
        new = await start_gateway(ScriptedGateway(term=2), new_addr)
        b = await new.servicer.next_session()
        await wait_until(lambda: host.obeyed_gateway == new_addr, timeout_s=WAIT, what="switch")
        assert host.term == 2
        assert host.term_switches == 1
        assert set(host.attached_gateways) == {old.address, new_addr}

        # The old leader's evaluation and export are refused; the new one's are acted on.
        evaluated = host.evaluations
        a.send(**at(1, evaluation(2, live_close=101.0)))
        refusal = await a.recv("fenced")
        assert (refusal.term, refusal.current_term, refusal.what) == (1, 2, "evaluate_batch")
        a.send(**at(1, {"export_state": gw.ExportState(handoff_id="h-old")}))
        assert (await a.recv("fenced")).what == "export_state"
        assert host.evaluations == evaluated
        b.send(**at(2, evaluation(2, live_close=101.0)))
        assert (await b.recv("decisions")).term == 2
        # One state: the export from the new stream covers the evaluation the old one answered.
        b.send(**at(2, {"export_state": gw.ExportState(handoff_id="h-new")}))
        snap = await b.recv("state_export")
        assert snap.term == 2
        assert snap.applied_seq["BTC/5m"] == 2
        assert host.evaluations == evaluated + 1
        assert host.fenced == 2

        # The old leader goes: the host stays attached to the new one, no outage.
        a.end()
        await wait_until(
            lambda: host.attached_gateways == (new_addr,), timeout_s=WAIT, what="old detached"
        )
        assert host.attached
        assert host.reconnects == 0
        b.send(**at(2, evaluation(3, live_close=102.0)))
        assert (await b.recv("decisions")).term == 2
    finally:
        host.stop()
        assert await asyncio.wait_for(task, WAIT) is HostExit.STOPPED
        host.close()
        await old.server.stop(None)
        if new is not None:
            await new.server.stop(None)


async def test_a_drain_on_the_obeyed_stream_ends_the_host_and_the_other_loop() -> None:
    g = await start_gateway(ScriptedGateway(term=3))
    idle = f"127.0.0.1:{free_port()}"
    host = StrategyHost(MomentumV1({}), [g.address, idle], backoff=FAST_BACKOFF)
    task = asyncio.create_task(host.run())
    try:
        s = await g.servicer.next_session()
        s.send(**at(3, {"drain": gw.Drain(reason="retired")}))
        assert (await s.recv("drain_complete")).term == 3
        s.end()
        assert await asyncio.wait_for(task, WAIT) is HostExit.DRAINED
    finally:
        host.stop()
        host.close()
        await g.server.stop(None)


async def test_exit_on_disconnect_waits_for_the_last_attached_stream_not_a_follower() -> None:
    g = await start_gateway(ScriptedGateway(term=1))
    idle = f"127.0.0.1:{free_port()}"  # refused on every attempt, as a follower's address
    host = StrategyHost(
        MomentumV1({}), [idle, g.address], backoff=FAST_BACKOFF, exit_on_disconnect=True
    )
    task = asyncio.create_task(host.run())
    try:
        s = await g.servicer.next_session()
        await asyncio.wait_for(host.wait_attached(), WAIT)
        # The follower's refused attempts go on meanwhile; the host stays and answers.
        s.send(**at(1, evaluation(1)))
        assert (await s.recv("decisions")).term == 1
        assert not task.done()
        s.end()  # the leader's stream, the only one attached, is lost
        assert await asyncio.wait_for(task, WAIT) is HostExit.DISCONNECTED
    finally:
        host.stop()
        host.close()
        await g.server.stop(None)
