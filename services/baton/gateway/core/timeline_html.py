"""The presence timeline as one self-contained HTML page: inline CSS and SVG, no script, no
font, no image, nothing fetched at view time (a page mailed to someone still opens).

Plain SVG rather than a plotting library: the picture is rectangles on a time axis, which
SVG draws exactly; a library (plotly, bokeh) would inline megabytes of JavaScript into every
report and draw through a script that can fail at view time. Every element of interest has a
class and ``data-*`` attributes, so tests (and people with the browser's inspector) find the
missed tick or a handoff by what it is, and every mark has a ``<title>`` tooltip with its exact
counts.

Pure: ``render_html(timeline)`` is a function of its argument.
"""

from __future__ import annotations

import html
from collections.abc import Iterator

from baton.gateway.core.timeline import (
    Cell,
    FailoverOutcome,
    FailoverSpan,
    Figure,
    HandoffSpan,
    Kind,
    RunSpan,
    Timeline,
    time_of_day,
)

WIDTH = 1200
LEFT = 110  # slot labels
LABEL_FIT_CHARS = 13  # longer row labels (a book's "strategy slot") are squeezed to fit
LABEL_FIT_W = LEFT - 10
RIGHT = 20
PLOT_W = WIDTH - LEFT - RIGHT
VERSION_H = 18
LABEL_H = 34  # two staggered lines of handoff / failover / run labels
LABEL_CHAR_W = 6.5  # about, for a bold 11 px label: where one would run past the page's edge
AXIS_H = 26
# Past this many cells, runs of healthy cells in a row are drawn as one rectangle: the page's
# size then grows with the incidents, not with the ticks (a healthy day is one bar per slot).
MAX_DRAWN_CELLS = 20_000
# A missed or errored cell is never drawn narrower than this: one bad tick among thousands
# must stay visible.
MIN_BAD_W = 3.0

COLOURS = {
    Kind.EXECUTED: "#3aa365",
    Kind.NOT_LIVE: "#a9c4b4",
    Kind.ERROR: "#f29e1f",
    Kind.MISSED: "#d7263d",
}
STALE = "#7b3fe4"
HANDOFF = "#2b6cb0"
# A failover is told from a handoff by its colours, its dashed band and the triangle at the death.
FAILOVER = {
    FailoverOutcome.EXACT: "#0f766e",
    FailoverOutcome.INEXACT: "#b45309",
    FailoverOutcome.FAILED: "#d7263d",
}
DOWN = "#9aa0a6"
# Versions are told apart by colour; more versions than colours reuse them in order.
VERSION_COLOURS = ("#cfe3f7", "#f8dcc4", "#dcd3f2", "#d3efd9", "#f5d0dc", "#e9e4c8")
# Axis steps (ms): the first that puts at most ~10 labels on the axis.
AXIS_STEPS_MS = tuple(
    s * 1000
    for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
)

CSS = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px;
  color: #1d2330; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; }
.sub { color: #5b6372; margin: 0 0 16px; }
.figures { display: flex; flex-wrap: wrap; gap: 8px; margin-bottom: 16px; }
.figure { border: 1px solid #d8dce3; border-radius: 6px; padding: 6px 12px; min-width: 96px; }
.figure .value { font-size: 20px; font-weight: 600; }
.figure .label { font-size: 12px; color: #5b6372; }
.figure.bad { border-color: #d7263d; background: #fdecee; }
.figure.bad .value { color: #b3172b; }
.legend { display: flex; flex-wrap: wrap; gap: 16px; margin: 8px 0; font-size: 12px; }
.legend span::before { content: ""; display: inline-block; width: 12px; height: 12px;
  margin-right: 4px; vertical-align: -2px; background: var(--c); border-radius: 2px; }
.plot { overflow-x: auto; }
svg text { font: 11px system-ui, sans-serif; fill: #1d2330; }
svg .axis text { fill: #5b6372; }
/* Labels drawn over lines and bands stay readable: a white halo behind each glyph. */
svg .handoff text, svg .failover text, svg .run text { paint-order: stroke; stroke: #fff;
  stroke-width: 3px; }
table { border-collapse: collapse; margin-top: 16px; font-size: 13px; }
caption { text-align: left; font-weight: 600; padding: 0 10px 4px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e3e6eb; text-align: right; }
th:first-child, td:first-child, th.l, td.l { text-align: left; }
.bad-text { color: #b3172b; font-weight: 600; }
"""


class _Scale:
    def __init__(self, start_ms: int, end_ms: int) -> None:
        self.start = start_ms
        self.span = max(end_ms - start_ms, 1)

    def x(self, t_ms: float) -> float:
        return LEFT + (t_ms - self.start) / self.span * PLOT_W


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _f(v: float) -> str:
    return f"{v:.1f}"


def render_html(t: Timeline) -> str:
    """The whole page."""
    body = "\n".join(
        [
            f"<h1>{_e(t.title)}</h1>",
            f'<p class="sub">{_e(_subtitle(t))}</p>',
            _figures(t.headline),
            _legend(t),
            f'<div class="plot">{_svg(t)}</div>',
            _handoff_table(t.handoffs),
            _failover_table(t.failovers),
        ]
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        # Nothing may be fetched: a report that phones home (or breaks offline) is not one.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">"
        f"<title>{_e(t.title)}</title><style>{CSS}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def _subtitle(t: Timeline) -> str:
    cells = (
        f"one mark per tick ({t.cadence_ms} ms cadence)"
        if t.bucket_ms is None
        else f"one mark per {t.bucket_ms / 1000:g} s bucket of ticks (exact counts in each "
        "mark's tooltip)"
    )
    return (
        f"{time_of_day(t.start_ms)} .. {time_of_day(t.end_ms)} UTC, {len(t.slots)} slots, "
        f"{cells}; hover a mark for its counts"
    )


def _figures(figures: tuple[Figure, ...]) -> str:
    cards = [
        f'<div class="figure{" bad" if f.bad else ""}" data-figure="{_e(f.label)}">'
        f'<div class="value">{_e(f.value)}</div><div class="label">{_e(f.label)}</div></div>'
        for f in figures
    ]
    return f'<div class="figures">{"".join(cards)}</div>'


def _legend(t: Timeline) -> str:
    items = [
        (COLOURS[Kind.EXECUTED], "executed"),
        (COLOURS[Kind.NOT_LIVE], "executed on data that were not live (stale)"),
        (COLOURS[Kind.ERROR], "error (answered with an error)"),
        (COLOURS[Kind.MISSED], "missed (timeout, no active, gateway late, undelivered)"),
        (STALE, "stale answer (late or fenced, dropped)"),
        (HANDOFF, "handoff (line: the flip)"),
        (DOWN, "no gateway running"),
    ]
    if t.failovers:
        # Striped swatches, as the bands are.
        items += [
            (
                f"repeating-linear-gradient(45deg, {FAILOVER[o]} 0 2px, #fff 2px 4px)",
                label,
            )
            for o, label in (
                (
                    FailoverOutcome.EXACT,
                    "failover, state exact (\u25bc the death, band to the take-over)",
                ),
                (FailoverOutcome.INEXACT, "failover, state diverged / unverified / empty"),
                (FailoverOutcome.FAILED, "failover failed or not taken over"),
            )
        ]
    spans = [f'<span style="--c:{c}">{_e(label)}</span>' for c, label in items]
    return f'<div class="legend">{"".join(spans)}</div>'


def _row_h(slots: int) -> int:
    return 16 if slots <= 100 else 6 if slots <= 1000 else 2


def _svg(t: Timeline) -> str:
    scale = _Scale(t.start_ms, t.end_ms)
    row_h = _row_h(len(t.slots))
    rows_top = VERSION_H + LABEL_H
    height = rows_top + row_h * len(t.slots) + AXIS_H
    rows_bottom = rows_top + row_h * len(t.slots)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="presence timeline">'
    ]
    parts += _versions(t, scale)
    parts += _runs(t, scale, rows_top, rows_bottom)
    parts += _slot_rows(t, scale, rows_top, row_h)
    lines = _label_lines(t)
    parts += _handoffs(t, scale, rows_bottom, lines)
    parts += _failovers(t, scale, rows_top, row_h, lines)
    parts += _axis(t, scale, rows_bottom)
    parts.append("</svg>")
    return "\n".join(parts)


def _versions(t: Timeline, scale: _Scale) -> Iterator[str]:
    yield f'<text x="{LEFT - 6}" y="{VERSION_H - 5}" text-anchor="end">version</text>'
    colours: dict[str, str] = {}
    for band in t.versions:
        colour = colours.setdefault(
            band.version, VERSION_COLOURS[len(colours) % len(VERSION_COLOURS)]
        )
        x0, x1 = scale.x(band.start_ms), scale.x(band.end_ms)
        yield (
            f'<g class="version" data-version="{_e(band.version)}">'
            f'<rect x="{_f(x0)}" y="1" width="{_f(max(x1 - x0, 1))}" height="{VERSION_H - 2}" '
            f'fill="{colour}" stroke="#8a94a6" stroke-width="0.5">'
            f"<title>{_e(band.version)}: {time_of_day(band.start_ms)} .. "
            f"{time_of_day(band.end_ms)}</title></rect>"
            f'<text x="{_f(x0 + 4)}" y="{VERSION_H - 5}">{_e(band.version)}</text></g>'
        )


def _change_note(run: RunSpan) -> str:
    if not run.change:
        return ""
    return f"; took the lead by a {run.change}, {run.change_missed} evaluations missed by it"


def _runs(t: Timeline, scale: _Scale, top: int, bottom: int) -> Iterator[str]:
    """Each gateway run's start as a line across every slot; the time between two runs (no
    gateway: nobody scheduled anything) as a grey band."""
    previous_last: int | None = None
    for run in t.runs:
        if run.first_ms is None:
            continue
        x = scale.x(run.first_ms)
        down = ""
        if previous_last is not None:
            gap_start = previous_last + run.cadence_ms
            if run.first_ms > gap_start:
                x0 = scale.x(gap_start)
                seconds = (run.first_ms - gap_start) / 1000
                down = (
                    f'<rect class="down" x="{_f(x0)}" y="{top}" width="{_f(max(x - x0, 1))}" '
                    f'height="{bottom - top}" fill="{DOWN}" fill-opacity="0.45">'
                    f"<title>no gateway running for {seconds:.1f} s: "
                    f"ticks not scheduled</title></rect>"
                )
        yield (
            f'<g class="run" data-run="{run.number}">{down}'
            f'<line x1="{_f(x)}" x2="{_f(x)}" y1="{VERSION_H}" y2="{bottom}" stroke="#444" '
            f'stroke-width="1" stroke-dasharray="2,3"/>'
            f'<text x="{_f(x + 3)}" y="{VERSION_H + LABEL_H - 4}">{run.label}'
            f"</text><title>{run.label}: started {time_of_day(run.started_ms)}, "
            f"first tick {time_of_day(run.first_ms)}{_change_note(run)}</title></g>"
        )
        previous_last = run.last_ms


def _slot_rows(t: Timeline, scale: _Scale, top: int, row_h: int) -> Iterator[str]:
    by_slot: dict[str, list[Cell]] = {s: [] for s in t.slots}
    for cell in t.cells:
        by_slot.setdefault(cell.slot_id, []).append(cell)
    merge = len(t.cells) > MAX_DRAWN_CELLS
    for i, slot in enumerate(t.slots):
        y = top + i * row_h
        cells = sorted(by_slot[slot], key=lambda c: c.start_ms)
        yield f'<g class="slot" data-slot="{_e(slot)}">'
        if row_h >= 10:
            # A book's rows are "strategy slot": a label longer than the margin is squeezed
            # into it rather than cut off at the page's edge.
            fit = (
                f' textLength="{LABEL_FIT_W}" lengthAdjust="spacingAndGlyphs"'
                if len(slot) > LABEL_FIT_CHARS
                else ""
            )
            yield (
                f'<text x="{LEFT - 6}" y="{y + row_h - 4}" text-anchor="end"{fit}>{_e(slot)}</text>'
            )
        # Healthy cells first, bad ones on top: a missed tick is never hidden by a neighbour.
        good = [c for c in cells if c.kind is Kind.EXECUTED]
        bad = [c for c in cells if c.kind is not Kind.EXECUTED]
        yield from _good_cells(good, scale, y, row_h, merge)
        for cell in bad:
            yield _cell(cell, scale, y, row_h, min_w=MIN_BAD_W)
        for cell in cells:
            if cell.stale:
                yield _stale(cell, scale, y, row_h)
        yield "</g>"


def _good_cells(cells: list[Cell], scale: _Scale, y: int, row_h: int, merge: bool) -> Iterator[str]:
    if not merge:
        for cell in cells:
            yield _cell(cell, scale, y, row_h, min_w=0.5)
        return
    for run in _contiguous(cells):
        first, last = run[0], run[-1]
        executed = sum(c.executed for c in run)
        x0, x1 = scale.x(first.start_ms), scale.x(last.end_ms)
        yield (
            f'<rect class="cell executed" data-outcome="executed" data-evaluations='
            f'"{executed}" x="{_f(x0)}" y="{y + 1}" width="{_f(max(x1 - x0, 0.5))}" '
            f'height="{row_h - 2}" fill="{COLOURS[Kind.EXECUTED]}">'
            f"<title>{_e(first.slot_id)} {time_of_day(first.start_ms)} .. "
            f"{time_of_day(last.end_ms)}: {executed} executed</title></rect>"
        )


def _contiguous(cells: list[Cell]) -> Iterator[list[Cell]]:
    """Runs of adjacent cells (each ends where the next starts), in time order."""
    run: list[Cell] = []
    for cell in cells:
        if run and cell.start_ms != run[-1].end_ms:
            yield run
            run = []
        run.append(cell)
    if run:
        yield run


def _cell(cell: Cell, scale: _Scale, y: int, row_h: int, *, min_w: float) -> str:
    x0, x1 = scale.x(cell.start_ms), scale.x(cell.end_ms)
    # A 1 px gap between wide tick marks shows the ticks; narrow ones touch.
    width = x1 - x0 - (1 if x1 - x0 > 4 else 0)
    if width < min_w:
        x0 -= (min_w - width) / 2
        width = min_w
    kind = cell.kind
    # The ledger's outcome for a tick; the kind for a bucket (it may hold several outcomes).
    outcome = cell.missed[0][0] if cell.seq is not None and kind is Kind.MISSED else kind.value
    seq = "" if cell.seq is None else f' data-seq="{cell.seq}"'
    return (
        f'<rect class="cell {kind.value}" data-outcome="{_e(outcome)}"{seq} '
        f'data-evaluations="{cell.scheduled}" data-missed="{cell.missed_total}" '
        f'data-errors="{cell.errors}" x="{_f(x0)}" y="{y + 1}" width="{_f(width)}" '
        f'height="{row_h - 2}" fill="{COLOURS[kind]}"><title>{_e(_cell_title(cell))}</title>'
        "</rect>"
    )


def _cell_title(cell: Cell) -> str:
    when = time_of_day(cell.start_ms)
    if cell.seq is not None:
        head = f"{cell.slot_id} seq {cell.seq} at {when}"
    else:
        head = f"{cell.slot_id} {when} .. {time_of_day(cell.end_ms)}"
    counts = [f"{cell.executed} executed"]
    if cell.not_live:
        counts.append(f"{cell.not_live} of them on data that were not live")
    if cell.errors:
        counts.append(f"{cell.errors} error")
    counts += [f"{n} missed ({reason})" for reason, n in cell.missed]
    if cell.stale:
        counts.append(f"{cell.stale} stale answer(s) dropped")
    return f"{head}: {', '.join(counts)}"


def _stale(cell: Cell, scale: _Scale, y: int, row_h: int) -> str:
    # At the top of the cell, so the cell's centre (and its tooltip) stays the cell's.
    x = (scale.x(cell.start_ms) + scale.x(cell.end_ms)) / 2
    r = max(min(row_h / 5, 3), 1)
    return (
        f'<circle class="stale" data-stale="{cell.stale}" cx="{_f(x)}" cy="{_f(y + 1 + r)}" '
        f'r="{_f(r)}" fill="{STALE}" stroke="#fff" stroke-width="1">'
        f"<title>{_e(cell.slot_id)} {time_of_day(cell.start_ms)}: {cell.stale} stale "
        f"answer(s) dropped (late or fenced)</title></circle>"
    )


def _label_at(x: float, label: str) -> str:
    """A label's x: right of its mark, or left of it (right-aligned) when it would run past
    the page's edge (a kill or a handoff near the end of the ledger)."""
    if x + 3 + len(label) * LABEL_CHAR_W <= WIDTH:
        return f'x="{_f(x + 3)}"'
    return f'x="{_f(x - 3)}" text-anchor="end"'


def _label_lines(t: Timeline) -> dict[tuple[str, int], int]:
    """The y of each handoff's and failover's label, keyed ("handoff"|"failover", number):
    in time order, alternately on the upper and the lower line, so two close ones do not
    overwrite each other."""
    starts = [(h.started_ms, "handoff", h.number) for h in t.handoffs]
    starts += [(f.died_ms, "failover", f.number) for f in t.failovers]
    return {
        (what, number): VERSION_H + (12 if i % 2 == 0 else 25)
        for i, (_, what, number) in enumerate(sorted(starts))
    }


def _handoffs(
    t: Timeline, scale: _Scale, bottom: int, lines: dict[tuple[str, int], int]
) -> Iterator[str]:
    for h in t.handoffs:
        end = h.finished_ms if h.finished_ms is not None else t.end_ms
        x0, x1 = scale.x(h.started_ms), scale.x(end)
        label_y = lines[("handoff", h.number)]
        ok = h.result == "completed"
        colour = HANDOFF if ok else COLOURS[Kind.MISSED]
        flip = ""
        if h.flipped_ms is not None:
            xf = scale.x(h.flipped_ms)
            flip = (
                f'<line class="flip" x1="{_f(xf)}" x2="{_f(xf)}" y1="{VERSION_H}" y2="{bottom}" '
                f'stroke="{colour}" stroke-width="2" pointer-events="none"/>'
            )
        yield (
            f'<g class="handoff" id="handoff-{h.number}" data-handoff-id="{_e(h.handoff_id)}" '
            f'data-result="{_e(h.result)}" data-missed="{h.missed}" '
            f'data-pause-ms="{"" if h.pause_ms is None else f"{h.pause_ms:.3f}"}">'
            f'<rect x="{_f(x0)}" y="{VERSION_H}" width="{_f(max(x1 - x0, 2))}" '
            f'height="{bottom - VERSION_H}" fill="{colour}" fill-opacity="0.12" '
            # The marks under it keep their tooltips.
            f'stroke="{colour}" stroke-opacity="0.6" pointer-events="none"/>{flip}'
            f'<text {_label_at(x0, _handoff_label(h))} y="{label_y}" '
            f'style="fill:{colour};font-weight:600">'
            f"{_e(_handoff_label(h))}</text><title>{_e(_handoff_title(h))}</title></g>"
        )


def _pause(h: HandoffSpan) -> str:
    return "-" if h.pause_ms is None else f"{h.pause_ms:.2f} ms"


def _handoff_label(h: HandoffSpan) -> str:
    arrow = f"{h.from_version or '(none)'}\u2192{h.to_version}"
    tail = "" if h.result == "completed" else f" {h.result}"
    return f"#{h.number} {arrow}{tail} pause {_pause(h)}, missed {h.missed}"


def _handoff_title(h: HandoffSpan) -> str:
    end = "-" if h.finished_ms is None else time_of_day(h.finished_ms)
    flip = "no flip" if h.flipped_ms is None else f"flip {time_of_day(h.flipped_ms)}"
    return (
        f"handoff #{h.number} {h.handoff_id}: {h.from_version} -> {h.to_version}, {h.result}; "
        f"{time_of_day(h.started_ms)} .. {end}, {flip}, pause {_pause(h)}, missed {h.missed}"
    )


def _row_spans(t: Timeline, f: FailoverSpan, top: int, row_h: int) -> list[tuple[int, int]]:
    """The (top, bottom) of each run of adjacent rows a failover covers: every row for one
    strategy, its strategy's rows in a book (not necessarily adjacent)."""
    mine = None if f.rows is None else set(f.rows)
    spans: list[tuple[int, int]] = []
    for i, row in enumerate(t.slots):
        if mine is not None and row not in mine:
            continue
        y0, y1 = top + i * row_h, top + (i + 1) * row_h
        if spans and spans[-1][1] == y0:
            spans[-1] = (spans[-1][0], y1)
        else:
            spans.append((y0, y1))
    return spans


def _failovers(
    t: Timeline, scale: _Scale, top: int, row_h: int, lines: dict[tuple[str, int], int]
) -> Iterator[str]:
    """Each failover: a triangle and a line at the death, a hatched band to the take-over (to
    the end of the timeline while nobody has taken over) across its strategy's rows."""
    if t.failovers:
        # Stripes rather than a tint: the band reads as a failover's over any cell colour.
        yield (
            "<defs>"
            + "".join(
                f'<pattern id="hatch-{o.value}" width="6" height="6" patternUnits="userSpaceOnUse" '
                f'patternTransform="rotate(45)"><rect width="6" height="6" fill="{c}" '
                f'fill-opacity="0.15"/><line x1="1" y1="0" x2="1" y2="6" stroke="{c}" '
                'stroke-width="2" stroke-opacity="0.75"/></pattern>'
                for o, c in FAILOVER.items()
            )
            + "</defs>"
        )
    for f in t.failovers:
        colour = FAILOVER[f.outcome]
        end = f.took_over_ms if f.took_over_ms is not None else t.end_ms
        x0, x1 = scale.x(f.died_ms), scale.x(max(end, f.died_ms))
        marks = [
            f'<polygon class="death" points="{_f(x0 - 5)},{top - 8} {_f(x0 + 5)},{top - 8} '
            f'{_f(x0)},{top - 1}" fill="{colour}"/>'
        ]
        for y0, y1 in _row_spans(t, f, top, row_h):
            marks.append(
                f'<rect class="takeover" x="{_f(x0)}" y="{y0}" width="{_f(max(x1 - x0, 2))}" '
                f'height="{y1 - y0}" fill="url(#hatch-{f.outcome.value})" stroke="{colour}" '
                f'stroke-dasharray="4,2" pointer-events="none"/>'
                f'<line class="died" x1="{_f(x0)}" x2="{_f(x0)}" y1="{y0}" y2="{y1}" '
                f'stroke="{colour}" stroke-width="2" pointer-events="none"/>'
            )
        takeover = "" if f.takeover_ms is None else str(f.takeover_ms)
        yield (
            f'<g class="failover {f.outcome.value}" id="failover-{f.number}" '
            f'data-failover-id="{_e(f.failover_id)}" data-strategy="{_e(f.strategy)}" '
            f'data-mode="{_e(f.mode)}" data-state="{_e(f.state)}" data-result="{_e(f.result)}" '
            f'data-missed="{f.missed}" data-takeover-ms="{takeover}">{"".join(marks)}'
            f'<text {_label_at(x0, _failover_label(f))} y="{lines[("failover", f.number)]}" '
            f'style="fill:{colour};font-weight:600">{_e(_failover_label(f))}</text>'
            f"<title>{_e(_failover_title(f))}</title></g>"
        )


def _failover_label(f: FailoverSpan) -> str:
    """Short: ``failover #2 checkpoint 911 ms, missed 16`` (the rest is in the tooltip)."""
    who = "" if f.rows is None else f" {f.strategy}"
    took = "not taken over" if f.takeover_ms is None else f"{f.takeover_ms} ms"
    tail = [f"missed {f.missed}"] if f.missed else []
    if f.result == "completed" and f.state != "exact":
        tail.append(f"state {f.state}")
    elif f.result not in ("completed", "running"):
        tail.append(f.result)
    return f"failover #{f.number}{who} {f.mode} {took}" + "".join(f", {x}" for x in tail)


def _ms_of_day(t_ms: int) -> str:
    return f"{time_of_day(t_ms)}.{t_ms % 1000:03d}"


def _failover_title(f: FailoverSpan) -> str:
    successor = f"{f.to_instance} ({f.to_version})" if f.to_instance else "nobody yet"
    took = (
        "not taken over"
        if f.took_over_ms is None
        else f"took over {_ms_of_day(f.took_over_ms)} (take-over {f.takeover_ms} ms)"
    )
    checkpoint = f", checkpoint {f.checkpoint_id}" if f.checkpoint_id else ""
    message = f": {f.message}" if f.message else ""
    return (
        f"failover #{f.number} {f.failover_id} ({f.strategy}, standby {f.mode}): "
        f"{f.from_instance} ({f.from_version}) died {_ms_of_day(f.died_ms)} -> {successor}; "
        f"{took}, missed {f.missed}, state {f.state}, {f.result}{checkpoint}{message}"
    )


def _axis(t: Timeline, scale: _Scale, bottom: int) -> Iterator[str]:
    span = t.end_ms - t.start_ms
    step = next((s for s in AXIS_STEPS_MS if span / s <= 10), AXIS_STEPS_MS[-1])
    yield '<g class="axis">'
    yield (
        f'<line x1="{LEFT}" x2="{LEFT + PLOT_W}" y1="{bottom + 1}" y2="{bottom + 1}" '
        'stroke="#8a94a6"/>'
    )
    first = -(-t.start_ms // step) * step
    for tick in range(first, t.end_ms + 1, step):
        x = scale.x(tick)
        # A label at the plot's right edge is right-aligned, so it is not cut off.
        anchor = "end" if x > WIDTH - 30 else "middle"
        yield (
            f'<line x1="{_f(x)}" x2="{_f(x)}" y1="{bottom + 1}" y2="{bottom + 5}" '
            'stroke="#8a94a6"/>'
            f'<text x="{_f(x)}" y="{bottom + 17}" text-anchor="{anchor}">{time_of_day(tick)}'
            "</text>"
        )
    yield "</g>"


def _handoff_table(handoffs: tuple[HandoffSpan, ...]) -> str:
    if not handoffs:
        return "<p>No handoffs in this ledger.</p>"
    rows = []
    for h in handoffs:
        bad = h.result != "completed" or h.missed
        result = f'<span class="bad-text">{_e(h.result)}</span>' if bad else _e(h.result)
        rows.append(
            f'<tr data-handoff-id="{_e(h.handoff_id)}"><td>#{h.number}</td>'
            f'<td class="l">{_e(h.from_version or "(none)")} \u2192 {_e(h.to_version)}</td>'
            f'<td class="l">{result}</td><td>{time_of_day(h.started_ms)}</td>'
            f"<td>{_e(_pause(h))}</td><td>{h.missed}</td></tr>"
        )
    head = (
        '<tr><th>#</th><th class="l">handoff</th><th class="l">result</th><th>started (UTC)</th>'
        "<th>pause</th><th>missed</th></tr>"
    )
    return f'<table class="handoffs"><caption>handoffs</caption>{head}{"".join(rows)}</table>'


def _failover_table(failovers: tuple[FailoverSpan, ...]) -> str:
    if not failovers:
        return "<p>No failovers in this ledger.</p>"

    def flag(text: str, bad: bool) -> str:
        return f'<span class="bad-text">{_e(text)}</span>' if bad else _e(text)

    rows = []
    for f in failovers:
        took = "-" if f.takeover_ms is None else f"{f.takeover_ms} ms"
        successor = f.to_instance or "(nobody)"
        rows.append(
            f'<tr data-failover-id="{_e(f.failover_id)}"><td>#{f.number}</td>'
            f'<td class="l">{_e(f.strategy)}</td><td class="l">{_e(f.mode)}</td>'
            f'<td class="l">{_e(f.from_instance)} \u2192 {_e(successor)}</td>'
            f'<td class="l">{flag(f.result, f.result != "completed")}</td>'
            f'<td class="l">{flag(f.state, f.state != "exact")}</td>'
            f"<td>{_ms_of_day(f.died_ms)}</td><td>{_e(took)}</td>"
            f"<td>{flag(str(f.missed), f.missed > 0)}</td>"
            f'<td class="l">{_e(f.message)}</td></tr>'
        )
    head = (
        '<tr><th>#</th><th class="l">strategy</th><th class="l">mode</th>'
        '<th class="l">failover</th><th class="l">result</th><th class="l">state</th>'
        '<th>died (UTC)</th><th>take-over</th><th>missed</th><th class="l">note</th></tr>'
    )
    caption = "<caption>failovers (an ACTIVE died; docs/standby.md)</caption>"
    return f'<table class="failovers">{caption}{head}{"".join(rows)}</table>'
