"""Strategy processes for the integration tests (simulator and gateway: ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from baton.common import Service, spawn_baton
from tests.procs import V1, StartStrategy


@pytest.fixture
async def start_strategy(log_dir: Path) -> AsyncIterator[StartStrategy]:
    started: list[Service] = []

    async def start(gateway: Service, entrypoint: str = V1, config: str = "{}") -> Service:
        service = await spawn_baton(
            f"strategy-{len(started)}",
            [
                "strategy",
                "--gateway",
                gateway.ready["grpc_addr"],
                "--entrypoint",
                entrypoint,
                "--config",
                config,
                "--pod-name",
                f"pod-{len(started)}",
            ],
            log_dir=log_dir,
        )
        started.append(service)
        return service

    yield start
    for service in started:
        await service.stop()
