"""Check a chart dashboard's queries against what a live process exports on ``/metrics``.

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

from tests.promql import parse

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = REPO / "charts" / "baton" / "dashboards"
# Labels a query may group by that no sample carries: a histogram bucket's bound.
IMPLICIT = {"le"}


def exported(addr: str) -> dict[str, set[str]]:
    """``GET http://addr/metrics``: every sample name, with the label names its series carry."""
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, set()).update(s.labels)
    return out


def queries(dashboard: str) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of ``charts/baton/dashboards/<dashboard>``."""
    d = json.loads((DASHBOARDS / dashboard).read_text())
    panels: list[dict[str, Any]] = []
    for p in d["panels"]:
        panels += [p, *p.get("panels", [])]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]


def unknown(dashboard: str, metrics: dict[str, set[str]]) -> list[str]:
    """What the dashboard's queries read that ``metrics`` does not have, one line each: a
    metric name, a label of a matcher, a label to group by."""
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
