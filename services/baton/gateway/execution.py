"""Carrying out the instances' answers: the router's verdict on each decision, the bet an
executed UP/DOWN places on the paper venue, and the flip that makes an instance ACTIVE (with
the answers it already gave as a shadow executed at once). One per strategy of the book: its
router, its venue (its bets, its stake), its fills to its own instances only.

Offers ``on_decision`` to the ``Attach`` servicer and ``TakeOver`` (ports.py) to the handoff
coordinator; reaches instances through ``Peers``, outcomes through ``Resolver``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from opentelemetry import propagate, trace

from baton import wire
from baton.common import sampled
from baton.gateway.core.market import MarketBook
from baton.gateway.core.records import InstanceEvent
from baton.gateway.core.router import Judgement, Pending, Router, Verdict, answered_record
from baton.gateway.core.venue import PaperVenue, Rejection
from baton.gateway.outcomes import GatewayStats
from baton.gateway.ports import DecisionRows, HandoffFacts, Peers, Resolver
from baton.model import Action, Decision, Role, Slot
from baton.v1 import gateway_pb2 as gw

log = logging.getLogger(__name__)
tracer = trace.get_tracer("baton.gateway")

# A dropped decision's reason when this replica no longer leads (docs/gateway-standby.md).
NOT_LEADING = "not leading"


class Execution:
    def __init__(
        self,
        *,
        router: Router,
        book: MarketBook,
        venue: PaperVenue,
        slots: tuple[Slot, ...],
        ledger: DecisionRows,
        peers: Peers,
        outcomes: Resolver,
        facts: HandoffFacts,
        stats: GatewayStats,
        now_ms: Callable[[], int],
        executing: Callable[[], bool] = lambda: True,
    ) -> None:
        self._router = router
        self._strategy = router.strategy
        self._book = book
        self._venue = venue
        self._slot_by_id = {s.slot_id: s for s in slots}
        self._ledger = ledger
        self._peers = peers
        self._outcomes = outcomes
        self._facts = facts
        self._stats = stats
        self._now_ms = now_ms
        self._executing = executing  # leader election: may this replica execute right now?
        self._said_no_clock = False

    def on_decision(self, instance_id: str, msg: gw.Decision) -> None:
        now = self._now_ms()
        try:
            decision = wire.decision_from_proto(msg)
        except wire.WireError as exc:
            self._drop(instance_id, msg.slot_id, msg.seq, msg.epoch, now, None, f"invalid: {exc}")
            return
        self._facts.check_green_answer(instance_id, decision.error, decision.epoch)
        self._apply_judgement(
            instance_id, decision, self._router.judge(instance_id, decision, now), now
        )

    def flip_to(self, instance_id: str, *, previous_role: Role = Role.SHADOW) -> None:
        """Make ``instance_id`` ACTIVE under a new epoch. Evaluations the previous ACTIVE still
        owed move to it; those it already answered as a shadow are executed now."""
        previous = self._router.active_id
        now = self._now_ms()
        answered = self._router.flip(instance_id, previous_role=previous_role)
        self._peers.announce_role(instance_id)
        if previous is not None and previous != instance_id:
            self._peers.announce_role(previous)
        self._ledger.record_instance_event(
            InstanceEvent(
                now, instance_id, "role", role=Role.ACTIVE.value, epoch=self._router.epoch
            )
        )
        for pending in answered:
            decision, judgement = self._router.take_over_answer(pending, now)
            self._apply_judgement(instance_id, decision, judgement, now)

    def _apply_judgement(
        self, instance_id: str, decision: Decision, judgement: Judgement, now: int
    ) -> None:
        pending = judgement.pending
        action = decision.action.value if decision.action else None
        if judgement.verdict is Verdict.SHADOW:
            self._facts.on_shadow_answer(
                instance_id, decision.slot_id, decision.seq, action or "ERROR"
            )
            if not self._facts.running:
                # A hot standby's answers (docs/standby.md): every tick for ever, and compared
                # by state digest, not decision by decision: not a row each in the ledger.
                return
        verdict = judgement.verdict
        if (
            verdict in (Verdict.EXECUTE, Verdict.ERROR)
            and pending is not None
            and not self._executing()
        ):
            # Deposed (or past its renew deadline) between the dispatch and this answer: the
            # next leader owns the tick; nothing is executed twice (docs/gateway-standby.md).
            slot_id, seq, epoch = decision.slot_id, decision.seq, decision.epoch
            self._drop(instance_id, slot_id, seq, epoch, now, action, NOT_LEADING)
            return
        if verdict not in (Verdict.EXECUTE, Verdict.ERROR) or pending is None:
            self._drop(
                instance_id,
                decision.slot_id,
                decision.seq,
                decision.epoch,
                now,
                action,
                judgement.verdict.value,
            )
            return
        if not sampled(decision.trace_context):  # an unsampled tick: no span, no extraction
            self._execute(judgement.verdict, pending, decision, now, None)
            return
        # A sampled tick: the context came back in the decision, so this span is the child of
        # the strategy's evaluate span and the tick's trace reads dispatch -> evaluate -> execute.
        with tracer.start_as_current_span(
            "gateway.execute",
            context=propagate.extract(decision.trace_context),
            attributes={
                "baton.slot_id": pending.slot.slot_id,
                "baton.seq": pending.seq,
                "baton.instance": instance_id,
                "baton.verdict": judgement.verdict.value,
                "baton.action": action or "ERROR",
            },
        ) as span:
            self._execute(judgement.verdict, pending, decision, now, span)

    def _execute(
        self,
        verdict: Verdict,
        pending: Pending,
        decision: Decision,
        now: int,
        span: trace.Span | None,
    ) -> None:
        """Carry out an answer the router accepted: place its bet, record its outcome."""
        bet_id, note = None, ""
        side = decision.action
        if verdict is Verdict.EXECUTE and side in (Action.UP, Action.DOWN):
            assert side is not None
            if span is None:
                bet_id, note = self._bet(pending.slot.slot_id, pending.seq, side, now)
            else:
                with tracer.start_as_current_span("gateway.bet") as bet_span:
                    bet_id, note = self._bet(pending.slot.slot_id, pending.seq, side, now)
                    bet_span.set_attribute("baton.side", side.value)
                    bet_span.set_attribute("baton.bet_id", bet_id or "")
                    if note:
                        bet_span.set_attribute("baton.note", note)
        if verdict is Verdict.EXECUTE:
            action = decision.action.value if decision.action else ""
            self._facts.on_executed(pending.slot.slot_id, pending.seq, action)
        self._outcomes.resolve((answered_record(pending, decision, now, bet_id=bet_id, note=note),))

    def _bet(self, slot_id: str, seq: int, side: Action, now: int) -> tuple[str | None, str]:
        """Place the bet an executed UP/DOWN decision asks for; a refusal is noted, not fatal."""
        slot = self._slot_by_id[slot_id]
        live = self._book.live(slot.symbol, slot.timeframe)
        time_left = self._book.time_left_ms(slot.symbol, slot.timeframe, now)
        if time_left is None and live is not None and not self._said_no_clock:
            self._said_no_clock = True  # once a run: until the market's clock is read
            log.info(
                "pricing without the time left in the window: fair 0.5",
                extra={"pricing": self._venue.pricing_name, "slot_id": slot_id},
            )
        result = self._venue.place(
            slot,
            seq,
            side,
            live,
            time_left_ms=time_left,
            history=self._book.history(slot.symbol, slot.timeframe, self._venue.config.vol_window),
        )
        if isinstance(result, Rejection):
            return None, f"bet rejected: {result.reason}"
        active = self._router.active
        self._ledger.record_bet(
            result,
            instance_id=active.instance_id if active else "",
            version=active.info.version if active else "",
            epoch=self._router.epoch,
            placed_ms=now,
            strategy=self._strategy,
            pricing=self._venue.pricing_name,
        )
        self._peers.broadcast(self._strategy, gw.AttachResponse(fill=wire.fill_to_proto(result)))
        return result.bet_id, ""

    def _drop(
        self,
        instance_id: str,
        slot_id: str,
        seq: int,
        epoch: int,
        now: int,
        action: str | None,
        reason: str,
    ) -> None:
        self._stats.dropped_decisions += 1
        self._ledger.record_dropped_decision(
            slot_id=slot_id,
            seq=seq,
            instance_id=instance_id,
            epoch=epoch,
            received_ms=now,
            action=action,
            reason=reason,
            strategy=self._strategy,
        )
