"""A gateway replica under leader election: the elector, and the gateway it builds once elected.

The life (``core/replica.py``): follow until elected; elected, build the ``Gateway`` from the
ledger (exactly a restart) and start it with the term; lead while the elector says so; then
stop. Deposed, the gateway stops executing at once (its ``executing()`` is the elector's), its
port is closed so that nothing it still receives is acted on and the new leader can bind the
same address, and the process ends with ``Exit.DEPOSED`` (status 3): its supervisor (the
StatefulSet, the demo) starts a new follower. Asked to stop while leading, the gateway finishes
the tick in flight and writes it, then the lease is released so the other replica takes over at
once (a planned handover, ~10 ms of election, docs/gateway-standby.md).

The replica serves /metrics from its start (the leader metrics: ``baton_gateway_leader``,
``baton_gateway_term``...); the gateway's own metrics join the same registry once it is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from opentelemetry import trace
from prometheus_client import CollectorRegistry

from baton.common import announce_ready
from baton.gateway.app import Gateway, wall_ms
from baton.gateway.config import GatewayConfig, LeaderBackend
from baton.gateway.core import replica as life
from baton.gateway.core.eligibility import Standing, cut_off_margin_ms, judge
from baton.gateway.core.handover import HandoverRefused, HandoverResult, Refusal, admit
from baton.gateway.election import Elector
from baton.gateway.follower import Follower
from baton.gateway.lease import LeaseStore, LocalLease
from baton.gateway.ledger import LedgerReader, RunEnd
from baton.gateway.market_data import MarketData, following_market
from baton.gateway.metrics import FeedMetrics, LeaderMetrics, MetricsServer, ReplicationMetrics
from baton.gateway.pod_role import FOLLOWER, LEADER, PodRole, pod_role_for

log = logging.getLogger(__name__)
tracer = trace.get_tracer("baton.gateway")

#: How long a handover's answer waits, after the release, to name the next leader: below the
#: gRPC server's grace (2 s), within which the answer must leave.
NEXT_LEADER_WAIT_S = 1.2

Exit = life.Exit


def lease_store(config: GatewayConfig) -> LeaseStore:
    """The configured lease: a file beside the ledger (or ``leader.lease_path``), or a Lease."""
    leader = config.leader
    if leader.backend is LeaderBackend.LOCAL:
        if leader.lease_path is not None:
            return LocalLease(leader.lease_path)
        return LocalLease.beside(config.ledger_path)
    if leader.backend is LeaderBackend.KUBE:
        # Imported here: the kubernetes client is only needed (and configured) in a cluster.
        from kubernetes import client as k8s
        from kubernetes import config as kube_config

        from baton.gateway.kube_lease import KubeLease

        try:
            kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
        except kube_config.ConfigException:
            kube_config.load_kube_config()  # type: ignore[no-untyped-call]
        return KubeLease(k8s.ApiClient(), leader.namespace, leader.lease_name)
    raise ValueError("leader.backend is off: a single gateway takes part in no election")


class Replica:
    def __init__(
        self,
        config: GatewayConfig,
        store: LeaseStore,
        *,
        now_ms: Callable[[], int] = wall_ms,
        announce: Callable[..., None] = announce_ready,
    ) -> None:
        self.config = config
        self.identity = config.leader.identity
        self._now_ms = now_ms
        self._announce = announce
        self.registry = CollectorRegistry()
        # /ready beside /metrics: the chart's readiness probe (see ``readiness``).
        self._metrics_server = MetricsServer(self.registry, {"/ready": self.readiness})
        # On Kubernetes, the label on its own pod that the Service to the leader selects.
        self.pod_role: PodRole | None = pod_role_for(config, self.registry)
        self._candidate = (False, "not judged yet")  # a follower's eligibility, and why
        self.metrics_addr: str | None = None
        # With a ledger of its own (leader.replicate_from), a replica follows the leader's
        # ledger and is a candidate only once it holds it (or nobody can have more: eligible).
        target = config.leader.replicate_from
        self._replication = ReplicationMetrics(self.registry, "follower")
        self.follower = (
            Follower(config.ledger_path, target, self.identity, metrics=self._replication)
            if target is not None
            else None
        )
        self._leader_metrics = LeaderMetrics(self.registry, self.identity)
        # ControlService.Handover: the answer of the one under way, and whether the lease was
        # released (once: a second resign would wait for a release that never comes).
        self._handover: asyncio.Future[HandoverResult] | None = None
        self._handover_asked_ms = 0
        self._released = False
        self.elector = Elector(
            store,
            self.identity,
            config.leader.lease,
            on_elected=lambda term: self._post(life.Elected(term)),
            on_deposed=lambda reason: self._post(life.Deposed(reason)),
            metrics=self._leader_metrics,
            eligible=self.follower is None,
        )
        # The feed runs from the start: an elected replica's first tick finds the market current.
        self.market: MarketData = following_market(config, FeedMetrics(self.registry), now_ms)
        self.gateway: Gateway | None = None
        self.life = life.Life()
        self._events: asyncio.Queue[life.Event] = asyncio.Queue()
        self.elected = asyncio.Event()  # for tests and the demo: this replica leads
        self._following: list[asyncio.Task[None]] = []
        self._follower_closed = False
        self.done = asyncio.Event()

    def readiness(self) -> tuple[bool, str]:
        """Ready (the pod's readiness, so the StatefulSet's rolling update never deletes a
        leader before its standby holds the ledger): a leader that is starting or serving; a
        follower that holds the leader's ledger (caught up) and is a candidate, or shares the
        ledger. Called from the metrics server's thread: reads only."""
        phase, term = self.life.phase, self.life.term
        if phase in (life.Phase.STARTING, life.Phase.LEADING):
            return True, f"leader {self.identity}, term {term}, {phase.value}"
        if phase is not life.Phase.FOLLOWING:
            return False, f"{self.identity} {phase.value}"
        if self.follower is None:
            return True, f"follower {self.identity} (a shared ledger)"
        f = self.follower
        if self.pod_role is not None and not self.pod_role.shows(FOLLOWER):
            return False, f"follower {self.identity}: its pod not yet labelled follower"
        eligible, why = self._candidate
        if f.caught_up and eligible:
            return True, f"follower {self.identity}, caught up at position {f.position}"
        if f.caught_up:
            return False, f"follower {self.identity} caught up but not a candidate: {why}"
        return False, f"follower {self.identity} not caught up: position {f.position}, lag {f.lag}"

    def request_stop(self) -> None:
        """SIGTERM: stop (a leader hands over: finishes its tick, then releases the lease)."""
        self._post(life.StopAsked())

    def _post(self, event: life.Event) -> None:
        # Called on the loop by the elector's callbacks: only queue here, never await.
        if isinstance(event, life.Deposed) and self.gateway is not None:
            self.gateway.request_stop()  # the clock stops at once; the stop is carried out below
        self._events.put_nowait(event)

    async def run(self) -> Exit:
        """Follow, lead, stop; returns how the process ends."""
        if self.config.metrics_listen is not None:
            self.metrics_addr = self._metrics_server.start(self.config.metrics_listen)
        feed = asyncio.create_task(self.market.feed.run(), name="feed")
        elector = asyncio.create_task(self.elector.run(), name="elector")
        following: list[asyncio.Task[None]] = []
        if self.follower is not None:
            following = [
                asyncio.create_task(self.follower.run(), name="follower"),
                asyncio.create_task(self._watch_eligibility(), name="eligibility"),
            ]
        self._following = following
        labelling: list[asyncio.Task[None]] = []
        if self.pod_role is not None:
            self.pod_role.want(FOLLOWER)  # a restarted container in a once-leader pod
            labelling.append(asyncio.create_task(self.pod_role.run(), name="pod-role"))
        self._announce(role="follower", replica=self.identity, metrics_addr=self.metrics_addr)
        log.info(
            "gateway replica following",
            extra={"replica": self.identity, "lease": self.config.leader.backend.value},
        )
        starting: asyncio.Task[None] | None = None
        try:
            while True:
                event = await self._events.get()
                s = life.step(self.life, event)
                self.life = s.life
                if s.note:
                    log.info("gateway replica event ignored", extra={"why": s.note})
                for action in s.actions:
                    if isinstance(action, life.StartGateway):
                        starting = asyncio.create_task(self._start(action.term), name="start")
                    elif isinstance(action, life.StopGateway):
                        if starting is not None:
                            await asyncio.gather(starting, return_exceptions=True)
                        await self._stop(action, elector)
                        self._post(life.Stopped())
                    else:
                        return action.exit
        finally:
            await self._stop_following()
            for task in (elector, feed, *labelling):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._metrics_server.stop()
            self.done.set()

    async def _watch_eligibility(self) -> None:
        """A follower with a ledger of its own is a candidate while it is caught up with the
        leader, or when nobody can hold more than it does: the lease was never held (a new
        pair), or ``leader.bootstrap`` says so (after every replica was down, on the one whose
        ledger is known to be the newest). Otherwise a standby that just started, or fell
        behind, must not take over (Patroni's ``maximum_lag_on_failover``): nothing it can see
        tells it that it holds the last leader's last commit."""
        follower = self.follower
        assert follower is not None
        eligible = False
        cut_off = False
        settings = self.config.leader.lease
        margin_ms = cut_off_margin_ms(settings.retry_period_ms)
        while True:
            lead = self.elector.leadership
            held = lead.record is not None and not lead.record.free
            verdict = judge(
                Standing(
                    caught_up=follower.caught_up,
                    connected=follower.connected and follower.heard,
                    lag=follower.lag,
                    disconnected_ms=follower.disconnected_ms,
                    renewal_seen_ms=lead.observed_ms if held else None,
                    never_held=lead.seen and lead.record is None and not lead.vanished,
                    bootstrap=self.config.leader.bootstrap,
                ),
                was_cut_off=cut_off,
                margin_ms=margin_ms,
            )
            if verdict.cut_off and not cut_off:
                log.warning(
                    "replication cut off from a live leader: not a candidate until caught up",
                    extra={"replica": self.identity, "position": follower.last_commit.position},
                )
            cut_off = verdict.cut_off
            self._candidate = (verdict.eligible, verdict.why.value)  # for ``readiness``
            self._leader_metrics.candidate(verdict.eligible, cut_off)
            if verdict.eligible != eligible:
                eligible = verdict.eligible
                self.elector.set_eligible(eligible)
                log.info(
                    "gateway replica eligibility",
                    extra={
                        "replica": self.identity,
                        "eligible": eligible,
                        "why": verdict.why.value,
                        "caught_up": follower.caught_up,
                        "position": follower.last_commit.position,
                    },
                )
            await asyncio.sleep(settings.retry_period_ms / 1000)

    async def _stop_following(self) -> None:
        for task in self._following:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._following = []
        if self.follower is not None and not self._follower_closed:
            self._follower_closed = True
            self.follower.close()

    def _seq_gap(self) -> int:
        """Seqs to skip per slot: the ticks the old leader may have dispatched after the last
        commit this ledger received (``core/replica.py``); none after a handover, which waited
        for the standby to hold everything."""
        if self.follower is None:
            return 0
        with LedgerReader(self.config.ledger_path) as reader:
            runs = reader.runs()
            # When the last commit this ledger holds was made (the leader's wall clock).
            row = reader.conn.execute(
                "SELECT committed_ms FROM replication ORDER BY position DESC LIMIT 1"
            ).fetchone()
        committed = None if row is None else int(row[0])
        if runs and runs[-1].end_reason == RunEnd.HANDOVER.value:
            return 0
        return life.failover_seq_gap(self.config.cadence_ms, committed, self._now_ms())

    async def _start(self, term: int) -> None:
        # The gateway serves /metrics through the replica's registry; its own server is off.
        config = replace(self.config, metrics_listen=None)
        # The follower's ledger becomes the gateway's: stop applying and close it first.
        await self._stop_following()
        try:
            gateway = Gateway(
                config,
                now_ms=self._now_ms,
                term=term,
                executing=self.elector.executing,
                registry=self.registry,
                market=self.market,
                # A host that has seen a newer term fences us: the elector deposes at once.
                on_fenced=self.elector.term_seen,
                replication=(
                    self._replication.as_role("leader") if self.follower is not None else None
                ),
                seq_gap=self._seq_gap(),
                handover=self,
            )
            self.gateway = gateway
            await gateway.start()
        except Exception as exc:  # the boundary: a leader that cannot start must hand over
            log.exception("elected gateway could not start", extra={"term": term})
            self._post(life.StartFailed(f"{type(exc).__name__}: {exc}"))
            return
        host = self.config.listen.rpartition(":")[0]
        self._announce(
            role="leader",
            replica=self.identity,
            term=term,
            grpc_addr=f"{host}:{gateway.port}",
            ledger=str(self.config.ledger_path),
            metrics_addr=self.metrics_addr,
        )
        if self.pod_role is not None:
            self.pod_role.want(LEADER)  # the Service to the leader now routes here
        self.elected.set()
        self._post(life.Started())

    async def _stop(self, action: life.StopGateway, elector: asyncio.Task[None]) -> None:
        gateway = self.gateway
        log.info(
            "gateway replica stopping",
            extra={"replica": self.identity, "reason": action.reason, "term": self.life.term},
        )
        if gateway is not None:
            if not action.release:
                # Deposed: close the port first; whatever still arrives is not ours to execute.
                await gateway.stop_listening()
            try:
                if action.release and self.elector.executing():
                    # A handover at a tick boundary; asked over gRPC, the lease is released as
                    # soon as the port is closed, so that the answer leaves after it.
                    asked = self._handover is not None
                    await gateway.stop_after_next_tick(
                        after_close=self._release_handing_over if asked else None
                    )
                else:
                    await gateway.stop(end=RunEnd.STOPPED if action.release else RunEnd.DEPOSED)
            except Exception:  # the boundary: the lease must still be released below
                log.exception("gateway stop failed", extra={"replica": self.identity})
        if action.release and not elector.done() and not self._released:
            self._released = True
            await self.elector.resign()
        if self._handover is not None and not self._handover.done():
            self._leader_metrics.handover("failed")
            self._handover.set_exception(
                HandoverRefused(
                    Refusal.STOPPING,
                    f"{self.identity} stopped without handing over ({action.reason}): it was "
                    "no longer leading when its stop began",
                )
            )

    # -- ControlService.Handover ---------------------------------------------------------

    async def handover(self, reason: str) -> HandoverResult:
        """A planned handover asked over gRPC: the SIGTERM path (``request_stop``), answered
        once the lease is released; the process then exits 0 (one term per process)."""
        refused = admit(
            self.life.phase,
            under_way=self._handover is not None,
            identity=self.identity,
            term=self.life.term,
        )
        if refused is not None:
            self._leader_metrics.handover(refused.refusal.value)
            log.warning(
                "gateway handover refused",
                extra={"replica": self.identity, "why": str(refused), "reason": reason},
            )
            raise refused
        self._handover = asyncio.get_running_loop().create_future()
        self._handover_asked_ms = self._now_ms()
        log.info(
            "gateway handover asked",
            extra={"replica": self.identity, "term": self.life.term, "reason": reason},
        )
        self._post(life.StopAsked())
        # Shielded: a caller that goes away does not stop the handover under way.
        return await asyncio.shield(self._handover)

    async def _release_handing_over(self) -> None:
        """The gateway's tick is written and its port closed: release the lease, then answer."""
        assert self._handover is not None
        gateway = self.gateway
        term = self.life.term
        with tracer.start_as_current_span(
            "gateway.handover", attributes={"baton.replica": self.identity, "baton.term": term}
        ) as span:
            self._released = True
            await self.elector.resign()
            released_ms = self._now_ms()
            to_replica, new_term = await self._next_leader()
            result = HandoverResult(
                from_replica=self.identity,
                term=term,
                last_tick_ms=gateway.last_tick_ms if gateway is not None else 0,
                asked_ms=self._handover_asked_ms,
                released_ms=released_ms,
                to_replica=to_replica,
                new_term=new_term,
            )
            span.set_attribute("baton.last_tick_ms", result.last_tick_ms)
            span.set_attribute("baton.to_replica", to_replica)
            span.set_attribute("baton.new_term", new_term)
        self._leader_metrics.handover("completed")
        log.info(
            "gateway handed over",
            extra={
                "replica": self.identity,
                "term": term,
                "last_tick_ms": result.last_tick_ms,
                "stop_ms": released_ms - result.asked_ms,
                "to_replica": to_replica,
                "new_term": new_term,
            },
        )
        if not self._handover.done():
            self._handover.set_result(result)

    async def _next_leader(self) -> tuple[str, int]:
        """The replica that took the lease, read (bounded: ``NEXT_LEADER_WAIT_S``) so that the
        answer can name it; ("", 0) when it has not yet."""
        deadline = time.monotonic() + NEXT_LEADER_WAIT_S
        while True:
            record = self.elector.leadership.record
            if record is not None and not record.free and record.holder != self.identity:
                return record.holder, record.term
            if time.monotonic() >= deadline:
                return "", 0
            self.elector.check()
            await asyncio.sleep(0.1)  # a poll of the store, bounded by the deadline
