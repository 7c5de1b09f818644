"""Child processes that announce readiness: used by ``baton demo`` and the tests.

A child prints one ready line on stdout (see ``_ready.py``); its stderr (JSON logs) goes to a
log file so a failure can be diagnosed after the fact.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from baton.common._ready import parse_ready


class ProcessFailed(RuntimeError):
    """A child exited or failed to become ready; the message carries its log's tail."""


class Service:
    def __init__(self, name: str, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log_path
        self.ready: dict[str, Any] = {}
        # Ready lines after the first (a gateway replica announces when it starts to lead).
        self.announced: list[dict[str, Any]] = []
        self._announced = asyncio.Event()
        self._stdout_task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def wait_ready(self, timeout_s: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        stdout = self.proc.stdout

        async def read() -> dict[str, Any]:
            while True:
                line = await stdout.readline()
                if not line:
                    code = await self.proc.wait()
                    raise ProcessFailed(
                        f"{self.name} exited with {code} before it was ready:\n{self.log_tail()}"
                    )
                fields = parse_ready(line.decode(errors="replace"))
                if fields is not None:
                    return fields

        try:
            async with asyncio.timeout(timeout_s):
                self.ready = await read()
        except TimeoutError:
            raise ProcessFailed(
                f"{self.name} not ready within {timeout_s}s:\n{self.log_tail()}"
            ) from None
        # Keep draining stdout so the child never blocks on a full pipe.
        self._stdout_task = asyncio.create_task(self._drain(stdout))
        return self.ready

    async def _drain(self, stdout: asyncio.StreamReader) -> None:
        while line := await stdout.readline():
            fields = parse_ready(line.decode(errors="replace"))
            if fields is not None:
                self.announced.append(fields)
                self._announced.set()

    async def wait_announced(self, key: str, value: Any, timeout_s: float) -> dict[str, Any]:
        """The first later ready line whose ``key`` is ``value`` (e.g. ``role`` ``leader``)."""

        async def find() -> dict[str, Any]:
            while True:
                for fields in self.announced:
                    if fields.get(key) == value:
                        return fields
                if self.proc.returncode is not None:
                    raise ProcessFailed(
                        f"{self.name} exited with {self.proc.returncode} before announcing "
                        f"{key}={value!r}:\n{self.log_tail()}"
                    )
                self._announced.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):  # also notice an exit
                        await self._announced.wait()

        try:
            async with asyncio.timeout(timeout_s):
                return await find()
        except TimeoutError:
            raise ProcessFailed(
                f"{self.name} did not announce {key}={value!r} within {timeout_s}s:\n"
                f"{self.log_tail()}"
            ) from None

    async def stop(self, timeout_s: float = 10.0, sig: int = signal.SIGTERM) -> int:
        """Signal the child, wait for it (bounded), kill it if it does not go. Its exit code."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                async with asyncio.timeout(timeout_s):
                    await self.proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        if self._stdout_task is not None:
            self._stdout_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stdout_task
        code = self.proc.returncode
        assert code is not None
        return code


def _open_log(log_dir: Path, name: str) -> tuple[Path, BinaryIO]:
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"{name}.log"
    return path, path.open("ab")


async def spawn_baton(
    name: str,
    args: Sequence[str],
    *,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    ready_timeout_s: float = 30.0,
) -> Service:
    """Start ``python -m baton <args>`` and wait for its ready line."""
    log_path, log_file = _open_log(log_dir, name)
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "baton",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log_file,
            env=full_env,
            # A ready line can be long (the simulator lists its symbols: ~64 KiB at 4,000
            # markets), past asyncio's 64 KiB default line limit.
            limit=16 * 1024 * 1024,
        )
    finally:
        log_file.close()  # the child holds its own descriptor
    service = Service(name, proc, log_path)
    try:
        await service.wait_ready(ready_timeout_s)
    except BaseException:
        await service.stop(timeout_s=2.0, sig=signal.SIGKILL)
        raise
    return service
