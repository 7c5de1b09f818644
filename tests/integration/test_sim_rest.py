"""REST klines over real HTTP: Binance's format, selection and errors, injected failures, and
reproducibility across simulator instances."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import connect

from baton.exchange_sim.core.candles import interval_open
from tests.integration._sim import START_MS, http_get, running_sim

pytestmark = pytest.mark.timeout(20)
MIN = 60_000


async def test_klines_rows_are_binance_rows() -> None:
    async with running_sim() as sim:
        before = sim.now_ms()
        status, rows, headers = await http_get(
            f"{sim.rest_url}/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=5"
        )
        after = sim.now_ms()
        assert status == 200
        assert headers["Content-Type"].startswith("application/json")
        assert len(rows) == 5
        for row in rows:
            assert len(row) == 12
            assert all(isinstance(row[i], int) for i in (0, 6, 8))
            assert all(isinstance(row[i], str) for i in (1, 2, 3, 4, 5, 7, 9, 10, 11))
            assert row[6] == row[0] + MIN - 1
        assert [r[0] for r in rows] == list(range(rows[0][0], rows[0][0] + 5 * MIN, MIN))
        # The newest row is the candle still open, like Binance.
        assert rows[-1][0] in (interval_open(before, "1m"), interval_open(after, "1m"))


async def test_history_before_the_start_is_available_for_backfill() -> None:
    async with running_sim() as sim:
        status, rows, _ = await http_get(
            f"{sim.rest_url}/api/v3/klines?symbol=ETHUSDT&interval=15m&limit=101"
        )
        assert status == 200
        assert len(rows) == 101
        assert rows[0][0] < START_MS - 99 * 15 * MIN


async def test_selection_by_start_and_end_time() -> None:
    async with running_sim() as sim:
        start = START_MS - 60 * MIN
        status, rows, _ = await http_get(
            f"{sim.rest_url}/api/v3/klines?symbol=SOLUSDT&interval=5m"
            f"&startTime={start}&endTime={start + 20 * MIN}&limit=1000"
        )
        assert status == 200
        # Open times within [start, end]: start is mid-candle, so the first is the next one.
        first = interval_open(start, "5m")
        assert [r[0] for r in rows] == [first + i * 5 * MIN for i in range(1, 5)]


async def test_an_oversized_limit_is_capped_at_1000() -> None:
    async with running_sim() as sim:
        status, rows, _ = await http_get(
            f"{sim.rest_url}/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1500"
        )
        assert status == 200
        assert len(rows) == 1000


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("symbol=MATICUSDT&interval=5m", -1121),
        ("symbol=BTCUSDT&interval=7m", -1120),
        ("interval=5m", -1102),
        ("symbol=BTCUSDT&interval=5m&limit=abc", -1100),
        ("symbol=BTCUSDT&interval=5m&limit=0", -1130),
        ("symbol=BTCUSDT&interval=5m&foo=1", -1104),
    ],
    ids=[
        "MATICUSDT is delisted (POLUSDT trades)",
        "bad interval",
        "missing symbol",
        "illegal characters",
        "invalid limit",
        "unread parameter",
    ],
)
async def test_klines_errors(query: str, code: int) -> None:
    async with running_sim() as sim:
        status, body, _ = await http_get(f"{sim.rest_url}/api/v3/klines?{query}")
        assert status == 400
        assert body["code"] == code
        assert body["msg"]


async def test_injected_rest_errors_then_recovery() -> None:
    async with running_sim() as sim:
        url = f"{sim.rest_url}/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=2"
        await http_get(f"{sim.rest_url}/_sim/faults/rest_error?count=1&status=500")
        await http_get(f"{sim.rest_url}/_sim/faults/rest_error?count=1&status=429&retry_after=3")
        s1, b1, _ = await http_get(url)
        s2, b2, h2 = await http_get(url)
        s3, b3, _ = await http_get(url)
        assert (s1, b1["code"]) == (429, -1003)  # the later call set the status for both
        assert (s2, b2["code"], h2["Retry-After"]) == (429, -1003, "3")
        assert s3 == 200
        assert len(b3) == 2


async def test_a_500_fault() -> None:
    async with running_sim() as sim:
        sim.faults.rest_error(1)
        status, body, _ = await http_get(f"{sim.rest_url}/api/v3/klines?symbol=BTCUSDT&interval=1m")
        assert (status, body["code"]) == (500, -1000)


async def test_rest_and_the_closing_frame_agree() -> None:
    async with running_sim() as sim, connect(f"{sim.ws_url}/ws/xrpusdt@kline_1m") as ws:
        while True:
            k = json.loads(await asyncio.wait_for(ws.recv(), 3))["k"]
            if k["x"]:
                break
        status, rows, _ = await http_get(
            f"{sim.rest_url}/api/v3/klines?symbol=XRPUSDT&interval=1m&startTime={k['t']}&limit=1"
        )
        assert status == 200
        assert rows[0] == [
            k["t"],
            k["o"],
            k["h"],
            k["l"],
            k["c"],
            k["v"],
            k["T"],
            k["q"],
            k["n"],
            k["V"],
            k["Q"],
            "0",
        ]


async def test_same_seed_same_history_in_another_simulator() -> None:
    # Candles that closed before the start: final in every run, whatever the time scale.
    end = interval_open(START_MS, "5m") - 1
    query = f"symbol=LINKUSDT&interval=5m&endTime={end}&limit=50"
    async with running_sim() as a:
        _, rows_a, _ = await http_get(f"{a.rest_url}/api/v3/klines?{query}")
    async with running_sim(time_scale=1.0) as b:
        _, rows_b, _ = await http_get(f"{b.rest_url}/api/v3/klines?{query}")
    async with running_sim(seed=8) as c:
        _, rows_c, _ = await http_get(f"{c.rest_url}/api/v3/klines?{query}")
    assert rows_a == rows_b
    assert len(rows_a) == 50
    assert rows_a != rows_c


async def test_server_time_and_ping() -> None:
    async with running_sim() as sim:
        status, body, _ = await http_get(f"{sim.rest_url}/api/v3/time")
        assert status == 200
        assert body["serverTime"] >= START_MS
        assert (await http_get(f"{sim.rest_url}/api/v3/ping"))[:2] == (200, {})
        assert (await http_get(f"{sim.rest_url}/api/v3/depth?symbol=BTCUSDT"))[0] == 404


async def test_a_rest_delay_answers_late_side_by_side_until_cleared() -> None:
    async with running_sim() as sim:
        url = f"{sim.rest_url}/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=2"
        _, ack, _ = await http_get(f"{sim.rest_url}/_sim/faults/rest_delay?seconds=0.5")
        assert ack == {"ok": True, "fault": "rest_delay", "seconds": 0.5}
        assert sim.status().rest_delay_s == 0.5
        started = time.monotonic()
        answers = await asyncio.gather(*(http_get(url) for _ in range(4)))
        elapsed = time.monotonic() - started
        assert [status for status, _, _ in answers] == [200] * 4
        # Each call waits its own 0.5 s, concurrently (one after another would be 2 s).
        assert 0.5 <= elapsed < 1.5, elapsed
        # The control endpoints are never delayed; 0 answers on time again.
        started = time.monotonic()
        await http_get(f"{sim.rest_url}/_sim/faults/rest_delay?seconds=0")
        status, _, _ = await http_get(url)
        assert status == 200
        assert time.monotonic() - started < 0.5
        bad, body, _ = await http_get(f"{sim.rest_url}/_sim/faults/rest_delay?seconds=-1")
        assert (bad, body["ok"]) == (400, False)
