"""Handoffs that have finished, the evaluations each missed, the request ids already served
(Promote is idempotent), and the watchers of each handoff's status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from baton.gateway.core import handoff as hm


class HandoffHistory:
    def __init__(self) -> None:
        self.finished: dict[str, hm.Handoff] = {}
        self.missed: dict[str, int] = {}  # handoff id -> evaluations missed while it ran
        self._by_request: dict[str, str] = {}
        self._watchers: dict[str, list[asyncio.Queue[hm.Handoff]]] = {}

    def handoff_of(self, request_id: str) -> str | None:
        return self._by_request.get(request_id) if request_id else None

    def remember(self, request_id: str, handoff_id: str) -> None:
        if request_id:
            self._by_request[request_id] = handoff_id

    def last(self) -> hm.Handoff | None:
        return next(reversed(self.finished.values()), None)

    def finish(self, h: hm.Handoff, missed: int) -> None:
        self.finished[h.handoff_id] = h
        self.missed[h.handoff_id] = missed

    async def watch(self, h: hm.Handoff) -> AsyncIterator[hm.Handoff]:
        """``h``, then its status after each transition, until a terminal phase."""
        queue: asyncio.Queue[hm.Handoff] = asyncio.Queue()
        watchers = self._watchers.setdefault(h.handoff_id, [])
        watchers.append(queue)
        try:
            yield h
            while not h.phase.terminal:
                h = await queue.get()
                yield h
        finally:
            watchers.remove(queue)

    def notify(self, h: hm.Handoff) -> None:
        for queue in self._watchers.get(h.handoff_id, []):
            queue.put_nowait(h)
