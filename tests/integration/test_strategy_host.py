"""The strategy host against a real gRPC gateway servicer on 127.0.0.1 (written here, in the test).

The test gateway welcomes each attach, then lets the test script the stream: send evaluations,
fills, settlements, export/import commands and drains, and read what the host answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from baton import wire
from baton.common import Backoff, parse_ready
from baton.model import Action, Candle, EvaluationRequest, Role, Slot
from baton.strategy import Outcome, Strategy, decode_state, state_digest
from baton.strategy.examples.faulty import Faulty, FaultyV2
from baton.strategy.examples.momentum_v1 import MomentumV1
from baton.strategy.examples.momentum_v2 import MomentumV2
from baton.strategy.host import HostExit, StrategyHost
from baton.v1 import gateway_pb2 as gw
from baton.v1 import gateway_pb2_grpc as gw_grpc
from baton.v1 import market_pb2 as mk

pytestmark = pytest.mark.timeout(30)

WAIT = 5.0  # bound on every wait for the other side
FIVE_MIN = 300_000
FAR_FUTURE_MS = 2**62
BTC = Slot("BTC", "BTCUSDT", "5m")
ETH = Slot("ETH", "ETHUSDT", "5m")
FAST_BACKOFF = Backoff(initial_s=0.02, factor=2.0, max_s=0.2, jitter=0.0)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


# -- the test gateway -----------------------------------------------------------------------


@dataclass
class Session:
    """One Attach stream as the gateway sees it."""

    hello: gw.Hello
    instance_id: str
    inbox: asyncio.Queue[gw.AttachRequest] = field(default_factory=asyncio.Queue)
    outbox: asyncio.Queue[gw.AttachResponse | None] = field(default_factory=asyncio.Queue)
    host_closed: asyncio.Event = field(default_factory=asyncio.Event)

    def send(self, **body: Any) -> None:
        self.outbox.put_nowait(gw.AttachResponse(**body))

    def end(self) -> None:
        """End the stream from the gateway's side (status OK)."""
        self.outbox.put_nowait(None)

    async def recv(self, kind: str) -> Any:
        """The host's next message, which must be of ``kind`` (a field of AttachRequest.body)."""
        msg = await asyncio.wait_for(self.inbox.get(), WAIT)
        assert msg.WhichOneof("body") == kind, msg
        return getattr(msg, kind)

    async def recv_decision(self) -> gw.Decision:
        """The host's answer to a batch of one evaluation (``evaluation``)."""
        batch: gw.DecisionBatch = await self.recv("decisions")
        (decision,) = batch.decisions
        return decision


class ScriptedGateway(gw_grpc.GatewayServiceServicer):
    def __init__(
        self,
        role: mk.Role.ValueType = mk.ROLE_ACTIVE,
        epoch: int = 7,
        reject: bool = False,
        silent: bool = False,
        term: int = 0,
    ) -> None:
        self.role, self.epoch, self.reject, self.silent = role, epoch, reject, silent
        self.term = term  # the gateway term of the Welcome
        self.hellos: asyncio.Queue[gw.Hello] = asyncio.Queue()
        self.sessions: asyncio.Queue[Session] = asyncio.Queue()
        self._count = 0

    async def next_session(self) -> Session:
        return await asyncio.wait_for(self.sessions.get(), WAIT)

    async def Attach(
        self,
        request_iterator: AsyncIterator[gw.AttachRequest],
        context: grpc.aio.ServicerContext[gw.AttachRequest, gw.AttachResponse],
    ) -> AsyncIterator[gw.AttachResponse]:
        first = await anext(request_iterator)
        assert first.WhichOneof("body") == "hello"
        self.hellos.put_nowait(first.hello)
        if self.reject:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "strategy not served here")
        if self.silent:  # never welcome: hold the stream until the host gives up on it
            async for _ in request_iterator:
                pass
            return
        self._count += 1
        session = Session(first.hello, f"inst-{self._count}")
        yield gw.AttachResponse(
            welcome=gw.Welcome(
                instance_id=session.instance_id,
                role=self.role,
                epoch=self.epoch,
                slots=[wire.slot_to_proto(BTC), wire.slot_to_proto(ETH)],
                cadence_ms=5000,
                term=self.term,
            )
        )
        self.sessions.put_nowait(session)

        async def pump() -> None:
            async for msg in request_iterator:
                session.inbox.put_nowait(msg)
            session.host_closed.set()

        reader = asyncio.create_task(pump())
        try:
            while True:
                get = asyncio.create_task(session.outbox.get())
                done, _ = await asyncio.wait({get, reader}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    return
                msg = get.result()
                if msg is None:
                    return
                yield msg
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await reader


@dataclass
class Gateway:
    servicer: ScriptedGateway
    server: grpc.aio.Server
    address: str


async def start_gateway(servicer: ScriptedGateway, address: str = "127.0.0.1:0") -> Gateway:
    # Room for large states, as the real gateway must allow (gRPC's default is 4 MiB).
    limit = 80 * 1024 * 1024
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ]
    )
    gw_grpc.add_GatewayServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port(address)
    await server.start()
    return Gateway(servicer, server, f"127.0.0.1:{port}")


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    g = await start_gateway(ScriptedGateway())
    yield g
    await g.server.stop(None)


@pytest.fixture
async def hosts() -> AsyncIterator[list[tuple[StrategyHost, asyncio.Task[HostExit]]]]:
    """Hosts started by a test; stopped and closed afterwards whatever happened."""
    started: list[tuple[StrategyHost, asyncio.Task[HostExit]]] = []
    yield started
    for host, task in started:
        host.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), WAIT)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        host.close()


async def start_host(
    hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]],
    strategy: Strategy[Any],
    address: str,
    **kwargs: Any,
) -> tuple[StrategyHost, asyncio.Task[HostExit]]:
    host = StrategyHost(strategy, address, backoff=FAST_BACKOFF, **kwargs)
    task = asyncio.create_task(host.run())
    hosts.append((host, task))
    return host, task


# -- messages -------------------------------------------------------------------------------


def candle(i: int, close: float, open_: float | None = None, closed: bool = True) -> Candle:
    o = close if open_ is None else open_
    return Candle(
        "BTCUSDT", "5m", i * FIVE_MIN, (i + 1) * FIVE_MIN - 1, o, max(o, close), min(o, close),
        close, closed=closed,
    )  # fmt: skip


CLOSES = [100.0, 101.0, 100.0, 101.0, 100.0, 101.0]


def evaluation(
    seq: int,
    *,
    slot: Slot = BTC,
    epoch: int = 7,
    live_close: float = 100.5,
    window: int = 6,
    role: Role = Role.ACTIVE,
) -> dict[str, Any]:
    req = EvaluationRequest(
        slot=slot,
        seq=seq,
        scheduled_ms=window * FIVE_MIN + seq * 5000,
        # Candle windows of 1970 keep the data small; the deadline must be in the future or
        # the host sheds the request as late (test_sheds_late_active_requests_only).
        deadline_ms=FAR_FUTURE_MS,
        epoch=epoch,
        role=role,
        live=candle(window, live_close, open_=100.0, closed=False),
        history=tuple(candle(i, c) for i, c in enumerate(CLOSES[:window])),
        trace_context={"traceparent": TRACEPARENT},
    )
    return {"evaluate_batch": gw.EvaluationBatch(requests=[wire.evaluation_to_proto(req)])}


def fill(bet_id: str, seq: int, side: mk.Action.ValueType = mk.ACTION_UP) -> dict[str, Any]:
    start = 6 * FIVE_MIN
    return {
        "fill": gw.Fill(
            bet_id=bet_id, slot_id="BTC/5m", seq=seq, side=side, stake=5.0, price=0.5,
            shares=10.0, window_start_ms=start, window_end_ms=start + FIVE_MIN,
        )
    }  # fmt: skip


def settlement(bet_id: str, won: bool) -> dict[str, Any]:
    start = 6 * FIVE_MIN
    return {
        "settlement": gw.Settlement(
            bet_id=bet_id, slot_id="BTC/5m", side=mk.ACTION_UP, window_start_ms=start,
            window_end_ms=start + FIVE_MIN, open_price=100.0, close_price=101.0,
            outcome=mk.ACTION_UP if won else mk.ACTION_DOWN, won=won,
            payout=10.0 if won else 0.0, pnl=5.0 if won else -5.0,
        )
    }  # fmt: skip


# -- tests ----------------------------------------------------------------------------------


async def test_hello_welcome_and_decisions_carry_seq_and_epoch(
    gateway: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    host, _ = await start_host(hosts, MomentumV1({}), gateway.address, pod_name="blue-0")
    session = await gateway.servicer.next_session()
    assert (session.hello.pod_name, session.hello.strategy) == ("blue-0", "momentum")
    assert (session.hello.version, session.hello.state_schema) == ("v1", 1)
    attachment = await asyncio.wait_for(host.wait_attached(), WAIT)
    assert (attachment.instance_id, attachment.role, attachment.epoch) == ("inst-1", Role.ACTIVE, 7)
    assert attachment.slots == (BTC, ETH)

    session.send(**evaluation(1))
    session.send(**evaluation(1, slot=ETH, live_close=99.5))
    session.send(**evaluation(2, live_close=101.0))
    d1, d2, d3 = [await session.recv_decision() for _ in range(3)]
    assert [(d.slot_id, d.seq, d.epoch) for d in (d1, d2, d3)] == [
        ("BTC/5m", 1, 7),
        ("ETH/5m", 1, 7),
        ("BTC/5m", 2, 7),
    ]
    assert (d1.action, d2.action, d3.action) == (mk.ACTION_UP, mk.ACTION_DOWN, mk.ACTION_HOLD)
    assert d3.reason == "already bet this window"
    assert d1.error == ""
    assert d1.eval_us >= 0
    # The decision continues the gateway's trace.
    assert d1.trace_context["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1]
    assert host.applied_seq == {"BTC/5m": 2, "ETH/5m": 1}
    assert (host.evaluations, host.role, host.epoch, host.instance_id) == (
        3,
        Role.ACTIVE,
        7,
        "inst-1",
    )


def batch(*requests: dict[str, Any]) -> dict[str, Any]:
    return {
        "evaluate_batch": gw.EvaluationBatch(
            requests=[q for r in requests for q in r["evaluate_batch"].requests]
        )
    }


async def test_a_batch_is_answered_in_request_order_in_chunks(
    gateway: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    host, _ = await start_host(hosts, MomentumV1({}), gateway.address)
    session = await gateway.servicer.next_session()
    await asyncio.wait_for(host.wait_attached(), WAIT)
    requests = [evaluation(seq, slot=slot) for seq in range(1, 76) for slot in (BTC, ETH)]
    session.send(**batch(*requests))
    session.send(**evaluation(76))  # a batch of one after it: answered after it
    chunks = [await session.recv("decisions") for _ in range(3)]  # 150 = 64 + 64 + 22
    assert [len(c.decisions) for c in chunks] == [64, 64, 22]
    answered = [(d.slot_id, d.seq) for c in chunks for d in c.decisions]
    assert answered == [
        (q.slot.slot_id, q.seq) for r in requests for q in r["evaluate_batch"].requests
    ]
    assert (await session.recv_decision()).seq == 76
    assert host.applied_seq == {"BTC/5m": 76, "ETH/5m": 75}
    assert host.shed == 0


def late(request: dict[str, Any]) -> dict[str, Any]:
    for q in request["evaluate_batch"].requests:
        q.deadline_ms = 1  # long past
    return request


@pytest.mark.parametrize("shed_late", [True, False], ids=["shedding", "no-shed-late"])
async def test_sheds_late_active_requests_only(
    gateway: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]], shed_late: bool
) -> None:
    """A request sent to this host as ACTIVE that reaches the worker past its deadline is
    skipped (the gateway has recorded it as a timeout already); a SHADOW's never is, late or
    not (a replayed journal is all late); ``--no-shed-late`` evaluates everything."""
    host, _ = await start_host(hosts, MomentumV1({}), gateway.address, shed_late=shed_late)
    session = await gateway.servicer.next_session()
    await asyncio.wait_for(host.wait_attached(), WAIT)
    session.send(
        **batch(
            late(evaluation(1)),  # shed
            evaluation(1, slot=ETH),  # in time
            late(evaluation(2, slot=ETH, role=Role.SHADOW)),  # late, but a shadow's
        )
    )
    session.send(**late(evaluation(2)))  # a batch of one is shed the same way
    session.send(**evaluation(3))
    answered = [(d.slot_id, d.seq) for d in (await session.recv("decisions")).decisions]
    if shed_late:
        assert answered == [("ETH/5m", 1), ("ETH/5m", 2)]
        assert (await session.recv_decision()).seq == 3
        assert host.shed == 2
        # The shed evaluations are not in the state: BTC's first applied seq is 3.
        assert host.applied_seq == {"BTC/5m": 3, "ETH/5m": 2}
    else:
        assert answered == [("BTC/5m", 1), ("ETH/5m", 1), ("ETH/5m", 2)]
        assert [(await session.recv_decision()).seq for _ in range(2)] == [2, 3]
        assert host.shed == 0
        assert host.applied_seq == {"BTC/5m": 3, "ETH/5m": 2}


async def test_a_batch_of_late_requests_only_gets_no_reply(
    gateway: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    host, _ = await start_host(hosts, MomentumV1({}), gateway.address)
    session = await gateway.servicer.next_session()
    await asyncio.wait_for(host.wait_attached(), WAIT)
    session.send(**batch(late(evaluation(1)), late(evaluation(1, slot=ETH))))
    session.send(**evaluation(2))
    # The next thing the host says is the answer to seq 2: nothing for the shed batch.
    assert (await session.recv_decision()).seq == 2
    assert host.shed == 2


async def test_strategy_error_is_answered_and_the_host_keeps_going(
    gateway: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    await start_host(hosts, Faulty({"raise_every": 2}), gateway.address)
    session = await gateway.servicer.next_session()
    for seq in (1, 2, 3):
        session.send(**evaluation(seq))
    ok, failed, after = [await session.recv_decision() for _ in range(3)]
    assert (ok.seq, ok.action, ok.error) == (1, mk.ACTION_HOLD, "")
    assert (failed.seq, failed.epoch, failed.action) == (2, 7, mk.ACTION_UNSPECIFIED)
    assert failed.error == "FaultyError: injected failure at BTC/5m seq 2"
    assert (after.seq, after.action, after.error) == (3, mk.ACTION_HOLD, "")


async def test_role_change_is_remembered(
    gateway: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    host, _ = await start_host(hosts, MomentumV1({}), gateway.address)
    session = await gateway.servicer.next_session()
    session.send(role_change=gw.RoleChange(role=mk.ROLE_DRAINING, epoch=8))
    session.send(**evaluation(1, epoch=8))  # ordered after the role change on the stream
    assert (await session.recv_decision()).epoch == 8
    assert (host.role, host.epoch) == (Role.DRAINING, 8)


async def test_fills_and_settlements_reach_the_state_and_export_reports_it(
    gateway: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    host, _ = await start_host(hosts, MomentumV1({}), gateway.address)
    session = await gateway.servicer.next_session()
    session.send(**evaluation(1))
    session.send(**fill("bet-1", 1))
    session.send(**fill("bet-2", 1))
    session.send(**settlement("bet-1", won=True))
    session.send(export_state=gw.ExportState(handoff_id="h-1"))
    await session.recv_decision()
    snap = await session.recv("state_export")
    assert (snap.handoff_id, snap.strategy, snap.version, snap.state_schema) == (
        "h-1",
        "momentum",
        "v1",
        1,
    )
    assert snap.digest == state_digest(snap.state)
    assert dict(snap.applied_seq) == {"BTC/5m": 1}
    state = decode_state(MomentumV1({}), snap.state).state
    assert set(state.slots["BTC/5m"].open_bets) == {"bet-2"}
    assert (state.counters.bets, state.counters.wins, state.counters.pnl) == (2, 1, 5.0)
    assert await host.state_digest() == snap.digest


async def test_export_from_v1_imports_into_v2_with_matching_digest(
    gateway: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    blue, _ = await start_host(hosts, MomentumV1({}), gateway.address, pod_name="blue")
    blue_session = await gateway.servicer.next_session()
    green, _ = await start_host(hosts, MomentumV2({}), gateway.address, pod_name="green")
    green_session = await gateway.servicer.next_session()
    assert green_session.hello.state_schema == 2

    for seq in (1, 2, 3):
        blue_session.send(**evaluation(seq, live_close=100.0 + seq / 10))
    blue_session.send(**fill("bet-1", 1))
    blue_session.send(export_state=gw.ExportState(handoff_id="h-7"))
    for _ in range(3):
        await blue_session.recv_decision()
    snap = await blue_session.recv("state_export")

    green_session.send(import_state=gw.ImportState(handoff_id="h-7", snapshot=snap))
    result = await green_session.recv("import_result")
    assert result.ok, result.error
    assert (result.handoff_id, result.digest, result.state_schema) == ("h-7", snap.digest, 2)
    assert result.migrated_digest == await green.state_digest()
    assert green.applied_seq == blue.applied_seq == {"BTC/5m": 3}

    # Green follows: its next evaluation is made on the imported state (one bet per window).
    green_session.send(**evaluation(4, live_close=101.0))
    decision = await green_session.recv_decision()
    assert (decision.seq, decision.action, decision.reason) == (
        4,
        mk.ACTION_HOLD,
        "already bet this window",
    )


async def test_import_into_same_schema_reproduces_blues_digest(
    gateway: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    await start_host(hosts, MomentumV1({}), gateway.address)
    blue = await gateway.servicer.next_session()
    green_host, _ = await start_host(hosts, MomentumV1({}), gateway.address)
    green = await gateway.servicer.next_session()
    blue.send(**evaluation(1))
    blue.send(export_state=gw.ExportState(handoff_id="h"))
    await blue.recv_decision()
    snap = await blue.recv("state_export")
    green.send(import_state=gw.ImportState(handoff_id="h", snapshot=snap))
    result = await green.recv("import_result")
    assert result.ok
    assert result.digest == result.migrated_digest == snap.digest
    assert await green_host.state_digest() == snap.digest


async def test_failed_import_is_reported_and_keeps_the_state(
    gateway: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    host, _ = await start_host(hosts, MomentumV1({}), gateway.address)
    session = await gateway.servicer.next_session()
    session.send(**evaluation(1))
    await session.recv_decision()
    before = await host.state_digest()
    bad = gw.StateSnapshot(strategy="momentum", state_schema=1, state=b"not json")
    session.send(import_state=gw.ImportState(handoff_id="h-bad", snapshot=bad))
    result = await session.recv("import_result")
    assert not result.ok
    assert result.error.startswith("StateDecodeError: state bytes are not canonical JSON")
    assert result.digest == state_digest(b"not json")
    assert await host.state_digest() == before
    assert host.applied_seq == {"BTC/5m": 1}


async def test_drain_finishes_queued_work_then_detaches(
    gateway: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    _, task = await start_host(hosts, Faulty({"delay_ms": 20}), gateway.address)
    session = await gateway.servicer.next_session()
    for seq in (1, 2, 3):
        session.send(**evaluation(seq))
    session.send(drain=gw.Drain(reason="handoff"))
    assert [(await session.recv_decision()).seq for _ in range(3)] == [1, 2, 3]
    complete = await session.recv("drain_complete")
    assert dict(complete.applied_seq) == {"BTC/5m": 3}
    await asyncio.wait_for(session.host_closed.wait(), WAIT)
    session.end()
    assert await asyncio.wait_for(task, WAIT) is HostExit.DRAINED


async def test_stop_returns_stopped(
    gateway: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    host, task = await start_host(hosts, MomentumV1({}), gateway.address)
    session = await gateway.servicer.next_session()
    host.stop()
    assert await asyncio.wait_for(task, WAIT) is HostExit.STOPPED
    await asyncio.wait_for(session.host_closed.wait(), WAIT)


async def test_reattaches_after_the_stream_ends_and_keeps_its_state(
    gateway: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    host, _ = await start_host(hosts, MomentumV1({}), gateway.address, pod_name="p")
    first = await gateway.servicer.next_session()
    first.send(**evaluation(1))
    await first.recv_decision()
    digest = await host.state_digest()
    first.end()

    second = await gateway.servicer.next_session()  # a new Hello on a new stream
    assert second.hello.pod_name == "p"
    assert second.instance_id == "inst-2"
    await asyncio.wait_for(host.wait_attached(), WAIT)
    assert host.attach_count == 2
    assert await host.state_digest() == digest
    second.send(**evaluation(2, live_close=101.0))
    decision = await second.recv_decision()
    assert decision.reason == "already bet this window"  # the state survived the reconnect
    assert host.applied_seq == {"BTC/5m": 2}


async def test_waits_for_a_gateway_that_starts_late(
    hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]],
) -> None:
    # Learn a free port from a gateway, stop it, point the host at the silent port.
    probe = await start_gateway(ScriptedGateway())
    await probe.server.stop(None)
    failures: list[str] = []
    failed_twice = asyncio.Event()

    def detached(reason: str) -> None:
        failures.append(reason)
        if len(failures) >= 2:
            failed_twice.set()

    host, _ = await start_host(hosts, MomentumV1({}), probe.address, on_detached=detached)
    await asyncio.wait_for(failed_twice.wait(), WAIT)
    assert failures[0].startswith("UNAVAILABLE")
    assert not host.attached
    late = await start_gateway(ScriptedGateway(), probe.address)
    try:
        session = await late.servicer.next_session()
        await asyncio.wait_for(host.wait_attached(), WAIT)
        session.send(**evaluation(1))
        assert (await session.recv_decision()).seq == 1
    finally:
        await late.server.stop(None)


async def test_exit_on_disconnect(
    gateway: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    _, task = await start_host(hosts, MomentumV1({}), gateway.address, exit_on_disconnect=True)
    session = await gateway.servicer.next_session()
    session.end()
    end = await asyncio.wait_for(task, WAIT)
    assert end is HostExit.DISCONNECTED
    assert end.exit_code == 1


async def test_non_retryable_refusal_ends_the_host(
    hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]],
) -> None:
    g = await start_gateway(ScriptedGateway(reject=True))
    try:
        _, task = await start_host(hosts, MomentumV1({}), g.address)
        assert await asyncio.wait_for(task, WAIT) is HostExit.REJECTED
    finally:
        await g.server.stop(None)


class Blob(Strategy[dict[str, str]]):
    """A strategy whose state is one big string (``size`` bytes)."""

    name = "blob"
    version = "v1"
    state_schema = 1

    def initial_state(self) -> dict[str, str]:
        return {"blob": "x" * int(self.config.get("size", 0))}

    def evaluate(self, request: EvaluationRequest, state: dict[str, str]) -> Action:
        return Action.HOLD

    def export_state(self, state: dict[str, str]) -> dict[str, Any]:
        return dict(state)

    def import_state(self, data: dict[str, Any]) -> dict[str, str]:
        return {"blob": str(data["blob"])}


async def test_states_larger_than_grpcs_default_message_limit_move(
    gateway: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    size = 6 * 1024 * 1024
    await start_host(hosts, Blob({"size": size}), gateway.address)
    blue = await gateway.servicer.next_session()
    green_host, _ = await start_host(hosts, Blob({}), gateway.address)
    green = await gateway.servicer.next_session()
    blue.send(export_state=gw.ExportState(handoff_id="big"))
    snap = await blue.recv("state_export")
    assert len(snap.state) > size
    green.send(import_state=gw.ImportState(handoff_id="big", snapshot=snap))
    result = await green.recv("import_result")
    assert result.ok, result.error
    assert await green_host.state_digest() == snap.digest


async def test_export_over_the_state_limit_answers_an_empty_snapshot(
    gateway: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    await start_host(hosts, Blob({"size": 4096}), gateway.address, max_state_bytes=1024)
    session = await gateway.servicer.next_session()
    session.send(export_state=gw.ExportState(handoff_id="h"))
    snap = await session.recv("state_export")
    assert (snap.handoff_id, snap.strategy, snap.state, snap.digest) == ("h", "blob", b"", "")
    assert snap.error.startswith("StateTooLargeError: encoded state is "), snap.error
    assert snap.error.endswith("over the limit of 1024 bytes (max_state_bytes)")
    session.send(**evaluation(1))  # and it keeps serving
    assert (await session.recv_decision()).seq == 1
    # A failed export forwarded to an import is refused with a message saying so.
    session.send(import_state=gw.ImportState(handoff_id="h", snapshot=snap))
    result = await session.recv("import_result")
    assert not result.ok
    assert result.error.startswith("StateDecodeError: the snapshot is a failed export (State")


async def test_no_welcome_times_out_and_attaches_again_and_stop_cuts_the_wait(
    hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]],
) -> None:
    g = await start_gateway(ScriptedGateway(silent=True))
    lost = asyncio.Event()
    reasons: list[str] = []

    def detached(reason: str) -> None:
        reasons.append(reason)
        lost.set()

    try:
        host, task = await start_host(
            hosts, MomentumV1({}), g.address, welcome_timeout_s=0.2, on_detached=detached
        )
        await asyncio.wait_for(lost.wait(), WAIT)
        assert reasons[0] == "no Welcome within 0.2 s"
        await asyncio.wait_for(g.servicer.hellos.get(), WAIT)
        await asyncio.wait_for(g.servicer.hellos.get(), WAIT)  # a second Hello: it tried again
        host.stop()
        assert await asyncio.wait_for(task, WAIT) is HostExit.STOPPED
    finally:
        await g.server.stop(None)


# -- the handoff, as the gateway drives it -------------------------------------------------------


async def decisions(session: Session, n: int) -> list[Any]:
    return [await session.recv_decision() for _ in range(n)]


def summary(ds: list[Any]) -> list[tuple[int, int, int, str]]:
    return [(d.seq, d.epoch, d.action, d.reason) for d in ds]


@pytest.mark.parametrize(
    ("green_cls", "same_schema"),
    [(MomentumV1, True), (MomentumV2, False)],
    ids=["v1-to-v1", "v1-to-v2"],
)
async def test_handoff_choreography(
    gateway: Gateway,
    hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]],
    green_cls: type[Strategy[Any]],
    same_schema: bool,
) -> None:
    """Export, import, shadow with a journal replay, flip, bake with blue shadowing, drain."""
    blue, blue_task = await start_host(hosts, MomentumV1({}), gateway.address, pod_name="blue")
    b = await gateway.servicer.next_session()
    gateway.servicer.role = mk.ROLE_STANDBY  # green attaches as STANDBY and is sent nothing
    green, _ = await start_host(hosts, green_cls({}), gateway.address, pod_name="green")
    g = await gateway.servicer.next_session()
    assert (await asyncio.wait_for(green.wait_attached(), WAIT)).role is Role.STANDBY

    # 1. blue: ticks, a fill, then ExportState in-stream; what follows it is journaled.
    b.send(**evaluation(1))
    b.send(**evaluation(1, slot=ETH, live_close=99.5))
    b.send(**fill("bet-1", 1))
    b.send(export_state=gw.ExportState(handoff_id="h-1"))
    journal = [evaluation(2, live_close=100.7), evaluation(2, slot=ETH), settlement("bet-1", True)]
    for msg in journal:
        b.send(**msg)
    await decisions(b, 2)  # the ticks before the export
    snap = await b.recv("state_export")
    assert (snap.error, dict(snap.applied_seq)) == ("", {"BTC/5m": 1, "ETH/5m": 1})
    blue_journaled = await decisions(b, 2)

    # 2. green: import, SHADOW under the current epoch, the journal replayed (requests still
    # say ACTIVE: they were built for blue), then live ticks as SHADOW alongside blue.
    g.send(import_state=gw.ImportState(handoff_id="h-1", snapshot=snap))
    result = await g.recv("import_result")
    assert result.ok, result.error
    assert result.digest == snap.digest
    assert (result.migrated_digest == snap.digest) is same_schema
    g.send(role_change=gw.RoleChange(role=mk.ROLE_SHADOW, epoch=7))
    for msg in journal:
        g.send(**msg)
    green_journaled = await decisions(g, 2)
    assert [(d.seq, d.epoch) for d in green_journaled] == [(2, 7), (2, 7)]
    if same_schema:
        assert summary(green_journaled) == summary(blue_journaled)
    else:  # v2 decides on the migrated state: blue's bet on this window is remembered
        assert green_journaled[0].reason == "already bet this window"
    b.send(**evaluation(3, live_close=100.2))
    g.send(**evaluation(3, live_close=100.2, role=Role.SHADOW))
    blue_live, green_live = await decisions(b, 1), await decisions(g, 1)
    assert (green.role, green.epoch) == (Role.SHADOW, 7)
    assert green.applied_seq == blue.applied_seq == {"BTC/5m": 3, "ETH/5m": 2}
    if same_schema:
        assert summary(green_live) == summary(blue_live)
        assert await green.state_digest() == await blue.state_digest()

    # 3. the flip at a tick boundary: green ACTIVE and blue SHADOW, both under epoch 8.
    g.send(role_change=gw.RoleChange(role=mk.ROLE_ACTIVE, epoch=8))
    b.send(role_change=gw.RoleChange(role=mk.ROLE_SHADOW, epoch=8))
    g.send(**evaluation(4, epoch=8, live_close=99.0))
    b.send(**evaluation(4, epoch=8, live_close=99.0, role=Role.SHADOW))
    (green_first,), (blue_shadow,) = await decisions(g, 1), await decisions(b, 1)
    assert (green_first.seq, green_first.epoch, blue_shadow.epoch) == (4, 8, 8)
    assert (green.role, green.epoch, blue.role, blue.epoch) == (Role.ACTIVE, 8, Role.SHADOW, 8)
    if same_schema:  # blue shadows on a state equal to green's: it can take back at any tick
        assert await green.state_digest() == await blue.state_digest()

    # 4. bake over: blue drains and detaches; green goes on.
    b.send(drain=gw.Drain(reason="handoff h-1 completed"))
    complete = await b.recv("drain_complete")
    assert dict(complete.applied_seq) == {"BTC/5m": 4, "ETH/5m": 2}
    await asyncio.wait_for(b.host_closed.wait(), WAIT)
    b.end()
    assert await asyncio.wait_for(blue_task, WAIT) is HostExit.DRAINED
    g.send(**evaluation(5, epoch=8))
    assert (await g.recv_decision()).seq == 5


async def test_rollback_in_the_bake_window_gives_blue_back_the_lead(
    gateway: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    """After the flip green fails; blue, shadowing with its state current, is ACTIVE again."""
    blue, _ = await start_host(hosts, MomentumV1({}), gateway.address)
    b = await gateway.servicer.next_session()
    b.send(role_change=gw.RoleChange(role=mk.ROLE_SHADOW, epoch=8))  # green took over
    b.send(**evaluation(1, epoch=8, role=Role.SHADOW))
    b.send(role_change=gw.RoleChange(role=mk.ROLE_ACTIVE, epoch=9))  # green failed
    b.send(**evaluation(2, epoch=9))
    assert [(d.seq, d.epoch) for d in await decisions(b, 2)] == [(1, 8), (2, 9)]
    assert (blue.role, blue.epoch, blue.applied_seq) == (Role.ACTIVE, 9, {"BTC/5m": 2})


class Gate(Faulty):
    """Faulty whose evaluation of seq 1 blocks the worker until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__({})
        self.gate = threading.Event()

    def evaluate(self, request: EvaluationRequest, state: dict[str, int]) -> Outcome:
        if request.seq == 1:
            self.gate.wait(WAIT)
        return super().evaluate(request, state)


async def test_role_changes_between_queued_evaluations_leave_every_answers_epoch_alone(
    gateway: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    """Role changes take effect on arrival, even with evaluations still queued, and never
    rewrite an answer: each decision carries its own request's epoch, late or replayed."""
    strategy = Gate()
    draining = asyncio.Event()

    def role_changed(role: Role, epoch: int) -> None:
        if role is Role.DRAINING:
            draining.set()

    host, _ = await start_host(hosts, strategy, gateway.address, on_role_changed=role_changed)
    session = await gateway.servicer.next_session()
    session.send(**evaluation(1, epoch=7))  # blocks the worker: everything below queues
    session.send(role_change=gw.RoleChange(role=mk.ROLE_SHADOW, epoch=8))
    session.send(**evaluation(2, epoch=7))  # journaled before the change, replayed after it
    session.send(role_change=gw.RoleChange(role=mk.ROLE_ACTIVE, epoch=9))
    session.send(**evaluation(3, epoch=9))
    session.send(**evaluation(4, epoch=5))  # a stale epoch is answered as given: fencing is
    session.send(role_change=gw.RoleChange(role=mk.ROLE_DRAINING, epoch=9))  # the gateway's
    session.send(**evaluation(5, epoch=9))
    await asyncio.wait_for(draining.wait(), WAIT)
    assert (host.epoch, host.evaluations) == (9, 0)  # every change in, no answer out yet
    assert session.inbox.empty()
    strategy.gate.set()
    got = await decisions(session, 5)
    assert [(d.seq, d.epoch) for d in got] == [(1, 7), (2, 7), (3, 9), (4, 5), (5, 9)]
    assert host.applied_seq == {"BTC/5m": 5}


async def test_state_goes_v1_to_v2_and_back_to_v1_over_the_wire(
    gateway: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    """``baton demo --handoffs 2``: v1 -> v2 -> v1. With no tick in between, the second v1
    holds exactly the first one's state (digest), open bets and counters included."""
    await start_host(hosts, MomentumV1({}), gateway.address, pod_name="v1-a")
    a = await gateway.servicer.next_session()
    gateway.servicer.role = mk.ROLE_STANDBY
    await start_host(hosts, MomentumV2({}), gateway.address, pod_name="v2")
    v2 = await gateway.servicer.next_session()
    last, _ = await start_host(hosts, MomentumV1({}), gateway.address, pod_name="v1-b")
    c = await gateway.servicer.next_session()

    for seq in (1, 2):
        a.send(**evaluation(seq))
        a.send(**evaluation(seq, slot=ETH, live_close=99.0))
    a.send(**fill("bet-1", 1))
    a.send(**fill("bet-2", 1))
    a.send(**settlement("bet-1", won=True))
    a.send(export_state=gw.ExportState(handoff_id="h-1"))
    await decisions(a, 4)
    first = await a.recv("state_export")

    v2.send(import_state=gw.ImportState(handoff_id="h-1", snapshot=first))
    up = await v2.recv("import_result")
    assert (up.ok, up.state_schema) == (True, 2), up.error
    v2.send(export_state=gw.ExportState(handoff_id="h-2"))
    second = await v2.recv("state_export")
    assert (second.state_schema, second.version, second.digest) == (2, "v2", up.migrated_digest)

    c.send(import_state=gw.ImportState(handoff_id="h-2", snapshot=second))
    down = await c.recv("import_result")
    assert (down.ok, down.state_schema, down.digest) == (True, 1, second.digest), down.error
    assert down.migrated_digest == first.digest
    assert await last.state_digest() == first.digest
    state = decode_state(MomentumV1({}), (await last.export_state()).data).state
    assert set(state.slots["BTC/5m"].open_bets) == {"bet-2"}
    assert (state.counters.evaluations, state.counters.bets, state.counters.wins) == (4, 2, 1)


async def test_faulty_answers_a_wrong_epoch_and_fails_imports_on_demand(
    gateway: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    await start_host(hosts, Faulty({}), gateway.address)
    blue = await gateway.servicer.next_session()
    await start_host(hosts, FaultyV2({"wrong_epoch": True}), gateway.address)
    stale = await gateway.servicer.next_session()
    failing, _ = await start_host(hosts, FaultyV2({"fail_import": True}), gateway.address)
    broken = await gateway.servicer.next_session()

    blue.send(**evaluation(1))
    blue.send(export_state=gw.ExportState(handoff_id="h"))
    assert (await blue.recv_decision()).epoch == 7
    snap = await blue.recv("state_export")
    assert (snap.strategy, snap.version) == ("faulty", "v1")

    stale.send(import_state=gw.ImportState(handoff_id="h", snapshot=snap))
    assert (await stale.recv("import_result")).ok
    stale.send(**evaluation(2, epoch=8))
    assert (await stale.recv_decision()).epoch == 1008

    before = await failing.state_digest()
    broken.send(import_state=gw.ImportState(handoff_id="h", snapshot=snap))
    result = await broken.recv("import_result")
    assert not result.ok
    assert result.error.endswith("FaultyError: injected import failure (fail_import)")
    assert await failing.state_digest() == before


# -- the real command -----------------------------------------------------------------------


async def start_cli(
    address: str,
    tmp_path: Path,
    *extra: str,
    entrypoint: str = "baton.strategy.examples.momentum_v1:MomentumV1",
    config: str = '{"threshold": 0.3}',
) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    """``baton strategy`` as a subprocess; returns it and its ready line's fields."""
    stderr = (tmp_path / "strategy.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "baton", "strategy", "--gateway", address,
        "--entrypoint", entrypoint, "--config", config, "--pod-name", "cli-0", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=stderr,
    )  # fmt: skip
    stderr.close()
    assert proc.stdout is not None
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        assert line, f"exited before ready: {(tmp_path / 'strategy.log').read_text()}"
        ready = parse_ready(line.decode())
        if ready is not None:
            return proc, ready


@pytest.fixture
def processes() -> Iterator[list[asyncio.subprocess.Process]]:
    started: list[asyncio.subprocess.Process] = []
    yield started
    for proc in started:
        if proc.returncode is None:
            proc.kill()


async def test_cli_attaches_prints_ready_answers_and_exits_0_on_drain(
    gateway: Gateway, tmp_path: Path, processes: list[asyncio.subprocess.Process]
) -> None:
    proc, ready = await start_cli(gateway.address, tmp_path)
    processes.append(proc)
    assert ready == {
        "instance_id": "inst-1",
        "role": "ACTIVE",
        "strategy": "momentum",
        "version": "v1",
        "state_schema": 1,
        "epoch": 7,
        "pod_name": "cli-0",
    }
    session = await gateway.servicer.next_session()
    session.send(**evaluation(1))
    decision = await session.recv_decision()
    assert (decision.seq, decision.epoch, decision.action) == (1, 7, mk.ACTION_UP)
    session.send(drain=gw.Drain(reason="test"))
    assert dict((await session.recv("drain_complete")).applied_seq) == {"BTC/5m": 1}
    assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_cli_exits_0_on_sigterm(
    gateway: Gateway, tmp_path: Path, processes: list[asyncio.subprocess.Process]
) -> None:
    proc, _ = await start_cli(gateway.address, tmp_path)
    processes.append(proc)
    session = await gateway.servicer.next_session()
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 10) == 0
    await asyncio.wait_for(session.host_closed.wait(), WAIT)


async def test_cli_exits_1_on_disconnect_when_asked(
    gateway: Gateway, tmp_path: Path, processes: list[asyncio.subprocess.Process]
) -> None:
    proc, _ = await start_cli(gateway.address, tmp_path, "--exit-on-disconnect")
    processes.append(proc)
    (await gateway.servicer.next_session()).end()
    assert await asyncio.wait_for(proc.wait(), 10) == 1


async def test_cli_reports_a_bad_entrypoint_and_exits_2(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "baton", "strategy", "--gateway", "127.0.0.1:1",
        "--entrypoint", "baton.strategy.examples.nowhere:Nothing",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 2
    assert "module 'baton.strategy.examples.nowhere' not found" in err.decode()


async def test_cli_faulty_crashes_with_status_3_on_exit_on_seq(
    gateway: Gateway, tmp_path: Path, processes: list[asyncio.subprocess.Process]
) -> None:
    proc, ready = await start_cli(
        gateway.address,
        tmp_path,
        entrypoint="baton.strategy.examples.faulty:FaultyV2",
        config='{"exit_on_seq": 2}',
    )
    processes.append(proc)
    assert (ready["strategy"], ready["version"]) == ("faulty", "v2")
    session = await gateway.servicer.next_session()
    session.send(**evaluation(1))
    # Awaited before sending seq 2: a crash may also lose answers still on their way out.
    assert (await session.recv_decision()).seq == 1
    session.send(**evaluation(2))
    session.send(**evaluation(3))
    assert await asyncio.wait_for(proc.wait(), 10) == 3
    assert session.inbox.empty()  # no answer to seq 2 or 3: it died mid-evaluation
    assert "crashing on purpose (exit_on_seq)" in (tmp_path / "strategy.log").read_text()


# -- the book: the strategy's slots and stake -------------------------------------------------


async def test_hello_carries_the_strategys_slots_and_stake(
    gateway: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    await start_host(hosts, MomentumV1({}), gateway.address, slots=("ETH/5m", "BTC/5m"), stake=2.5)
    hello = (await gateway.servicer.next_session()).hello
    assert list(hello.slots) == ["ETH/5m", "BTC/5m"]  # in the order given
    assert hello.HasField("stake")
    assert hello.stake == 2.5


async def test_hello_without_a_choice_leaves_slots_empty_and_stake_unset(
    gateway: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    """Empty slots: every slot of the gateway; unset stake: the gateway's venue.stake."""
    await start_host(hosts, MomentumV1({}), gateway.address)
    hello = (await gateway.servicer.next_session()).hello
    assert list(hello.slots) == []
    assert not hello.HasField("stake")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"slots": ("btc/5m",)}, "'btc/5m' must be MARKET/TIMEFRAME", id="bad-slot"),
        pytest.param({"slots": ("BTC/5m", "BTC/5m")}, "listed twice", id="repeated-slot"),
        pytest.param({"stake": 0.0}, "stake: must be a number > 0", id="zero-stake"),
        pytest.param({"stake": float("nan")}, "stake: must be a number > 0", id="nan-stake"),
    ],
)
def test_a_bad_slot_or_stake_is_refused_at_construction(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        StrategyHost(MomentumV1({}), "127.0.0.1:1", **kwargs)


async def test_cli_sends_its_slots_and_stake_in_hello(
    gateway: Gateway, tmp_path: Path, processes: list[asyncio.subprocess.Process]
) -> None:
    proc, ready = await start_cli(
        gateway.address,
        tmp_path,
        "--slots",
        "BTC/5m",
        "--slots",
        "ETH/15m, SOL/5m",
        "--stake",
        "1.25",
        entrypoint="baton.strategy.examples.reversion_v1:ReversionV1",
        config='{"threshold": 1.5}',
    )
    processes.append(proc)
    assert (ready["strategy"], ready["version"]) == ("reversion", "v1")
    hello = (await gateway.servicer.next_session()).hello
    assert (hello.strategy, hello.version, hello.state_schema) == ("reversion", "v1", 1)
    assert list(hello.slots) == ["BTC/5m", "ETH/15m", "SOL/5m"]
    assert hello.HasField("stake")
    assert hello.stake == 1.25
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 10) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--slots", "BTC/5m,eth/5m"],
            "baton strategy: --slots: 'eth/5m' must be MARKET/TIMEFRAME, e.g. BTC/5m",
            id="lower-case-market",
        ),
        pytest.param(
            ["--slots", "BTC-5m"], "--slots: 'BTC-5m' must be MARKET/TIMEFRAME", id="no-slash"
        ),
        pytest.param(
            ["--slots", "BTC/5m", "--slots", "BTC/5m"],
            "--slots: 'BTC/5m' is listed twice",
            id="repeated",
        ),
        pytest.param(["--stake", "0"], "--stake: must be a number > 0, got 0", id="zero-stake"),
        pytest.param(["--stake", "-2"], "--stake: must be a number > 0, got -2", id="negative"),
        pytest.param(["--stake", "inf"], "--stake: must be a number > 0, got inf", id="infinite"),
        pytest.param(
            ["--stake", "lots"], "--stake: invalid float value: 'lots'", id="not-a-number"
        ),
    ],
)
async def test_cli_refuses_a_bad_slot_or_stake_naming_the_flag(
    args: list[str], message: str
) -> None:
    """Checked before anything is loaded or dialled (the gateway address is a dead port)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "baton", "strategy", "--gateway", "127.0.0.1:1",
        "--entrypoint", "baton.strategy.examples.reversion_v1:ReversionV1", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 2, err.decode()
    assert message in err.decode()


# -- the gateway term (docs/gateway-standby.md, "Fencing") --------------------------------------


def at(term: int, message: dict[str, Any]) -> dict[str, Any]:
    """``message`` (one body, as the helpers above build it) sent by a gateway of ``term``."""
    ((_, body),) = message.items()
    body.term = term
    return message


@pytest.fixture
async def elected() -> AsyncIterator[Gateway]:
    """A scripted gateway whose Welcome carries term 2."""
    g = await start_gateway(ScriptedGateway(term=2))
    yield g
    await g.server.stop(None)


async def attach(
    hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]], g: Gateway
) -> tuple[StrategyHost, asyncio.Task[HostExit], Session]:
    host, task = await start_host(hosts, MomentumV1({}), g.address)
    session = await g.servicer.next_session()
    await asyncio.wait_for(host.wait_attached(), WAIT)
    return host, task, session


async def test_a_newer_term_is_adopted_at_once_and_every_answer_echoes_its_commands_term(
    elected: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    host, task, session = await attach(hosts, elected)
    assert host.term == 2  # from the Welcome
    session.send(**at(2, evaluation(1)))
    assert (await session.recv("decisions")).term == 2
    session.send(**at(3, evaluation(2, live_close=101.0)))  # a new leader's first batch
    assert (await session.recv("decisions")).term == 3
    assert host.term == 3
    session.send(**at(3, {"export_state": gw.ExportState(handoff_id="h-1")}))
    snap = await session.recv("state_export")
    assert snap.term == 3
    session.send(**at(3, {"import_state": gw.ImportState(handoff_id="h-2", snapshot=snap)}))
    result = await session.recv("import_result")
    assert (result.ok, result.term) == (True, 3)
    session.send(**at(4, {"drain": gw.Drain(reason="handoff")}))
    assert (await session.recv("drain_complete")).term == 4
    session.end()
    assert await asyncio.wait_for(task, WAIT) is HostExit.DRAINED
    assert (host.term, host.fenced) == (4, 0)


OLDER: dict[str, Callable[[gw.StateSnapshot], dict[str, Any]]] = {
    # Each kind of gateway message, as a deposed leader (term 1) would send it to a host that has
    # seen term 2; the host must not act on any of them.
    "evaluate_batch": lambda snap: evaluation(2, live_close=101.0),
    "fill": lambda snap: fill("bet-2", 2),
    "settlement": lambda snap: settlement("bet-1", won=True),
    "export_state": lambda snap: {"export_state": gw.ExportState(handoff_id="h-old")},
    "import_state": lambda snap: {
        "import_state": gw.ImportState(handoff_id="h-old", snapshot=snap)
    },
    "role_change": lambda snap: {"role_change": gw.RoleChange(role=mk.ROLE_SHADOW, epoch=9)},
    "drain": lambda snap: {"drain": gw.Drain(reason="old leader")},
}


@pytest.mark.parametrize("kind", list(OLDER))
async def test_a_message_of_an_older_term_is_answered_fenced_and_not_acted_on(
    kind: str, elected: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    host, task, session = await attach(hosts, elected)
    # A state with a bet in it, and an earlier snapshot that importing would go back to.
    session.send(**at(2, evaluation(1)))
    await session.recv("decisions")
    session.send(**at(2, {"export_state": gw.ExportState(handoff_id="h-0")}))
    earlier = await session.recv("state_export")
    session.send(**at(2, fill("bet-1", 1)))
    session.send(**at(2, {"export_state": gw.ExportState(handoff_id="h-1")}))
    before = await session.recv("state_export")
    assert before.digest != earlier.digest
    evaluations = host.evaluations

    session.send(**at(1, OLDER[kind](earlier)))
    refusal = await session.recv("fenced")  # the very next message: nothing else answered
    assert (refusal.term, refusal.current_term, refusal.what) == (1, 2, kind)

    session.send(**at(2, {"export_state": gw.ExportState(handoff_id="h-2")}))
    after = await session.recv("state_export")
    assert (after.digest, dict(after.applied_seq)) == (before.digest, {"BTC/5m": 1})
    assert host.evaluations == evaluations
    assert (host.role, host.epoch, host.term, host.fenced) == (Role.ACTIVE, 7, 2, 1)
    assert not task.done()  # not drained


async def test_an_older_terms_welcome_is_refused_and_the_host_attaches_again(
    elected: Gateway, hosts: list[tuple[StrategyHost, asyncio.Task[HostExit]]]
) -> None:
    host, _, first = await attach(hosts, elected)
    g = elected.servicer
    g.term = 1  # the host comes back to a deposed leader
    first.end()
    stale = await g.next_session()
    refusal = await stale.recv("fenced")
    assert (refusal.term, refusal.current_term, refusal.what) == (1, 2, "welcome")
    await asyncio.wait_for(stale.host_closed.wait(), WAIT)  # it half-closed after saying so
    g.term = 3  # the new leader
    await g.next_session()
    await asyncio.wait_for(host.wait_attached(), WAIT)  # cleared when the stale one ended
    assert (host.term, host.attach_count, host.fenced) == (3, 2, 1)
