"""Every query of the chart's gateway dashboard names only metrics, and matches only labels,
that a live gateway exports: its ``/metrics``, scraped while its clock runs with a strategy
attached (tests/dashboards.py says how names are compared). The operator's dashboard is checked
the same way against a live operator, in tests/e2e/test_operator_metrics.py."""

from __future__ import annotations

from pathlib import Path

from tests.dashboards import exported, queries, unknown
from tests.procs import StartGateway, StartStrategy, run_ticks

DASHBOARD = "baton-gateway.json"


async def test_gateway_dashboard_reads_only_what_the_gateway_exports(
    start_gateway: StartGateway, start_strategy: StartStrategy, ledger: Path
) -> None:
    gateway = await start_gateway()
    await start_strategy(gateway)
    await run_ticks(ledger, 2)
    metrics = exported(gateway.ready["metrics_addr"])
    assert "baton_evaluations_total" in metrics, sorted(metrics)
    assert len(queries(DASHBOARD)) >= 20
    assert unknown(DASHBOARD, metrics) == []
    # The check can fail: a metric the gateway lacks is named, and these mistakes would be
    # caught: a counter's family name, a histogram without its suffix, a label it lacks.
    wrong = {k: v for k, v in metrics.items() if k != "baton_handoffs_total"}
    assert any("no metric baton_handoffs_total" in p for p in unknown(DASHBOARD, wrong))
    assert "baton_evaluations" not in metrics
    assert "baton_decision_latency_seconds" not in metrics
    assert "result" not in metrics["baton_evaluations_total"]
