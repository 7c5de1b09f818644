"""The book's lanes: for each strategy the gateway serves, the parts that are its own.

A lane is one strategy's router (its instances, ACTIVE, epoch, pending evaluations), venue (its
bets and stake), outcomes, execution, dispatch and handoff coordinator. The clock, the exchange
feed, the market book, the connections and the ledger are shared. Nothing of one lane reaches
into another: a handoff, a crash or a slow answer of one strategy never delays or drops
another's evaluations, and bets never cross (docs/gateway.md#a-book-of-strategies).

``Lanes`` admits instances into lanes (``core.book`` decides), keeps the book in the ledger,
and routes what arrives by instance or by handoff id to the lane it belongs to.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from baton.gateway.coordinator import Coordinator, PromoteError
from baton.gateway.core import book as bk
from baton.gateway.core import handoff as hm
from baton.gateway.core import standby as sb
from baton.gateway.core.router import Router
from baton.gateway.core.venue import PaperVenue
from baton.gateway.dispatch import Dispatcher
from baton.gateway.execution import OTHER_TERM, Execution
from baton.gateway.ledger import BookRow, LedgerWriteError
from baton.gateway.outcomes import Outcomes
from baton.gateway.ports import LaneFacts, LaneView
from baton.gateway.standby_keeper import StandbyKeeper
from baton.model import Slot
from baton.v1 import gateway_pb2 as gw

log = logging.getLogger(__name__)


class AdmitError(Exception):
    """An instance's Hello asks for a shape of its strategy the book refuses."""

    def __init__(self, refused: bk.Refused) -> None:
        super().__init__(refused.message)
        self.refused = refused
        self.code = "INVALID_ARGUMENT" if refused.invalid_argument else "FAILED_PRECONDITION"


@dataclass(frozen=True, eq=False)
class Lane:
    entry: bk.StrategyEntry
    router: Router
    venue: PaperVenue
    outcomes: Outcomes
    execution: Execution
    dispatcher: Dispatcher
    handoffs: Coordinator
    standby: StandbyKeeper
    facts: LaneFacts  # to the coordinator and the keeper

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def slots(self) -> tuple[Slot, ...]:
        return self.entry.slots


class BookRows(Protocol):
    """What the lanes write: the book's entries (``ledger.Ledger``)."""

    def record_strategy(
        self, *, name: str, slot_ids: Sequence[str], stake: float | None, added_ms: int
    ) -> None: ...

    def retire_strategy(self, name: str, *, retired_ms: int) -> None: ...


class Lanes:
    """The book: a lane per strategy, in the order they entered it."""

    def __init__(
        self,
        *,
        make_lane: Callable[[bk.StrategyEntry], Lane],
        gateway_slots: tuple[Slot, ...],
        default_stake: float,
        ledger: BookRows,
        now_ms: Callable[[], int],
    ) -> None:
        self._make_lane = make_lane
        self._gateway_slots = gateway_slots
        self._default_stake = default_stake
        self._ledger = ledger
        self._now_ms = now_ms
        self._lanes: dict[str, Lane] = {}
        self._order: tuple[Lane, ...] = ()  # what the tick loop iterates, rebuilt on change
        self._by_instance: dict[str, Lane] = {}
        # Retired strategies whose bets are still open: out of the book (never ticked), kept
        # only so that their venues settle those bets as the windows close.
        self._closing: dict[str, Lane] = {}
        self._numbers = itertools.count(1)

    # -- the book -----------------------------------------------------------------------------

    def restore(self, rows: Sequence[BookRow], closing: Sequence[BookRow] = ()) -> None:
        """The strategies a previous run served: scheduled again from the first tick, attached
        or not (a strategy nobody runs any more is missed, not forgotten). ``closing``: retired
        ones with open bets, restored only to settle them."""
        for row in closing:
            self._closing[row.name] = self._make_lane(self._restored(row))
        for row in rows:
            entry = self._restored(row)
            self._add(entry)
            log.info(
                "strategy restored into the book",
                extra={"strategy": entry.name, "slots": len(entry.slots), "stake": entry.stake},
            )

    def _restored(self, row: BookRow) -> bk.StrategyEntry:
        return bk.restore(
            row.name,
            row.slot_ids,
            row.stake,
            gateway_slots=self._gateway_slots,
            default_stake=self._default_stake,
        )

    def admit(self, hello: gw.Hello) -> Lane:
        known = {name: lane.entry for name, lane in self._lanes.items()}
        result = bk.admit(
            hello.strategy,
            list(hello.slots),
            hello.stake if hello.HasField("stake") else None,
            gateway_slots=self._gateway_slots,
            default_stake=self._default_stake,
            known=known,
        )
        if isinstance(result, bk.Refused):
            log.warning(
                "instance refused by the book",
                extra={"strategy": hello.strategy, "pod": hello.pod_name, "why": result.message},
            )
            raise AdmitError(result)
        lane = self._lanes.get(result.name)
        if lane is not None:
            return lane
        # A retired strategy back while its last bets are open: its new lane takes them over
        # (its venue restores them from the ledger), the closing one goes, so none settles twice.
        self._closing.pop(result.name, None)
        try:
            self._ledger.record_strategy(
                name=result.name,
                slot_ids=result.requested,
                stake=result.asked_stake,
                added_ms=self._now_ms(),
            )
        except LedgerWriteError as exc:
            # A failing disk never stops the gateway (docs/gateway.md#a-full-disk): the
            # strategy is served; only a restart before the disk recovers would not know it.
            log.error(
                "strategy not written into the ledger's book",
                extra={"strategy": result.name, "error": str(exc)},
            )
        log.info(
            "strategy entered the book",
            extra={"strategy": result.name, "slots": len(result.slots), "stake": result.stake},
        )
        return self._add(result)

    def retire(self, name: str) -> Lane:
        """Take ``name`` out of the book: from the next tick its slots are not scheduled for
        it, and a restart does not bring it back. Only an idle strategy can go (no instance
        attached, nothing pending): raises ``PromoteError`` (NOT_FOUND, FAILED_PRECONDITION)."""
        lane = self._lanes.get(name)
        if lane is None:
            raise PromoteError("NOT_FOUND", f"no strategy {name!r} in the book")
        attached = sorted(lane.router.instances)
        if attached:
            raise PromoteError(
                "FAILED_PRECONDITION",
                f"strategy {name!r} still has {len(attached)} attached instance(s) "
                f"({', '.join(attached[:3])}): stop them first",
            )
        if lane.router.pending or lane.handoffs.current is not None:
            raise PromoteError(
                "FAILED_PRECONDITION",
                f"strategy {name!r} still has evaluations pending: retry after this tick",
            )
        try:
            self._ledger.retire_strategy(name, retired_ms=self._now_ms())
        except LedgerWriteError as exc:
            # Retiring is what the ledger says across a restart: without the row, refuse.
            raise PromoteError("UNAVAILABLE", f"cannot write the retirement: {exc}") from exc
        del self._lanes[name]
        self._order = tuple(self._lanes.values())
        if lane.venue.open_bets():
            self._closing[name] = lane
        log.warning(
            "strategy retired from the book: its slots are no longer scheduled for it",
            extra={"strategy": name, "slots": len(lane.slots)},
        )
        return lane

    def _add(self, entry: bk.StrategyEntry) -> Lane:
        lane = self._make_lane(entry)
        self._lanes[entry.name] = lane
        self._order = tuple(self._lanes.values())
        return lane

    def __call__(self) -> tuple[Lane, ...]:
        return self._order

    def __iter__(self) -> Iterator[Lane]:
        return iter(self._order)

    def lane(self, strategy: str) -> Lane | None:
        return self._lanes.get(strategy)

    def next_number(self) -> int:
        return next(self._numbers)

    def bind(self, instance_id: str, lane: LaneView) -> None:
        own = self._lanes[lane.name]  # always one of ours: admit() handed it out
        self._by_instance[instance_id] = own

    def lane_of(self, instance_id: str) -> Lane | None:
        """The lane an instance was admitted into (kept after it detached: a late message of
        it still reaches its own strategy's router, which drops it)."""
        return self._by_instance.get(instance_id)

    def venues(self) -> list[tuple[str, PaperVenue]]:
        """Every venue with bets to settle: the book's, and retired strategies' until their
        last open bet settled."""
        for name, lane in list(self._closing.items()):
            if not lane.venue.open_bets():
                del self._closing[name]
        lanes = (*self._order, *self._closing.values())
        return [(lane.name, lane.venue) for lane in lanes]

    # -- routing by instance (the Attach stream) and by handoff (the control service) --------

    def on_decision(self, instance_id: str, msg: gw.Decision) -> None:
        lane = self._by_instance.get(instance_id)
        if lane is not None:
            lane.execution.on_decision(instance_id, msg)

    def on_other_term(self, instance_id: str, msg: gw.Decision) -> None:
        lane = self._by_instance.get(instance_id)
        if lane is not None:
            lane.execution.drop(instance_id, msg, OTHER_TERM)

    def on_exported(self, instance_id: str, snapshot: gw.StateSnapshot) -> None:
        lane = self._by_instance.get(instance_id)
        if lane is None:
            return
        if sb.is_keeping_id(snapshot.handoff_id):  # a checkpoint, a digest check, a sync
            lane.standby.on_exported(instance_id, snapshot)
        else:
            lane.handoffs.on_exported(instance_id, snapshot)

    def on_imported(self, instance_id: str, result: gw.ImportResult) -> None:
        lane = self._by_instance.get(instance_id)
        if lane is None:
            return
        if sb.is_keeping_id(result.handoff_id):
            lane.standby.on_imported(instance_id, result)
        else:
            lane.handoffs.on_imported(instance_id, result)

    def on_drained(self, instance_id: str) -> None:
        lane = self._by_instance.get(instance_id)
        if lane is not None:
            lane.handoffs.on_drained(instance_id)

    def coordinator_of_instance(self, instance_id: str) -> Coordinator:
        lane = self._by_instance.get(instance_id)
        if lane is None or instance_id not in lane.router.instances:
            raise PromoteError("NOT_FOUND", f"no attached instance {instance_id!r}")
        return lane.handoffs

    def handoff(self, handoff_id: str) -> tuple[Coordinator, hm.Handoff] | None:
        """The handoff ``handoff_id`` and its lane's coordinator. An empty id means the running
        handoff when exactly one runs, else (none running) the one that started last; with
        several running it names none (the caller must say which)."""
        if handoff_id:
            for lane in self._order:
                h = lane.handoffs.get(handoff_id)
                if h is not None:
                    return lane.handoffs, h
            return None
        running = [
            (lane.handoffs, current) for lane in self._order if (current := lane.handoffs.current)
        ]
        if running:
            return running[0] if len(running) == 1 else None
        latest = [(lane.handoffs, h) for lane in self._order if (h := lane.handoffs.get(""))]
        return max(latest, key=lambda pair: pair[1].started_ms, default=None)
