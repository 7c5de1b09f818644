"""A book of strategies on one gateway, with real processes: two strategies attach to one
gateway; one is handed off twice while the other runs, the other's host is SIGKILLed and comes
back; the one never misses, the other misses only while nobody runs it, and bets never cross
(docs/gateway.md#a-book-of-strategies)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from baton.common import Service
from baton.control import ControlClient, phase_name
from baton.gateway.report import presence_report
from baton.v1 import control_pb2 as ctl
from baton.v1 import gateway_pb2 as gw
from baton.v1 import gateway_pb2_grpc as gw_grpc
from tests.procs import (
    CADENCE_S,
    SLOTS,
    StartGateway,
    StartStrategy,
    query,
    wait_until,
)

MOMENTUM = "baton.strategy.examples.momentum_v1:MomentumV1"
FAULTY_V1 = "baton.strategy.examples.faulty:Faulty"
FAULTY_V2 = "baton.strategy.examples.faulty:FaultyV2"
UP = json.dumps({"action": "UP"})  # faulty bets every window: bets to check for crossing
POLICY = ctl.HandoffPolicy(shadow_ticks=1, bake_s=0.5, step_timeout_s=10)


def executed(ledger: Path, strategy: str) -> int:
    rows = query(
        ledger,
        "SELECT count(*) FROM evaluations WHERE strategy = ? AND outcome = 'executed'",
        strategy,
    )
    return int(rows[0][0]) if rows else 0


async def ticks_of(ledger: Path, strategy: str, ticks: int) -> None:
    """``ticks`` more ticks of ``strategy`` executed (bounded)."""
    target = executed(ledger, strategy) + ticks * SLOTS
    await wait_until(
        lambda: executed(ledger, strategy) >= target,
        timeout_s=ticks * CADENCE_S + 20,
        what=f"{ticks} more executed ticks of {strategy}",
    )


async def hand_off(client: ControlClient, green: Service) -> None:
    started = await client.promote(green.ready["instance_id"], POLICY)
    async with asyncio.timeout(60):
        status = await client.wait(started.handoff_id)
    assert phase_name(status.phase) == "completed", status.message


async def test_one_strategy_hands_off_and_the_other_crashes_neither_touches_the_other(
    start_gateway: StartGateway, start_strategy: StartStrategy, ledger: Path
) -> None:
    gateway = await start_gateway()
    await start_strategy(gateway, FAULTY_V1, UP)
    momentum = await start_strategy(gateway, MOMENTUM)
    async with ControlClient(gateway.ready["grpc_addr"]) as client:
        await ticks_of(ledger, "momentum", 2)
        listing = await client.list_instances()
        assert [(s.name, s.epoch, len(s.slot_ids)) for s in listing.strategies] == [
            ("faulty", 1, SLOTS),
            ("momentum", 1, SLOTS),
        ]
        # Several strategies: the one-strategy fields are unset (read `strategies`).
        assert (listing.epoch, listing.active_instance_id) == (0, "")

        # faulty v1 -> v2 while momentum runs; then momentum's host dies (no drain, no answer).
        green = await start_strategy(gateway, FAULTY_V2, UP)
        await hand_off(client, green)
        await ticks_of(ledger, "faulty", 2)
        momentum.proc.kill()
        await momentum.proc.wait()
        await ticks_of(ledger, "faulty", 3)  # faulty goes on; momentum's ticks are missed
        # faulty v2 -> v1 while momentum is down, then momentum comes back.
        again = await start_strategy(gateway, FAULTY_V1, UP)
        await hand_off(client, again)
        await start_strategy(gateway, MOMENTUM)
        await ticks_of(ledger, "momentum", 3)
        listing = await client.list_instances()
        epochs = {s.name: s.epoch for s in listing.strategies}
        assert epochs == {"faulty": 3, "momentum": 2}  # two handoffs; one re-attach
    assert await gateway.stop(timeout_s=10) == 0

    # The ledger: faulty never missed; momentum missed only while nobody ran it.
    outcomes = dict(
        ((s, o), n)
        for s, o, n in query(
            ledger, "SELECT strategy, outcome, count(*) FROM evaluations GROUP BY 1, 2"
        )
    )
    assert {o for (s, o) in outcomes if s == "faulty"} == {"executed"}, outcomes
    momentum_missed = {o for (s, o) in outcomes if s == "momentum" and o != "executed"}
    assert momentum_missed, outcomes
    assert momentum_missed <= {"timeout", "no_active"}, outcomes
    # Per strategy and slot, seqs are contiguous from the strategy's first tick: nothing lost.
    for strategy in ("faulty", "momentum"):
        seqs: dict[str, list[int]] = {}
        for slot_id, seq in query(
            ledger,
            "SELECT slot_id, seq FROM evaluations WHERE strategy = ? ORDER BY slot_id, seq",
            strategy,
        ):
            seqs.setdefault(slot_id, []).append(seq)
        assert len(seqs) == SLOTS
        for slot_id, values in seqs.items():
            assert values == list(range(values[0], values[0] + len(values))), (strategy, slot_id)
    # Bets never cross: each is its own strategy's, from its own evaluation.
    bets = query(
        ledger,
        "SELECT b.strategy, e.strategy, b.bet_id FROM bets b "
        "JOIN evaluations e ON e.bet_id = b.bet_id",
    )
    assert bets
    assert all(b == e and bid.startswith(f"{b}:") for b, e, bid in bets), bets
    assert query(ledger, "SELECT count(*) FROM bets")[0][0] == len(bets)


async def hello_then_wait(hello: gw.Hello) -> AsyncIterator[gw.AttachRequest]:
    """An instance's stream: its Hello, then nothing (the gateway answers or refuses)."""
    yield gw.AttachRequest(hello=hello)
    await asyncio.Event().wait()


async def drain(call: grpc.aio.StreamStreamCall[gw.AttachRequest, gw.AttachResponse]) -> None:
    async for _ in call:
        pass


@pytest.mark.parametrize(
    ("hello", "code"),
    [
        (gw.Hello(pod_name="p", strategy="momentum", version="v9", slots=["DOGE/1h"]),
         grpc.StatusCode.INVALID_ARGUMENT),
        (gw.Hello(pod_name="p", strategy="momentum", version="v9", slots=["BTC/5m"]),
         grpc.StatusCode.FAILED_PRECONDITION),
        (gw.Hello(pod_name="p", strategy="momentum", version="v9", stake=9.0),
         grpc.StatusCode.FAILED_PRECONDITION),
    ],
    ids=["unknown-slot", "other-slots-than-the-book", "other-stake-than-the-book"],
)  # fmt: skip
async def test_an_instance_asking_for_another_shape_is_refused_and_nothing_changes(
    start_gateway: StartGateway,
    start_strategy: StartStrategy,
    ledger: Path,
    hello: gw.Hello,
    code: grpc.StatusCode,
) -> None:
    gateway = await start_gateway()
    await start_strategy(gateway, MOMENTUM)
    await ticks_of(ledger, "momentum", 1)
    async with grpc.aio.insecure_channel(gateway.ready["grpc_addr"]) as channel:
        call = gw_grpc.GatewayServiceStub(channel).Attach(hello_then_wait(hello))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await asyncio.wait_for(drain(call), 10)
        assert err.value.code() == code
        assert "momentum" in (err.value.details() or "")
    async with ControlClient(gateway.ready["grpc_addr"]) as client:
        listing = await client.list_instances()
    assert [(s.name, len(s.slot_ids), s.stake) for s in listing.strategies] == [
        ("momentum", SLOTS, 5.0)
    ]
    assert len(listing.instances) == 1


async def test_a_restarted_gateway_schedules_its_whole_book_attached_or_not(
    start_gateway: StartGateway, start_strategy: StartStrategy, ledger: Path
) -> None:
    """The book is in the ledger: after a restart a strategy nobody runs any more is missed
    (no_active), not forgotten; the one that comes back is evaluated, under its own epoch."""
    first = await start_gateway()
    await start_strategy(first, FAULTY_V1, UP)
    momentum = await start_strategy(first, MOMENTUM)
    await ticks_of(ledger, "momentum", 2)
    assert await first.stop(timeout_s=10) == 0
    await momentum.stop()

    second = await start_gateway(BATON_GATEWAY__LISTEN=first.ready["grpc_addr"])
    # faulty's host reconnects by itself; momentum's is gone for good.
    await ticks_of(ledger, "faulty", 3)
    async with ControlClient(second.ready["grpc_addr"]) as client:
        listing = await client.list_instances()
    assert [(s.name, bool(s.active_instance_id)) for s in listing.strategies] == [
        ("faulty", True),
        ("momentum", False),
    ]
    assert await second.stop(timeout_s=10) == 0
    run2 = dict(
        ((s, o), n)
        for s, o, n in query(
            ledger,
            "SELECT strategy, outcome, count(*) FROM evaluations WHERE run_id = 2 GROUP BY 1, 2",
        )
    )
    assert run2.get(("momentum", "no_active"), 0) >= 3 * SLOTS, run2
    assert {o for (s, o) in run2 if s == "momentum"} == {"no_active"}, run2
    assert {o for (s, o) in run2 if s == "faulty"} <= {"executed", "no_active"}, run2


async def test_a_retired_strategy_is_no_longer_scheduled_nor_restored(
    start_gateway: StartGateway, start_strategy: StartStrategy, ledger: Path
) -> None:
    """`baton retire`: refused while an instance of the strategy is attached; once its host is
    gone, the strategy leaves the book (its slots no longer scheduled for it, a restart does
    not bring it back), its history stays in the report."""
    first = await start_gateway()
    address = first.ready["grpc_addr"]
    await start_strategy(first, FAULTY_V1, UP)
    momentum = await start_strategy(first, MOMENTUM)
    await ticks_of(ledger, "momentum", 2)

    async def retire() -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "baton", "retire", "--gateway", address, "momentum",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    code, _, err = await retire()
    assert code == 2
    assert "FAILED_PRECONDITION" in err
    assert "attached" in err
    await momentum.stop()

    async def retired() -> bool:
        code, out, err = await retire()
        if code == 0:
            assert "momentum retired" in out
            return True
        assert "pending" in err or "attached" in err, err  # its host is on its way out
        return False

    async with asyncio.timeout(20):
        while not await retired():
            await ticks_of(ledger, "faulty", 1)
    await ticks_of(ledger, "faulty", 1)  # the retiring tick's rows flushed
    last = query(ledger, "SELECT MAX(seq) FROM evaluations WHERE strategy = 'momentum'")[0][0]
    await ticks_of(ledger, "faulty", 3)
    assert query(ledger, "SELECT MAX(seq) FROM evaluations WHERE strategy = 'momentum'")[0][0] == (
        last
    )

    # Its bets still open when it retired are settled as their windows close (600x: a 15m
    # window closes every 1.5 s), never left open.
    def momentum_bets(open_only: bool) -> int:
        settled = " AND NOT EXISTS (SELECT 1 FROM settlements s WHERE s.bet_id = b.bet_id)"
        sql = "SELECT count(*) FROM bets b WHERE strategy = 'momentum'"
        return int(query(ledger, sql + (settled if open_only else ""))[0][0])

    await wait_until(
        lambda: momentum_bets(open_only=True) == 0,
        timeout_s=20,
        what="the retired strategy's open bets settled",
    )
    print(f"\nretired momentum: {momentum_bets(open_only=False)} bets, all settled")
    code, _, err = await retire()  # gone already
    assert code == 2
    assert "NOT_FOUND" in err
    assert await first.stop(timeout_s=10) == 0

    second = await start_gateway(BATON_GATEWAY__LISTEN=address)
    await ticks_of(ledger, "faulty", 2)
    async with ControlClient(second.ready["grpc_addr"]) as client:
        listing = await client.list_instances()
    assert [s.name for s in listing.strategies] == ["faulty"]
    assert (
        query(
            ledger, "SELECT count(*) FROM evaluations WHERE strategy = 'momentum' AND run_id = 2"
        )[0][0]
        == 0
    )
    assert await second.stop(timeout_s=10) == 0
    rows = {row.name: row for row in presence_report(ledger).per_strategy}
    assert rows["momentum"].retired_ms is not None
    assert rows["momentum"].scheduled > 0  # its history stays
    assert rows["faulty"].retired_ms is None
