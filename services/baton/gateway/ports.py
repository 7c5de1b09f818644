"""The narrow interfaces between the parts of the gateway's I/O shell.

Each part (``ticker``, ``dispatch``, ``instances``, ``execution``, ``outcomes``,
``ledger_writer``, ``coordinator``) depends on these Protocols, not on another part's class, so
that any part can be driven in-process against small fakes (tests/component) and so that the
parts import one another in one direction only. ``app.py`` builds the parts and wires them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

from baton.gateway.connection import Connection, SendResult
from baton.gateway.core.clock import Tick
from baton.gateway.core.handoff import Handoff
from baton.gateway.core.handover import HandoverResult
from baton.gateway.core.records import ConnectionEvent, EvaluationRecord, InstanceEvent, Staleness
from baton.gateway.core.router import Instance, Router
from baton.model import Candle, Fill, LedgerHealth, Role, Settlement, Slot
from baton.v1 import gateway_pb2 as gw


class Roster(Protocol):
    """Who is attached and who is ACTIVE, read-only (``core.router.Router`` offers it)."""

    @property
    def epoch(self) -> int: ...

    @property
    def active_id(self) -> str | None: ...

    @property
    def active(self) -> Instance | None: ...

    @property
    def instances(self) -> Mapping[str, Instance]: ...

    def caught_up(self, instance_id: str) -> bool: ...


class LaneView(Protocol):
    """One strategy of the book, as the shared parts reach it (``lanes.Lane``)."""

    @property
    def name(self) -> str: ...

    @property
    def router(self) -> Router: ...

    @property
    def slots(self) -> tuple[Slot, ...]: ...

    @property
    def facts(self) -> LaneFacts: ...


class Book(Protocol):
    """The strategies the gateway serves, for the shared parts (``lanes.Lanes``)."""

    def admit(self, hello: gw.Hello) -> LaneView:
        """The lane of the Hello's strategy (entered into the book if new); raises
        ``lanes.AdmitError`` when the Hello's slots or stake are refused."""
        ...

    def lane(self, strategy: str) -> LaneView | None: ...

    def lane_of(self, instance_id: str) -> LaneView | None: ...

    def bind(self, instance_id: str, lane: LaneView) -> None: ...

    def next_number(self) -> int:
        """The next gateway-wide instance number (ids stay unique across strategies)."""
        ...


class Membership(Protocol):
    """Instances coming and going, for the ``Attach`` servicer (``Instances``)."""

    def attach(self, hello: gw.Hello) -> tuple[Connection, gw.Welcome]: ...

    def detach(self, conn: Connection, reason: str) -> None: ...

    def fenced(self, conn: Connection, refusal: gw.Fenced) -> None:
        """``conn``'s host refused a message of this gateway's (older) term."""


class Decisions(Protocol):
    """Where the instances' answers go, for the ``Attach`` servicer (``Execution``)."""

    def on_decision(self, instance_id: str, msg: gw.Decision) -> None: ...


class LedgerHealthView(Protocol):
    """The ledger's writes as of the last flush, for the ControlService (``LedgerWriter``)."""

    @property
    def health(self) -> LedgerHealth: ...


class Outlets(Protocol):
    """The attached instances' outgoing streams, by instance id (``Instances`` offers it)."""

    def send(self, instance_id: str, msg: gw.AttachResponse, *, droppable: bool) -> SendResult:
        """Queue ``msg``; an instance not (or no longer) attached is ``CLOSED``."""
        ...


class Peers(Protocol):
    """The attached instances as the execution and the feed reach them (``Instances``)."""

    def broadcast(self, strategy: str, msg: gw.AttachResponse) -> None:
        """A fill or settlement of ``strategy``, to every instance of it that keeps state."""
        ...

    def announce_role(self, instance_id: str) -> None: ...


class Fleet(Protocol):
    """What the handoff coordinator does to instances' roles and streams (``Instances``)."""

    def send_to(self, instance_id: str, msg: gw.AttachResponse) -> bool: ...

    def start_journal(self, instance_id: str) -> None: ...

    def stop_journal(self, instance_id: str) -> list[gw.AttachResponse]: ...

    def set_role(self, instance_id: str, role: Role) -> None: ...

    def make_shadow(self, instance_id: str, replay: list[gw.AttachResponse]) -> None: ...

    def drain(self, instance_id: str, reason: str) -> None: ...


class TakeOver(Protocol):
    """The flip: a new ACTIVE under a new epoch, and what it owes executed (``Execution``)."""

    def flip_to(self, instance_id: str, *, previous_role: Role = Role.SHADOW) -> None: ...


class HandoffRecorder(Protocol):
    """Where a finished handoff is written (``LedgerWriter``)."""

    def record_handoff(self, h: Handoff, missed: int) -> None: ...


class HandoffFacts(Protocol):
    """What the other parts tell the handoff coordinator as it happens (``Coordinator``)."""

    def on_gone(
        self, instance_id: str, reason: str, journal: list[gw.AttachResponse] | None = None
    ) -> None: ...

    def on_broadcast(self, msg: gw.AttachResponse) -> None: ...

    def on_record(self, record: EvaluationRecord) -> None: ...

    def check_green_answer(self, instance_id: str, error: str, epoch: int) -> None: ...

    @property
    def running(self) -> bool:
        """A handoff runs: its shadows' answers are compared (and kept in the ledger)."""
        ...

    def on_executed(self, slot_id: str, seq: int, action: str) -> None: ...

    def on_shadow_answer(self, instance_id: str, slot_id: str, seq: int, action: str) -> None: ...


class LaneFacts(HandoffFacts, Protocol):
    """What the instances tell a lane (its handoff coordinator and its standby keeper)."""

    def on_attached(self, instance_id: str) -> None: ...


class Boundaries(Protocol):
    """The tick loop's two moments a handoff acts on (``Coordinator``)."""

    def on_boundary(self, now: int) -> None: ...

    def after_dispatch(self, scheduled_ms: int, dispatched_ms: float) -> None: ...


class Resolver(Protocol):
    """Where every evaluation's one outcome goes: stats, handoff, ledger, metrics
    (``Outcomes``)."""

    def resolve(self, records: tuple[EvaluationRecord, ...]) -> None: ...


class Settling(Resolver, Protocol):
    """``Resolver``, and whether anything is still pending, for the tick loop (``Outcomes``)."""

    def track(self) -> None:
        """After a dispatch: not idle while its evaluations are pending."""
        ...

    async def settled(self) -> None:
        """Returns once nothing is pending."""
        ...


class TickDispatch(Protocol):
    """One tick sent (``Dispatcher``): returns when (wall ms) the ACTIVE's batch was queued.
    ``stale``: per slot id, its data's freshness at dispatch (absent: fresh)."""

    def dispatch(self, tick: Tick, now: int, stale: Mapping[str, Staleness]) -> float: ...


class TickLane(Protocol):
    """One strategy of the book, as the tick loop drives it (``lanes.Lane``)."""

    @property
    def router(self) -> Router: ...

    @property
    def dispatcher(self) -> TickDispatch: ...

    @property
    def outcomes(self) -> Settling: ...

    @property
    def handoffs(self) -> Boundaries: ...

    @property
    def standby(self) -> StandbyTicks: ...


class StandbyTicks(Protocol):
    """The tick loop's two moments the standby keeper acts on (``StandbyKeeper``)."""

    def on_boundary(self, now: int) -> None: ...

    def after_dispatch(self, tick_index: int) -> None: ...


class TickWrites(Protocol):
    """The ledger as the tick loop writes it: the seqs a tick reserves (``ledger.Ledger``)."""

    def reserve_seqs(self, seqs: Mapping[str, int]) -> None: ...


class Flusher(Protocol):
    """The once-per-tick write of the ledger's rows (``LedgerWriter``)."""

    def flush(self) -> None: ...

    def flush_early(self) -> None:
        """A write between two ticks' flushes; skipped while writes fail."""
        ...


class Warmup(Protocol):
    """What the clock waits for before its first tick (``warmup.BackfillGate``)."""

    async def wait(self) -> None:
        """Returns when the clock may start: the backfill finished, the bound passed, or the
        gateway is stopping."""
        ...

    def before_tick(self) -> None:
        """Right before a tick's dispatch: brings the book's view of the streams still being
        backfilled for the first time up to date (their evaluations are stale)."""
        ...


class BackfillProgress(Protocol):
    """The exchange feed's backfill, as the clock's warm-up reads it (``ExchangeFeed``)."""

    @property
    def connected(self) -> asyncio.Event:
        """Set while every connection is up and every stream's backfill has finished
        (delivered, or refused for good)."""
        ...

    def backfill_pending(self) -> tuple[tuple[str, str], ...]:
        """(symbol, interval) of the streams whose backfill has not finished."""
        ...

    def backfill_refused(self) -> tuple[tuple[str, str], ...]:
        """(symbol, interval) of the streams whose backfill the exchange refused for good
        (e.g. -1121, an unknown symbol)."""
        ...


# -- the ledger, as each part writes it (``ledger.Ledger`` offers all of them) ----------------


class EvaluationRows(Protocol):
    def record_evaluation(self, rec: EvaluationRecord) -> None:
        """Raises ``ledger.DuplicateRecordError`` for a second outcome of one (slot, seq)."""
        ...


class InstanceRows(Protocol):
    def record_instance_event(self, ev: InstanceEvent) -> None: ...


class DecisionRows(InstanceRows, Protocol):
    """What carrying out decisions writes: bets, decisions never executed, the flip."""

    def record_bet(
        self,
        fill: Fill,
        *,
        instance_id: str,
        version: str,
        epoch: int,
        placed_ms: int,
        strategy: str = "",
        pricing: str = "",
    ) -> None: ...

    def record_dropped_decision(
        self,
        *,
        slot_id: str,
        seq: int,
        instance_id: str,
        epoch: int,
        received_ms: int,
        action: str | None,
        reason: str,
        strategy: str = "",
    ) -> None: ...


class MarketRows(Protocol):
    """What the exchange feed's sink writes."""

    def record_candle(self, c: Candle, *, source: str, observed_ms: int) -> None: ...

    def record_settlement(self, s: Settlement, *, settled_ms: int) -> None: ...

    def record_connection_event(self, ev: ConnectionEvent) -> None: ...


class HandoverPort(Protocol):
    """A replica's planned handover, for ``ControlService.Handover`` (``replica.py``): returns
    once the lease is released; raises ``core.handover.HandoverRefused``."""

    async def handover(self, reason: str) -> HandoverResult: ...
