"""Ledger replication, the standby's side: ``Follower`` keeps its ledger a copy of the leader's.

``run`` connects to the leader's ``ReplicationService`` (each attempt on a fresh channel,
bounded by ``connect_timeout_s``; between attempts a backoff doubling up to its cap), says
what its ledger has (the last commit's position and term), then applies what comes: each
batch in one transaction (``Ledger.apply``, which refuses one out of order or of an older
term), or a snapshot, installed in place of its ledger (the old file kept as
``<ledger>.diverged-<term>-<position>`` when it was not a prefix of the leader's). It
acknowledges every commit. A leader that restarts, or a stream that breaks, is reconnected to
and resumed from the ledger's position.

``caught_up`` (the basis of election eligibility) is set once the ledger holds the leader's
announced head and cleared when it falls more than ``max_lag`` batches behind or a snapshot
starts. A broken stream does not clear it: a leader that died is exactly when its standby must
stay a candidate; whether a standby cut off from a live leader for long stays eligible is the
gateway's to decide (``connected``, ``last_message_s``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from opentelemetry import trace

from baton.gateway.core.replication import FollowerSettings, Position, backoff_s, lag
from baton.gateway.ledger import (
    Ledger,
    LedgerError,
    ReplicationRefused,
    install_snapshot,
)
from baton.gateway.metrics import ReplicationMetrics
from baton.gateway.replication import MAX_MESSAGE_BYTES, batch_from_proto
from baton.v1 import replication_pb2 as pb
from baton.v1 import replication_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
tracer = trace.get_tracer("baton.gateway")

_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Notice a dead leader within seconds, not at the next TCP timeout.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


class _StreamEnded(Exception):
    """This stream cannot go on (a refused batch, a bad snapshot): reconnect."""


class Follower:
    """A standby's replication of its leader's ledger. Opens the ledger at once (its position
    is known before any connection); ``close`` closes it. Runs on one event loop."""

    def __init__(
        self,
        ledger_path: str | Path,
        target: str,
        replica: str,
        *,
        settings: FollowerSettings | None = None,
        metrics: ReplicationMetrics | None = None,
    ) -> None:
        self.path = Path(ledger_path)
        self.target = target
        self.replica = replica
        self._settings = settings or FollowerSettings()
        self._metrics = metrics
        self._ledger = Ledger(self.path)
        # The leader's last announced head; None until it first says (a standby that has
        # just started is not caught up: it does not know what it lacks).
        self._head: int | None = None
        self._leader_term = 0
        self._caught_up = asyncio.Event()
        self._changed = asyncio.Event()  # replaced after being set at every commit
        self.connected = False
        self.last_message_s: float | None = None  # monotonic, of the last message received
        # When the stream last broke (monotonic ms, the elector's clock); None while it is up
        # or before it ever was (core/eligibility.py: a standby cut off from a live leader).
        self.disconnected_ms: int | None = None
        # The open stream has brought a message (its head is the leader's current one).
        self.heard = False
        self.snapshots_installed = 0
        self.kept_files: list[Path] = []  # the diverged ledgers kept aside
        self.connects = 0  # streams opened
        self.last_error: str | None = None
        self._publish()

    # -- what the gateway asks -----------------------------------------------------------------

    @property
    def last_commit(self) -> Position:
        return self._ledger.last_commit

    @property
    def position(self) -> int:
        return self._ledger.last_commit.position

    @property
    def lag(self) -> int:
        """Batches behind the leader's announced head (as of its last message)."""
        return lag(self.position, self.position if self._head is None else self._head)

    @property
    def leader_term(self) -> int:
        """The leader's term as of its last message (0: none yet, or no election)."""
        return self._leader_term

    @property
    def caught_up(self) -> bool:
        return self._caught_up.is_set()

    async def wait_caught_up(self, within_s: float) -> bool:
        try:
            async with asyncio.timeout(within_s):
                await self._caught_up.wait()
            return True
        except TimeoutError:
            return False

    async def wait_position(self, position: int, within_s: float) -> bool:
        """Whether the ledger reaches ``position`` within ``within_s`` seconds."""
        try:
            async with asyncio.timeout(within_s):
                while self.position < position:
                    await self._changed.wait()
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self._ledger.close()

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the leader until cancelled, reconnecting after any failure."""
        failures = 0
        while True:
            try:
                await self._follow_once()
                failures = 0
                self.last_error = "the leader ended the stream"
            except (grpc.aio.AioRpcError, TimeoutError, _StreamEnded, OSError, LedgerError) as exc:
                failures += 1
                self.last_error = _describe(exc)
                # Once per outage at WARNING; the retries after it at DEBUG.
                log.log(
                    logging.WARNING if failures == 1 else logging.DEBUG,
                    "replication stream to the leader failed; reconnecting",
                    extra={
                        "replica": self.replica,
                        "leader": self.target,
                        "error": self.last_error,
                        "failures": failures,
                        "position": self.position,
                    },
                )
            except Exception as exc:  # a standby keeps trying whatever broke; loudly
                failures += 1
                self.last_error = _describe(exc)
                log.exception(
                    "replication follower failed unexpectedly; reconnecting",
                    extra={"replica": self.replica, "leader": self.target},
                )
            await asyncio.sleep(backoff_s(self._settings, max(1, failures)))

    async def _follow_once(self) -> None:
        channel = grpc.aio.insecure_channel(self.target, options=_CHANNEL_OPTIONS)
        outbox: asyncio.Queue[pb.FollowRequest] = asyncio.Queue()
        try:
            async with asyncio.timeout(self._settings.connect_timeout_s):
                await channel.channel_ready()
            at = self.last_commit
            outbox.put_nowait(
                pb.FollowRequest(
                    hello=pb.FollowHello(replica=self.replica, position=at.position, term=at.term)
                )
            )
            call = pb_grpc.ReplicationServiceStub(channel).Follow(_drain(outbox))
            self.connects += 1
            self._set_connected(True)
            chunks: list[bytes] = []
            async for message in call:
                self.last_message_s = time.monotonic()
                self.heard = True
                self._head = message.head_position
                self._leader_term = message.leader_term
                kind = message.WhichOneof("kind")
                if kind == "batch":
                    self._apply(message.batch)
                    self._ack(outbox)
                elif kind == "snapshot" and self._receive_chunk(message.snapshot, chunks):
                    await self._install(message.snapshot, b"".join(chunks))
                    chunks.clear()
                    self._ack(outbox)
                if not chunks:  # mid-snapshot, the ledger is not the leader's yet
                    self._publish()
        finally:
            self._set_connected(False)
            await channel.close(None)

    # -- applying ------------------------------------------------------------------------------

    def _apply(self, msg: pb.LedgerBatch) -> None:
        started = time.perf_counter()
        try:
            batch = batch_from_proto(msg)
            self._ledger.apply(batch)
        except (ValueError, ReplicationRefused) as exc:
            if self._metrics is not None:
                self._metrics.refused()
            log.error(
                "replication batch refused; nothing of it written",
                extra={"replica": self.replica, "error": str(exc), "position": self.position},
            )
            raise _StreamEnded(str(exc)) from exc
        except LedgerError as exc:
            raise _StreamEnded(str(exc)) from exc
        if self._metrics is not None:
            self._metrics.applied(time.perf_counter() - started)

    def _ack(self, outbox: asyncio.Queue[pb.FollowRequest]) -> None:
        outbox.put_nowait(pb.FollowRequest(ack=pb.FollowAck(applied_position=self.position)))
        if self._metrics is not None:
            self._metrics.ack_sent()

    def _receive_chunk(self, chunk: pb.SnapshotChunk, chunks: list[bytes]) -> bool:
        """Whether the snapshot is complete with ``chunk``."""
        received = sum(len(c) for c in chunks)
        if chunk.offset != received:
            raise _StreamEnded(
                f"snapshot chunk at offset {chunk.offset}, expected {received}: out of order"
            )
        if not chunks and self._caught_up.is_set():
            self._caught_up.clear()  # its ledger is about to be replaced
        chunks.append(chunk.data)
        if not chunk.last:
            return False
        if received + len(chunk.data) != chunk.total_bytes:
            raise _StreamEnded(
                f"snapshot of {received + len(chunk.data)} bytes, announced {chunk.total_bytes}"
            )
        return True

    async def _install(self, chunk: pb.SnapshotChunk, image: bytes) -> None:
        old = self.last_commit
        keep = (
            self.path.with_name(f"{self.path.name}.diverged-{old.term}-{old.position}")
            if chunk.diverged
            else None
        )
        with tracer.start_as_current_span(
            "replication.snapshot_install",
            attributes={
                "baton.replica": self.replica,
                "baton.position": chunk.position,
                "baton.term": chunk.term,
                "baton.bytes": len(image),
                "baton.diverged": chunk.diverged,
            },
        ):
            started = time.perf_counter()
            self._ledger.close()
            try:
                at = await asyncio.to_thread(install_snapshot, self.path, image, keep_as=keep)
            finally:
                self._ledger = Ledger(self.path)
            if at != Position(chunk.position, chunk.term):
                raise _StreamEnded(
                    f"the snapshot holds position {at.position} (term {at.term}), announced "
                    f"{chunk.position} (term {chunk.term})"
                )
        self.snapshots_installed += 1
        if keep is not None:
            self.kept_files.append(keep)
        if self._metrics is not None:
            self._metrics.snapshot("diverged" if chunk.diverged else "behind", len(image))
        extra = {
            "replica": self.replica,
            "from_position": old.position,
            "from_term": old.term,
            "position": at.position,
            "term": at.term,
            "bytes": len(image),
            "install_ms": round((time.perf_counter() - started) * 1000, 1),
            "reason": chunk.reason,
        }
        if keep is not None:
            log.warning(
                "replication follower reseeded: its ledger diverged from the leader's; kept aside",
                extra={**extra, "kept": str(keep)},
            )
        else:
            log.info("replication follower reseeded from a snapshot", extra=extra)

    # -- state -------------------------------------------------------------------------------

    def _publish(self) -> None:
        """After any change: caught up or not, metrics, wake the waiters."""
        behind = self.lag
        if self._head is not None and behind == 0 and not self._caught_up.is_set():
            self._caught_up.set()
            log.info(
                "replication follower caught up",
                extra={"replica": self.replica, "position": self.position},
            )
        elif behind > self._settings.max_lag and self._caught_up.is_set():
            self._caught_up.clear()
            log.warning(
                "replication follower fell behind",
                extra={"replica": self.replica, "position": self.position, "lag": behind},
            )
        if self._metrics is not None:
            self._metrics.position(self.position)
            self._metrics.lag(behind, self._caught_up.is_set())
        self._changed.set()
        self._changed = asyncio.Event()

    def _set_connected(self, up: bool) -> None:
        if self.connected and not up:
            self.disconnected_ms = time.monotonic_ns() // 1_000_000
        elif up:
            self.disconnected_ms = None
        self.connected = up
        self.heard = False
        if self._metrics is not None:
            self._metrics.connected(up)


async def _drain(outbox: asyncio.Queue[pb.FollowRequest]) -> AsyncIterator[pb.FollowRequest]:
    while True:
        yield await outbox.get()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    if isinstance(exc, TimeoutError):
        return "no connection within the connect timeout"
    return str(exc) or type(exc).__name__
