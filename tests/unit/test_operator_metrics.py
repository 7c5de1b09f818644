"""OperatorMetrics from observations (phase transitions of the stored status), scraped through
its real HTTP endpoint on a free port. The end-to-end check with a real operator rolling out
real StrategyVersions is tests/e2e/test_operator_metrics.py."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from baton.operator.core.rollout import (
    GatewayFacts,
    HandoffFigures,
    Observed,
    Phase,
    Progress,
    StandbyFigures,
)
from baton.operator.core.spec import SpecError
from baton.operator.metrics import OperatorMetrics, serve

NS = "team-a"
T0 = 1_700_000_000.0


def observed(name: str, phase: Phase | None, now: float = T0, **progress: object) -> Observed:
    return Observed(
        name=name,
        uid=f"uid-{name}",
        created=T0,
        spec=SpecError("not needed here"),
        progress=replace(Progress(phase=phase), **progress),  # type: ignore[arg-type]
        pod=None,
        gateway=GatewayFacts(),
        siblings=(),
        now=now,
    )


@pytest.fixture
def metrics() -> Iterator[tuple[OperatorMetrics, str]]:
    m = OperatorMetrics()
    addr, server = serve(m.registry, "127.0.0.1:0")
    yield m, addr
    server.shutdown()
    server.server_close()


def scrape(addr: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def phases(addr: str) -> dict[str, float]:
    return {
        dict(labels)["phase"]: v
        for (name, labels), v in scrape(addr).items()
        if name == "baton_operator_strategy_versions" and dict(labels)["namespace"] == NS and v
    }


def test_a_rollout_through_its_phases(metrics: tuple[OperatorMetrics, str]) -> None:
    m, addr = metrics
    assert addr.startswith("127.0.0.1:")
    assert addr != "127.0.0.1:0", "the bound port"
    m.observed(NS, observed("v1", None))
    m.observed(NS, observed("v1", Phase.STARTING, started_at=T0 + 1))
    m.observed(NS, observed("v1", Phase.STARTING, started_at=T0 + 1))  # a steady round
    m.observed(NS, observed("v1", Phase.ACTIVE, now=T0 + 9, started_at=T0 + 1))
    m.observed(NS, observed("v2", Phase.STARTING, started_at=T0 + 10))
    m.observed(NS, observed("v2", Phase.HANDING_OFF, started_at=T0 + 10))
    figures = HandoffFigures(handoff_id="h-1", phase="completed", pause_ms=4.0)
    m.observed(NS, observed("v2", Phase.ACTIVE, now=T0 + 16, started_at=T0 + 10, handoff=figures))
    m.observed(NS, observed("v1", Phase.RETIRED))
    m.observed(NS, observed("v3", Phase.STARTING))
    m.observed(NS, observed("v3", Phase.FAILED))
    m.reconcile_failed()
    got = scrape(addr)

    def value(name: str, **labels: str) -> float:
        return got[(name, frozenset(labels.items()))]

    assert phases(addr) == {"Active": 1, "Retired": 1, "Failed": 1}
    assert value("baton_operator_rollouts_total", result="active") == 2
    assert value("baton_operator_rollouts_total", result="failed") == 1
    assert value("baton_operator_rollouts_total", result="superseded") == 0
    # Pod created -> Active: 8 s and 6 s.
    assert value("baton_operator_rollout_duration_seconds_count") == 2
    assert value("baton_operator_rollout_duration_seconds_sum") == pytest.approx(14.0)
    # Only v2 went live through a handoff.
    assert value("baton_operator_handoff_pause_seconds_count") == 1
    assert value("baton_operator_handoff_pause_seconds_sum") == pytest.approx(0.004)
    assert value("baton_operator_reconcile_errors_total") == 1
    assert value("baton_operator_gateway_reachable") == 1

    m.forgotten(NS, "v3")
    m.forgotten(NS, "never-seen")
    assert phases(addr) == {"Active": 1, "Retired": 1}


def test_first_sight_counts_the_phase_but_no_transition(
    metrics: tuple[OperatorMetrics, str],
) -> None:
    """An operator (re)started finds versions already Active or Failed: they are in the phase
    gauge at once, but their rollouts ended before this process and are not counted again."""
    m, addr = metrics
    m.observed(NS, observed("v1", Phase.ACTIVE, started_at=T0))
    m.observed(NS, observed("v0", Phase.FAILED))
    unreachable = replace(observed("v1", Phase.ACTIVE), gateway=GatewayFacts(reachable=False))
    m.observed(NS, unreachable)
    got = scrape(addr)
    assert phases(addr) == {"Active": 1, "Failed": 1}
    rollouts = [v for (n, _), v in got.items() if n == "baton_operator_rollouts_total"]
    assert rollouts == [0, 0, 0]
    assert got[("baton_operator_gateway_reachable", frozenset())] == 0


def test_hot_standbys_by_state_and_failovers(metrics: tuple[OperatorMetrics, str]) -> None:
    m, addr = metrics

    def standbys() -> dict[str, float]:
        return {
            dict(labels)["state"]: v
            for (name, labels), v in scrape(addr).items()
            if name == "baton_operator_hot_standbys" and v
        }

    def failovers() -> float:
        return scrape(addr)[("baton_operator_failovers_total", frozenset())]

    def hot(state: str, count: int = 0, phase: Phase = Phase.ACTIVE) -> Observed:
        return observed("v1", phase, standby=StandbyFigures(state=state, failovers=count))

    m.observed(NS, hot("Ready", 2))  # first sight (an operator restart): nothing counted
    assert (standbys(), failovers()) == ({"Ready": 1}, 0)
    m.observed(NS, hot("Missing", 3))  # a failover: the dead pod is being recreated
    assert (standbys(), failovers()) == ({"Missing": 1}, 1)
    m.observed(NS, hot("Syncing", 3))
    m.observed(NS, hot("Ready", 3))
    m.observed(NS, observed("v2", Phase.ACTIVE))  # no hot standby: not in the gauge
    assert (standbys(), failovers()) == ({"Ready": 1}, 1)
    m.observed(NS, hot("", 3, Phase.RETIRED))  # terminal: its standby is gone
    assert standbys() == {}
    m.observed(NS, hot("Ready", 3))
    m.forgotten(NS, "v1")
    assert (standbys(), failovers()) == ({}, 1)
