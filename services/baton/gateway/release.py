"""The fills and settlements of every strategy, held until the ledger (and the standby) holds
them, then told to the strategy in the order they happened (``core/release.py`` decides when).

Offers ``Peers`` (ports.py) to the execution and the feed sink in place of ``Instances``: a
broadcast is held, a role announcement passes at once. Holding asks for a write soon (the tick
loop writes once per tick; a fill must not wait for the next tick), and the replicator's
acknowledgements, every write and a timer at the oldest message's bound release what may go.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from baton.gateway.core.release import Held, Release, Standby, next_check_ms, release
from baton.gateway.metrics import GatewayMetrics
from baton.gateway.ports import Peers
from baton.v1 import gateway_pb2 as gw

log = logging.getLogger(__name__)

# A held message's write waits this long for the rest of its burst: a tick's answers arrive
# within a few ms of each other, and one commit (and one replicated batch) carries them all.
WRITE_SOON_S = 0.005


@dataclass(frozen=True, slots=True)
class LedgerState:
    """What the gate asks the ledger: rows recorded and not yet written, the last commit."""

    pending_rows: int
    position: int


@dataclass(slots=True)
class _Message:
    held: Held
    strategy: str
    msg: gw.AttachResponse


class ReleaseGate:
    def __init__(
        self,
        peers: Peers,
        *,
        ledger: Callable[[], LedgerState],
        write: Callable[[], None],
        standby: Callable[[], Standby | None],
        now_ms: Callable[[], int],
        wait_ms: int,
        metrics: GatewayMetrics,
    ) -> None:
        self._peers = peers
        self._ledger = ledger
        self._write = write  # the ledger writer's flush: it calls ``pump`` when done
        self._standby = standby  # None: this ledger is not replicated
        self._now_ms = now_ms
        self._wait_ms = wait_ms
        self._metrics = metrics
        self._queue: collections.deque[_Message] = collections.deque()
        self._write_soon: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._drained = asyncio.Event()
        self._drained.set()
        self._closed = False

    # -- Peers ---------------------------------------------------------------------------------

    def broadcast(self, strategy: str, msg: gw.AttachResponse) -> None:
        """Hold a fill or settlement whose rows were just recorded (not yet written)."""
        self._queue.append(_Message(Held(self._now_ms()), strategy, msg))
        self._drained.clear()
        self._metrics.held(len(self._queue))
        if self._write_soon is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._write_soon = loop.call_later(WRITE_SOON_S, self._write_now)
        if len(self._queue) == 1:
            self._arm()

    def announce_role(self, instance_id: str) -> None:
        self._peers.announce_role(instance_id)

    # -- what releases ---------------------------------------------------------------------------

    def pump(self) -> None:
        """After a write, an acknowledgement or at a bound: tell what may be told now."""
        if not self._queue:
            return
        state = self._ledger()
        if state.pending_rows == 0:
            # Nothing recorded is unwritten: every held message's rows are in a commit up to
            # the last one (a message gets the first position seen after it was held).
            for m in self._queue:
                if m.held.position is None:
                    m.held = replace(m.held, position=state.position)
        now = self._now_ms()
        verdicts = release(
            [m.held for m in self._queue],
            standby=self._standby(),
            now_ms=now,
            wait_ms=self._wait_ms,
        )
        for how in verdicts:
            m = self._queue.popleft()
            self._peers.broadcast(m.strategy, m.msg)
            self._metrics.released(how.value, max(0, now - m.held.held_ms) / 1000)
            if how is Release.TIMED_OUT:
                log.warning(
                    "fill or settlement told before the ledger or the standby holds it",
                    extra={
                        "strategy": m.strategy,
                        "what": m.msg.WhichOneof("body"),
                        "held_ms": now - m.held.held_ms,
                        "position": m.held.position,
                    },
                )
        self._metrics.held(len(self._queue))
        if not self._queue:
            self._drained.set()
        self._arm()

    async def drained(self, within_s: float) -> bool:
        """Whether every held message was told within ``within_s`` (a write is asked now)."""
        if self._queue:
            self._write_now()
        try:
            async with asyncio.timeout(within_s):
                await self._drained.wait()
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """No more timers (the gateway stops); what is still held is never told."""
        self._closed = True
        for handle in (self._write_soon, self._timer):
            if handle is not None:
                handle.cancel()
        self._write_soon = self._timer = None
        if self._queue:
            log.warning("fills or settlements never told", extra={"held": len(self._queue)})

    # -- timers ----------------------------------------------------------------------------------

    def _write_now(self) -> None:
        self._write_soon = None
        self._write()
        self.pump()  # also when the write had nothing to write

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = next_check_ms((self._queue[0].held,) if self._queue else (), self._wait_ms)
        if due is None or self._closed:
            return
        delay_s = max(0.0, (due - self._now_ms()) / 1000)
        self._timer = asyncio.get_running_loop().call_later(delay_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.pump()
