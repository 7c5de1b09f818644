"""``python -m bench.scale book``: what a book of strategies on one gateway costs (real processes).

For each book size N (default 1, 4 and 16): a **book** point, one gateway with S slots (default
the reference 16: 8 made-up markets x 5m/15m; ``--slots``) and N strategy hosts, each running its
own strategy (``bench.strategies.M01`` .. ``M16``: MomentumV1 under the names ``m01`` ..
``m16``) on all S slots, so S x N evaluations per tick; and, in the same run right before it,
its **single** baseline: one gateway with S x N slots (made-up markets, as ``bench.scale
dispatch``) and one strategy host (MomentumV1), the same number of evaluations per tick in one
lane. Both at a 1 s cadence, simulator in real time. The single gateway's streams get one kline
update every 2 s (Binance's rate); the book's S streams one every 2/N s, so that both gateways
ingest the same messages per second (~S x N / 2) and the comparison is of the lanes alone, not
of a feed N times smaller (what a book of strategies on the same markets also saves).

Per point, after a warm-up (every strategy attached and scheduled ``--warm-ticks`` ticks, the
gateway's CPU settled), a window of ``--ticks`` ticks: from the ledger, evaluations scheduled and
executed (per second), misses, tick -> decision latency (``decided_ms - scheduled_ms``) and
dispatch lag (``dispatched_ms - scheduled_ms``), also per strategy; from ``/proc``, the CPU of the
gateway (its feed included) and of the strategy hosts per evaluation. The ratio book / single
of the p99 latency and of the gateway's CPU per evaluation is the cost of the book: the same
work, split in N lanes instead of one. The single-strategy knee (``bench.scale dispatch``, from
``bench/results/scale.json``) is printed beside it for scale.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from baton.common import ProcessFailed, Service
from baton.local import Processes
from bench.cli import MOMENTUM_V1
from bench.harness import MISSED, REPO_ROOT, BenchError, now_ms, wait_for
from bench.live import (
    TIMEFRAMES,
    Progress,
    fmt,
    ledger_rows,
    markets,
    max_scheduled_ms,
    measure_window,
    ms_quantile,
    outcome_counts,
    start_gateway,
    start_sim,
    start_strategy,
)
from bench.strategies import BOOK_SIZE, book_entrypoint

DEFAULT_STRATEGIES = (1, 4, 16)
# 16 evaluations a tick at the smallest point: 30 ticks give its p99 480 samples.
DEFAULT_TICKS = 30
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "scale-book.json"
KNEE_SOURCE = REPO_ROOT / "bench" / "results" / "scale.json"
CADENCE_S = 1.0
REFERENCE_SLOTS = 16  # 8 markets x 5m/15m
PUSH_INTERVAL_S = 2.0  # per stream, the single point's (Binance's rate)
EXECUTED = "executed"
LIVE_TIMEOUT_S = 300.0


def window_figures(rows: Sequence[tuple[Any, ...]], window_s: float) -> dict[str, Any]:
    """Figures of the evaluations ``(scheduled_ms, dispatched_ms, decided_ms, outcome,
    strategy, stale)`` of a window of ``window_s`` seconds.

    >>> w = window_figures([(0, 1, 10, "executed", "a", ""), (0, 2, 30, "executed", "b", ""),
    ...     (1000, 1001, None, "timeout", "a", "no_live")], 2.0)
    >>> w["evaluations"], w["ticks"], w["missed"], w["executed_per_s"], w["latency_ms_max"]
    (3, 2, 1, 1.0, 30.0)
    >>> w["stale"]
    1
    >>> w["per_strategy"]["a"]["missed"], w["per_strategy"]["b"]["latency_ms_p99"]
    (1, 30.0)
    """
    latency = [float(d - s) for s, _, d, o, *_ in rows if o == EXECUTED and d is not None]
    lag = [float(p - s) for s, p, *_ in rows if p is not None]
    outcomes = outcome_counts([r[3] for r in rows])
    by_strategy: dict[str, list[tuple[Any, ...]]] = {}
    for r in rows:
        by_strategy.setdefault(r[4], []).append(r)
    per_strategy = {}
    for name, mine in sorted(by_strategy.items()):
        lat = [float(d - s) for s, _, d, o, *_ in mine if o == EXECUTED and d is not None]
        per_strategy[name] = {
            "evaluations": len(mine),
            "executed": sum(1 for r in mine if r[3] == EXECUTED),
            "missed": sum(1 for r in mine if r[3] in MISSED),
            "latency_ms_p50": ms_quantile(lat, 50),
            "latency_ms_p99": ms_quantile(lat, 99),
            "latency_ms_max": max(lat) if lat else None,
        }
    executed = outcomes.get(EXECUTED, 0)
    return {
        "evaluations": len(rows),
        "ticks": len({r[0] for r in rows}),
        "executed": executed,
        "executed_per_s": round(executed / window_s, 1) if window_s > 0 else None,
        "missed": sum(n for o, n in outcomes.items() if o in MISSED),
        "outcomes": outcomes,
        # Evaluated without live market data (evaluations.stale): cheaper for the strategy.
        "stale": sum(1 for r in rows if r[5]),
        "latency_ms_p50": ms_quantile(latency, 50),
        "latency_ms_p99": ms_quantile(latency, 99),
        "latency_ms_max": max(latency) if latency else None,
        "dispatch_lag_ms_p50": ms_quantile(lag, 50),
        "dispatch_lag_ms_p99": ms_quantile(lag, 99),
        "per_strategy": per_strategy,
    }


def last_tick_stale(ledger: Path, per_tick: int) -> int | None:
    """Stale evaluations of the latest complete tick; None before one is recorded."""
    for _, n, stale in ledger_rows(
        ledger,
        "SELECT scheduled_ms, COUNT(*), SUM(stale != '') FROM evaluations "
        "GROUP BY scheduled_ms ORDER BY scheduled_ms DESC LIMIT 3",
    ):
        if n == per_tick:
            return int(stale or 0)
    return None


async def wait_live(ledger: Path, per_tick: int) -> float:
    """Until a whole tick was evaluated on live data (no stale evaluation): at thousands of
    streams the simulator takes a while to push a first live candle on each; a window before
    that measures cheap "no live candle" answers. Seconds waited."""
    began = time.monotonic()
    await wait_for(
        lambda: last_tick_stale(ledger, per_tick) == 0,
        timeout_s=LIVE_TIMEOUT_S,
        what="a tick evaluated on live data on every slot",
        poll_s=0.5,
    )
    return round(time.monotonic() - began, 1)


async def _attach_all(
    procs: Processes, tag: str, gateway: Service, entrypoints: Sequence[str], progress: Progress
) -> list[Service]:
    hosts = []
    for i, entrypoint in enumerate(entrypoints, 1):
        hosts.append(await start_strategy(procs, f"{tag}-strategy-{i:02d}", gateway, entrypoint))
    progress(f"{tag}: {len(hosts)} strategy host(s) attached")
    return hosts


async def point(
    kind: str,
    strategies: int,
    book_slots: int,
    ticks: int,
    warm_ticks: int,
    workdir: Path,
    progress: Progress,
) -> dict[str, Any]:
    """One point: ``kind`` "book" (``strategies`` strategies x ``book_slots`` slots) or
    "single" (one strategy x ``strategies`` x ``book_slots`` slots)."""
    if not 1 <= strategies <= BOOK_SIZE:
        raise BenchError(f"a book has 1..{BOOK_SIZE} strategies here, not {strategies}")
    if book_slots < 1 or book_slots % len(TIMEFRAMES):
        raise BenchError(f"slots must be a multiple of {len(TIMEFRAMES)}, got {book_slots}")
    per_tick = strategies * book_slots
    slots = book_slots if kind == "book" else per_tick
    # The same feed messages per second for both kinds: the book's fewer streams push faster.
    push_s = PUSH_INTERVAL_S / strategies if kind == "book" else PUSH_INTERVAL_S
    entrypoints = (
        [book_entrypoint(i) for i in range(1, strategies + 1)] if kind == "book" else [MOMENTUM_V1]
    )
    specs = markets(slots // len(TIMEFRAMES))
    tag = f"{kind}-{strategies}x{book_slots}"
    ledger = workdir / f"{tag}.sqlite"
    procs = Processes(workdir / "logs" / tag)
    try:
        sim = await start_sim(procs, f"{tag}-sim", [m.partition("=")[2] for m in specs], push_s)
        gateway = await start_gateway(procs, f"{tag}-gateway", sim, specs, ledger)
        hosts = await _attach_all(procs, tag, gateway, entrypoints, progress)
        # Every strategy is scheduled from the tick after it attached: wait for warm_ticks
        # whole ticks after the last one attached.
        attached = now_ms()
        await wait_for(
            lambda: max_scheduled_ms(ledger) >= attached + warm_ticks * CADENCE_S * 1000,
            timeout_s=warm_ticks * CADENCE_S * 3 + 120,
            what=f"{warm_ticks} ticks with every strategy",
            poll_s=0.5,
        )
        live_s = await wait_live(ledger, per_tick)
        w = await measure_window(
            gateway,
            {"gateway": [gateway], "strategies": hosts, "sim": [sim]},
            ledger,
            ticks=ticks,
            cadence_s=CADENCE_S,
        )
    except ProcessFailed as exc:
        raise BenchError(f"{tag}: {exc}") from exc
    finally:
        await procs.close()
    t0, t1 = w.t0_ms, w.t1_ms
    rows = ledger_rows(
        ledger,
        "SELECT scheduled_ms, dispatched_ms, decided_ms, outcome, strategy, stale "
        "FROM evaluations "
        "WHERE scheduled_ms >= ? AND scheduled_ms < ?",
        int(t0),
        int(t1),
    )
    window_s = w.window_s
    figures = window_figures(rows, window_s)
    per_eval = figures["evaluations"]
    result: dict[str, Any] = {
        "kind": kind,
        "strategies": len(entrypoints),
        "slots": slots,
        "markets": len(specs),
        "evaluations_per_tick": per_tick,
        "cadence_s": CADENCE_S,
        "window_s": round(window_s, 3),
        **figures,
        "gateway_cores": w.cores("gateway"),
        "strategy_cores": w.cores("strategies"),
        "sim_cores": w.cores("sim"),
        "sim_push_interval_s": push_s,
        "exchange_messages_per_s": w.exchange_messages_per_s,
        "gateway_cpu_us_per_eval": w.cpu_us_per("gateway", per_eval),
        "strategy_cpu_us_per_eval": w.cpu_us_per("strategies", per_eval),
        "machine_busy_cores": w.machine_busy_cores,
        "foreign_cores": w.foreign_cores,
        "load_avg_1m_at_start": w.load_avg_1m_at_start,
        "live_wait_s": live_s,
        "settled_s": w.settled_s,
    }
    # A tick with fewer rows than scheduled would be a strategy left out of the clock.
    short = [
        s
        for s, n in ledger_rows(
            ledger,
            "SELECT scheduled_ms, COUNT(*) FROM evaluations "
            "WHERE scheduled_ms >= ? AND scheduled_ms < ? GROUP BY scheduled_ms",
            int(t0),
            int(t1),
        )
        if n != per_tick
    ]
    result["ticks_not_full"] = len(short)
    progress(f"{tag}: {_line(result)}")
    return result


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['evaluations']} evals ({r['executed_per_s']}/s executed), missed {r['missed']}, "
        f"latency p50/p99 {fmt(r['latency_ms_p50'])}/{fmt(r['latency_ms_p99'])} ms, lag p50/p99 "
        f"{fmt(r['dispatch_lag_ms_p50'])}/{fmt(r['dispatch_lag_ms_p99'])} ms, gateway "
        f"{r['gateway_cpu_us_per_eval']} µs/eval ({r['gateway_cores']} cores), strategies "
        f"{r['strategy_cpu_us_per_eval']} µs/eval ({r['strategy_cores']} cores)"
    )


async def run(
    strategies: Sequence[int],
    book_slots: int,
    ticks: int,
    warm_ticks: int,
    workdir: Path,
    progress: Progress,
) -> list[dict[str, Any]]:
    """Per book size: the single baseline, then the book (each on fresh processes)."""
    pairs = []
    for n in strategies:
        single = await point("single", n, book_slots, ticks, warm_ticks, workdir, progress)
        book = await point("book", n, book_slots, ticks, warm_ticks, workdir, progress)
        pairs.append(pair(single, book))
    return pairs


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 2)


def pair(single: dict[str, Any], book: dict[str, Any]) -> dict[str, Any]:
    """One book size: both points and the ratios book / single.

    >>> p = pair({"latency_ms_p99": 10.0, "gateway_cpu_us_per_eval": 100.0,
    ...     "latency_ms_p50": 4.0, "strategy_cpu_us_per_eval": 0.0, "evaluations_per_tick": 16},
    ...     {"latency_ms_p99": 15.0, "gateway_cpu_us_per_eval": 120.0, "latency_ms_p50": 6.0,
    ...     "strategy_cpu_us_per_eval": 50.0, "strategies": 1})
    >>> p["ratio_latency_p99"], p["ratio_gateway_cpu"], p["ratio_strategy_cpu"]
    (1.5, 1.2, None)
    """
    return {
        "strategies": book["strategies"],
        "evaluations_per_tick": single["evaluations_per_tick"],
        "single": single,
        "book": book,
        "ratio_latency_p50": _ratio(book["latency_ms_p50"], single["latency_ms_p50"]),
        "ratio_latency_p99": _ratio(book["latency_ms_p99"], single["latency_ms_p99"]),
        "ratio_gateway_cpu": _ratio(
            book["gateway_cpu_us_per_eval"], single["gateway_cpu_us_per_eval"]
        ),
        "ratio_strategy_cpu": _ratio(
            book["strategy_cpu_us_per_eval"], single["strategy_cpu_us_per_eval"]
        ),
    }


HEADER = (
    "evals / tick",
    "run",
    "evals/s executed",
    "missed / evals",
    "latency p50 / p99 ms",
    "dispatch lag p50 / p99 ms",
    "gateway µs/eval (cores)",
    "strategies µs/eval (cores)",
    "p99 book/single",
    "gateway CPU book/single",
    "stale",
    "feed msg/s",
    "other processes cores",
)


def rows(pairs: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for p in pairs:
        for kind in ("single", "book"):
            r = p[kind]
            what = (
                f"single: 1 strategy x {r['slots']} slots"
                if kind == "single"
                else f"book: {r['strategies']} x {r['slots']} slots"
            )
            ratios = (
                [fmt(p["ratio_latency_p99"], ".2f") + "x", fmt(p["ratio_gateway_cpu"], ".2f") + "x"]
                if kind == "book"
                else ["1", "1"]
            )
            out.append(
                [
                    str(p["evaluations_per_tick"]),
                    what,
                    fmt(r["executed_per_s"], ".0f"),
                    f"{r['missed']} / {r['evaluations']}",
                    f"{fmt(r['latency_ms_p50'])} / {fmt(r['latency_ms_p99'])}",
                    f"{fmt(r['dispatch_lag_ms_p50'])} / {fmt(r['dispatch_lag_ms_p99'])}",
                    f"{fmt(r['gateway_cpu_us_per_eval'], '.0f')} "
                    f"({fmt(r['gateway_cores'], '.2f')})",
                    f"{fmt(r['strategy_cpu_us_per_eval'], '.0f')} "
                    f"({fmt(r['strategy_cores'], '.2f')})",
                    *ratios,
                    str(r["stale"]),
                    fmt(r["exchange_messages_per_s"], ".0f"),
                    fmt(r["foreign_cores"], ".2f"),
                ]
            )
    return out


def knee_reference(path: Path = KNEE_SOURCE) -> dict[str, Any] | None:
    """The single-strategy knee of the last ``bench.scale dispatch`` run (its JSON), if any."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    knee = document.get("knee")
    if not isinstance(knee, dict):
        return None
    point = next((p for p in document.get("dispatch", []) if p["slots"] == knee["slots"]), None)
    return {
        "source": str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path),
        "finished": document.get("finished"),
        "commit": document.get("machine", {}).get("git_commit"),
        "slots": knee["slots"],
        "evaluations_per_s": knee.get("evaluations_per_s"),
        "latency_ms_p99": None if point is None else point.get("latency_ms_p99"),
        "gateway_cpu_us_per_eval": None if point is None else point.get("gateway_cpu_us_per_eval"),
    }


def knee_line(knee: dict[str, Any] | None) -> str:
    if knee is None:
        return "single-strategy knee: not measured (no bench/results/scale.json)"
    return (
        f"single-strategy knee ({knee['source']}, {knee['finished']}): {knee['slots']} slots, "
        f"~{knee['evaluations_per_s']} evaluations/s, p99 {fmt(knee['latency_ms_p99'])} ms, "
        f"gateway {fmt(knee['gateway_cpu_us_per_eval'])} µs/eval"
    )


def summary(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """The largest book against its baseline, in one line."""
    if not pairs:
        return {"text": "nothing measured"}
    p = pairs[-1]
    book, single = p["book"], p["single"]
    text = (
        f"{p['strategies']} strategies x {book['slots']} slots: missed {book['missed']} "
        f"(single: {single['missed']}), p99 {fmt(book['latency_ms_p99'])} ms vs "
        f"{fmt(single['latency_ms_p99'])} ms ({fmt(p['ratio_latency_p99'], '.2f')}x), gateway "
        f"{fmt(book['gateway_cpu_us_per_eval'], '.0f')} vs "
        f"{fmt(single['gateway_cpu_us_per_eval'], '.0f')} µs/eval "
        f"({fmt(p['ratio_gateway_cpu'], '.2f')}x)"
    )
    return {"text": text}
