"""``baton presence --html``: the timeline of a real demo ledger, looked at in a real browser.

``baton demo --workdir`` runs (simulator, gateway, strategy hosts, two live handoffs); while it
runs, the ACTIVE strategy host is frozen (SIGSTOP) until the ledger records a missed tick, then
thawed: its answers arrive late and are dropped (stale). The page the demo wrote is opened in
headless Chromium (tests/browser.py): no console error, nothing fetched, and the missed tick and
each handoff of the ledger are on it, found by element and checked against the ledger. The
screenshot is kept in build/artifacts/ for people to look at. The same for a demo whose ACTIVE
is killed (``--kill-active``, hot standby and checkpoint): each failover of the ledger drawn at
its death, across every slot row, to its take-over.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import struct
import sys
from pathlib import Path
from typing import Any

import pytest

from baton.cli import main
from baton.gateway.core.timeline_html import LEFT, PLOT_W
from baton.gateway.report import presence_report
from baton.gateway.timeline import read_timeline
from tests.browser import chromium
from tests.procs import SLOTS, count, query, wait_until

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "artifacts"
# Two handoffs, at ~12 s and ~24 s of the clock; the miss is injected within its first ~5 s,
# so the frozen host is never the blue of a handoff.
DEMO_S = 36
DEMO_TIMEOUT_S = 150


def child_pid(parent: int, pod_name: str) -> int:
    """The pid of ``parent``'s child started with ``--pod-name <pod_name>``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # it exited while we looked
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == parent and pod_name.encode() in argv:
            return int(entry.name)
    raise AssertionError(f"no child of {parent} runs --pod-name {pod_name}")


def read(path: Path) -> str:
    return path.read_text()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def run_demo_with_a_miss(workdir: Path, err_path: Path) -> str:
    """Run the demo, freeze its first strategy host for a tick, return its stderr."""
    ledger = workdir / "ledger.sqlite"
    baton = Path(sys.executable).parent / "baton"
    with err_path.open("w") as err:
        proc = await asyncio.create_subprocess_exec(
            str(baton),
            *("demo", "--handoffs", "2", "--duration", str(DEMO_S), "--cadence-s", "1"),
            *("--workdir", str(workdir)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err,
        )
    try:
        await wait_until(
            lambda: (
                count(ledger, "SELECT count(*) FROM evaluations WHERE outcome = 'executed'")
                >= 2 * SLOTS
            ),
            timeout_s=60,
            what="two ticks executed by the demo's v1",
        )
        blue = child_pid(proc.pid, "momentum-v1")
        os.kill(blue, signal.SIGSTOP)
        try:
            await wait_until(
                lambda: (
                    count(ledger, "SELECT count(*) FROM evaluations WHERE outcome = 'timeout'") > 0
                ),
                timeout_s=15,
                what="a tick the frozen strategy host missed",
            )
        finally:
            os.kill(blue, signal.SIGCONT)
        async with asyncio.timeout(DEMO_TIMEOUT_S):
            code = await proc.wait()
        assert code == 0, read(err_path)
    finally:
        if proc.returncode is None:  # SIGINT: the demo stops the processes it started
            proc.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(30):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
    return read(err_path)


# What the test reads off the page: every drawn mark of interest, with its place on screen.
PAGE_FACTS = """(() => {
  const box = (el) => { const r = el.getBoundingClientRect();
    return {x: r.x, y: r.y, w: r.width, h: r.height}; };
  const top = (el) => { const r = el.getBoundingClientRect();
    return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2) === el; };
  return {
    svg: box(document.querySelector('svg')),
    slots: [...document.querySelectorAll('g.slot')].map((g) => g.dataset.slot),
    cells: document.querySelectorAll('rect.cell').length,
    missed: [...document.querySelectorAll('rect.cell.missed')].map((el) => ({
      slot: el.closest('g.slot').dataset.slot, seq: Number(el.dataset.seq),
      outcome: el.dataset.outcome, box: box(el), onTop: top(el),
      title: el.querySelector('title').textContent})),
    stale: document.querySelectorAll('circle.stale').length,
    handoffs: [...document.querySelectorAll('g.handoff')].map((g) => ({
      id: g.dataset.handoffId, result: g.dataset.result, missed: Number(g.dataset.missed),
      box: box(g.querySelector('rect')), flip: g.querySelector('line.flip') !== null,
      label: g.querySelector('text').textContent})),
    versions: [...document.querySelectorAll('g.version')].map((g) => g.dataset.version),
    figures: Object.fromEntries([...document.querySelectorAll('.figure')].map(
      (f) => [f.dataset.figure, f.querySelector('.value').textContent])),
  };
})()"""


async def test_the_timeline_of_a_demo_shows_its_miss_and_its_handoffs(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    stderr = await run_demo_with_a_miss(workdir, tmp_path / "demo.err")
    ledger = workdir / "ledger.sqlite"

    # The demo says where its page is, and `baton presence --html` draws the same one.
    found = re.search(r"^demo: presence timeline: (.+)$", stderr, re.M)
    assert found, stderr
    page = Path(found.group(1))
    assert page == (workdir / "presence.html").resolve()
    again = tmp_path / "again.html"
    assert main(["presence", "--ledger", str(ledger), "--html", str(again), "--json"]) == 0
    assert read(again) == read(page)

    report = presence_report(ledger)
    missed_rows = query(
        ledger,
        "SELECT slot_id, seq, outcome FROM evaluations "
        "WHERE outcome NOT IN ('executed', 'error') ORDER BY seq, slot_id",
    )
    assert missed_rows, "the frozen host missed at least one tick"
    assert report.missed == len(missed_rows)
    assert [h.result for h in report.handoffs] == ["completed", "completed"], report.handoffs

    async with chromium() as browser:
        load = await browser.open(page.as_uri())
        facts: dict[str, Any] = await browser.evaluate(PAGE_FACTS)
        shot = await browser.screenshot(tmp_path / "presence-timeline.png")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "presence-timeline.png")
    shutil.copy(page, ARTIFACTS / "presence-timeline.html")

    assert load.errors == [], load.errors
    assert load.requests == [page.as_uri()], "the page fetched something"

    # One row per slot of the ledger, every evaluation drawn (one mark per tick: small ledger).
    assert facts["slots"] == [s.slot_id for s in report.per_slot]
    assert facts["cells"] == report.scheduled
    svg = facts["svg"]

    # Each missed evaluation is one red mark in its slot's row, at its seq, visible on top.
    drawn = sorted((m["seq"], m["slot"], m["outcome"]) for m in facts["missed"])
    assert drawn == sorted((seq, slot, outcome) for slot, seq, outcome in missed_rows)
    for m in facts["missed"]:
        assert m["onTop"], f"missed {m['slot']} seq {m['seq']} is hidden"
        assert m["box"]["w"] >= 3, m
        assert m["box"]["h"] >= 10, m
        assert svg["x"] <= m["box"]["x"] < svg["x"] + svg["w"], m
        assert f"seq {m['seq']}" in m["title"], m["title"]
        assert "missed (timeout)" in m["title"], m["title"]
    late = count(ledger, "SELECT count(*) FROM dropped_decisions WHERE reason = 'late'")
    assert (facts["stale"] > 0) == (late > 0)

    # Each handoff of the ledger, in order, drawn across every slot with its flip and pause.
    assert [h["id"] for h in facts["handoffs"]] == [h.handoff_id for h in report.handoffs]
    for drawn_h, h in zip(facts["handoffs"], report.handoffs, strict=True):
        assert drawn_h["result"] == h.result
        assert drawn_h["flip"]
        assert drawn_h["missed"] == h.missed
        assert f"{h.from_version}\u2192{h.to_version}" in drawn_h["label"]
        assert h.pause_ms is not None
        assert f"pause {h.pause_ms:.2f} ms" in drawn_h["label"]
        assert drawn_h["box"]["w"] >= 2
        assert drawn_h["box"]["y"] + drawn_h["box"]["h"] >= svg["y"] + svg["h"] - 40, (
            "a handoff spans every slot row"
        )
    assert facts["versions"] == ["v1", "v2", "v1"]

    # The headline numbers are the report's.
    figures = facts["figures"]
    assert figures["scheduled"] == f"{report.scheduled:,}"
    (missed_label,) = [k for k in figures if k.startswith("missed (")]
    assert figures[missed_label] == str(report.missed)
    assert figures["handoffs completed / failed"] == "2 / 0"

    width, height = png_size(shot)
    assert width >= 1200, width
    assert height >= svg["y"] + svg["h"], height


async def test_the_browser_check_sees_console_errors_and_fetches(tmp_path: Path) -> None:
    """The observer above can fail: a page with a script error and a remote image is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><p>x</p><script>console.error('boom'); null.x;</script>"
        '<img src="http://127.0.0.1:9/nothing.png">'
    )
    async with chromium() as browser:
        load = await browser.open(bad.as_uri())
        await wait_until(lambda: len(load.errors) >= 3, timeout_s=10, what="three errors")
    assert any("boom" in e for e in load.errors), load.errors
    assert any(e.startswith("uncaught: TypeError") for e in load.errors), load.errors
    assert "http://127.0.0.1:9/nothing.png" in load.requests


# Failovers: two kills, spread over the run by the demo itself.
KILL_DEMO_S = 24

FAILOVER_FACTS = """(() => {
  const box = (el) => { const r = el.getBoundingClientRect();
    return {x: r.x, y: r.y, w: r.width, h: r.height}; };
  const rows = [...document.querySelectorAll('g.slot')].map((g) => box(g));
  return {
    svg: box(document.querySelector('svg')),
    rows: {top: Math.min(...rows.map((r) => r.y)), bottom: Math.max(...rows.map((r) => r.y + r.h))},
    failovers: [...document.querySelectorAll('g.failover')].map((g) => ({
      id: g.dataset.failoverId, mode: g.dataset.mode, state: g.dataset.state,
      result: g.dataset.result, missed: Number(g.dataset.missed),
      takeover: g.dataset.takeoverMs === '' ? null : Number(g.dataset.takeoverMs),
      outcome: [...g.classList].find((c) => c !== 'failover'),
      death: box(g.querySelector('polygon.death')),
      bands: [...g.querySelectorAll('rect.takeover')].map(box),
      label: g.querySelector('text').textContent,
      title: g.querySelector(':scope > title').textContent})),
    rows_of_table: [...document.querySelectorAll('table.failovers tr[data-failover-id]')].map(
      (tr) => tr.dataset.failoverId),
    figures: Object.fromEntries([...document.querySelectorAll('.figure')].map(
      (f) => [f.dataset.figure, f.querySelector('.value').textContent])),
  };
})()"""


async def run_demo_with_kills(workdir: Path, err_path: Path, mode: str) -> str:
    """``baton demo --standby MODE --kill-active 2``; its stderr."""
    baton = Path(sys.executable).parent / "baton"
    with err_path.open("w") as err:
        proc = await asyncio.create_subprocess_exec(
            str(baton),
            *("demo", "--standby", mode, "--kill-active", "2"),
            *("--duration", str(KILL_DEMO_S), "--cadence-s", "1", "--workdir", str(workdir)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err,
        )
    try:
        async with asyncio.timeout(DEMO_TIMEOUT_S):
            code = await proc.wait()
        assert code == 0, read(err_path)
    finally:
        if proc.returncode is None:  # SIGINT: the demo stops the processes it started
            proc.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(30):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
    return read(err_path)


@pytest.mark.parametrize("mode", ["hot", "checkpoint"])
async def test_the_timeline_of_a_demo_shows_each_failover(tmp_path: Path, mode: str) -> None:
    workdir = tmp_path / "demo"
    stderr = await run_demo_with_kills(workdir, tmp_path / "demo.err", mode)
    assert stderr.count("SIGKILLed the ACTIVE") == 2, stderr
    page = workdir / "presence.html"
    report, timeline = read_timeline(workdir / "ledger.sqlite")
    assert len(report.failovers) == 2, report.failovers
    assert all(f.result == "completed" and f.state == "exact" for f in report.failovers), (
        report.failovers
    )
    if mode == "hot":
        assert [f.missed for f in report.failovers] == [0, 0]

    async with chromium() as browser:
        load = await browser.open(page.as_uri())
        facts: dict[str, Any] = await browser.evaluate(FAILOVER_FACTS)
        shot = await browser.screenshot(tmp_path / f"presence-timeline-failovers-{mode}.png")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / f"presence-timeline-failovers-{mode}.png")
    assert load.errors == [], load.errors
    assert load.requests == [page.as_uri()], "the page fetched something"

    # Each failover of the ledger, in order, with its figures; its death where it happened
    # on the time axis, its band across every slot row to its take-over.
    svg = facts["svg"]
    span = timeline.end_ms - timeline.start_ms
    assert [f["id"] for f in facts["failovers"]] == [f.failover_id for f in report.failovers]
    for n, (drawn, f) in enumerate(zip(facts["failovers"], report.failovers, strict=True), 1):
        assert (drawn["mode"], drawn["state"], drawn["result"]) == (mode, f.state, f.result)
        assert (drawn["missed"], drawn["takeover"]) == (f.missed, f.takeover_ms)
        assert drawn["outcome"] == "exact"
        assert f.takeover_ms is not None
        assert drawn["label"].startswith(f"failover #{n} {mode} {f.takeover_ms} ms"), drawn
        assert f.failover_id in drawn["title"], drawn["title"]
        assert f"missed {f.missed}, state exact, completed" in drawn["title"], drawn["title"]
        x_died = svg["x"] + LEFT + (f.died_ms - timeline.start_ms) / span * PLOT_W
        assert abs(drawn["death"]["x"] + drawn["death"]["w"] / 2 - x_died) < 1.5, drawn
        (band,) = drawn["bands"]
        assert abs(band["x"] - x_died) < 1.5, band
        assert band["w"] >= max(f.takeover_ms / span * PLOT_W, 2) - 1.5, band
        assert band["y"] <= facts["rows"]["top"] + 1, "the band starts at the first slot row"
        assert band["y"] + band["h"] >= facts["rows"]["bottom"] - 1, "and ends at the last"
    assert facts["rows_of_table"] == [f.failover_id for f in report.failovers]

    figures = facts["figures"]
    assert figures["failovers exact / not"] == "2 / 0"
    assert figures["missed in failovers"] == str(sum(f.missed for f in report.failovers))
    width, height = png_size(shot)
    assert width >= 1200, width
    assert height >= svg["y"] + svg["h"], height
