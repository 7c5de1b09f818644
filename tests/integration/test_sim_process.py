"""``baton sim`` as a real process: ready line, streams and REST on the announced port, fault
controls over HTTP, clean exit on SIGTERM, config errors that name the setting."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from baton.common import spawn_baton
from tests.integration._sim import http_get

pytestmark = pytest.mark.timeout(30)


async def test_baton_sim_serves_on_its_announced_port_and_exits_cleanly(tmp_path: Path) -> None:
    sim = await spawn_baton(
        "sim",
        [
            "sim",
            "--port",
            "0",
            "--seed",
            "3",
            "--time-scale",
            "300",
            "--push-interval-s",
            "0.1",
            "--start-ms",
            "1700000000000",
            "--symbols",
            "BTCUSDT,POLUSDT",
        ],
        log_dir=tmp_path,
    )
    try:
        ready = sim.ready
        assert ready["ws_url"] == f"ws://127.0.0.1:{ready['port']}"
        assert ready["rest_url"] == f"http://127.0.0.1:{ready['port']}"
        assert (ready["seed"], ready["start_ms"]) == (3, 1_700_000_000_000)
        async with connect(f"{ready['ws_url']}/stream?streams=polusdt@kline_1m") as ws:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert msg["stream"] == "polusdt@kline_1m"
            assert msg["data"]["s"] == "POLUSDT"
            status, ack, _ = await http_get(f"{ready['rest_url']}/_sim/faults/malformed?count=1")
            assert status == 200
            assert ack == {"ok": True, "fault": "malformed", "count": 1}
        status, rows, _ = await http_get(
            f"{ready['rest_url']}/api/v3/klines?symbol=BTCUSDT&interval=5m&limit=3"
        )
        assert status == 200
        assert len(rows) == 3
        status, body, _ = await http_get(
            f"{ready['rest_url']}/api/v3/klines?symbol=ETHUSDT&interval=5m"
        )
        assert (status, body["code"]) == (400, -1121)  # not listed in this run
    finally:
        code = await sim.stop(timeout_s=5.0, sig=signal.SIGTERM)
    assert code == 0, sim.log_tail()


@pytest.mark.parametrize(
    ("args", "setting"),
    [(["--time-scale", "0"], "time_scale"), (["--symbols", "BTC-USDT"], "symbols")],
    ids=["time must move", "symbols are alphanumeric"],
)
async def test_invalid_options_fail_with_the_setting_named(args: list[str], setting: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "baton",
        "sim",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert out == b""
    assert f"invalid setting {setting}" in err.decode()
