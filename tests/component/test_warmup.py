"""The clock's wait for the backfill (``warmup.BackfillGate``) in-process, against a feed whose
backfill the test finishes: it ends on the backfill, on the bound or on stop, and tells the
market book which streams are still being backfilled until none is."""

from __future__ import annotations

import asyncio
import logging

import pytest

from baton.gateway.core.market import MarketBook
from baton.gateway.metrics import GatewayMetrics
from baton.gateway.warmup import BackfillGate

BTC, MATIC = ("BTCUSDT", "5m"), ("MATICUSDT", "5m")
pytestmark = pytest.mark.timeout(10)


class Feed:
    """``BackfillProgress`` whose backfill the test moves along."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.pending: tuple[tuple[str, str], ...] = (BTC, MATIC)
        self.refused: tuple[tuple[str, str], ...] = ()

    def backfill_pending(self) -> tuple[tuple[str, str], ...]:
        return self.pending

    def backfill_refused(self) -> tuple[tuple[str, str], ...]:
        return self.refused

    def finish(self) -> None:
        self.pending, self.refused = (), (MATIC,)
        self.connected.set()


class Gate:
    """A ``BackfillGate`` on ``feed``, with the book and the metrics it writes to."""

    def __init__(self, feed: Feed, max_wait_ms: int, stopping: asyncio.Event | None = None):
        loop = asyncio.get_running_loop()
        self.book = MarketBook([BTC, MATIC], depth=3)
        self.metrics = GatewayMetrics(["BTC/5m", "MATIC/5m"])
        self.gate = BackfillGate(
            feed=feed,
            book=self.book,
            max_wait_ms=max_wait_ms,
            metrics=self.metrics,
            stopping=stopping or asyncio.Event(),
            now_ms=lambda: int(loop.time() * 1000),
        )

    def gauge(self, name: str) -> float | None:
        return self.metrics.registry.get_sample_value(name)


def fields(record: logging.LogRecord, *names: str) -> tuple[object, ...]:
    """The structured fields (``extra``) of a log record."""
    return tuple(record.__dict__[n] for n in names)


async def test_the_wait_ends_when_the_backfill_finishes(caplog: pytest.LogCaptureFixture) -> None:
    feed = Feed()
    g = Gate(feed, max_wait_ms=60_000)
    waiting = asyncio.create_task(g.gate.wait())
    await asyncio.sleep(0)
    assert not waiting.done()
    with caplog.at_level(logging.INFO, logger="baton.gateway.warmup"):
        feed.finish()  # BTC delivered, MATIC refused for good
        await asyncio.wait_for(waiting, 5)
    (record,) = [r for r in caplog.records if r.name == "baton.gateway.warmup"]
    assert record.levelno == logging.INFO
    assert record.getMessage() == "backfill finished: the clock starts"
    assert fields(record, "outcome", "pending", "refused_streams") == (
        "backfilled",
        0,
        ["MATICUSDT@5m"],
    )
    assert g.gauge("baton_backfill_pending_streams") == 0


async def test_past_the_bound_the_clock_starts_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    feed = Feed()
    g = Gate(feed, max_wait_ms=200)
    with caplog.at_level(logging.INFO, logger="baton.gateway.warmup"):
        await asyncio.wait_for(g.gate.wait(), 5)
    (record,) = [r for r in caplog.records if r.name == "baton.gateway.warmup"]
    assert record.levelno == logging.WARNING
    outcome, pending, (waited_s,) = (
        *fields(record, "outcome", "pending_streams"),
        fields(record, "waited_s"),
    )
    assert (outcome, pending) == ("timed_out", ["BTCUSDT@5m", "MATICUSDT@5m"])
    assert isinstance(waited_s, float)
    # ms clock: the bound can end up to 1 ms early against the perf_counter measure
    assert 0.19 <= waited_s < 2
    assert g.gauge("baton_backfill_wait_seconds") == pytest.approx(waited_s, abs=0.001)
    assert g.gauge("baton_backfill_pending_streams") == 2

    # Until the first backfill is over, each tick tells the book which streams are pending.
    g.gate.before_tick()
    assert g.book.view(*BTC).backfill_pending
    feed.finish()
    g.gate.before_tick()
    assert not g.book.view(*BTC).backfill_pending
    # Over for good: a later reconnect's gap fill is not a first backfill.
    feed.pending = (BTC,)
    g.gate.before_tick()
    assert not g.book.view(*BTC).backfill_pending


async def test_stopping_ends_the_wait_and_the_clock_never_starts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stopping = asyncio.Event()
    g = Gate(Feed(), max_wait_ms=60_000, stopping=stopping)
    waiting = asyncio.create_task(g.gate.wait())
    await asyncio.sleep(0)
    with caplog.at_level(logging.INFO, logger="baton.gateway.warmup"):
        stopping.set()
        await asyncio.wait_for(waiting, 5)
    assert not [r for r in caplog.records if r.name == "baton.gateway.warmup"]
    assert g.gauge("baton_backfill_wait_seconds") == 0
