"""Duplicated and reordered kline frames from the exchange (the simulator's ``duplicate`` and
``reorder`` faults): the feed delivers every closed candle exactly once, in order, and never an
update older than one it delivered; the gateway's ledger has no missing and no repeated candle,
and its clock keeps time."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from pathlib import Path

import pytest

from baton.common import Service
from baton.exchange_sim import ExchangeSim
from baton.model import Candle
from tests.integration._sim import (
    STREAMS,
    RecordingSink,
    check_against_sim,
    check_sequence,
    feed_config,
    running_feed,
    running_sim,
)
from tests.procs import (
    SLOTS,
    StartGateway,
    StartStrategy,
    assert_every_scheduled_evaluation_accounted,
    contiguous_candles,
    evaluations,
    not_executed,
    run_ticks,
    sim_fault,
    wait_until,
)


def check_never_older(candles: Sequence[Candle]) -> None:
    """Updates of one candle only grow (the exchange's trade count never goes back): an older
    update delivered after a newer one would show as a smaller count."""
    for a, b in itertools.pairwise(candles):
        if a.open_time_ms == b.open_time_ms:
            assert b.trades >= a.trades, f"{b.symbol} {b.open_time_ms}: {a.trades} -> {b.trades}"


def check_all(sim: ExchangeSim, sink: RecordingSink) -> None:
    for stream in STREAMS:
        sequence = sink.sequence(*stream)
        check_sequence(sequence)
        check_never_older(sequence)
        check_against_sim(sim, sequence)


async def more_closes(sink: RecordingSink, n: int) -> None:
    base = {s: len(sink.closed(*s)) for s in STREAMS}
    await sink.wait_for(
        lambda: all(len(sink.closed(*s)) >= base[s] + n for s in STREAMS), 8.0, f"{n} closes"
    )


@pytest.mark.timeout(30)
@pytest.mark.parametrize("fault", ["duplicate", "reorder", "both"])
async def test_feed_delivers_each_candle_once_and_never_an_older_update(fault: str) -> None:
    async with running_sim() as sim, running_feed(feed_config(sim)) as (feed, sink):
        await asyncio.wait_for(feed.connected.wait(), 5)
        await more_closes(sink, 1)
        for _ in range(10):  # spread over several pushes and candle closes
            if fault in ("duplicate", "both"):
                sim.faults.duplicate(4)
            if fault in ("reorder", "both"):
                sim.faults.reorder(3)
            await asyncio.sleep(0.15)
        await more_closes(sink, 3)
        status = sim.status()
        assert (status.duplicates_pending, status.reorders_pending) == (0, 0)
        assert feed.stats.dropped > 0, "the repeats and stale updates were seen and dropped"
        assert feed.stats.malformed == 0
        assert sink.event_names().count("connected") == 1
        check_all(sim, sink)


# -- the gateway process ----------------------------------------------------------------------


async def test_gateway_ledger_has_every_candle_once_and_the_clock_keeps_time(
    sim: Service, start_gateway: StartGateway, start_strategy: StartStrategy, ledger: Path
) -> None:
    gateway = await start_gateway()
    await start_strategy(gateway)
    await run_ticks(ledger, 3)
    before = contiguous_candles(ledger)
    for _ in range(6):  # 6 x 0.25 s: three 5m candles close meanwhile (600x)
        assert sim_fault(sim, "/_sim/faults/duplicate?count=8")["ok"] is True
        assert sim_fault(sim, "/_sim/faults/reorder?count=8")["ok"] is True
        await asyncio.sleep(0.25)
    target = evaluations(ledger) + 5 * SLOTS
    await wait_until(lambda: evaluations(ledger) >= target, timeout_s=20, what="5 more ticks")
    assert await gateway.stop() == 0

    after = contiguous_candles(ledger)
    assert len(after) == SLOTS
    assert all(after[k] >= before.get(k, 0) + 2 for k in after if k[1] == "5m"), (before, after)
    assert_every_scheduled_evaluation_accounted(ledger)
    assert not_executed(ledger) == []
