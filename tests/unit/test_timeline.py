"""The presence timeline's pure parts: bucket size, version bands, and the page drawn from
hand-built values (read back with the standard library's HTML parser)."""

from __future__ import annotations

import doctest
from html.parser import HTMLParser

import pytest

from baton.gateway.core import timeline as tl
from baton.gateway.core.timeline import Cell, Figure, HandoffSpan, Kind, RunSpan, Timeline
from baton.gateway.core.timeline_html import MAX_DRAWN_CELLS, MIN_BAD_W, render_html

T0 = 1_700_000_000_000
SLOTS = ("BTC/5m", "ETH/5m")


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text of <title> elements."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.titles: list[str] = []
        self._in_title = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.titles.append(data)

    def find(self, tag: str, cls: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and cls in a.get("class", "").split()]


def tick(slot: str, seq: int, outcome: str = "executed", stale: int = 0) -> Cell:
    start = T0 + seq * 1000
    return Cell(
        slot_id=slot,
        start_ms=start,
        end_ms=start + 1000,
        executed=int(outcome == "executed"),
        errors=int(outcome == "error"),
        missed=((outcome, 1),) if outcome not in ("executed", "error") else (),
        stale=stale,
        seq=seq,
    )


def timeline(cells: list[Cell], **kw: object) -> Timeline:
    base: dict[str, object] = {
        "title": "Presence: test",
        "start_ms": T0,
        "end_ms": T0 + 11_000,
        "cadence_ms": 1000,
        "bucket_ms": None,
        "slots": SLOTS,
        "cells": tuple(cells),
        "versions": tl.version_bands([(T0, "v1"), (T0 + 5000, "v2")], T0 + 11_000),
        "handoffs": (
            HandoffSpan(1, "h-1", "v1", "v2", "completed", T0 + 3000, T0 + 5000, T0 + 7000, 2.5, 0),
            HandoffSpan(2, "h-2", "v2", "v3", "aborted", T0 + 8000, None, T0 + 9000, None, 0),
        ),
        "runs": (RunSpan(1, T0 - 500, T0 + 1000, T0 + 10_000, 1000),),
        "headline": (Figure("missed", "1", bad=True), Figure("scheduled", "20")),
    }
    base.update(kw)
    return Timeline(**base)  # type: ignore[arg-type]


def test_doctests() -> None:
    assert doctest.testmod(tl).failed == 0


@pytest.mark.parametrize(
    ("ticks", "span_ms", "cadence_ms", "expected"),
    [
        (10, 10_000, 1000, None),
        (tl.MAX_TICK_MARKS, 600_000, 1000, None),
        (tl.MAX_TICK_MARKS + 1, 601_000, 1000, 2000),  # at least two ticks a bucket
        (17_280, 86_400_000, 5000, 160_000),  # a day at 5 s: 32 ticks a bucket, 540 columns
        (3_600_000, 3_600_000, 1, 6546),
    ],
)
def test_bucket_size(ticks: int, span_ms: int, cadence_ms: int, expected: int | None) -> None:
    bucket = tl.choose_bucket_ms(ticks, span_ms, cadence_ms)
    assert bucket == expected
    if bucket is not None:
        assert bucket % cadence_ms == 0, "a bucket never splits a tick"
        assert span_ms / bucket <= tl.BUCKET_COLUMNS


@pytest.mark.parametrize("slots", [16, 400, 2000, 20_000])
def test_many_slots_get_fewer_columns(slots: int) -> None:
    """A day at 1 s: the cells in all stay under MAX_CELLS (or MIN_COLUMNS a row)."""
    bucket = tl.choose_bucket_ms(86_400, 86_400_000, 1000, slots=slots)
    assert bucket is not None
    columns = -(-86_400_000 // bucket)
    assert columns * slots <= tl.MAX_CELLS or columns <= tl.MIN_COLUMNS
    assert columns >= tl.MIN_COLUMNS
    # Few ticks but many slots: buckets too, past MAX_CELLS marks.
    few = tl.choose_bucket_ms(100, 100_000, 1000, slots=slots)
    assert (few is None) == (100 * slots <= tl.MAX_CELLS)


def test_cell_kind_is_the_worst_outcome_in_it() -> None:
    assert Cell("s", 0, 1, executed=9).kind is Kind.EXECUTED
    assert Cell("s", 0, 1, executed=9, errors=1).kind is Kind.ERROR
    both = Cell("s", 0, 1, executed=9, errors=1, missed=(("timeout", 2), ("no_active", 1)))
    assert both.kind is Kind.MISSED
    assert (both.scheduled, both.missed_total) == (13, 3)


def test_every_tick_is_a_mark_with_its_outcome_and_seq() -> None:
    cells = [tick(s, seq) for s in SLOTS for seq in range(10)]
    cells[3] = tick("BTC/5m", 3, "timeout", stale=1)
    cells[15] = tick("ETH/5m", 5, "error")
    page = Elements(render_html(timeline(cells)))
    marks = page.find("rect", "cell")
    assert len(marks) == 20
    (missed,) = page.find("rect", "missed")
    assert (missed["data-outcome"], missed["data-seq"]) == ("timeout", "3")
    assert missed["fill"] == "#d7263d"
    (error,) = page.find("rect", "error")
    assert (error["data-seq"], error["fill"]) == ("5", "#f29e1f")
    (stale,) = page.find("circle", "stale")
    assert stale["data-stale"] == "1"
    assert any("BTC/5m seq 3" in t and "1 missed (timeout)" in t for t in page.titles)
    # Every colour is its own.
    fills = {missed["fill"], error["fill"], stale["fill"], page.find("rect", "executed")[0]["fill"]}
    assert len(fills) == 4


def test_handoffs_runs_and_versions_are_drawn_across_the_slots() -> None:
    page = Elements(render_html(timeline([tick(s, q) for s in SLOTS for q in range(10)])))
    handoffs = page.find("g", "handoff")
    assert [(h["data-handoff-id"], h["data-result"]) for h in handoffs] == [
        ("h-1", "completed"),
        ("h-2", "aborted"),
    ]
    assert handoffs[0]["data-pause-ms"] == "2.500"
    assert len(page.find("line", "flip")) == 1, "only the completed one flipped"
    assert [v["data-version"] for v in page.find("g", "version")] == ["v1", "v2"]
    assert [r["data-run"] for r in page.find("g", "run")] == ["1"]
    assert [f["data-figure"] for f in page.find("div", "figure")] == ["missed", "scheduled"]
    assert "bad" in page.find("div", "figure")[0]["class"]


def test_a_restart_is_a_grey_band_between_two_runs() -> None:
    runs = (
        RunSpan(1, T0, T0 + 1000, T0 + 3000, 1000),
        RunSpan(2, T0 + 7500, T0 + 8000, T0 + 10_000, 1000),
    )
    page = Elements(render_html(timeline([], runs=runs)))
    assert [r["data-run"] for r in page.find("g", "run")] == ["1", "2"]
    (down,) = page.find("rect", "down")
    assert float(down["width"]) > 0
    assert any("no gateway running for 4.0 s" in t for t in page.titles)


def test_the_page_is_self_contained_and_escapes_what_the_ledger_says() -> None:
    slot = '<script>alert("x")</script>'
    text = render_html(timeline([tick(slot, 1, "timeout")], slots=(slot,)))
    assert "<script" not in text
    assert "&lt;script&gt;" in text
    page = Elements(text)
    for _, attrs in page.tags:
        assert not {"src", "href"} & set(attrs), attrs
    (csp,) = [a for t, a in page.tags if t == "meta" and a.get("http-equiv")]
    assert "default-src 'none'" in csp["content"]


def test_a_large_timeline_draws_healthy_runs_as_one_bar_and_keeps_every_bad_mark() -> None:
    n = MAX_DRAWN_CELLS // 2 + 1
    cells = [tick(s, seq) for s in SLOTS for seq in range(n)]
    cells[100] = tick("BTC/5m", 100, "timeout")
    cells[n + 7] = tick("ETH/5m", 7, "error")
    t = timeline(cells, end_ms=T0 + n * 1000)
    page = Elements(render_html(t))
    executed = page.find("rect", "executed")
    # BTC/5m: before and after the miss; ETH/5m: before and after the error.
    assert len(executed) == 4
    assert sum(int(r["data-evaluations"]) for r in executed) == 2 * n - 2
    (missed,) = page.find("rect", "missed")
    assert float(missed["width"]) >= MIN_BAD_W, "one bad tick among thousands stays visible"
    assert len(page.find("rect", "error")) == 1


def test_buckets_say_their_exact_counts() -> None:
    bucket = Cell(
        "BTC/5m", T0, T0 + 60_000, executed=58, errors=0, missed=(("timeout", 2),), stale=1
    )
    page = Elements(render_html(timeline([bucket], bucket_ms=60_000, slots=("BTC/5m",))))
    (mark,) = page.find("rect", "missed")
    assert (mark["data-outcome"], mark["data-evaluations"], mark["data-missed"]) == (
        "missed",
        "60",
        "2",
    )
    assert "data-seq" not in mark
    assert any("58 executed, 2 missed (timeout), 1 stale" in t for t in page.titles)
