"""Fixtures every process test shares: the simulator and the gateway as real processes.

Here, at the top of ``tests/``, so both the integration and the end-to-end (Kubernetes) tests
use one set-up; ``procs.py`` next to it holds the helpers (bounded waits, ledger reads).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from baton.common import Service
from baton.local import Processes, SimOptions
from tests.procs import StartGateway, gateway_options

# 600x: a 5m candle closes every 0.5 s of real time, so bets settle within a test.
SIM = SimOptions(seed=11, time_scale=600, push_interval_s=0.1)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "logs"


@pytest.fixture
async def sim(log_dir: Path) -> AsyncIterator[Service]:
    procs = Processes(log_dir)
    yield await procs.sim("sim", SIM)
    await procs.close()


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite"


@pytest.fixture
async def start_gateway(sim: Service, ledger: Path, log_dir: Path) -> AsyncIterator[StartGateway]:
    procs = Processes(log_dir)

    async def start(**env: str) -> Service:
        return await procs.gateway("gateway", sim, gateway_options(ledger), env=env)

    yield start
    await procs.close()
