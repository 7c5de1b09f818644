"""A process's Prometheus /metrics, read the way Prometheus reads it (its own text parser)."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(addr: str) -> Samples:
    """Every sample of ``GET http://addr/metrics``, by (name, labels)."""
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; a series not (yet) created counts as 0."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def metric(addr: str, name: str, **labels: str) -> float:
    """One sample, scraped now (0 while the series does not exist)."""
    return sample(scrape(addr), name, **labels)
