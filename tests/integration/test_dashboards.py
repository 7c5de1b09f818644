"""Every query of the chart's Grafana dashboards names only metrics, and matches only labels,
that a live process really exports: a real gateway's ``/metrics``, scraped while its clock
runs with a strategy attached.

Names are compared as Prometheus stores them, i.e. as the samples of the exposition: a counter
``baton_handoffs`` is the series ``baton_handoffs_total``, a histogram ``baton_x_seconds`` the
series ``baton_x_seconds_bucket``, ``_sum`` and ``_count``; a dashboard asking for the family
name of a counter or for a histogram without its suffix would draw nothing, and fails here.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.procs import StartGateway, StartStrategy, run_ticks
from tests.promql import parse

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "charts" / "baton" / "dashboards"
# Labels a query may group by that no sample carries: a histogram bucket's bound.
IMPLICIT = {"le"}


def exported(addr: str) -> dict[str, set[str]]:
    """``GET /metrics``: every sample name, with the label names its series carry."""
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, set()).update(s.labels)
    return out


def queries(dashboard: str) -> list[tuple[str, str]]:
    d = json.loads((DASHBOARDS / dashboard).read_text())
    panels: list[dict[str, Any]] = []
    for p in d["panels"]:
        panels += [p, *p.get("panels", [])]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]


def unknown(dashboard: str, metrics: dict[str, set[str]]) -> list[str]:
    """What the dashboard's queries read that ``metrics`` does not have, one line each."""
    problems = []
    for title, expr in queries(dashboard):
        q = parse(expr)
        labels = set(IMPLICIT)
        for s in q.selectors:
            if s.metric not in metrics:
                problems.append(f"{title}: no metric {s.metric} ({expr})")
                continue
            labels |= metrics[s.metric]
            problems += [
                f"{title}: {s.metric} has no label {label}"
                for label in sorted(s.labels - metrics[s.metric])
            ]
        problems += [f"{title}: no label {g} to group by" for g in sorted(q.grouping - labels)]
    return problems


async def test_gateway_dashboard_reads_only_what_the_gateway_exports(
    start_gateway: StartGateway, start_strategy: StartStrategy, ledger: Path
) -> None:
    gateway = await start_gateway()
    await start_strategy(gateway)
    await run_ticks(ledger, 2)
    metrics = exported(gateway.ready["metrics_addr"])
    assert "baton_evaluations_total" in metrics, sorted(metrics)
    assert len(queries("baton-gateway.json")) >= 20
    assert unknown("baton-gateway.json", metrics) == []
    # The check can fail: the family name of a counter, a histogram without its suffix and a
    # label the metric does not have are each caught.
    wrong = {k: v for k, v in metrics.items() if k != "baton_handoffs_total"}
    assert any("no metric baton_handoffs_total" in p for p in unknown("baton-gateway.json", wrong))
    assert "baton_evaluations" not in metrics
    assert "baton_decision_latency_seconds" not in metrics
    assert "result" not in metrics["baton_evaluations_total"]
