"""Fixtures that run Baton's real processes on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from baton.common import Service, spawn_baton

# 600x: a 5m candle closes every 0.5 s of real time, so bets settle within a test.
TIME_SCALE = "600"


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "logs"


@pytest.fixture
async def sim(log_dir: Path) -> AsyncIterator[Service]:
    service = await spawn_baton(
        "sim",
        [
            "sim",
            "--port",
            "0",
            "--seed",
            "11",
            "--time-scale",
            TIME_SCALE,
            "--push-interval-s",
            "0.1",
        ],
        log_dir=log_dir,
    )
    yield service
    await service.stop()
