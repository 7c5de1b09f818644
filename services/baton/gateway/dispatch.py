"""One tick's dispatch for one strategy of the book: its router's plan for the tick, one
``EvaluationBatch`` per instance (the ACTIVE's first), each request built once, and what could
not be sent resolved at once.

Offers ``dispatch`` to the tick loop; sends through ``Outlets`` and resolves through
``Resolver`` (ports.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from opentelemetry import propagate, trace

from baton import wire
from baton.gateway.connection import SendResult
from baton.gateway.core.clock import Tick
from baton.gateway.core.market import MarketBook
from baton.gateway.core.records import Staleness
from baton.gateway.core.router import Router, Send
from baton.gateway.outcomes import GatewayStats
from baton.gateway.ports import Outlets, Resolver
from baton.model import Role
from baton.v1 import gateway_pb2 as gw
from baton.v1 import market_pb2 as mk

log = logging.getLogger(__name__)
tracer = trace.get_tracer("baton.gateway")


class Dispatcher:
    def __init__(
        self,
        *,
        router: Router,
        book: MarketBook,
        history: int,
        outlets: Outlets,
        outcomes: Resolver,
        stats: GatewayStats,
        wall_ms_f: Callable[[], float],
    ) -> None:
        self._router = router
        self._book = book
        self._history_depth = history
        self._outlets = outlets
        self._outcomes = outcomes
        self._stats = stats
        # Wall time in ms with sub-ms precision: dispatch delays and cutover pauses are ~1 ms.
        self._wall_ms_f = wall_ms_f
        self._history_cache: dict[tuple[str, str], tuple[int, list[mk.Candle]]] = {}

    def dispatch(self, tick: Tick, now: int, stale: Mapping[str, Staleness]) -> float:
        """Send one tick: one ``EvaluationBatch`` per instance. Returns when (wall ms) the ACTIVE
        instance's batch was queued: the moment the tick is dispatched to it (shadows are
        served after). ``stale``: per slot id, its data's freshness (absent: fresh)."""
        active_done: float | None = None
        with tracer.start_as_current_span(
            "gateway.tick",
            attributes={
                "baton.tick": tick.index,
                "baton.scheduled_ms": tick.scheduled_ms,
                "baton.strategy": self._router.strategy,
            },
        ) as span:
            # The tick's context rides in every request of the tick, but only when the tick is
            # sampled: an unsampled tick makes no per-evaluation span anywhere.
            carrier: dict[str, str] = {}
            if span.get_span_context().trace_flags.sampled:
                propagate.inject(carrier)
            plan = self._router.on_tick(tick, now, stale)
            self._outcomes.resolve(plan.missed)
            batches = self._batches(plan.sends, carrier)
            for instance_id, (msg, sends) in batches.items():  # the ACTIVE's first
                if sends[0].role is Role.SHADOW and active_done is None:
                    active_done = self._wall_ms_f()
                self._send_batch(instance_id, msg, sends)
            if active_done is None:
                active_done = self._wall_ms_f()
            span.set_attribute("baton.dispatched", len(plan.sends))
        return active_done

    def _batches(
        self, sends: tuple[Send, ...], carrier: dict[str, str]
    ) -> dict[str, tuple[gw.AttachResponse, list[Send]]]:
        """The tick's requests grouped per instance, in send order (the ACTIVE's come first).
        A request is built once, for the ACTIVE; a shadow gets a copy marked SHADOW."""
        batches: dict[str, tuple[gw.AttachResponse, list[Send]]] = {}
        built: dict[str, gw.EvaluationRequest] = {}
        for send in sends:
            entry = batches.get(send.instance_id)
            if entry is None:
                entry = batches[send.instance_id] = (gw.AttachResponse(), [])
            msg, grouped = entry
            # Built in place: wrapping a finished batch in an AttachResponse would copy it.
            request = msg.evaluate_batch.requests.add()
            first = built.get(send.slot.slot_id)
            if first is None:
                self._fill_request(request, send, carrier)
                built[send.slot.slot_id] = request
            else:
                request.CopyFrom(first)
                request.role = wire.role_to_proto(send.role)
            grouped.append(send)
        return batches

    def _send_batch(self, instance_id: str, msg: gw.AttachResponse, sends: list[Send]) -> None:
        if sends[0].role is Role.SHADOW:
            # A shadow that cannot keep up falls behind and is never flipped to: the handoff
            # waits for it at the boundary (and aborts past its step timeout).
            self._outlets.send(instance_id, msg, droppable=False)
            return
        result = self._outlets.send(instance_id, msg, droppable=True)
        if result is SendResult.QUEUED:
            self._stats.dispatched += len(sends)
            return
        log.warning(
            "evaluations undelivered",
            extra={"instance": instance_id, "count": len(sends), "why": result.value},
        )
        for send in sends:
            record = self._router.undelivered(send.slot.slot_id, send.seq)
            if record is not None:
                self._outcomes.resolve((record,))

    def _history(self, symbol: str, interval: str) -> list[mk.Candle]:
        """Closed-candle history as protos, rebuilt only when a candle closed (not per send)."""
        key = (symbol, interval)
        stamp = self._book.last_closed(symbol, interval)
        cached = self._history_cache.get(key)
        if cached is None or cached[0] != stamp:
            candles = self._book.history(symbol, interval, self._history_depth)
            cached = (stamp, [wire.candle_to_proto(c) for c in candles])
            self._history_cache[key] = cached
        return cached[1]

    def _fill_request(self, msg: gw.EvaluationRequest, send: Send, carrier: dict[str, str]) -> None:
        slot = send.slot
        msg.slot.CopyFrom(wire.slot_to_proto(slot))
        msg.seq = send.seq
        msg.scheduled_ms = send.tick.scheduled_ms
        msg.deadline_ms = send.tick.deadline_ms
        msg.epoch = send.epoch
        msg.role = wire.role_to_proto(send.role)
        msg.history.extend(self._history(slot.symbol, slot.timeframe))
        msg.trace_context.update(carrier)
        live = self._book.live(slot.symbol, slot.timeframe)
        if live is not None:
            msg.live.CopyFrom(wire.candle_to_proto(live))
