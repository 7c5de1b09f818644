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
from collections.abc import Callable
from dataclasses import replace

from prometheus_client import CollectorRegistry

from baton.common import announce_ready
from baton.gateway.app import Gateway, wall_ms
from baton.gateway.config import GatewayConfig, LeaderBackend
from baton.gateway.core import replica as life
from baton.gateway.election import Elector
from baton.gateway.follower import Follower
from baton.gateway.lease import LeaseStore, LocalLease
from baton.gateway.ledger import LedgerReader, RunEnd
from baton.gateway.market_data import MarketData, following_market
from baton.gateway.metrics import FeedMetrics, LeaderMetrics, MetricsServer, ReplicationMetrics

log = logging.getLogger(__name__)

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
        self._metrics_server = MetricsServer(self.registry)
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
        self.elector = Elector(
            store,
            self.identity,
            config.leader.lease,
            on_elected=lambda term: self._post(life.Elected(term)),
            on_deposed=lambda reason: self._post(life.Deposed(reason)),
            metrics=LeaderMetrics(self.registry, self.identity),
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
            for task in (elector, feed):
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
        assert self.follower is not None
        eligible = False
        bootstrap = self.config.leader.bootstrap
        while True:
            lead = self.elector.leadership
            never_held = lead.seen and lead.record is None and not lead.vanished
            last = self.follower.last_commit
            now = self.follower.caught_up or never_held or bootstrap
            if now != eligible:
                eligible = now
                self.elector.set_eligible(eligible)
                log.info(
                    "gateway replica eligibility",
                    extra={
                        "replica": self.identity,
                        "eligible": eligible,
                        "caught_up": self.follower.caught_up,
                        "position": last.position,
                    },
                )
            await asyncio.sleep(self.config.leader.lease.retry_period_ms / 1000)

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
                    await gateway.stop_after_next_tick()  # a handover: at a tick boundary
                else:
                    await gateway.stop(end=RunEnd.STOPPED if action.release else RunEnd.DEPOSED)
            except Exception:  # the boundary: the lease must still be released below
                log.exception("gateway stop failed", extra={"replica": self.identity})
        if action.release and not elector.done():
            await self.elector.resign()
