"""Carries out one strategy's standby keeping (the pure machine in ``core/standby.py``): feeds
it what happens (a tick dispatched, a boundary, an instance attached or gone, exports and
imports answered) and does what it returns on the streams, the router and the ledger.

What it holds that the machine does not: the journal (what the ACTIVE was sent since its latest
checkpoint, tapped from its connection), the snapshots exports returned (a checkpoint, a sync),
and where each export sits in the journal (a replay starts right after it).

Offers ``after_dispatch``/``on_boundary`` to the tick loop, ``on_attached``/``on_gone`` to the
instances (through the lane's facts), ``on_exported``/``on_imported`` to the Attach stream.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Protocol

from opentelemetry import trace

from baton.gateway.core import standby as sb
from baton.gateway.core.router import Router
from baton.gateway.ledger import FailoverRow, LedgerWriteError, StoredCheckpoint
from baton.gateway.metrics import GatewayMetrics
from baton.gateway.ports import Fleet, TakeOver
from baton.model import Role
from baton.v1 import gateway_pb2 as gw

log = logging.getLogger(__name__)
tracer = trace.get_tracer("baton.gateway")

# What a replay needs of what the ACTIVE was sent: the inputs its state is made of, and the
# exports asked of it (so that a replayer reports its digest at the same points). Role changes,
# drains and imports are the ACTIVE's own business.
_JOURNALED = frozenset({"evaluate_batch", "fill", "settlement", "export_state"})


class Handoffs(Protocol):
    """Whether a handoff runs in the lane (``Coordinator``)."""

    @property
    def running(self) -> bool: ...


class Taps(Protocol):
    """Where the keeper taps the ACTIVE's stream (``Instances``)."""

    def tap(
        self, instance_id: str, observer: Callable[[gw.AttachResponse], None] | None
    ) -> None: ...


class StandbyRows(Protocol):
    """What the keeper writes (``ledger.Ledger``)."""

    def record_checkpoint(self, c: StoredCheckpoint, *, kept: int) -> None: ...

    def record_failover(self, f: FailoverRow) -> None: ...


class StandbyKeeper:
    def __init__(
        self,
        *,
        strategy: str,
        router: Router,
        fleet: Fleet,
        taps: Taps,
        takeover: TakeOver,
        handoffs: Handoffs,
        ledger: StandbyRows,
        metrics: GatewayMetrics,
        now_ms: Callable[[], int],
        stopping: asyncio.Event | None = None,
    ) -> None:
        self._stopping = stopping  # set: the gateway closes every stream; no take-over then
        self._router = router
        self._fleet = fleet
        self._taps = taps
        self._takeover = takeover
        self._handoffs = handoffs
        self._ledger = ledger
        self._metrics = metrics
        self._now_ms = now_ms
        # Ids (checkpoints, failovers) are unique across the gateway's runs: a nonce per run.
        self.keeping = sb.Keeping(strategy, nonce=uuid.uuid4().hex[:6])
        self._tapped = ""
        self._journal: list[gw.AttachResponse] = []
        self._journaled_ticks = 0  # evaluation batches in the journal (its bound)
        self._base = 0  # the journal's position of _journal[0]
        self._marks: dict[str, int] = {}  # export id -> journal position right after it
        self._snapshots: dict[str, gw.StateSnapshot] = {}  # export id -> what it returned
        self._asked_ms: dict[tuple[str, str], int] = {}  # (instance, export id) -> asked
        self.failovers: list[sb.Failover] = []  # recorded ones, in order (demo, tests)

    # -- facts in -----------------------------------------------------------------------------

    def after_dispatch(self, tick_index: int) -> None:
        roster = self._roster()
        active = self._router.active
        policy = active.info.standby if active is not None else self.keeping.policy
        self._step(sb.AfterDispatch(self._now_ms(), tick_index, roster, policy))

    def on_boundary(self, now: int) -> None:
        self._step(sb.AtBoundary(now, self._roster()))

    def on_attached(self, instance_id: str) -> None:
        self._step(sb.Attached(self._now_ms(), instance_id, self._roster()))

    def on_gone(self, instance_id: str) -> None:
        if self._stopping is not None and self._stopping.is_set():
            return
        if instance_id == self._tapped:
            self._tapped = ""  # its connection is closed: nothing more is sent to it
        self._step(sb.Gone(self._now_ms(), instance_id, self._roster()))

    def on_exported(self, instance_id: str, snapshot: gw.StateSnapshot) -> None:
        export_id = snapshot.handoff_id
        now = self._now_ms()
        if snapshot.state and not snapshot.error:
            self._snapshots[export_id] = snapshot
        asked = self._asked_ms.pop((instance_id, export_id), None)
        if asked is not None and export_id.startswith(sb.CHECKPOINT_PREFIX):
            self._metrics.checkpoint_taken(self.keeping.strategy, now - asked, len(snapshot.state))
        self._step(
            sb.Exported(
                now,
                instance_id,
                export_id,
                snapshot.digest,
                len(snapshot.state),
                snapshot.error,
            )
        )

    def on_imported(self, instance_id: str, result: gw.ImportResult) -> None:
        self._step(
            sb.Imported(
                self._now_ms(),
                instance_id,
                result.handoff_id,
                result.ok,
                result.digest,
                result.error,
            )
        )

    @property
    def standby_ready(self) -> bool:
        sync = self.keeping.sync
        return sync is not None and sync.phase is sb.SyncPhase.FOLLOWING

    # -- internals ----------------------------------------------------------------------------

    def _roster(self) -> sb.Roster:
        router = self._router
        members = tuple(
            sb.Member(
                i.instance_id,
                i.info.version,
                i.info.state_schema,
                i.role,
                caught_up=router.caught_up(i.instance_id),
            )
            for i in router.instances.values()
        )
        return sb.Roster(members, handoff_running=self._handoffs.running)

    def _step(self, event: sb.Event) -> None:
        result = sb.step(self.keeping, event)
        self.keeping = result.keeping
        for action in result.actions:
            self._act(action)
        self._metrics.standby_ready(self.keeping.strategy, self.standby_ready)

    def _act(self, action: sb.Action) -> None:
        if isinstance(action, sb.AskExport):
            self._ask_export(action)
        elif isinstance(action, sb.KeepCheckpoint):
            self._keep_checkpoint(action.checkpoint)
        elif isinstance(action, sb.SendImport):
            snapshot = self._snapshots.get(action.export_id)
            if snapshot is None:
                log.error("no snapshot to import", extra={"export": action.export_id})
                return
            self._fleet.send_to(
                action.instance_id,
                gw.AttachResponse(
                    import_state=gw.ImportState(handoff_id=action.import_id, snapshot=snapshot)
                ),
            )
        elif isinstance(action, sb.Follow):
            mark = self._marks.get(action.export_id, self._base)
            replay = self._journal[max(0, mark - self._base) :]
            log.info(
                "instance follows the ACTIVE as SHADOW",
                extra={"instance": action.instance_id, "replayed": len(replay)},
            )
            self._fleet.make_shadow(action.instance_id, replay)
            self._forget_snapshot(action.export_id)
        elif isinstance(action, sb.Unfollow):
            log.warning(
                "standby set back", extra={"instance": action.instance_id, "why": action.why}
            )
            if action.instance_id in self._router.instances:
                self._fleet.set_role(action.instance_id, Role.STANDBY)
        elif isinstance(action, sb.TakeOver):
            self._takeover.flip_to(action.instance_id, previous_role=Role.STANDBY)
        elif isinstance(action, sb.Hold):
            self._router.hold = action.on
        elif isinstance(action, sb.Journal):
            self._journal_to(action.instance_id)
        elif isinstance(action, sb.Diverged):
            self._diverged(action)
        else:
            self._record_failover(action.failover)

    def _ask_export(self, action: sb.AskExport) -> None:
        msg = gw.AttachResponse(
            export_state=gw.ExportState(handoff_id=action.export_id, digest_only=action.digest_only)
        )
        self._fleet.send_to(action.instance_id, msg)
        if action.instance_id == self._tapped:
            self._marks[action.export_id] = self._base + len(self._journal)
        if not action.digest_only:
            # Timed per instance: a checkpoint's id also goes to the hot standby (digest only),
            # whose answer is not the checkpoint.
            self._asked_ms[(action.instance_id, action.export_id)] = self._now_ms()
        if len(self._asked_ms) > 4 * sb.PROBES_KEPT:  # answers that never came
            for stale in list(self._asked_ms)[: sb.PROBES_KEPT]:
                del self._asked_ms[stale]

    def _keep_checkpoint(self, c: sb.Checkpoint) -> None:
        snapshot = self._snapshots.get(c.checkpoint_id)
        if snapshot is None:
            return
        # Older snapshots are of no use any more (a sync still importing keeps its own).
        sync = self.keeping.sync
        keep = {c.checkpoint_id} | ({sync.sync_id} if sync is not None else set())
        for export_id in list(self._snapshots):
            if export_id not in keep:
                del self._snapshots[export_id]
        # The journal starts after this checkpoint's export (or after a sync's still to replay).
        start = self._marks.get(c.checkpoint_id, self._base)
        if sync is not None and sync.sync_id in self._marks:
            start = min(start, self._marks[sync.sync_id])
        drop = max(0, start - self._base)
        del self._journal[:drop]
        self._base += drop
        self._marks = {k: v for k, v in self._marks.items() if v >= self._base}
        self._journaled_ticks = sum(1 for msg in self._journal if msg.HasField("evaluate_batch"))
        policy = self.keeping.policy
        try:
            self._ledger.record_checkpoint(
                StoredCheckpoint(
                    strategy=self.keeping.strategy,
                    checkpoint_id=c.checkpoint_id,
                    instance_id=c.instance_id,
                    version=snapshot.version,
                    state_schema=snapshot.state_schema,
                    tick_index=c.tick_index,
                    taken_ms=c.taken_ms,
                    digest=c.digest,
                    applied_seq=dict(snapshot.applied_seq),
                    state=snapshot.state,
                ),
                kept=policy.checkpoints_kept,
            )
        except LedgerWriteError as exc:  # kept in memory all the same: recovery still works
            log.error("checkpoint not written", extra={"error": str(exc)})

    def _forget_snapshot(self, export_id: str) -> None:
        checkpoint = self.keeping.checkpoint
        if checkpoint is None or checkpoint.checkpoint_id != export_id:
            self._snapshots.pop(export_id, None)

    def _journal_to(self, instance_id: str) -> None:
        if self._tapped:
            self._taps.tap(self._tapped, None)
        self._base += len(self._journal)
        self._journal = []
        self._journaled_ticks = 0
        self._marks.clear()
        self._tapped = instance_id
        if instance_id:
            self._taps.tap(instance_id, self._journal_append)

    def _journal_append(self, msg: gw.AttachResponse) -> None:
        kind = msg.WhichOneof("body")
        if kind not in _JOURNALED:
            return
        self._journal.append(msg)
        if kind == "evaluate_batch":
            self._journaled_ticks += 1
            # Bounded: past twice the checkpoint interval (checkpoints keep failing, or none
            # are taken) the journal goes, and so does the checkpoint it led from.
            if self._journaled_ticks > 2 * self.keeping.policy.checkpoint_every_ticks + 8:
                log.warning(
                    "journal dropped: no checkpoint kept for too long",
                    extra={"strategy": self.keeping.strategy, "messages": len(self._journal)},
                )
                self._base += len(self._journal)
                self._journal = []
                self._journaled_ticks = 0
                self._marks.clear()
                self._step(sb.JournalLost(self._now_ms()))

    def _diverged(self, d: sb.Diverged) -> None:
        self._metrics.state_diverged(self.keeping.strategy)
        log.error(
            "state copies differ: the strategy is not deterministic",
            extra={
                "strategy": self.keeping.strategy,
                "at": d.probe_id,
                "instance_a": d.a,
                "digest_a": d.a_digest,
                "instance_b": d.b,
                "digest_b": d.b_digest,
            },
        )

    def _record_failover(self, fo: sb.Failover) -> None:
        self.failovers.append(fo)
        self._metrics.failover(fo.strategy, fo.mode.value, fo.state.value, fo.takeover_ms)
        with tracer.start_as_current_span(
            "gateway.failover",
            attributes={
                "baton.strategy": fo.strategy,
                "baton.failover": fo.failover_id,
                "baton.mode": fo.mode.value,
                "baton.from_instance": fo.dead,
                "baton.to_instance": fo.to,
                "baton.takeover_ms": fo.takeover_ms if fo.takeover_ms is not None else -1,
                "baton.state": fo.state.value,
                "baton.result": fo.result,
            },
        ):
            pass
        log.warning(
            "failover finished",
            extra={
                "strategy": fo.strategy,
                "failover": fo.failover_id,
                "mode": fo.mode.value,
                "from": fo.dead,
                "to": fo.to,
                "takeover_ms": fo.takeover_ms,
                "state": fo.state.value,
                "result": fo.result,
                "why": fo.message,
            },
        )
        try:
            self._ledger.record_failover(
                FailoverRow(
                    failover_id=fo.failover_id,
                    strategy=fo.strategy,
                    mode=fo.mode.value,
                    dead=fo.dead,
                    dead_version=fo.dead_version,
                    to_instance=fo.to,
                    to_version=fo.to_version,
                    died_ms=fo.died_ms,
                    took_over_ms=fo.took_over_ms,
                    checkpoint_id=fo.checkpoint_id,
                    verify_probe=fo.verify_probe,
                    state=fo.state.value,
                    result=fo.result,
                    message=fo.message,
                )
            )
        except LedgerWriteError as exc:
            log.error("failover not written", extra={"error": str(exc)})
