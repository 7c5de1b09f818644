"""The one place protocol buffers meet the domain model: ``to_proto`` / ``from_proto`` pairs.

What lives here: every conversion between ``baton.v1`` messages and ``baton.model`` values, for
both services: the strategy stream (``GatewayService``: evaluations, decisions, fills,
settlements, roles) and the control service (``ControlService``: handoff phases, policies and
statuses, instances, the ledger's health), used by the gateway, the strategy host, the control
client and the operator alike. Everything else in Baton works on ``baton.model`` dataclasses;
a component's own views (the operator's ``HandoffFigures``) are built from those, not from
messages. Values a peer could send out of
range (unknown enum numbers, missing required parts) raise ``WireError`` naming the field.
"""

from __future__ import annotations

import math

from baton.model import (
    Action,
    Candle,
    Decision,
    EvaluationRequest,
    Fill,
    HandoffPhase,
    HandoffPolicy,
    HandoffStatus,
    HandoffStep,
    InstanceStatus,
    LedgerHealth,
    Role,
    Settlement,
    Slot,
    StandbyMode,
    StandbyPolicy,
)
from baton.v1 import control_pb2 as ctl
from baton.v1 import gateway_pb2 as gw
from baton.v1 import market_pb2 as mk


class WireError(ValueError):
    """A message from a peer that cannot be turned into the domain model."""


_ACTION_TO = {Action.HOLD: mk.ACTION_HOLD, Action.UP: mk.ACTION_UP, Action.DOWN: mk.ACTION_DOWN}
_ACTION_FROM = {v: k for k, v in _ACTION_TO.items()}
_ROLE_TO = {
    Role.STANDBY: mk.ROLE_STANDBY,
    Role.SHADOW: mk.ROLE_SHADOW,
    Role.ACTIVE: mk.ROLE_ACTIVE,
    Role.DRAINING: mk.ROLE_DRAINING,
}
_ROLE_FROM = {v: k for k, v in _ROLE_TO.items()}


def action_to_proto(action: Action | None) -> mk.Action.ValueType:
    return mk.ACTION_UNSPECIFIED if action is None else _ACTION_TO[action]


def action_from_proto(value: int, *, field: str = "action") -> Action | None:
    if value == mk.ACTION_UNSPECIFIED:
        return None
    try:
        return _ACTION_FROM[mk.Action.ValueType(value)]
    except KeyError:
        raise WireError(f"{field}: unknown action {value}") from None


def role_to_proto(role: Role) -> mk.Role.ValueType:
    return _ROLE_TO[role]


def role_from_proto(value: int, *, field: str = "role") -> Role:
    try:
        return _ROLE_FROM[mk.Role.ValueType(value)]
    except KeyError:
        raise WireError(f"{field}: unknown role {value}") from None


def candle_to_proto(c: Candle) -> mk.Candle:
    return mk.Candle(
        symbol=c.symbol,
        interval=c.interval,
        open_time_ms=c.open_time_ms,
        close_time_ms=c.close_time_ms,
        open=c.open,
        high=c.high,
        low=c.low,
        close=c.close,
        volume=c.volume,
        trades=c.trades,
        closed=c.closed,
    )


def candle_from_proto(m: mk.Candle) -> Candle:
    return Candle(
        symbol=m.symbol,
        interval=m.interval,
        open_time_ms=m.open_time_ms,
        close_time_ms=m.close_time_ms,
        open=m.open,
        high=m.high,
        low=m.low,
        close=m.close,
        volume=m.volume,
        trades=m.trades,
        closed=m.closed,
    )


def slot_to_proto(s: Slot) -> mk.Slot:
    return mk.Slot(slot_id=s.slot_id, market=s.market, symbol=s.symbol, timeframe=s.timeframe)


def slot_from_proto(m: mk.Slot) -> Slot:
    slot = Slot(market=m.market, symbol=m.symbol, timeframe=m.timeframe)
    if not (m.market and m.symbol and m.timeframe) or slot.slot_id != m.slot_id:
        raise WireError(f"slot: inconsistent slot {m.slot_id!r} ({m.market}, {m.timeframe})")
    return slot


def evaluation_to_proto(r: EvaluationRequest) -> gw.EvaluationRequest:
    msg = gw.EvaluationRequest(
        slot=slot_to_proto(r.slot),
        seq=r.seq,
        scheduled_ms=r.scheduled_ms,
        deadline_ms=r.deadline_ms,
        epoch=r.epoch,
        role=role_to_proto(r.role),
        history=[candle_to_proto(c) for c in r.history],
        trace_context=r.trace_context,
    )
    if r.live is not None:
        msg.live.CopyFrom(candle_to_proto(r.live))
    return msg


def evaluation_from_proto(
    m: gw.EvaluationRequest, history: tuple[Candle, ...] | None = None
) -> EvaluationRequest:
    """``history``: ``m.history`` already converted (the strategy host caches it per stream)."""
    if not m.HasField("slot"):
        raise WireError("evaluate.slot: missing")
    return EvaluationRequest(
        slot=slot_from_proto(m.slot),
        seq=m.seq,
        scheduled_ms=m.scheduled_ms,
        deadline_ms=m.deadline_ms,
        epoch=m.epoch,
        role=role_from_proto(m.role, field="evaluate.role"),
        live=candle_from_proto(m.live) if m.HasField("live") else None,
        history=tuple(candle_from_proto(c) for c in m.history) if history is None else history,
        trace_context=dict(m.trace_context),
    )


def decision_to_proto(d: Decision) -> gw.Decision:
    return gw.Decision(
        slot_id=d.slot_id,
        seq=d.seq,
        epoch=d.epoch,
        action=action_to_proto(d.action),
        reason=d.reason,
        error=d.error,
        eval_us=d.eval_us,
        trace_context=d.trace_context,
    )


def decision_from_proto(m: gw.Decision) -> Decision:
    action = action_from_proto(m.action, field="decision.action")
    if action is None and not m.error:
        raise WireError("decision.action: unspecified without an error")
    return Decision(
        slot_id=m.slot_id,
        seq=m.seq,
        epoch=m.epoch,
        action=action,
        reason=m.reason,
        error=m.error,
        eval_us=m.eval_us,
        trace_context=dict(m.trace_context),
    )


def _side_from_proto(value: int, field: str) -> Action:
    side = action_from_proto(value, field=field)
    if side not in (Action.UP, Action.DOWN):
        raise WireError(f"{field}: must be UP or DOWN, got {value}")
    return side


def fill_to_proto(f: Fill) -> gw.Fill:
    return gw.Fill(
        bet_id=f.bet_id,
        slot_id=f.slot_id,
        seq=f.seq,
        side=action_to_proto(f.side),
        stake=f.stake,
        price=f.price,
        shares=f.shares,
        fee=f.fee,
        window_start_ms=f.window_start_ms,
        window_end_ms=f.window_end_ms,
    )


def fill_from_proto(m: gw.Fill) -> Fill:
    return Fill(
        bet_id=m.bet_id,
        slot_id=m.slot_id,
        seq=m.seq,
        side=_side_from_proto(m.side, "fill.side"),
        stake=m.stake,
        price=m.price,
        shares=m.shares,
        fee=m.fee,
        window_start_ms=m.window_start_ms,
        window_end_ms=m.window_end_ms,
    )


def settlement_to_proto(s: Settlement) -> gw.Settlement:
    return gw.Settlement(
        bet_id=s.bet_id,
        slot_id=s.slot_id,
        side=action_to_proto(s.side),
        window_start_ms=s.window_start_ms,
        window_end_ms=s.window_end_ms,
        open_price=s.open_price,
        close_price=s.close_price,
        outcome=action_to_proto(s.outcome),
        won=s.won,
        payout=s.payout,
        pnl=s.pnl,
    )


def settlement_from_proto(m: gw.Settlement) -> Settlement:
    return Settlement(
        bet_id=m.bet_id,
        slot_id=m.slot_id,
        side=_side_from_proto(m.side, "settlement.side"),
        window_start_ms=m.window_start_ms,
        window_end_ms=m.window_end_ms,
        open_price=m.open_price,
        close_price=m.close_price,
        outcome=_side_from_proto(m.outcome, "settlement.outcome"),
        won=m.won,
        payout=m.payout,
        pnl=m.pnl,
    )


# -- the control service ----------------------------------------------------------------------

_PHASE_TO = {
    HandoffPhase.EXPORTING: ctl.HANDOFF_PHASE_EXPORTING,
    HandoffPhase.IMPORTING: ctl.HANDOFF_PHASE_IMPORTING,
    HandoffPhase.SHADOWING: ctl.HANDOFF_PHASE_SHADOWING,
    HandoffPhase.BAKING: ctl.HANDOFF_PHASE_BAKING,
    HandoffPhase.DRAINING: ctl.HANDOFF_PHASE_DRAINING,
    HandoffPhase.COMPLETED: ctl.HANDOFF_PHASE_COMPLETED,
    HandoffPhase.ABORTED: ctl.HANDOFF_PHASE_ABORTED,
    HandoffPhase.ROLLED_BACK: ctl.HANDOFF_PHASE_ROLLED_BACK,
}
_PHASE_FROM = {v: k for k, v in _PHASE_TO.items()}


def handoff_phase_to_proto(phase: HandoffPhase) -> ctl.HandoffPhase.ValueType:
    return _PHASE_TO[phase]


def handoff_phase_from_proto(value: int, *, field: str = "phase") -> HandoffPhase:
    try:
        return _PHASE_FROM[ctl.HandoffPhase.ValueType(value)]
    except KeyError:
        raise WireError(f"{field}: unknown handoff phase {value}") from None


def _seconds_to_ms(value: float, field: str, *, positive: bool) -> int:
    if math.isnan(value) or math.isinf(value) or value < 0 or (positive and value == 0):
        raise WireError(f"policy.{field} must be {'> 0' if positive else '>= 0'}, got {value}")
    return round(value * 1000)


def policy_to_proto(p: HandoffPolicy) -> ctl.HandoffPolicy:
    """Every field set: the receiving gateway applies exactly this policy."""
    msg = ctl.HandoffPolicy(
        shadow_ticks=p.shadow_ticks,
        bake_s=p.bake_ms / 1000,
        no_auto_rollback=not p.auto_rollback,
        max_bake_faults=p.max_bake_faults,
        step_timeout_s=p.step_timeout_ms / 1000,
        skip_state_transfer=p.skip_state_transfer,
    )
    if p.max_divergence is not None:
        msg.max_divergence = p.max_divergence
    return msg


def policy_from_proto(m: ctl.HandoffPolicy) -> HandoffPolicy:
    """An unset field takes ``HandoffPolicy``'s default; a set one is taken as it is (0 too).
    Out-of-range values raise ``WireError`` (the gateway answers INVALID_ARGUMENT)."""
    d = HandoffPolicy()
    has = m.HasField
    bake_ms = _seconds_to_ms(m.bake_s, "bake_s", positive=False) if has("bake_s") else d.bake_ms
    step_timeout_ms = (
        _seconds_to_ms(m.step_timeout_s, "step_timeout_s", positive=True)
        if has("step_timeout_s")
        else d.step_timeout_ms
    )
    try:
        return HandoffPolicy(
            shadow_ticks=m.shadow_ticks if has("shadow_ticks") else d.shadow_ticks,
            max_divergence=m.max_divergence if has("max_divergence") else d.max_divergence,
            bake_ms=bake_ms,
            auto_rollback=not m.no_auto_rollback if has("no_auto_rollback") else d.auto_rollback,
            max_bake_faults=m.max_bake_faults if has("max_bake_faults") else d.max_bake_faults,
            step_timeout_ms=step_timeout_ms,
            skip_state_transfer=m.skip_state_transfer
            if has("skip_state_transfer")
            else d.skip_state_transfer,
        )
    except ValueError as exc:
        raise WireError(f"policy: {exc}") from None


_STANDBY_TO = {
    StandbyMode.NONE: gw.STANDBY_MODE_NONE,
    StandbyMode.CHECKPOINT: gw.STANDBY_MODE_CHECKPOINT,
    StandbyMode.HOT: gw.STANDBY_MODE_HOT,
}
_STANDBY_FROM = {v: k for k, v in _STANDBY_TO.items()}


def standby_to_proto(p: StandbyPolicy) -> gw.StandbyPolicy:
    """Every field set: the gateway applies exactly this policy."""
    return gw.StandbyPolicy(
        mode=_STANDBY_TO[p.mode],
        checkpoint_every_ticks=p.checkpoint_every_ticks,
        checkpoints_kept=p.checkpoints_kept,
        verify_every_ticks=p.verify_every_ticks,
    )


def standby_from_proto(m: gw.StandbyPolicy, default: StandbyPolicy) -> StandbyPolicy:
    """A field left unset (0, or UNSPECIFIED) takes ``default``'s value. An unknown mode raises
    ``WireError`` (the gateway refuses the Hello with INVALID_ARGUMENT).

    >>> standby_from_proto(gw.StandbyPolicy(mode=gw.STANDBY_MODE_HOT), StandbyPolicy()).mode
    <StandbyMode.HOT: 'hot'>
    """
    if m.mode == gw.STANDBY_MODE_UNSPECIFIED:
        mode = default.mode
    else:
        try:
            mode = _STANDBY_FROM[gw.StandbyMode.ValueType(m.mode)]
        except KeyError:
            raise WireError(f"hello.standby.mode: unknown standby mode {m.mode}") from None
    return StandbyPolicy(
        mode=mode,
        checkpoint_every_ticks=m.checkpoint_every_ticks or default.checkpoint_every_ticks,
        checkpoints_kept=m.checkpoints_kept or default.checkpoints_kept,
        verify_every_ticks=m.verify_every_ticks
        if m.HasField("verify_every_ticks")
        else default.verify_every_ticks,
    )


# The contract reports a figure that was never measured (pause, transfer) as -1.
_UNMEASURED = -1.0


def _measured(value: float) -> float | None:
    return value if value >= 0 else None


def handoff_status_to_proto(h: HandoffStatus) -> ctl.HandoffStatus:
    return ctl.HandoffStatus(
        handoff_id=h.handoff_id,
        strategy=h.strategy,
        from_instance=h.from_instance,
        to_instance=h.to_instance,
        from_version=h.from_version,
        to_version=h.to_version,
        phase=handoff_phase_to_proto(h.phase),
        message=h.message,
        epoch_before=h.epoch_before,
        epoch_after=h.epoch_after,
        state_bytes=h.state_bytes,
        export_digest=h.export_digest,
        import_digest=h.import_digest,
        migrated_digest=h.migrated_digest,
        pause_ms=h.pause_ms if h.pause_ms is not None else _UNMEASURED,
        missed=h.missed,
        divergences=h.divergences,
        shadow_compared=h.compared,
        steps=[ctl.HandoffStep(name=s.name, t_ms=s.t_ms, detail=s.detail) for s in h.steps],
        started_ms=h.started_ms,
        finished_ms=h.finished_ms or 0,
        transfer_ms=h.transfer_ms if h.transfer_ms is not None else _UNMEASURED,
    )


def handoff_status_from_proto(m: ctl.HandoffStatus) -> HandoffStatus:
    """Raises ``WireError`` for a phase this side does not know (a newer gateway's)."""
    return HandoffStatus(
        handoff_id=m.handoff_id,
        strategy=m.strategy,
        from_instance=m.from_instance,
        to_instance=m.to_instance,
        from_version=m.from_version,
        to_version=m.to_version,
        phase=handoff_phase_from_proto(m.phase, field="handoff.phase"),
        message=m.message,
        epoch_before=m.epoch_before,
        epoch_after=m.epoch_after,
        state_bytes=m.state_bytes,
        export_digest=m.export_digest,
        import_digest=m.import_digest,
        migrated_digest=m.migrated_digest,
        pause_ms=_measured(m.pause_ms),
        missed=m.missed,
        divergences=m.divergences,
        compared=m.shadow_compared,
        steps=tuple(HandoffStep(s.name, s.t_ms, s.detail) for s in m.steps),
        started_ms=m.started_ms,
        finished_ms=m.finished_ms or None,
        transfer_ms=_measured(m.transfer_ms),
    )


def instance_status_to_proto(i: InstanceStatus) -> ctl.InstanceStatus:
    return ctl.InstanceStatus(
        instance_id=i.instance_id,
        pod_name=i.pod_name,
        strategy=i.strategy,
        version=i.version,
        state_schema=i.state_schema,
        role=role_to_proto(i.role),
        attached_ms=i.attached_ms,
    )


def instance_status_from_proto(m: ctl.InstanceStatus) -> InstanceStatus:
    """Raises ``WireError`` for a role this side does not know."""
    return InstanceStatus(
        instance_id=m.instance_id,
        pod_name=m.pod_name,
        strategy=m.strategy,
        version=m.version,
        state_schema=m.state_schema,
        role=role_from_proto(m.role, field="instance.role"),
        attached_ms=m.attached_ms,
    )


def ledger_health_to_proto(h: LedgerHealth) -> ctl.LedgerHealth:
    return ctl.LedgerHealth(
        ok=h.ok,
        pending_rows=h.pending_rows,
        discarded_rows=h.discarded_rows,
        failed_flushes=h.failed_flushes,
        last_error=h.last_error,
        last_ok_flush_ms=h.last_ok_flush_ms,
    )


def ledger_health_from_proto(m: ctl.LedgerHealth) -> LedgerHealth:
    """``ok`` is not carried over: the model derives it from ``failed_flushes``."""
    return LedgerHealth(
        pending_rows=m.pending_rows,
        discarded_rows=m.discarded_rows,
        failed_flushes=m.failed_flushes,
        last_error=m.last_error,
        last_ok_flush_ms=m.last_ok_flush_ms,
    )
