"""What a PromQL expression reads: its metric names and the labels it matches or groups by.

Enough PromQL for dashboard queries (selectors with matchers, range selectors, aggregations
with ``by``/``without``, function calls, binary operators), and strict: an identifier that is
neither a known function, a keyword nor a metric fails, so a typo in a function name cannot hide
a metric from the check. Grafana's ``$__range``-style variables may appear only in ranges.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FUNCTIONS = frozenset(
    {
        "sum", "min", "max", "avg", "count", "stddev", "topk", "bottomk", "quantile",
        "rate", "irate", "increase", "delta", "idelta", "deriv", "resets", "changes",
        "histogram_quantile", "vector", "scalar", "abs", "clamp_min", "clamp_max", "round",
        "max_over_time", "min_over_time", "avg_over_time", "sum_over_time", "last_over_time",
        "time", "timestamp", "absent", "label_replace",
    }
)  # fmt: skip
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset"})
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^}]*)\}")
_NUMBER = re.compile(r"\b\d+(\.\d+)?([eE][-+]?\d+)?[a-z]*\b")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


@dataclass(frozen=True)
class Selector:
    metric: str
    labels: frozenset[str]  # label names its matchers use


@dataclass(frozen=True)
class Query:
    selectors: tuple[Selector, ...]
    grouping: frozenset[str]  # label names of by / without / on / ignoring clauses

    @property
    def metrics(self) -> frozenset[str]:
        return frozenset(s.metric for s in self.selectors)


def parse(expr: str) -> Query:
    rest = re.sub(r"\[[^\]]*\]", " ", expr)  # range selectors: [5m], [$__rate_interval]
    assert "$" not in rest, f"a Grafana variable outside a range: {expr}"
    grouping = frozenset(
        label.strip()
        for _, labels in _GROUPING.findall(rest)
        for label in labels.split(",")
        if label.strip()
    )
    rest = _GROUPING.sub(" ", rest)
    selectors: list[Selector] = []

    def selector(m: re.Match[str]) -> str:
        body = m.group(2)
        labels = frozenset(name for name, _ in _MATCHER.findall(body))
        assert not _MATCHER.sub("", body).strip(" ,"), f"unparsed matcher {body!r} in {expr}"
        assert m.group(1), f"a selector without a metric name: {expr}"
        selectors.append(Selector(m.group(1), labels))
        return " "

    rest = _SELECTOR.sub(selector, rest)
    rest = _NUMBER.sub(" ", rest)  # 0.99, 1e3, and durations: offset 5m
    for m in _IDENT.finditer(rest):
        name = m.group(0)
        if rest[m.end() :].lstrip().startswith("("):
            assert name in FUNCTIONS, f"unknown function {name!r} in {expr}"
        elif name not in KEYWORDS:
            selectors.append(Selector(name, frozenset()))
    return Query(tuple(selectors), grouping)
