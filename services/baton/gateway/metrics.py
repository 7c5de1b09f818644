"""The gateway's Prometheus metrics, and the ``/metrics`` HTTP endpoint that serves them.

Every gateway has its own ``CollectorRegistry`` (never the library's global default), so
several gateways in one process (tests) do not share series. The metric names are a contract;
they are listed in docs/gateway.md ("Metrics").

Cost on the evaluation path: resolving one evaluation adds to a plain per-tick tally; the tally
goes to the counters and histograms once per tick (``commit``, called right after the ledger
flush). Counters therefore move in tick-sized steps, and between two ticks they equal the rows
the ledger has written. Children of labelled metrics are resolved once, at construction.

The pure gateway modules never import this one: ``app.py`` and ``exchange.py`` call it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from baton.common.metrics_http import Probe, serve_metrics, serve_metrics_and_probes
from baton.gateway.core.binance import (
    ControlError,
    ControlReply,
    KlineEvent,
    Malformed,
    ServerShutdown,
)
from baton.gateway.core.records import MISSED_OUTCOMES, EvalOutcome, EvaluationRecord, Staleness
from baton.model import Role

# Loopback decisions take ~1 ms; a tick's deadline is its cadence (0.05 s .. minutes).
DURATION_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
)  # fmt: skip
HANDOFF_RESULTS = ("completed", "aborted", "rolled_back")
EXECUTED = EvalOutcome.EXECUTED.value
# Ticks whose dispatch time is kept for the decision latency (answers arrive within a tick,
# taken-over answers within a few).
_DISPATCH_MEMORY = 8

# Feed events that mean the gateway's market data are at risk: logged as WARNING and counted.
FEED_PROBLEMS = ("disconnected", "stalled", "server_shutdown", "backfill_failed")

_MESSAGE_KINDS: tuple[tuple[type, str], ...] = (
    (KlineEvent, "kline"),
    (ControlReply, "control_reply"),
    (ControlError, "control_error"),
    (ServerShutdown, "server_shutdown"),
    (Malformed, "malformed"),
)


class FeedMetrics:
    """The exchange feed's metrics (``baton_exchange_*``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._connected = Gauge(
            "baton_exchange_connected",
            "1 while the exchange connection is open, else 0 (one series per connection)",
            ["connection"],
            registry=registry,
        )
        messages = Counter(
            "baton_exchange_messages",
            "WebSocket messages received from the exchange, by kind",
            ["kind"],
            registry=registry,
        )
        self._messages = {cls: messages.labels(kind) for cls, kind in _MESSAGE_KINDS}
        self._malformed = Counter(
            "baton_exchange_messages_malformed",
            "Exchange messages skipped as unusable (bad JSON, missing fields, unknown stream)",
            registry=registry,
        )
        self._reconnects = Counter(
            "baton_exchange_reconnects",
            "Exchange connection attempts after the first, all connections",
            registry=registry,
        )
        problems = Counter(
            "baton_exchange_problems",
            "Exchange feed problems, by event: disconnected (an outage), stalled (no message "
            "for exchange.stall_timeout_s), server_shutdown, backfill_failed (e.g. an unknown "
            "symbol, -1121)",
            ["event"],
            registry=registry,
        )
        self._problems = {event: problems.labels(event) for event in FEED_PROBLEMS}

    def connection(self, name: str, up: bool) -> None:
        self._connected.labels(name).set(1 if up else 0)

    def message(self, event: object) -> None:
        child = self._messages.get(type(event))
        if child is not None:
            child.inc()

    def malformed(self) -> None:
        self._malformed.inc()

    def reconnect(self) -> None:
        self._reconnects.inc()

    def problem(self, event: str) -> None:
        child = self._problems.get(event)
        if child is not None:
            child.inc()


class GatewayMetrics:
    """All of one gateway's metrics. Called from the event loop only; scraped from a thread."""

    def __init__(
        self,
        slot_ids: Iterable[str],
        registry: CollectorRegistry | None = None,
        feed: FeedMetrics | None = None,
    ) -> None:
        """``feed``: the feed's metrics when the feed was built before the gateway (a replica's
        feed runs while it follows), in the same registry."""
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        slots = tuple(slot_ids)
        evaluations = Counter(
            "baton_evaluations",
            "Scheduled evaluations resolved, by slot and outcome (as in the ledger)",
            ["slot", "outcome"],
            registry=r,
        )
        missed = Counter(
            "baton_evaluations_missed",
            "Scheduled evaluations missed: timeout, no_active, gateway_late or undelivered",
            ["slot"],
            registry=r,
        )
        self._evaluations_family = evaluations
        # Per slot, the outcome every tick has and the miss counter one alerts on exist from
        # the start (at 0, so increase() sees their first step); the other outcomes appear with
        # their first occurrence (they are rare, and 7 series a slot at 20,000 slots would
        # make a scrape cost seconds of the GIL).
        self._missed = {slot: missed.labels(slot) for slot in slots}
        stale = Counter(
            "baton_evaluations_stale",
            "Evaluations executed on market data that were not live at dispatch (no live "
            "candle, backfill unfinished, or older than gateway.stale_after_ms); also counted "
            "in baton_evaluations{outcome=executed}",
            ["slot"],
            registry=r,
        )
        self._stale = {slot: stale.labels(slot) for slot in slots}
        self._stale_tally: dict[str, int] = {}
        self._series: dict[tuple[str, EvalOutcome], tuple[Counter, Counter | None]] = {
            (slot, EvalOutcome.EXECUTED): (evaluations.labels(slot, EXECUTED), None)
            for slot in slots
        }
        self._latency = Histogram(
            "baton_decision_latency_seconds",
            "Executed decisions: from the tick's dispatch to the decision's arrival",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self._dispatch_lag = Histogram(
            "baton_tick_dispatch_lag_seconds",
            "Dispatched ticks: dispatch time minus scheduled time",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self._pause = Histogram(
            "baton_handoff_pause_seconds",
            "Handoffs past their flip: the cutover pause (green's first tick, schedule to "
            "dispatch)",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        handoffs = Counter("baton_handoffs", "Finished handoffs, by result", ["result"], registry=r)
        self._handoffs = {result: handoffs.labels(result) for result in HANDOFF_RESULTS}
        self._instances = Gauge(
            "baton_instances",
            "Attached strategy instances, by strategy and role",
            ["strategy", "role"],
            registry=r,
        )
        self._epoch = Gauge(
            "baton_epoch",
            "Each strategy's current epoch (one more per promotion of it)",
            ["strategy"],
            registry=r,
        )
        slots_gauge = Gauge("baton_slots", "Slots this gateway evaluates", registry=r)
        slots_gauge.set(len(slots))
        self._ledger_write = Histogram(
            "baton_ledger_write_seconds",
            "Ledger flushes that wrote rows: time of the one transaction",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self._ledger_write_errors = Counter(
            "baton_ledger_write_errors",
            "Ledger flushes that failed (rows kept in memory for the next flush)",
            registry=r,
        )
        self._ledger_discarded = Counter(
            "baton_ledger_rows_discarded",
            "Ledger rows discarded unwritten: flushes kept failing past ledger.max_pending_rows",
            registry=r,
        )
        self._ledger_pending = Gauge(
            "baton_ledger_pending_rows",
            "Ledger rows recorded and not yet written (0 after every good flush)",
            registry=r,
        )
        self._backfill_wait = Gauge(
            "baton_backfill_wait_seconds",
            "How long the clock's first tick waited for the exchange backfill (0 until the "
            "clock starts; at most gateway.backfill_wait_s)",
            registry=r,
        )
        self._backfill_pending = Gauge(
            "baton_backfill_pending_streams",
            "Streams whose backfill had not finished when the clock started (their "
            "evaluations are counted stale until it does)",
            registry=r,
        )
        self._checkpoints = Counter(
            "baton_checkpoints",
            "State checkpoints of a strategy's ACTIVE kept (docs/standby.md)",
            ["strategy"],
            registry=r,
        )
        self._checkpoint_seconds = Histogram(
            "baton_checkpoint_seconds",
            "From a checkpoint's export asked (after a tick's dispatch) to its snapshot received",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self._checkpoint_bytes = Gauge(
            "baton_checkpoint_bytes",
            "Size of each strategy's last checkpoint",
            ["strategy"],
            registry=r,
        )
        self._standby_ready = Gauge(
            "baton_standby_ready",
            "1 while a strategy has a hot standby following its ACTIVE",
            ["strategy"],
            registry=r,
        )
        self._diverged = Counter(
            "baton_state_divergences",
            "Two copies of a strategy's state with different digests at the same point "
            "(a non-deterministic strategy)",
            ["strategy"],
            registry=r,
        )
        self._failovers = Counter(
            "baton_failovers",
            "Take-overs after a strategy's ACTIVE died, by standby mode and the state it went on "
            "with (exact, diverged, unverified, empty)",
            ["strategy", "mode", "state"],
            registry=r,
        )
        self._fenced = Counter(
            "baton_gateway_fenced",
            "Messages of this gateway refused by a strategy host that has seen a newer gateway "
            "term (docs/gateway-standby.md, Fencing), by the refused message's kind",
            ["what"],
            registry=r,
        )
        self._held = Gauge(
            "baton_gateway_held_messages",
            "Fills and settlements written or being written, not yet told to the strategy: "
            "held until the ledger (and the standby) holds them (docs/gateway-standby.md)",
            registry=r,
        )
        self._released = Counter(
            "baton_gateway_released",
            "Fills and settlements told to the strategy, by how: replicated (the standby held "
            "them), committed (no standby follows), timed_out (held ledger.release_wait_ms)",
            ["how"],
            registry=r,
        )
        self._release_delay = Histogram(
            "baton_gateway_release_delay_seconds",
            "From a fill or settlement to its release to the strategy",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self._takeover = Histogram(
            "baton_takeover_seconds",
            "From an ACTIVE's death to its successor being ACTIVE",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.feed = feed if feed is not None else FeedMetrics(r)
        # The tally of the tick in progress, committed once per tick.
        self._tally: dict[tuple[str, EvalOutcome], int] = {}
        self._latencies: list[float] = []
        self._dispatched: dict[int, float] = {}  # tick scheduled_ms -> perf_counter at dispatch

    # -- the evaluation path (hot) -------------------------------------------------------------

    def tick_dispatched(self, scheduled_ms: int, dispatched_ms: float) -> None:
        """A tick starts going out: ``dispatched_ms`` is the wall time (ms) it does."""
        dispatched = self._dispatched
        dispatched[scheduled_ms] = time.perf_counter()
        while len(dispatched) > _DISPATCH_MEMORY:
            del dispatched[next(iter(dispatched))]
        self._dispatch_lag.observe(max(0.0, (dispatched_ms - scheduled_ms) / 1000))

    def resolved(self, record: EvaluationRecord) -> None:
        """One evaluation resolved (as the ledger records it)."""
        key = (record.slot_id, record.outcome)
        tally = self._tally
        tally[key] = tally.get(key, 0) + 1
        if record.outcome is EvalOutcome.EXECUTED:
            if record.stale is not Staleness.FRESH:
                stale = self._stale_tally
                stale[record.slot_id] = stale.get(record.slot_id, 0) + 1
            started = self._dispatched.get(record.scheduled_ms)
            if started is not None:
                self._latencies.append(time.perf_counter() - started)
            elif record.decided_ms is not None and record.dispatched_ms is not None:
                self._latencies.append((record.decided_ms - record.dispatched_ms) / 1000)

    def commit(self) -> None:
        """Move the tally into the metrics: once per tick, right after the ledger flush."""
        if self._tally:
            series = self._series
            for key, n in self._tally.items():
                pair = series.get(key) or self._new_series(*key)
                if pair is None:  # a slot this gateway does not serve: never in practice
                    continue
                counted, missed = pair
                counted.inc(n)
                if missed is not None:
                    missed.inc(n)
            self._tally.clear()
        if self._stale_tally:
            for slot, n in self._stale_tally.items():
                child = self._stale.get(slot)
                if child is not None:
                    child.inc(n)
            self._stale_tally.clear()
        if self._latencies:
            observe = self._latency.observe
            for seconds in self._latencies:
                observe(seconds)
            self._latencies.clear()

    # -- everything else (cold) -----------------------------------------------------------------

    def _new_series(self, slot: str, outcome: EvalOutcome) -> tuple[Counter, Counter | None] | None:
        missed = self._missed.get(slot)
        if missed is None:
            return None
        pair = (
            self._evaluations_family.labels(slot, outcome.value),
            missed if outcome in MISSED_OUTCOMES else None,
        )
        self._series[(slot, outcome)] = pair
        return pair

    def backfill_waited(self, seconds: float, pending_streams: int) -> None:
        """The clock starts after waiting ``seconds`` for the backfill."""
        self._backfill_wait.set(seconds)
        self._backfill_pending.set(pending_streams)

    def ledger_flushed(self, seconds: float) -> None:
        self._ledger_write.observe(seconds)

    def ledger_write_failed(self, discarded: int) -> None:
        """A flush failed; ``discarded``: rows it discarded to keep the buffer bounded."""
        self._ledger_write_errors.inc()
        if discarded:
            self._ledger_discarded.inc(discarded)

    def ledger_pending(self, rows: int) -> None:
        self._ledger_pending.set(rows)

    def handoff(self, result: str, pause_ms: float | None) -> None:
        child = self._handoffs.get(result)
        if child is not None:
            child.inc()
        if pause_ms is not None:
            self._pause.observe(pause_ms / 1000)

    def checkpoint_taken(self, strategy: str, elapsed_ms: int, size: int) -> None:
        self._checkpoints.labels(strategy).inc()
        self._checkpoint_seconds.observe(elapsed_ms / 1000)
        self._checkpoint_bytes.labels(strategy).set(size)

    def standby_ready(self, strategy: str, ready: bool) -> None:
        self._standby_ready.labels(strategy).set(1 if ready else 0)

    def state_diverged(self, strategy: str) -> None:
        self._diverged.labels(strategy).inc()

    def failover(self, strategy: str, mode: str, state: str, takeover_ms: int | None) -> None:
        self._failovers.labels(strategy, mode, state).inc()
        if takeover_ms is not None:
            self._takeover.observe(takeover_ms / 1000)

    def fenced(self, what: str) -> None:
        self._fenced.labels(what).inc()

    def held(self, count: int) -> None:
        """Fills and settlements held now (``release.ReleaseGate``)."""
        self._held.set(count)

    def released(self, how: str, delay_s: float) -> None:
        self._released.labels(how).inc()
        self._release_delay.observe(delay_s)

    def membership(self, strategy: str, roles: Iterable[Role], epoch: int) -> None:
        """One strategy's instances (by role) and epoch, after any change of them."""
        counts = dict.fromkeys(Role, 0)
        for role in roles:
            counts[role] += 1
        for role, n in counts.items():
            self._instances.labels(strategy, role.value).set(n)
        self._epoch.labels(strategy).set(epoch)


class LeaderMetrics:
    """Which replica leads (``baton_gateway_*``, docs/gateway-standby.md): set by the elector
    (``election.py``) on every change, so a scrape of either replica tells who executes."""

    def __init__(self, registry: CollectorRegistry, replica: str) -> None:
        self._leader = Gauge(
            "baton_gateway_leader",
            "1 while this gateway replica is the leader (holds the lease and executes), else 0",
            ["replica"],
            registry=registry,
        ).labels(replica)
        self._term = Gauge(
            "baton_gateway_term",
            "The gateway term this replica leads under, or the highest it has seen",
            registry=registry,
        )
        changes = Counter(
            "baton_gateway_leadership_changes",
            "This replica's leadership changes: elected, deposed",
            ["change"],
            registry=registry,
        )
        self._elected = changes.labels("elected")
        self._deposed = changes.labels("deposed")
        calls = Counter(
            "baton_gateway_lease_errors",
            "Lease store calls that failed or got no answer in time (conflicts not counted)",
            ["call"],
            registry=registry,
        )
        self._errors = {c: calls.labels(c) for c in ("read", "acquire", "renew", "release")}
        self._candidate = Gauge(
            "baton_gateway_candidate",
            "1 while this standby may take over (core/eligibility.py), else 0",
            registry=registry,
        )
        self._cut_off = Gauge(
            "baton_gateway_cut_off",
            "1 while this standby's replication stream is down and its leader renews on: it "
            "holds less than the strategies were told, and is no candidate",
            registry=registry,
        )
        self._handovers = Counter(
            "baton_gateway_handovers",
            "Handovers asked of this replica (ControlService.Handover) by result: completed, "
            "failed, or the refusal (not leading, starting, under way, stopping)",
            ["result"],
            registry=registry,
        )
        self._leader.set(0)

    def handover(self, result: str) -> None:
        self._handovers.labels(result).inc()

    def elected(self, term: int) -> None:
        self._leader.set(1)
        self._term.set(term)
        self._elected.inc()

    def deposed(self) -> None:
        self._leader.set(0)
        self._deposed.inc()

    def term(self, term: int) -> None:
        self._term.set(term)

    def lease_error(self, call: str) -> None:
        self._errors[call].inc()

    def candidate(self, eligible: bool, cut_off: bool) -> None:
        self._candidate.set(int(eligible))
        self._cut_off.set(int(cut_off))


# Applying one batch: ~1 ms at 16 slots, ~10 ms at 1,000 (docs/gateway-standby.md).
APPLY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass(frozen=True, slots=True)
class _ReplicationCollectors:
    """The ``baton_replication_*`` collectors of one registry (``ReplicationMetrics`` views)."""

    position: Gauge
    acked: Gauge
    lag: Gauge
    caught_up: Gauge
    connected: Gauge
    apply: Histogram
    snapshots: Counter
    snapshot_bytes: Gauge
    backlog_batches: Gauge
    backlog_bytes: Gauge
    acks: Counter
    refused: Counter

    @classmethod
    def build(cls, registry: CollectorRegistry) -> _ReplicationCollectors:
        return cls(
            position=Gauge(
                "baton_replication_position",
                "The ledger's last commit position: the leader's head, or what the follower "
                "applied",
                ["role"],
                registry=registry,
            ),
            acked=Gauge(
                "baton_replication_acked_position",
                "The last position the follower acknowledged (leader side)",
                registry=registry,
            ),
            lag=Gauge(
                "baton_replication_lag_batches",
                "Batches the follower is behind the leader's announced head (follower side)",
                registry=registry,
            ),
            caught_up=Gauge(
                "baton_replication_caught_up",
                "1 while the follower is caught up with its leader (eligible), else 0",
                registry=registry,
            ),
            connected=Gauge(
                "baton_replication_connected",
                "1 while a replication stream is open (leader: a follower attached; follower: to "
                "its leader), else 0",
                ["role"],
                registry=registry,
            ),
            apply=Histogram(
                "baton_replication_apply_seconds",
                "Time to apply one leader batch to the follower's ledger (one transaction)",
                buckets=APPLY_BUCKETS,
                registry=registry,
            ),
            snapshots=Counter(
                "baton_replication_snapshots",
                "Whole-ledger snapshots: sent (leader) or installed (follower), by reason",
                ["role", "reason"],
                registry=registry,
            ),
            snapshot_bytes=Gauge(
                "baton_replication_snapshot_bytes",
                "Size of the last snapshot sent or installed",
                ["role"],
                registry=registry,
            ),
            backlog_batches=Gauge(
                "baton_replication_backlog_batches",
                "Batches the leader holds in memory for a follower that reconnects",
                registry=registry,
            ),
            backlog_bytes=Gauge(
                "baton_replication_backlog_bytes",
                "Bytes of the batches the leader holds in memory",
                registry=registry,
            ),
            acks=Counter(
                "baton_replication_acks",
                "Acknowledgements: received (leader) or sent (follower)",
                ["role"],
                registry=registry,
            ),
            refused=Counter(
                "baton_replication_refused",
                "Batches the follower refused, or followers the leader refused",
                ["role"],
                registry=registry,
            ),
        )


class ReplicationMetrics:
    """Ledger replication (``baton_replication_*``, docs/gateway-standby.md): the leader's
    side (``role="leader"``: its head, what the standby acknowledged, the backlog, snapshots
    sent) or the standby's (``role="follower"``: what it applied, its lag, apply times,
    snapshots installed, refused batches)."""

    def __init__(
        self, registry: CollectorRegistry, role: str, *, _base: _ReplicationCollectors | None = None
    ) -> None:
        self.role = role
        base = _base if _base is not None else _ReplicationCollectors.build(registry)
        self._registry = registry
        self._base = base
        self._position = base.position.labels(role)
        self._acked = base.acked
        self._lag = base.lag
        self._caught_up = base.caught_up
        self._connected = base.connected.labels(role)
        self._apply = base.apply
        self._snapshots = base.snapshots
        self._snapshot_bytes = base.snapshot_bytes.labels(role)
        self._backlog_batches = base.backlog_batches
        self._backlog_bytes = base.backlog_bytes
        self._acks = base.acks.labels(role)
        self._refused = base.refused.labels(role)

    def as_role(self, role: str) -> ReplicationMetrics:
        """The same series from the other side: a replica follows, then leads (one registry)."""
        return ReplicationMetrics(self._registry, role, _base=self._base)

    def position(self, position: int) -> None:
        self._position.set(position)

    def acked(self, position: int) -> None:
        self._acked.set(position)
        self._acks.inc()

    def ack_sent(self) -> None:
        self._acks.inc()

    def lag(self, batches: int, caught_up: bool) -> None:
        self._lag.set(batches)
        self._caught_up.set(1 if caught_up else 0)

    def connected(self, up: bool) -> None:
        self._connected.set(1 if up else 0)

    def applied(self, seconds: float) -> None:
        self._apply.observe(seconds)

    def snapshot(self, reason: str, size: int) -> None:
        self._snapshots.labels(self.role, reason).inc()
        self._snapshot_bytes.set(size)

    def backlog(self, batches: int, size: int) -> None:
        self._backlog_batches.set(batches)
        self._backlog_bytes.set(size)

    def refused(self) -> None:
        self._refused.inc()


class MetricsServer:
    """``GET /metrics`` of one registry, served by prometheus_client's threaded HTTP server
    (off the event loop: a scrape never blocks a tick, beyond the GIL it holds rendering)."""

    def __init__(
        self, registry: CollectorRegistry, probes: Mapping[str, Probe] | None = None
    ) -> None:
        self._registry = registry
        self._probes = dict(probes or {})  # path -> probe, e.g. a replica's /ready
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self, listen: str) -> str:
        """Bind ``HOST:PORT`` (port 0: any free one) and serve; the bound ``HOST:PORT``."""
        if self._probes:
            addr, self._httpd, self._thread = serve_metrics_and_probes(
                self._registry, listen, "metrics.listen", self._probes
            )
            return addr
        addr, self._httpd, self._thread = serve_metrics(self._registry, listen, "metrics.listen")
        return addr

    async def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is None:
            return
        # shutdown() waits for the serving loop to notice (up to its 0.5 s poll): not on the loop.
        await asyncio.to_thread(httpd.shutdown)
        httpd.server_close()
        if thread is not None:
            await asyncio.to_thread(thread.join, 5.0)
