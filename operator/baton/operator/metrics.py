"""The operator's Prometheus metrics (``baton_operator_*``) and their ``/metrics`` endpoint.

What people running rollouts ask: how many StrategyVersions are in each phase, how rollouts
end (went live, failed, superseded), how long one takes from its pod's creation to Active,
the cutover pause of the handoffs that took a version live, whether the operator's rounds
fail or it cannot reach the gateway, and, for versions with a hot standby, whether each
standby is ready and how many failovers happened.

Fed from observations, not from the operator's own writes: each reconcile round hands the
StrategyVersion's stored status (``Observed``) to ``observed``, and a phase that differs from
the one seen last for that object is a transition. A status write that lost a conflict is
therefore never counted, and a transition shows one round after it was written (the write
wakes the next round at once). Counters start at 0 with each operator process; a transition
that happened while no operator ran is not counted (its phase gauge is right again at once).

One registry per ``OperatorMetrics`` (never the library's global one). The pure rollout
machine never imports this module: the handlers call it.
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from baton.common.metrics_http import serve_metrics
from baton.operator.core.rollout import Observed, Phase, StandbyState

# Phases a rollout ends in, and the result they are counted as. Retired is not one: it is the
# end of a version that went live (its rollout was counted then).
RESULTS = {Phase.ACTIVE: "active", Phase.FAILED: "failed", Phase.SUPERSEDED: "superseded"}
# The gateway's cutover pause is milliseconds; a rollout seconds to minutes.
PAUSE_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
)  # fmt: skip
ROLLOUT_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._versions = Gauge(
            "baton_operator_strategy_versions",
            "StrategyVersions this operator watches, by namespace and phase",
            ["namespace", "phase"],
            registry=r,
        )
        rollouts = Counter(
            "baton_operator_rollouts",
            "Rollouts that ended: active (went live), failed, superseded",
            ["result"],
            registry=r,
        )
        # Every result exists at 0 from the start, so increase() sees the first failure.
        self._rollouts = {result: rollouts.labels(result) for result in RESULTS.values()}
        self._duration = Histogram(
            "baton_operator_rollout_duration_seconds",
            "Rollouts that went live: from their pod's creation to Active",
            buckets=ROLLOUT_BUCKETS,
            registry=r,
        )
        self._pause = Histogram(
            "baton_operator_handoff_pause_seconds",
            "Handoffs that took a version live: the cutover pause the gateway measured",
            buckets=PAUSE_BUCKETS,
            registry=r,
        )
        self._errors = Counter(
            "baton_operator_reconcile_errors",
            "Reconcile rounds that failed (Kubernetes API or gateway errors); retried",
            registry=r,
        )
        self._reachable = Gauge(
            "baton_operator_gateway_reachable",
            "1 if the gateway's control API answered the last round, else 0",
            registry=r,
        )
        self._standbys = Gauge(
            "baton_operator_hot_standbys",
            "Live StrategyVersions with a hot standby, by namespace and the standby's state "
            "(Ready, Syncing, Starting, Missing, Failing)",
            ["namespace", "state"],
            registry=r,
        )
        self._failovers = Counter(
            "baton_operator_failovers",
            "Failovers seen: a version's ACTIVE instance moved to its hot standby's pod",
            registry=r,
        )
        self._phases: dict[tuple[str, str], Phase] = {}
        self._standby_states: dict[tuple[str, str], str] = {}
        self._failovers_seen: dict[tuple[str, str], int] = {}
        self._namespaces: set[str] = set()

    def _standby(self, namespace: str, o: Observed) -> None:
        if namespace not in self._namespaces:
            # Every state of a namespace exists at 0 once it is watched, so a query for the
            # standbys not Ready reads 0, not "no data".
            self._namespaces.add(namespace)
            for s in StandbyState:
                self._standbys.labels(namespace, s.value)
        key = (namespace, o.name)
        figures = o.progress.standby
        before = self._standby_states.get(key, "")
        if figures.state != before:
            if before:
                self._standbys.labels(namespace, before).dec()
            if figures.state:
                self._standbys.labels(namespace, figures.state).inc()
                self._standby_states[key] = figures.state
            else:
                self._standby_states.pop(key, None)
        seen = self._failovers_seen.get(key)
        if seen is not None and figures.failovers > seen:  # not at first sight (a restart)
            self._failovers.inc(figures.failovers - seen)
        self._failovers_seen[key] = figures.failovers

    def observed(self, namespace: str, o: Observed) -> None:
        """One round's observation of a StrategyVersion (its stored status)."""
        self._standby(namespace, o)
        phase = o.progress.phase or Phase.PENDING
        key = (namespace, o.name)
        before = self._phases.get(key)
        self._reachable.set(1 if o.gateway.reachable else 0)
        if before is phase:
            return
        self._phases[key] = phase
        self._versions.labels(namespace, phase.value).inc()
        if before is None:  # first sight (a new object, or this operator just started)
            return
        self._versions.labels(namespace, before.value).dec()
        result = RESULTS.get(phase)
        if result is not None:
            self._rollouts[result].inc()
        if phase is Phase.ACTIVE:
            if o.progress.started_at is not None:
                self._duration.observe(max(0.0, o.now - o.progress.started_at))
            figures = o.progress.handoff
            if figures.handoff_id and figures.pause_ms is not None:
                self._pause.observe(figures.pause_ms / 1000)

    def forgotten(self, namespace: str, name: str) -> None:
        """The StrategyVersion is gone."""
        phase = self._phases.pop((namespace, name), None)
        if phase is not None:
            self._versions.labels(namespace, phase.value).dec()
        state = self._standby_states.pop((namespace, name), None)
        if state:
            self._standbys.labels(namespace, state).dec()
        self._failovers_seen.pop((namespace, name), None)

    def reconcile_failed(self) -> None:
        self._errors.inc()


def serve(registry: CollectorRegistry, listen: str) -> tuple[str, WSGIServer]:
    """Serve ``GET /metrics`` of ``registry`` on ``HOST:PORT`` (port 0: any free one) from a
    daemon thread of prometheus_client, off kopf's event loop: the bound ``HOST:PORT``, and
    the server (the operator serves until it exits; tests shut it down)."""
    addr, httpd, _thread = serve_metrics(registry, listen, "operator.metrics")
    return addr, httpd
