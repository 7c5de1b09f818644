"""Strategy processes for the integration tests (simulator and gateway: ``tests/conftest.py``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from baton.common import Service
from baton.local import Processes
from tests.procs import V1, StartStrategy


@pytest.fixture
async def start_strategy(log_dir: Path) -> AsyncIterator[StartStrategy]:
    procs = Processes(log_dir)

    async def start(
        gateway: Service, entrypoint: str = V1, config: str = "{}", *extra: str
    ) -> Service:
        """``extra``: more flags of ``baton strategy`` (``--standby``, ``hot``)."""
        n = len(procs.started)
        return await procs.strategy(
            f"strategy-{n}",
            gateway,
            entrypoint,
            pod_name=f"pod-{n}",
            config=json.loads(config),
            extra=extra,
        )

    yield start
    await procs.close()


@pytest.fixture
async def procs(log_dir: Path) -> AsyncIterator[Processes]:
    """Processes the test starts itself (each logged to ``log_dir``), all stopped at its end."""
    p = Processes(log_dir)
    yield p
    await p.close()
