"""Where the gateway's leadership lease is kept: the ``LeaseStore`` interface, and ``LocalLease``,
a lease record file for one machine (the embedded demo and the tests). ``kube_lease.KubeLease``
keeps it in a Kubernetes Lease. The decisions are ``core/leadership.py``'s; a store only reads
and compares-and-swaps (docs/gateway-standby.md).

Every write names the version it expects the store to be at; a store that is elsewhere raises
``LeaseConflict`` carrying what it holds, and writes nothing. A store that cannot answer raises
``LeaseUnavailable`` (the call may or may not have been applied).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from baton.gateway.core.leadership import LeaseRecord


class LeaseError(Exception):
    """A lease store call did not write. ``retryable``: trying again later may succeed."""

    retryable = True


class LeaseConflict(LeaseError):
    """The store was not at the expected version. ``current``: what it holds (``None``: no
    record, or it could not say)."""

    def __init__(self, current: LeaseRecord | None, message: str = "") -> None:
        super().__init__(message or f"lease changed: now {current}")
        self.current = current


class LeaseUnavailable(LeaseError):
    """The store could not be reached or failed; the write may or may not have landed."""


class LeaseStore(Protocol):
    """One lease, by compare-and-swap on its version. ``record.version`` is ignored on writes:
    the store sets it, and returns the record as stored."""

    @property
    def where(self) -> str:
        """The lease's name for logs: a path, ``namespace/name``."""
        ...

    async def read(self) -> LeaseRecord | None: ...

    async def try_acquire(
        self, record: LeaseRecord, expected_version: str | None
    ) -> LeaseRecord: ...

    async def renew(self, record: LeaseRecord, expected_version: str) -> LeaseRecord: ...

    async def release(self, record: LeaseRecord, expected_version: str) -> LeaseRecord: ...


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


# -- a file on this machine ------------------------------------------------------------------


class LocalLease:
    """The lease as a JSON file (next to the ledger: ``<ledger>.lease``), swapped under an
    exclusive ``flock`` on a companion ``.lock`` file that is never replaced. Works across
    processes of one machine (and between two stores on one file in one process: each opens its
    own file description). A record is written whole to a temporary file and renamed over the old
    one, so a reader never sees half of it; the version is a counter kept in the record."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")

    @classmethod
    def beside(cls, ledger: Path) -> LocalLease:
        """The lease of the gateways sharing ``ledger``'s directory."""
        return cls(Path(ledger).with_name(Path(ledger).name + ".lease"))

    @property
    def where(self) -> str:
        return str(self.path)

    async def read(self) -> LeaseRecord | None:
        return await asyncio.to_thread(self._locked, self._read_unlocked)

    async def try_acquire(self, record: LeaseRecord, expected_version: str | None) -> LeaseRecord:
        now = wall_ms()
        stamped = LeaseRecord(record.holder, record.term, record.lease_duration_ms, "", now, now)
        return await asyncio.to_thread(self._swap, stamped, expected_version)

    async def renew(self, record: LeaseRecord, expected_version: str) -> LeaseRecord:
        return await asyncio.to_thread(self._swap_keeping_acquired, record, expected_version)

    async def release(self, record: LeaseRecord, expected_version: str) -> LeaseRecord:
        return await asyncio.to_thread(self._swap_keeping_acquired, record, expected_version)

    # blocking parts, in a worker thread

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise LeaseUnavailable(f"cannot open {self._lock_path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the last descriptor releases the lock

    def _locked(self, fn: Callable[[], LeaseRecord | None]) -> LeaseRecord | None:
        with self._lock():
            return fn()

    def _read_unlocked(self) -> LeaseRecord | None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LeaseUnavailable(f"cannot read {self.path}: {exc}") from exc
        try:
            d = json.loads(text)
            return LeaseRecord(
                holder=str(d["holder"]),
                term=int(d["term"]),
                lease_duration_ms=int(d["lease_duration_ms"]),
                version=str(d["version"]),
                acquired_ms=int(d.get("acquired_ms", 0)),
                renewed_ms=int(d.get("renewed_ms", 0)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise LeaseUnavailable(f"unreadable lease record {self.path}: {exc}") from exc

    def _swap_keeping_acquired(self, record: LeaseRecord, expected: str | None) -> LeaseRecord:
        with self._lock():
            current = self._read_unlocked()
            acquired = current.acquired_ms if current is not None else 0
            stamped = LeaseRecord(
                record.holder, record.term, record.lease_duration_ms, "", acquired, wall_ms()
            )
            return self._swap_unlocked(current, stamped, expected)

    def _swap(self, record: LeaseRecord, expected: str | None) -> LeaseRecord:
        with self._lock():
            return self._swap_unlocked(self._read_unlocked(), record, expected)

    def _swap_unlocked(
        self, current: LeaseRecord | None, record: LeaseRecord, expected: str | None
    ) -> LeaseRecord:
        current_version = current.version if current is not None else None
        if current_version != expected:
            raise LeaseConflict(current)
        version = str(int(current_version) + 1) if current_version is not None else "1"
        stored = LeaseRecord(
            record.holder,
            record.term,
            record.lease_duration_ms,
            version,
            record.acquired_ms,
            record.renewed_ms,
        )
        body = {
            "holder": stored.holder,
            "term": stored.term,
            "lease_duration_ms": stored.lease_duration_ms,
            "version": stored.version,
            "acquired_ms": stored.acquired_ms,
            "renewed_ms": stored.renewed_ms,
        }
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w") as f:
                json.dump(body, f, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            raise LeaseUnavailable(f"cannot write {self.path}: {exc}") from exc
        return stored
