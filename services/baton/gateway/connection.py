"""One attached strategy instance's outgoing stream: a bounded queue with an explicit policy.

The bound counts evaluations (an ``EvaluationBatch`` weighs its number of requests; any other
message weighs one), so that a queue of a few batches of thousands of slots is as full as it
looks. Evaluation requests that do not fit are refused (the caller records them as
undelivered: the instance is too slow to be present). Anything else that does not fit closes
the connection, because a strategy that missed a fill or a settlement can no longer keep an
exact state.

The gateway term (docs/gateway-standby.md, "Fencing") is stamped here, on every message as it
is queued, from the gateway's one term provider: every message that leaves for a host goes
through ``send`` (or ``stamp``, for the Welcome the servicer writes itself), so no sender can
forget it, and a journaled message replayed later carries the term of the replay.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Callable

from baton.v1 import gateway_pb2 as gw


class SendResult(enum.Enum):
    QUEUED = "queued"
    FULL = "full"
    CLOSED = "closed"


def no_election() -> int:
    """The term of a gateway that takes part in no leader election."""
    return 0


class Connection:
    def __init__(
        self, instance_id: str, limit: int, *, term: Callable[[], int] = no_election
    ) -> None:
        self.instance_id = instance_id
        self._limit = limit
        self.term = term  # the gateway's current term: stamped on everything sent
        # Unbounded underneath so that close() can always enqueue its sentinel; the bound is
        # enforced in send().
        self._queue: asyncio.Queue[gw.AttachResponse | None] = asyncio.Queue()
        self._queued = 0  # the weight of what is in _queue (see weight())
        self.closed = False
        self.close_reason = ""
        # While a handoff moves this instance's state, everything sent after the ExportState
        # command is also kept here, to be replayed to green after it imports the snapshot.
        self._journal: list[gw.AttachResponse] | None = None
        # The standby keeper's tap on the ACTIVE's stream (its journal since the last
        # checkpoint): called with every message queued, in send order.
        self.observer: Callable[[gw.AttachResponse], None] | None = None

    def send(self, msg: gw.AttachResponse, *, droppable: bool) -> SendResult:
        if self.closed:
            return SendResult.CLOSED
        w = weight(msg)
        # An empty queue takes anything: a batch bigger than the limit must not be refused
        # forever (the limit is on the backlog, not on one tick).
        if self._queued and self._queued + w > self._limit:
            if droppable:
                return SendResult.FULL
            self.close("send queue overflow on a message that cannot be dropped")
            return SendResult.CLOSED
        self._queued += w
        self.stamp(msg)
        self._queue.put_nowait(msg)
        if self._journal is not None:
            self._journal.append(msg)
        if self.observer is not None:
            self.observer(msg)
        return SendResult.QUEUED

    def stamp(self, msg: gw.AttachResponse) -> gw.AttachResponse:
        """``msg`` with the gateway's current term set on its body (in place: a broadcast
        message shared by several connections gets the same term from each)."""
        kind = msg.WhichOneof("body")
        if kind is not None:
            getattr(msg, kind).term = self.term()
        return msg

    def start_journal(self) -> None:
        self._journal = []

    def stop_journal(self) -> list[gw.AttachResponse]:
        """Stop journaling; what was journaled, in send order."""
        journal, self._journal = self._journal or [], None
        return journal

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = reason
            self._queue.put_nowait(None)

    async def outgoing(self) -> AsyncIterator[gw.AttachResponse]:
        """Messages to write, in order, until close()."""
        while True:
            msg = await self._queue.get()
            if msg is None:
                return
            self._queued -= weight(msg)
            yield msg


def weight(msg: gw.AttachResponse) -> int:
    """What ``msg`` counts for against the queue's limit: its evaluations, at least one."""
    if msg.HasField("evaluate_batch"):
        return max(1, len(msg.evaluate_batch.requests))
    return 1
