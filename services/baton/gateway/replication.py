"""Ledger replication, the leader's side: ``Replicator`` and the ``ReplicationService``.

The leader's ``Ledger`` hands every commit to ``Replicator.committed`` (its ``on_commit``
hook, on the thread that commits: the gateway's event loop). The replicator keeps the recent
batches in memory (bounded by count and bytes: ``BacklogSettings``) and serves ``Follow``: the
standby says what it has, the pure ``plan_follow`` (core/replication.py) decides whether it
gets the batches after that or first a snapshot (the whole ledger file, in chunks of at most
1 MiB), and the stream then carries each new commit as it happens. The standby acknowledges
every commit it applied; ``wait_acked(position, timeout)`` is how the gateway waits for that
(fills released after the standby has them, the handover).

One follower at a time: a second ``Follow`` replaces the first, whose stream ends with ABORTED
naming the newer one (a standby that restarted reconnects before its old stream times out).

Also here: ``LedgerBatch`` <-> ``baton.v1.LedgerBatch`` (the rows as ``Value`` oneofs).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from opentelemetry import trace

from baton.gateway.core.replication import (
    BacklogSettings,
    LedgerBatch,
    Position,
    Refuse,
    Row,
    SendSnapshot,
    SnapshotReason,
    Statement,
    Stream,
    Value,
    Write,
    batch_bytes,
    plan_follow,
)
from baton.gateway.ledger import Ledger
from baton.gateway.metrics import ReplicationMetrics
from baton.v1 import replication_pb2 as pb
from baton.v1 import replication_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
tracer = trace.get_tracer("baton.gateway")

# A follower says who it is at once; one that does not is not a follower.
HELLO_TIMEOUT_S = 10.0
# gRPC's default limit is 4 MiB a message; a batch of 1,000 slots is ~0.3 MB, a chunk 1 MiB.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


# -- the wire -----------------------------------------------------------------------------------


def _add_values(values: RepeatedCompositeFieldContainer[pb.Value], row: Row) -> None:
    """Append a row's values to a ``repeated Value``. ``add(kind=v)`` on the container, not
    ``Value(kind=v)`` objects: 4-5x faster, which a batch of 1,000 slots (~60,000 values)
    notices (docs/gateway-standby.md, "Replication")."""
    for v in row:
        t = type(v)
        if t is int:
            values.add(int=v)
        elif t is str:
            values.add(string=v)
        elif t is float:
            values.add(double=v)
        elif v is None:
            values.add(null=True)
        elif t is bool:  # SQLite stores it as an integer
            values.add(int=int(v))
        elif isinstance(v, bytes | bytearray | memoryview):
            values.add(bytes=bytes(v))
        else:
            raise TypeError(f"a ledger row holds {t.__name__}, not a SQLite value")


def value_from_proto(v: pb.Value) -> Value:
    kind = v.WhichOneof("kind")
    if kind is None:
        raise ValueError("a replicated value has no kind set")
    if kind == "null":
        return None
    out: Value = getattr(v, kind)
    return out


def batch_to_proto(batch: LedgerBatch) -> pb.LedgerBatch:
    msg = pb.LedgerBatch(position=batch.position, term=batch.term, committed_ms=batch.committed_ms)
    for w in batch.writes:
        write = msg.writes.add(statement=w.statement.value)
        for row in w.rows:
            _add_values(write.rows.add().values, row)
    return msg


def batch_from_proto(msg: pb.LedgerBatch) -> LedgerBatch:
    """Raises ``ValueError`` for a statement this baton does not know (a newer leader) or a
    value with no kind: nothing is guessed."""
    writes = []
    for w in msg.writes:
        try:
            statement = Statement(w.statement)
        except ValueError:
            raise ValueError(
                f"batch {msg.position} names a statement this baton does not know: "
                f"{w.statement!r} (is the leader a newer baton?)"
            ) from None
        rows: tuple[Row, ...] = tuple(
            tuple(value_from_proto(v) for v in row.values) for row in w.rows
        )
        writes.append(Write(statement, rows))
    return LedgerBatch(msg.position, msg.term, msg.committed_ms, tuple(writes))


# -- the leader ---------------------------------------------------------------------------------


@dataclass(eq=False)
class _Follow:
    """One open ``Follow`` stream."""

    replica: str
    number: int
    # Set to end the stream (a newer follower, the leader closing), with the status it ends
    # with.
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    status: tuple[grpc.StatusCode, str] | None = None

    def end(self, code: grpc.StatusCode, detail: str) -> None:
        if self.status is None:
            self.status = (code, detail)
        self.ended.set()


class Replicator:
    """The leader's replication: the backlog of recent commits, the follower's stream, its
    acknowledgements. Attaches itself to ``ledger.on_commit``. Runs on one event loop."""

    def __init__(
        self,
        ledger: Ledger,
        settings: BacklogSettings | None = None,
        *,
        metrics: ReplicationMetrics | None = None,
    ) -> None:
        self._ledger = ledger
        self._settings = settings or BacklogSettings()
        self._metrics = metrics
        self._backlog: collections.deque[tuple[LedgerBatch, int]] = collections.deque()
        self._backlog_bytes = 0
        self._head = ledger.last_commit.position
        # Replaced (after being set) at every commit: a stream waits on the one it holds.
        self._committed = asyncio.Event()
        self._acked = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._current: _Follow | None = None
        self._numbers = itertools.count(1)
        self.snapshots_sent = 0
        self._closed: str | None = None
        # Called after the follower acknowledges or its stream ends (the release gate).
        self.on_change: Callable[[], None] | None = None
        ledger.on_commit = self.committed
        if metrics is not None:
            metrics.position(self._head)

    # -- what the gateway asks -----------------------------------------------------------------

    @property
    def head(self) -> int:
        """The ledger's last commit position."""
        return self._head

    @property
    def acked_position(self) -> int:
        """The last position the current follower has applied (0: none, or no follower)."""
        return self._acked

    @property
    def follower(self) -> str | None:
        """The replica following now, if any."""
        return self._current.replica if self._current is not None else None

    @property
    def held(self) -> tuple[int, int] | None:
        """The oldest and newest positions in memory, if any."""
        if not self._backlog:
            return None
        return self._backlog[0][0].position, self._backlog[-1][0].position

    async def wait_acked(self, position: int, within_s: float) -> bool:
        """Whether the follower acknowledged ``position`` (or a later one) within
        ``within_s`` seconds; False when the time is up (nothing else happens then)."""
        if self._acked >= position:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (position, fut)
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(within_s):
                await fut
            return True
        except TimeoutError:
            return False
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def close(self, reason: str) -> None:
        """Stop replicating (this replica stops leading): the open stream ends with
        UNAVAILABLE naming ``reason`` (its follower reconnects, to whoever leads), later
        commits are not held, and waiters of ``wait_acked`` time out."""
        if self._ledger.on_commit == self.committed:
            self._ledger.on_commit = None
        self._closed = reason
        if self._current is not None:
            self._current.end(
                grpc.StatusCode.UNAVAILABLE, f"the leader stopped replicating: {reason}"
            )

    # -- the ledger's hook ---------------------------------------------------------------------

    def committed(self, batch: LedgerBatch) -> None:
        """A commit of the leader's ledger (its ``on_commit``)."""
        if batch.position != self._head + 1:
            # The ledger was written past this replicator (another hook, a reopen): the
            # batches in memory no longer continue to the head, so none is served any more.
            log.warning(
                "replication backlog reset: a commit does not follow the last one seen",
                extra={"position": batch.position, "head": self._head},
            )
            self._backlog.clear()
            self._backlog_bytes = 0
        size = batch_bytes(batch)
        self._backlog.append((batch, size))
        self._backlog_bytes += size
        s = self._settings
        while len(self._backlog) > 1 and (
            len(self._backlog) > s.max_batches or self._backlog_bytes > s.max_bytes
        ):
            _, gone = self._backlog.popleft()
            self._backlog_bytes -= gone
        self._head = batch.position
        self._committed.set()
        self._committed = asyncio.Event()
        if self._metrics is not None:
            self._metrics.position(self._head)
            self._metrics.backlog(len(self._backlog), self._backlog_bytes)

    def _held_batch(self, position: int) -> LedgerBatch | None:
        if not self._backlog:
            return None
        index = position - self._backlog[0][0].position
        if 0 <= index < len(self._backlog):
            return self._backlog[index][0]
        return None

    def _set_acked(self, position: int) -> None:
        self._acked = position
        if self._metrics is not None:
            self._metrics.acked(position)
        if self.on_change is not None:
            self.on_change()
        still = []
        for waiter in self._waiters:
            wanted, fut = waiter
            if wanted <= position:
                if not fut.done():
                    fut.set_result(None)
            else:
                still.append(waiter)
        self._waiters = still

    # -- the stream ----------------------------------------------------------------------------

    def _message(
        self, batch: pb.LedgerBatch | None = None, snapshot: pb.SnapshotChunk | None = None
    ) -> pb.ReplicationMessage:
        return pb.ReplicationMessage(
            head_position=self._head, leader_term=self._ledger.term, batch=batch, snapshot=snapshot
        )

    async def follow(
        self,
        requests: AsyncIterator[pb.FollowRequest],
        context: grpc.aio.ServicerContext[pb.FollowRequest, pb.ReplicationMessage],
    ) -> AsyncIterator[pb.ReplicationMessage]:
        try:
            async with asyncio.timeout(HELLO_TIMEOUT_S):
                first = await anext(requests)
        except (TimeoutError, StopAsyncIteration):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no hello from the follower")
        if not first.HasField("hello"):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "a follower's first message is its hello"
            )
        hello = first.hello
        if self._closed is not None:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"the leader stopped replicating: {self._closed}"
            )
        stream = _Follow(hello.replica, next(self._numbers))
        previous, self._current = self._current, stream
        if previous is not None:
            previous.end(
                grpc.StatusCode.ABORTED,
                f"replaced by a newer follower ({hello.replica}): only one follows",
            )
            log.warning(
                "replication follower replaced by a newer one",
                extra={"replica": previous.replica, "newer": hello.replica},
            )
        self._acked = 0
        if self._metrics is not None:
            self._metrics.connected(True)
        acks = asyncio.create_task(self._read_acks(requests, stream))
        try:
            async for message in self._serve(stream, Position(hello.position, hello.term), acks):
                yield message
            if stream.status is not None:
                await context.abort(*stream.status)
        except _Refused as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        finally:
            acks.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await acks
            log.info(
                "replication follower detached",
                extra={"replica": stream.replica, "acked": self._acked, "head": self._head},
            )
            if self._current is stream:
                self._current = None
                if self._metrics is not None:
                    self._metrics.connected(False)
                if self.on_change is not None:
                    self.on_change()  # what waited for this follower goes now

    async def _serve(
        self, stream: _Follow, follower: Position, acks: asyncio.Task[None]
    ) -> AsyncIterator[pb.ReplicationMessage]:
        head = self._head
        plan = plan_follow(
            follower,
            leader_term=self._ledger.term,
            head=head,
            term_at_follower=self._ledger.term_at(follower.position)
            if follower.position <= head
            else None,
            oldest_held=self._backlog[0][0].position if self._backlog else None,
        )
        extra = {"replica": stream.replica, "position": follower.position, "term": follower.term}
        if isinstance(plan, Refuse):
            if self._metrics is not None:
                self._metrics.refused()
            log.warning("replication follower refused", extra={**extra, "reason": plan.detail})
            raise _Refused(plan.detail)
        log.info(
            "replication follower attached",
            extra={**extra, "head": head, "plan": type(plan).__name__},
        )
        after: int | None = None
        snapshot: SendSnapshot | None = None
        if isinstance(plan, Stream):
            # The head alone first: a follower at the head learns it is caught up. Never
            # before a snapshot: a diverged ledger may stand at the head's position.
            yield self._message()
            after = plan.after
            self._set_acked(follower.position)
        else:
            snapshot = plan
        while not stream.ended.is_set():
            if snapshot is not None:
                at, image = await self._take_snapshot(stream, snapshot)
                for chunk in self._chunks(at, image, snapshot):
                    yield chunk
                after, snapshot = at.position, None
                continue
            assert after is not None
            if after < self._head:
                batch = self._held_batch(after + 1)
                if batch is None:  # fell out of memory while the follower was slow
                    snapshot = SendSnapshot(
                        SnapshotReason.BEHIND, f"batch {after + 1} is no longer held"
                    )
                    continue
                yield self._message(batch=batch_to_proto(batch))
                after = batch.position
                continue
            if acks.done():  # the follower closed its side: the stream is over
                return
            committed = asyncio.create_task(self._committed.wait())
            ended = asyncio.create_task(stream.ended.wait())
            try:
                await asyncio.wait((committed, ended, acks), return_when=asyncio.FIRST_COMPLETED)
            finally:
                committed.cancel()
                ended.cancel()

    async def _take_snapshot(self, stream: _Follow, plan: SendSnapshot) -> tuple[Position, bytes]:
        with tracer.start_as_current_span(
            "replication.snapshot_send",
            attributes={"baton.replica": stream.replica, "baton.reason": plan.reason.value},
        ) as span:
            # Off the loop: the image of a large ledger takes a while to read.
            at, image = await asyncio.to_thread(self._ledger.snapshot)
            span.set_attribute("baton.position", at.position)
            span.set_attribute("baton.bytes", len(image))
        log.info(
            "replication snapshot sent",
            extra={
                "replica": stream.replica,
                "reason": plan.reason.value,
                "detail": plan.detail,
                "position": at.position,
                "bytes": len(image),
            },
        )
        self.snapshots_sent += 1
        if self._metrics is not None:
            self._metrics.snapshot(plan.reason.value, len(image))
        return at, image

    def _chunks(
        self, at: Position, image: bytes, plan: SendSnapshot
    ) -> list[pb.ReplicationMessage]:
        step = self._settings.snapshot_chunk_bytes
        return [
            self._message(
                snapshot=pb.SnapshotChunk(
                    position=at.position,
                    term=at.term,
                    total_bytes=len(image),
                    offset=offset,
                    data=image[offset : offset + step],
                    last=offset + step >= len(image),
                    diverged=plan.reason is SnapshotReason.DIVERGED,
                    reason=plan.detail,
                )
            )
            for offset in range(0, max(1, len(image)), step)
        ]

    async def _read_acks(self, requests: AsyncIterator[pb.FollowRequest], stream: _Follow) -> None:
        async for request in requests:
            if request.HasField("ack") and self._current is stream:
                position = request.ack.applied_position
                if position > self._acked:
                    self._set_acked(position)


class _Refused(Exception):
    pass


class ReplicationServicer(pb_grpc.ReplicationServiceServicer):
    def __init__(self, replicator: Replicator) -> None:
        self._replicator = replicator

    async def Follow(
        self,
        request_iterator: AsyncIterator[pb.FollowRequest],
        context: grpc.aio.ServicerContext[pb.FollowRequest, pb.ReplicationMessage],
    ) -> AsyncIterator[pb.ReplicationMessage]:
        async for message in self._replicator.follow(request_iterator, context):
            yield message


def add_replication_servicer(server: grpc.aio.Server, replicator: Replicator) -> None:
    pb_grpc.add_ReplicationServiceServicer_to_server(ReplicationServicer(replicator), server)
