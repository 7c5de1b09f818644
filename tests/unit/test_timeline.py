"""The presence timeline's pure parts: bucket size, version bands, and the page drawn from
hand-built values (read back with the standard library's HTML parser); and its failovers read
from a ledger built with known deaths and the evaluations around them."""

from __future__ import annotations

import doctest
from html.parser import HTMLParser
from pathlib import Path

import pytest

from baton.gateway.core import timeline as tl
from baton.gateway.core.records import EvalOutcome, EvaluationRecord
from baton.gateway.core.timeline import (
    Cell,
    FailoverOutcome,
    FailoverSpan,
    Figure,
    HandoffSpan,
    Kind,
    RunSpan,
    Timeline,
)
from baton.gateway.core.timeline_html import (
    FAILOVER,
    HANDOFF,
    LABEL_H,
    LEFT,
    MAX_DRAWN_CELLS,
    MIN_BAD_W,
    PLOT_W,
    VERSION_H,
    render_html,
)
from baton.gateway.ledger import FailoverRow, Ledger
from baton.gateway.timeline import read_timeline

T0 = 1_700_000_000_000
SLOTS = ("BTC/5m", "ETH/5m")


class Elements(HTMLParser):
    """Every start tag with its attributes, the text of <title> elements, and the SVG <text>
    labels with their attributes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.titles: list[str] = []
        self.texts: list[tuple[dict[str, str], str]] = []
        self._in: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in = tag if tag in ("title", "text") else None

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "title":
            self.titles.append(data)
        elif self._in == "text":
            self.texts.append((self.tags[-1][1], data))

    def text(self, prefix: str) -> list[tuple[dict[str, str], str]]:
        """The SVG labels that start with ``prefix``, in page order."""
        return [(a, t) for a, t in self.texts if t.startswith(prefix)]

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


# -- failovers ------------------------------------------------------------------------------------


def failover(
    n: int,
    died: int,
    took: int | None,
    *,
    mode: str = "checkpoint",
    state: str = "exact",
    result: str = "completed",
    missed: int = 0,
    rows: tuple[str, ...] | None = None,
) -> FailoverSpan:
    return FailoverSpan(
        number=n,
        failover_id=f"f-{n}",
        strategy="momentum",
        mode=mode,
        from_instance=f"i{n}",
        to_instance="" if took is None else f"i{n + 1}",
        from_version="v1",
        to_version="" if took is None else "v1",
        died_ms=died,
        took_over_ms=took,
        missed=missed,
        state=state,
        result=result,
        checkpoint_id="" if mode == "hot" else f"ckpt-{n}",
        message="no instance attached" if took is None else "",
        rows=rows,
    )


# One of each kind, as docs/standby.md has them.
FAILOVERS = (
    failover(1, T0 + 1500, T0 + 1500, mode="hot"),  # a hot standby: 0 ms
    failover(2, T0 + 3400, T0 + 5000, missed=2),  # checkpoint + journal: dark 1.6 s
    failover(3, T0 + 6200, T0 + 7000, state="diverged"),  # not deterministic
    failover(4, T0 + 7300, T0 + 8000, state="unverified"),  # another version took over
    failover(5, T0 + 8200, T0 + 9000, mode="none", state="empty", missed=2),
    failover(6, T0 + 9200, T0 + 9500, state="empty", result="failed"),  # the import failed
    failover(7, T0 + 10_000, None, state="pending", result="running", missed=1),  # nobody yet
)


def x_of(t_ms: int, end_ms: int = T0 + 11_000) -> float:
    return LEFT + (t_ms - T0) / (end_ms - T0) * PLOT_W


def test_each_failover_is_a_death_mark_and_a_band_to_its_take_over() -> None:
    cells = [tick(s, seq) for s in SLOTS for seq in range(11)]
    page = Elements(render_html(timeline(cells, handoffs=(), failovers=FAILOVERS)))
    groups = page.find("g", "failover")
    assert [
        (g["data-failover-id"], g["data-mode"], g["data-state"], g["data-result"]) for g in groups
    ] == [(f.failover_id, f.mode, f.state, f.result) for f in FAILOVERS]
    assert [g["data-takeover-ms"] for g in groups] == ["0", "1600", "800", "700", "800", "300", ""]
    assert [g["data-missed"] for g in groups] == ["0", "2", "0", "0", "2", "0", "1"]
    # Coloured by outcome: exact, not exact (diverged / unverified / empty), failed or not
    # taken over; each its own colour, none a handoff's.
    outcomes = [next(c for c in g["class"].split() if c != "failover") for g in groups]
    assert outcomes == ["exact", "exact", "inexact", "inexact", "inexact", "failed", "failed"]
    deaths = page.find("polygon", "death")
    assert [d["fill"] for d in deaths] == [FAILOVER[FailoverOutcome(o)] for o in outcomes]
    assert len(set(FAILOVER.values()) | {HANDOFF}) == 4

    # The band starts at the death and ends at the take-over (a hot one is never invisible;
    # one nobody took over runs to the end), across every slot row (one strategy).
    bands = page.find("rect", "takeover")
    lines = page.find("line", "died")
    assert len(bands) == len(lines) == len(FAILOVERS)
    rows_top = VERSION_H + LABEL_H
    for f, band, line in zip(FAILOVERS, bands, lines, strict=True):
        end = f.took_over_ms if f.took_over_ms is not None else T0 + 11_000
        assert float(band["x"]) == pytest.approx(x_of(f.died_ms), abs=0.06)
        assert float(band["width"]) == pytest.approx(max(x_of(end) - x_of(f.died_ms), 2), abs=0.1)
        assert (int(band["y"]), int(band["height"])) == (rows_top, 16 * len(SLOTS))
        assert line["x1"] == line["x2"] == band["x"]
        assert band["pointer-events"] == "none", "the marks under it keep their tooltips"
        assert band["fill"] == f"url(#hatch-{f.outcome.value})"
    patterns = [a["id"] for t, a in page.tags if t == "pattern"]
    assert patterns == ["hatch-exact", "hatch-inexact", "hatch-failed"]

    # A short label each, the rest in its tooltip.
    labels = [text for _, text in page.text("failover #")]
    assert labels == [
        "failover #1 hot 0 ms",
        "failover #2 checkpoint 1600 ms, missed 2",
        "failover #3 checkpoint 800 ms, state diverged",
        "failover #4 checkpoint 700 ms, state unverified",
        "failover #5 none 800 ms, missed 2, state empty",
        "failover #6 checkpoint 300 ms, failed",
        "failover #7 checkpoint not taken over, missed 1",
    ]
    tips = [t for t in page.titles if t.startswith("failover #")]
    assert len(tips) == len(FAILOVERS)
    assert tips[1] == (
        "failover #2 f-2 (momentum, standby checkpoint): i2 (v1) died 22:13:23.400 -> i3 (v1); "
        "took over 22:13:25.000 (take-over 1600 ms), missed 2, state exact, completed, "
        "checkpoint ckpt-2"
    )
    assert tips[6].endswith("not taken over, missed 1, state pending, running, checkpoint "
                            "ckpt-7: no instance attached")  # fmt: skip

    # Below the handoffs, a table of them; in the legend, what their colours mean.
    rows = [a["data-failover-id"] for t, a in page.tags if t == "tr" and "data-failover-id" in a]
    assert rows == [f.failover_id for f in FAILOVERS]
    assert len(page.find("table", "failovers")) == 1
    text = render_html(timeline(cells, failovers=FAILOVERS))
    assert text.index('class="handoffs"') < text.index('class="failovers"')
    assert "failover, state exact" in text
    assert "failover failed or not taken over" in text


def test_a_page_without_failovers_says_so_and_draws_none() -> None:
    text = render_html(timeline([tick(s, q) for s in SLOTS for q in range(10)]))
    page = Elements(text)
    assert page.find("g", "failover") == []
    assert not [t for t, _ in page.tags if t in ("pattern", "defs")]
    assert "No failovers in this ledger." in text
    assert "failover, state exact" not in text, "no legend for what is not drawn"


def test_in_a_book_a_failover_covers_its_strategy_rows_only() -> None:
    slots = ("momentum BTC/5m", "reversion BTC/5m", "momentum ETH/5m", "reversion ETH/5m")
    mine = ("momentum BTC/5m", "momentum ETH/5m")
    spans = (
        failover(1, T0 + 2000, T0 + 3000, rows=mine),
        failover(2, T0 + 5000, T0 + 6000, rows=()),  # its strategy has no row: marks only
    )
    page = Elements(render_html(timeline([], slots=slots, handoffs=(), failovers=spans)))
    rows_top = VERSION_H + LABEL_H
    bands = page.find("rect", "takeover")
    assert [(int(b["y"]), int(b["height"])) for b in bands] == [
        (rows_top, 16),
        (rows_top + 2 * 16, 16),
    ], "rows 0 and 2, not the reversion rows between"
    assert len(page.find("polygon", "death")) == 2
    assert [text for _, text in page.text("failover #")] == [
        "failover #1 momentum checkpoint 1000 ms",
        "failover #2 momentum checkpoint 1000 ms",
    ]


def test_handoff_and_failover_labels_alternate_in_time_order() -> None:
    """Handoffs at 3 s and 8 s, failovers at 1.5 s and 3.4 s: upper, lower, upper, ..."""
    t = timeline([], failovers=FAILOVERS[:2])
    page = Elements(render_html(t))
    labels = sorted(
        (float(a["x"]), int(a["y"]), text.split()[0])
        for a, text in page.texts
        if text.startswith(("failover #", "#"))
    )
    upper, lower = VERSION_H + 12, VERSION_H + 25
    assert [(y, what) for _, y, what in labels] == [
        (upper, "failover"),
        (lower, "#1"),
        (upper, "failover"),
        (lower, "#2"),
    ]


# -- failovers read from a ledger ------------------------------------------------------------------

CADENCE = 1000


def sched(seq: int) -> int:
    return T0 + seq * CADENCE


def evaluation(
    slot: str, seq: int, outcome: EvalOutcome, strategy: str = "momentum"
) -> EvaluationRecord:
    return EvaluationRecord(
        slot, seq, sched(seq), sched(seq + 1), outcome,
        instance_id="i", version="v1", epoch=1, strategy=strategy,
    )  # fmt: skip


def ledger_failover(
    n: int,
    died: int,
    took: int | None,
    *,
    mode: str = "checkpoint",
    state: str = "exact",
    result: str = "completed",
    strategy: str = "momentum",
    to_version: str = "v1",
) -> FailoverRow:
    return FailoverRow(
        f"f-{n}", strategy, mode, f"i{n}", "v1", f"i{n + 1}" if took else "", to_version,
        died, took, "" if mode == "hot" else "ckpt-1", "dig-1", state, result, "",
    )  # fmt: skip


def test_the_failovers_of_a_ledger_are_drawn_with_the_reports_figures(tmp_path: Path) -> None:
    """20 ticks of 2 slots, a failover of each kind; ``no_active`` ticks where nobody was
    ACTIVE. Every figure the page shows is the report's."""
    path = tmp_path / "ledger.sqlite"
    dark = {4, 5, 15, 20}
    rows = [
        ledger_failover(1, sched(3) + 400, sched(6)),  # dark ticks 4-5: 4 missed
        ledger_failover(2, sched(8) + 500, sched(8) + 500, mode="hot"),
        ledger_failover(3, sched(10) + 200, sched(11), state="diverged"),
        ledger_failover(4, sched(12) + 300, sched(13), state="unverified", to_version="v2"),
        ledger_failover(5, sched(14) + 100, sched(16), mode="none", state="empty"),  # tick 15
        ledger_failover(6, sched(17) + 100, sched(18), state="empty", result="failed"),
        ledger_failover(7, sched(19) + 500, None, state="pending", result="running"),  # tick 20
    ]
    with Ledger(path) as led:
        led.record_run(started_ms=T0, cadence_ms=CADENCE, slots=list(SLOTS), config_json="{}")
        for seq in range(1, 21):
            for slot in SLOTS:
                outcome = EvalOutcome.NO_ACTIVE if seq in dark else EvalOutcome.EXECUTED
                led.record_evaluation(evaluation(slot, seq, outcome))
        for row in rows:
            led.record_failover(row)
    report, t = read_timeline(path)
    assert [
        (f.number, f.failover_id, f.mode, f.state, f.result, f.takeover_ms, f.missed, f.rows)
        for f in t.failovers
    ] == [
        (1, "f-1", "checkpoint", "exact", "completed", 2600, 4, None),
        (2, "f-2", "hot", "exact", "completed", 0, 0, None),
        (3, "f-3", "checkpoint", "diverged", "completed", 800, 0, None),
        (4, "f-4", "checkpoint", "unverified", "completed", 700, 0, None),
        (5, "f-5", "none", "empty", "completed", 1900, 2, None),
        (6, "f-6", "checkpoint", "empty", "failed", 900, 0, None),
        (7, "f-7", "checkpoint", "pending", "running", None, 2, None),
    ]
    assert [(f.missed, f.takeover_ms) for f in t.failovers] == [
        (f.missed, f.takeover_ms) for f in report.failovers
    ]
    assert t.failovers[3].to_version == "v2"
    figures = {f.label: f for f in t.headline}
    assert (figures["failovers exact / not"].value, figures["failovers exact / not"].bad) == (
        "2 / 5",
        True,
    )
    assert (figures["missed in failovers"].value, figures["missed in failovers"].bad) == ("8", True)
    assert figures["take-over p50 / max"].value == "850 / 2600 ms"

    page = Elements(render_html(t))
    assert [g["class"] for g in page.find("g", "failover")] == [
        "failover exact",
        "failover exact",
        "failover inexact",
        "failover inexact",
        "failover inexact",
        "failover failed",
        "failover failed",
    ]
    # The running one's band runs to the ledger's end (the last deadline).
    *_, last = page.find("rect", "takeover")
    assert float(last["x"]) + float(last["width"]) == pytest.approx(LEFT + PLOT_W, abs=0.1)


def test_a_ledger_without_failovers_has_healthy_failover_figures(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as led:
        led.record_run(started_ms=T0, cadence_ms=CADENCE, slots=list(SLOTS), config_json="{}")
        led.record_evaluation(evaluation(SLOTS[0], 1, EvalOutcome.EXECUTED))
    _, t = read_timeline(path)
    assert t.failovers == ()
    figures = {f.label: (f.value, f.bad) for f in t.headline}
    assert figures["failovers exact / not"] == ("0 / 0", False)
    assert figures["missed in failovers"] == ("0", False)
    assert figures["take-over p50 / max"] == ("-", False)


def test_in_a_book_the_failover_names_its_strategy_and_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as led:
        led.record_run(started_ms=T0, cadence_ms=CADENCE, slots=list(SLOTS), config_json="{}")
        for seq in (1, 2, 3):
            for slot in SLOTS:
                for strategy in ("momentum", "reversion"):
                    led.record_evaluation(evaluation(slot, seq, EvalOutcome.EXECUTED, strategy))
        led.record_failover(ledger_failover(1, sched(2) + 100, sched(2) + 100, mode="hot"))
    _, t = read_timeline(path)
    assert t.slots == (
        "momentum BTC/5m",
        "reversion BTC/5m",
        "momentum ETH/5m",
        "reversion ETH/5m",
    )
    (f,) = t.failovers
    assert f.rows == ("momentum BTC/5m", "momentum ETH/5m")
    page = Elements(render_html(t))
    assert len(page.find("rect", "takeover")) == 2, "its two rows, apart"
    assert [text for _, text in page.text("failover #")] == ["failover #1 momentum hot 0 ms"]


def test_a_label_that_would_run_past_the_edge_is_drawn_left_of_its_mark() -> None:
    """A kill near the end of the ledger: its label ends at its mark instead of off the page."""
    spans = (failover(1, T0 + 1000, T0 + 2000), failover(2, T0 + 10_800, None, missed=9))
    page = Elements(render_html(timeline([], handoffs=(), failovers=spans)))
    (early, _), (late, _) = page.text("failover #")
    assert "text-anchor" not in early
    assert float(early["x"]) > x_of(T0 + 1000)
    assert late["text-anchor"] == "end"
    assert float(late["x"]) < x_of(T0 + 10_800)
