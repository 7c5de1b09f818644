"""Helpers for tests against the exchange simulator: an in-process sim, a recording feed sink,
HTTP GETs, a bare WebSocket client that never answers pings, and candle-sequence checks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import struct
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import pytest

from baton.common import Backoff
from baton.exchange_sim import ExchangeSim, SimConfig
from baton.exchange_sim.core.protocol import format_decimal
from baton.gateway.exchange import ExchangeConfig, ExchangeFeed
from baton.model import Candle, timeframe_ms

# 2023-11-14T22:13:20Z: fixed, so runs are reproducible. At 300x a 1m candle closes every
# 0.2 s of real time.
START_MS = 1_700_000_000_000
TIME_SCALE = 300.0
FAST = SimConfig(time_scale=TIME_SCALE, start_ms=START_MS, push_interval_s=0.1, seed=7)


@contextlib.asynccontextmanager
async def running_sim(**overrides: Any) -> AsyncIterator[ExchangeSim]:
    async with ExchangeSim(replace(FAST, **overrides)) as sim:
        yield sim


def feed_config(sim: ExchangeSim, **overrides: Any) -> ExchangeConfig:
    base = ExchangeConfig(
        ws_url=sim.ws_url,
        rest_url=sim.rest_url,
        stall_timeout_s=1.0,
        backfill_limit=5,
        connect_timeout_s=2.0,
        rest_timeout_s=2.0,
        backoff=Backoff(initial_s=0.05, factor=2.0, max_s=0.2, jitter=0.5),
    )
    return replace(base, **overrides)


def _get(url: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read(), dict(resp.headers.items())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(), dict(exc.headers.items())


async def http_get(url: str) -> tuple[int, Any, dict[str, str]]:
    """GET ``url`` off the event loop; (status, parsed JSON body, headers)."""
    status, body, headers = await asyncio.to_thread(_get, url)
    return status, json.loads(body), headers


class RecordingSink:
    """A FeedSink that records everything and lets a test await a condition over it."""

    def __init__(self) -> None:
        self.candles: list[tuple[Candle, str]] = []
        self.events: list[tuple[str, str]] = []
        self.malformed: list[tuple[str, str]] = []
        self._changed = asyncio.Event()

    def on_candle(self, candle: Candle, source: str) -> None:
        self.candles.append((candle, source))
        self._changed.set()

    def on_connection(self, event: str, detail: str) -> None:
        self.events.append((event, detail))
        self._changed.set()

    def on_malformed(self, reason: str, raw: str) -> None:
        self.malformed.append((reason, raw))
        self._changed.set()

    def event_names(self) -> list[str]:
        return [e for e, _ in self.events]

    def closed(self, symbol: str, interval: str) -> list[Candle]:
        return [
            c for c, _ in self.candles if c.closed and (c.symbol, c.interval) == (symbol, interval)
        ]

    def sequence(self, symbol: str, interval: str) -> list[Candle]:
        return [c for c, _ in self.candles if (c.symbol, c.interval) == (symbol, interval)]

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Until ``predicate()`` holds, re-checked on every callback; bounded by ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()


def check_sequence(candles: Sequence[Candle]) -> None:
    """One stream's updates as the sink saw them: each update is for the expected candle (the
    one after the last closed), and each closed candle comes exactly once, in order."""
    expected: int | None = None
    for c in candles:
        if expected is None:
            expected = c.open_time_ms
        assert c.open_time_ms == expected, (
            f"{c.symbol} {c.interval}: got candle {c.open_time_ms} (closed={c.closed}),"
            f" expected {expected}"
        )
        if c.closed:
            expected += timeframe_ms(c.interval)


def check_against_sim(sim: ExchangeSim, candles: Sequence[Candle]) -> None:
    """Closed candles carry exactly the exchange's final values."""
    for c in candles:
        if not c.closed:
            continue
        truth = sim.kline(c.symbol, c.interval, c.open_time_ms)
        assert truth is not None, c
        assert truth.closed, c
        p, q = truth.price_decimals, truth.qty_decimals
        b = truth.bar
        got = (c.open, c.high, c.low, c.close, c.volume, c.trades)
        want = (
            float(format_decimal(b.open, p)),
            float(format_decimal(b.high, p)),
            float(format_decimal(b.low, p)),
            float(format_decimal(b.close, p)),
            float(format_decimal(b.volume, q)),
            b.trades,
        )
        assert got == want, (c.symbol, c.interval, c.open_time_ms, got, want)


def closed_count_at_least(
    sink: RecordingSink, streams: Sequence[tuple[str, str]], n: int
) -> Callable[[], bool]:
    return lambda: all(len(sink.closed(s, i)) >= n for s, i in streams)


# -- a bare WebSocket client (for the pong timeout: it must NOT answer pings) ---------------


@dataclass(frozen=True, slots=True)
class RawFrame:
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        if self.opcode != 0x8 or len(self.payload) < 2:
            return None
        code: int = struct.unpack("!H", self.payload[:2])[0]
        return code


class SilentClient:
    """Opens a WebSocket and then only reads: no pong, no close reply. Frames are recorded."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, path: str) -> SilentClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        status = await reader.readuntil(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 101"), status
        return cls(reader, writer)

    async def frames(self) -> AsyncIterator[RawFrame]:
        """Frames until the server closes the TCP connection."""
        while True:
            try:
                head = await self.reader.readexactly(2)
            except asyncio.IncompleteReadError:
                return
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            yield RawFrame(opcode, await self.reader.readexactly(length))

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


STREAMS = [("BTCUSDT", "1m"), ("ETHUSDT", "1m")]


@asynccontextmanager
async def running_feed(
    config: ExchangeConfig, streams: Sequence[tuple[str, str]] = STREAMS
) -> AsyncIterator[tuple[ExchangeFeed, RecordingSink]]:
    """An in-process feed against ``config``'s exchange, recording what it delivers."""
    sink = RecordingSink()
    feed = ExchangeFeed(config, streams, sink)
    task = asyncio.create_task(feed.run())
    try:
        yield feed, sink
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):  # the feed must not swallow a cancel
            await task
