"""The chart's Grafana dashboards are well-formed, and the PromQL reader the metric-name test
relies on (tests/integration/test_dashboards.py) reads what it should and refuses what it
cannot read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.promql import Selector, parse

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((REPO / "charts" / "baton" / "dashboards").glob("*.json"))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in dashboard["panels"]:
        out.append(p)
        out += p.get("panels", [])
    return out


def test_there_are_dashboards() -> None:
    assert [p.name for p in DASHBOARDS] == ["baton-gateway.json", "baton-operator.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_well_formed(path: Path) -> None:
    d = json.loads(path.read_text())
    assert d["uid"] == path.stem
    assert d["title"].startswith("Baton / ")
    assert "__inputs" not in d, "the sidecar loads the JSON as is: no import-time inputs"
    (variable,) = d["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    cells: set[tuple[int, int]] = set()
    for p in panels(d):
        g = p["gridPos"]
        assert g["x"] >= 0, p["title"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["description"], f"{p['title']}: say what it shows"
        refs = [t["refId"] for t in p["targets"]]
        assert refs, p["title"]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert parse(t["expr"]).metrics, f"{p['title']}: {t['expr']}"


def test_promql_reader_finds_metrics_matchers_and_grouping() -> None:
    q = parse(
        'sum by (slot) (rate(baton_evaluations_total{outcome="executed", slot=~"BTC.*"}'
        "[$__rate_interval])) / sum by (slot) (rate(baton_evaluations_total[5m])) > 0"
    )
    assert q.selectors == (
        Selector("baton_evaluations_total", frozenset({"outcome", "slot"})),
        Selector("baton_evaluations_total", frozenset()),
    )
    assert q.grouping == {"slot"}
    q = parse(
        "histogram_quantile(0.99, sum by (le) (rate(baton_decision_latency_seconds_bucket[1m])))"
        " or vector(0)"
    )
    assert q.metrics == {"baton_decision_latency_seconds_bucket"}
    assert q.grouping == {"le"}
    assert parse("up and baton_epoch offset 5m").metrics == {"up", "baton_epoch"}


@pytest.mark.parametrize(
    "expr",
    ["sum(rate_typo(baton_x[5m]))", "baton_x{outcome=~timeout}", "rate(baton_x[5m]) * $scale"],
    ids=["unknown function", "unquoted matcher", "variable outside a range"],
)
def test_promql_reader_refuses_what_it_cannot_read(expr: str) -> None:
    with pytest.raises(AssertionError):
        parse(expr)
