"""The gateway's exchange feed against the simulator over real sockets: backfill, live
candles, and no missing or repeated closed candle across drops, stalls, malformed frames,
REST failures, server shutdowns and forced reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace

import pytest
from websockets.asyncio.client import ClientConnection, connect

from baton.common import Backoff
from baton.exchange_sim import ExchangeSim
from baton.gateway.exchange import ExchangeFeed
from tests.integration._sim import (
    FAST,
    STREAMS,
    RecordingSink,
    check_against_sim,
    check_sequence,
    closed_count_at_least,
    feed_config,
    running_feed,
    running_sim,
)

pytestmark = pytest.mark.timeout(20)
MIN = 60_000


def check_all(
    sim: ExchangeSim, sink: RecordingSink, streams: Sequence[tuple[str, str]] = STREAMS
) -> None:
    for symbol, interval in streams:
        sequence = sink.sequence(symbol, interval)
        check_sequence(sequence)
        check_against_sim(sim, sequence)


async def more_closes(
    sink: RecordingSink, n: int, what: str, streams: Sequence[tuple[str, str]] = STREAMS
) -> None:
    """Wait until every stream has ``n`` more closed candles than now."""
    base = {s: len(sink.closed(*s)) for s in streams}
    await sink.wait_for(
        lambda: all(len(sink.closed(*s)) >= base[s] + n for s in streams), 8.0, what
    )


def reconnected(sink: RecordingSink, n: int) -> Callable[[], bool]:
    return lambda: sink.event_names().count("connected") >= n


async def test_connects_backfills_then_streams() -> None:
    async with (
        running_sim() as sim,
        running_feed(feed_config(sim, backfill_limit=7)) as (feed, sink),
    ):
        await asyncio.wait_for(feed.connected.wait(), 5)
        assert sink.event_names()[:3] == ["connecting", "connected", "backfilled"]
        for stream in STREAMS:
            rest = [
                c for c, src in sink.candles if (c.symbol, c.interval) == stream and src == "rest"
            ]
            assert len(rest) == 7
            assert all(c.closed for c in rest)
            assert rest[-1].open_time_ms < sim.now_ms() - MIN + 1
        await more_closes(sink, 3, "three live closes")
        assert all(src == "ws" for c, src in sink.candles[-4:])
        check_all(sim, sink)
        assert feed.stats.messages > 0
        assert feed.stats.malformed == 0
        assert feed.stats.backfilled == 14


async def test_a_drop_is_backfilled_without_a_gap() -> None:
    async with running_sim() as sim, running_feed(feed_config(sim)) as (feed, sink):
        await asyncio.wait_for(feed.connected.wait(), 5)
        await more_closes(sink, 2, "closes before the drop")
        assert sim.faults.drop() == 1
        await sink.wait_for(reconnected(sink, 2), 5, "a reconnect")
        await more_closes(sink, 4, "closes after the drop")
        assert "disconnected" in sink.event_names()
        assert feed.stats.reconnects >= 1
        check_all(sim, sink)


async def test_repeated_drops_during_backfill() -> None:
    async with running_sim() as sim, running_feed(feed_config(sim)) as (feed, sink):
        await asyncio.wait_for(feed.connected.wait(), 5)
        for n in range(2, 5):
            sim.faults.drop()
            await sink.wait_for(reconnected(sink, n), 5, f"reconnect {n}")
        await more_closes(sink, 3, "closes after the drops")
        check_all(sim, sink)


async def test_a_stall_longer_than_the_timeout_reconnects_and_fills_the_gap() -> None:
    async with (
        running_sim() as sim,
        running_feed(feed_config(sim, stall_timeout_s=0.4)) as (feed, sink),
    ):
        await asyncio.wait_for(feed.connected.wait(), 5)
        await more_closes(sink, 1, "a close before the stall")
        before = len(sink.closed("BTCUSDT", "1m"))
        sim.faults.stall(1.0)  # five 1m candles at 300x, none of them re-sent on the stream
        await sink.wait_for(lambda: "stalled" in sink.event_names(), 5, "the stall to be noticed")
        await sink.wait_for(
            closed_count_at_least(sink, STREAMS, before + 7), 8, "the gap filled and more closes"
        )
        rest_after_stall = [src for c, src in sink.candles if c.closed][before:]
        assert "rest" in rest_after_stall, "the candles closed during the stall came from REST"
        check_all(sim, sink)


async def test_malformed_frames_are_counted_and_skipped() -> None:
    async with running_sim() as sim, running_feed(feed_config(sim)) as (feed, sink):
        await asyncio.wait_for(feed.connected.wait(), 5)
        sim.faults.malformed(12)
        await sink.wait_for(lambda: len(sink.malformed) == 12, 5, "12 malformed frames")
        await more_closes(sink, 3, "good frames after the malformed ones")
        assert feed.stats.malformed == 12
        assert all(reason and raw for reason, raw in sink.malformed)
        # A lost closing frame is a gap the feed fills from REST; the connection never dropped.
        assert sink.event_names().count("connected") == 1
        check_all(sim, sink)


@pytest.mark.parametrize(
    ("status", "retry_after"), [(500, 0), (429, 0)], ids=["server errors", "rate limited"]
)
async def test_rest_errors_during_backfill_are_retried_and_the_gap_still_filled(
    status: int, retry_after: int
) -> None:
    async with running_sim() as sim, running_feed(feed_config(sim)) as (feed, sink):
        await asyncio.wait_for(feed.connected.wait(), 5)
        await more_closes(sink, 1, "a close before the faults")
        sim.faults.rest_error(3, status=status, retry_after_s=retry_after)
        sim.faults.stall(0.6)  # let candles close unseen...
        sim.faults.drop()  # ...and force a backfill that first fails
        await sink.wait_for(lambda: "backfill_failed" in sink.event_names(), 5, "a failed backfill")
        await asyncio.wait_for(feed.connected.wait(), 5)
        await more_closes(sink, 3, "closes after the failures")
        assert feed.stats.rest_failures == 3
        check_all(sim, sink)


async def test_rest_errors_on_first_connect_delay_history_not_lose_it() -> None:
    async with running_sim() as sim:
        sim.faults.rest_error(4)
        async with running_feed(feed_config(sim, backfill_limit=4)) as (feed, sink):
            await asyncio.wait_for(feed.connected.wait(), 5)
            for stream in STREAMS:
                assert len([c for c in sink.closed(*stream)]) >= 4
            await more_closes(sink, 2, "live closes")
            check_all(sim, sink)


async def test_server_shutdown_reconnects_at_once() -> None:
    async with running_sim() as sim, running_feed(feed_config(sim)) as (feed, sink):
        await asyncio.wait_for(feed.connected.wait(), 5)
        assert sim.faults.server_shutdown(grace_s=5.0) == 1
        await sink.wait_for(lambda: "server_shutdown" in sink.event_names(), 5, "the notice")
        await sink.wait_for(
            lambda: sink.event_names().count("connected") >= 2, 5, "a new connection"
        )
        await more_closes(sink, 2, "closes after the switch")
        check_all(sim, sink)


async def test_the_forced_lifetime_close_is_seamless() -> None:
    async with (
        running_sim(max_lifetime_s=0.4) as sim,
        running_feed(feed_config(sim)) as (_feed, sink),
    ):
        await sink.wait_for(
            lambda: sink.event_names().count("connected") >= 3, 8, "two forced closes"
        )
        await more_closes(sink, 2, "closes after them")
        check_all(sim, sink)


async def test_streams_beyond_the_connection_limit_get_more_connections() -> None:
    streams = [("BTCUSDT", "1m"), ("ETHUSDT", "1m"), ("SOLUSDT", "1m")]
    async with (
        running_sim() as sim,
        running_feed(feed_config(sim, max_streams_per_connection=2), streams) as (feed, sink),
    ):
        await asyncio.wait_for(feed.connected.wait(), 5)
        assert sim.status().connections == 2
        await more_closes(sink, 2, "closes on both connections", streams)
        check_all(sim, sink, streams)


async def test_streams_that_do_not_fit_the_url_are_subscribed() -> None:
    streams = [(s, "1m") for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT")]
    async with (
        running_sim() as sim,
        running_feed(feed_config(sim, url_budget=40), streams) as (feed, sink),
    ):
        await asyncio.wait_for(feed.connected.wait(), 5)
        await more_closes(sink, 2, "closes on every stream", streams)
        assert sim.status().connections == 1
        assert sim.status().subscriptions == 5
        check_all(sim, sink, streams)


async def test_an_unknown_symbol_fails_its_backfill_but_not_the_feed() -> None:
    streams = [("BTCUSDT", "1m"), ("MATICUSDT", "1m")]
    async with running_sim() as sim, running_feed(feed_config(sim), streams) as (feed, sink):
        await asyncio.wait_for(feed.connected.wait(), 5)
        failures = [d for e, d in sink.events if e == "backfill_failed"]
        assert failures
        assert "-1121" in failures[0]
        assert "MATICUSDT" in failures[0]
        await more_closes(sink, 2, "BTC keeps flowing", [("BTCUSDT", "1m")])
        assert sink.sequence("MATICUSDT", "1m") == []
        check_all(sim, sink, [("BTCUSDT", "1m")])


async def test_a_refused_backfill_finishes_at_once_without_a_retry_delay() -> None:
    """A refusal for good (-1121) is not retried, so nothing waits a retry delay before the
    feed reports every backfill finished (the clock's first tick waits for that)."""
    streams = [("BTCUSDT", "1m"), ("MATICUSDT", "1m")]
    slow_retries = Backoff(initial_s=30.0, factor=1.0, max_s=30.0, jitter=0.0)
    async with (
        running_sim() as sim,
        running_feed(feed_config(sim, backoff=slow_retries), streams) as (feed, sink),
    ):
        await asyncio.wait_for(feed.connected.wait(), 5)
        assert "backfill_failed" in sink.event_names()
        assert feed.backfill_pending() == ()
        assert feed.backfill_refused() == (("MATICUSDT", "1m"),)


async def test_an_unreachable_exchange_is_retried_with_backoff() -> None:
    async with running_sim() as sim:
        config = feed_config(sim)
    # The simulator is gone: connecting fails, and the feed keeps trying.
    async with running_feed(config) as (feed, sink):
        await sink.wait_for(lambda: feed.stats.reconnects >= 2, 5, "two retries")
        assert not feed.connected.is_set()
        assert all(e in ("connecting", "disconnected") for e in sink.event_names())


async def test_the_feed_stops_promptly_whenever_it_is_cancelled() -> None:
    """Cancellation may land while a frame arrives, during a backfill or a reconnect; the feed
    must end every time (on Python 3.11 ``asyncio.wait_for`` could swallow it)."""
    streams = [(s, i) for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT") for i in ("1m", "5m")]
    async with running_sim(time_scale=600.0, push_interval_s=0.05) as sim:
        for n in range(20):
            feed = ExchangeFeed(feed_config(sim, backfill_limit=50), streams, RecordingSink())
            task = asyncio.create_task(feed.run())
            # Not a synchronisation: the point is to cancel at a different moment each round
            # (connecting, backfilling, streaming).
            await asyncio.sleep(n * 0.012)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=2.0)
            assert task in done, f"the feed ignored its cancellation (round {n})"


async def test_the_simulator_stops_promptly_with_busy_connections() -> None:
    sim = ExchangeSim(replace(FAST, time_scale=600.0, push_interval_s=0.02))
    await sim.start()
    url = f"{sim.ws_url}/stream?streams=btcusdt@kline_1m/ethusdt@kline_1m/solusdt@kline_1s"
    clients = [await connect(url, close_timeout=1.0) for _ in range(5)]

    async def drain(ws: ClientConnection) -> None:
        async for _ in ws:
            pass

    readers = [asyncio.create_task(drain(ws)) for ws in clients]
    try:
        for ws in clients:
            await ws.recv()
        stopping = asyncio.create_task(sim.stop())
        done, _ = await asyncio.wait({stopping}, timeout=3.0)
        assert stopping in done, "the simulator did not stop"
        # Every client saw the server go away, with a close frame.
        for ws in clients:
            await asyncio.wait_for(ws.wait_closed(), 3.0)
            assert ws.close_code == 1001
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for ws in clients:
            await ws.close()
