"""Fixtures every process test shares: the simulator and the gateway as real processes.

Here, at the top of ``tests/``, so both the integration and the end-to-end (Kubernetes) tests
use one set-up; ``procs.py`` next to it holds the helpers (bounded waits, ledger reads).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from baton.common import Service, spawn_baton
from tests.procs import StartGateway, gateway_env

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


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite"


@pytest.fixture
async def start_gateway(sim: Service, ledger: Path, log_dir: Path) -> AsyncIterator[StartGateway]:
    started: list[Service] = []

    async def start(**env: str) -> Service:
        service = await spawn_baton(
            "gateway",
            ["gateway"],
            log_dir=log_dir,
            env={**gateway_env(sim, ledger), **env},
        )
        started.append(service)
        return service

    yield start
    for service in started:
        await service.stop()
