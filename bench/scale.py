"""``python -m bench.scale``: how the cost grows with the work (real processes on loopback).

- ``dispatch``: simulator, gateway and one strategy host (MomentumV1, the reference strategy) at a 1
  s cadence, for each slot count (default 16, 512, 1000, 2000, 4000, 6000, 8000 and 10000; made-up
  markets x 5m/15m). After a warm-up, a window of ``--ticks`` ticks: from the ledger, tick ->
  decision latency (``decided_ms - scheduled_ms``), dispatch lag (``dispatched_ms - scheduled_ms``)
  and misses; from ``/proc/<pid>/stat``, the CPU the gateway and the strategy host used per
  evaluation. The simulator pushes one kline update per stream every 2 s (Binance's rate) in real
  time (``--time-scale 1``), so the gateway also ingests ~0.5 messages per slot and second: its CPU
  per evaluation includes that feed, as it would in production.
- ``ingest``: simulator and gateway, no strategy (no tick runs): the simulator pushes many
  streams fast; messages per second the gateway received and parsed
  (``baton_exchange_messages_total`` from its ``/metrics``), and its CPU per message.
- ``handoff``: the dispatch set-up under heavy load (default 1000, 2000, 3000 and 4000 slots) with
  consecutive handoffs (``bench.handoff_load``): misses, pause, transfer, and tick -> decision
  latency during the handoffs against a steady window before them. Runs only when asked (``all`` is
  dispatch and ingest) and writes ``bench/results/scale-handoff.json``.
- ``book``: a book of strategies on one gateway (``bench.book``): 1, 4 and 16 strategies on the
  reference 16 slots against one strategy with as many evaluations per tick (16, 64, 256 slots),
  measured in the same run; evaluations per second, misses, latency, CPU per evaluation and the
  ratios book / single. Runs only when asked; writes ``bench/results/scale-book.json``.

Prints a table per benchmark and writes every number to ``bench/results/scale.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from baton.common import ProcessFailed
from baton.local import Processes
from bench import book, handoff_load
from bench.cli import MOMENTUM_V1
from bench.cpu import foreign_cores, sample
from bench.harness import MISSED, REPO_ROOT, BenchError, wait_for
from bench.live import (
    TIMEFRAMES,
    BenchExit,
    Progress,
    evaluations_recorded,
    exchange_messages,
    fmt,
    ledger_rows,
    load_average,
    markets,
    measure_window,
    ms_quantile,
    outcome_counts,
    process_cpu_s,
    run_live,
    settle,
    start_gateway,
    start_sim,
    start_strategy,
    tables,
    write_document,
)
from bench.strategies import BOOK_SIZE

DEFAULT_SLOTS = (16, 512, 1000, 2000, 4000, 6000, 8000, 10000)
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "scale.json"
# The knee: the first point with a miss, or with a p99 tick -> decision latency over this share
# of the cadence (past it, a stall of a few hundred ms turns into misses).
KNEE_LATENCY_SHARE = 0.5
# Ingest points: (streams, seconds between kline updates per stream).
INGEST_POINTS = ((1000, 1.0), (1000, 0.1), (2000, 0.05))


# -- dispatch ---------------------------------------------------------------------------------


async def dispatch_point(
    slots: int, ticks: int, warm_ticks: int, workdir: Path, progress: Progress
) -> dict[str, Any]:
    if slots % len(TIMEFRAMES):
        raise BenchError(f"slots must be a multiple of {len(TIMEFRAMES)}, got {slots}")
    specs = markets(slots // len(TIMEFRAMES))
    tag = f"dispatch-{slots}"
    ledger = workdir / f"{tag}.sqlite"
    procs = Processes(workdir / "logs" / tag)
    cadence_s = 1.0
    try:
        sim = await start_sim(procs, f"{tag}-sim", [m.partition("=")[2] for m in specs], 2.0)
        gateway = await start_gateway(procs, f"{tag}-gateway", sim, specs, ledger)
        strategy = await start_strategy(procs, f"{tag}-strategy", gateway, MOMENTUM_V1)
        progress(f"{tag}: processes up; warming up {warm_ticks} ticks")
        await wait_for(
            lambda: evaluations_recorded(ledger) >= warm_ticks * slots,
            timeout_s=warm_ticks * cadence_s * 3 + 120,
            what=f"{warm_ticks} ticks in the ledger",
            poll_s=0.5,
        )
        w = await measure_window(
            gateway,
            {"gateway": [gateway], "strategy": [strategy], "sim": [sim]},
            ledger,
            ticks=ticks,
            cadence_s=cadence_s,
        )
    except ProcessFailed as exc:
        raise BenchError(f"{tag}: {exc}") from exc
    finally:
        await procs.close()
    t0, t1 = w.t0_ms, w.t1_ms
    rows = ledger_rows(
        ledger,
        "SELECT scheduled_ms, dispatched_ms, decided_ms, outcome FROM evaluations "
        "WHERE scheduled_ms >= ? AND scheduled_ms < ?",
        int(t0),
        int(t1),
    )
    window_s = (t1 - t0) / 1000
    latency = [float(d - s) for s, _, d, o in rows if o == "executed" and d is not None]
    lag = [float(p - s) for s, p, _, _ in rows if p is not None]
    missed = sum(1 for *_, o in rows if o in MISSED)
    evaluations = len(rows)
    n_ticks = len({s for s, *_ in rows})
    result: dict[str, Any] = {
        "slots": slots,
        "markets": len(specs),
        "cadence_s": cadence_s,
        "window_s": round(window_s, 3),
        "ticks": n_ticks,
        "evaluations": evaluations,
        "executed": sum(1 for *_, o in rows if o == "executed"),
        "missed": missed,
        "outcomes": outcome_counts([str(o) for *_, o in rows]),
        "latency_ms_p50": ms_quantile(latency, 50),
        "latency_ms_p99": ms_quantile(latency, 99),
        "latency_ms_max": max(latency) if latency else None,
        "dispatch_lag_ms_p50": ms_quantile(lag, 50),
        "dispatch_lag_ms_p99": ms_quantile(lag, 99),
        "gateway_cores": w.cores("gateway"),
        "strategy_cores": w.cores("strategy"),
        "sim_cores": w.cores("sim"),
        "gateway_cpu_us_per_eval": w.cpu_us_per("gateway", evaluations),
        "strategy_cpu_us_per_eval": w.cpu_us_per("strategy", evaluations),
        "exchange_messages_per_s": w.exchange_messages_per_s,
        "machine_busy_cores": w.machine_busy_cores,
        "foreign_cores": w.foreign_cores,
        "load_avg_1m_at_start": w.load_avg_1m_at_start,
        "settled_s": w.settled_s,
    }
    result["knee"] = bool(
        missed
        or (result["latency_ms_p99"] or 0) > KNEE_LATENCY_SHARE * cadence_s * 1000
        or n_ticks < ticks - 1
    )
    progress(f"{tag}: {_dispatch_line(result)}")
    return result


def _dispatch_line(r: dict[str, Any]) -> str:
    return (
        f"{r['evaluations']} evals, missed {r['missed']}, latency p50/p99 "
        f"{fmt(r['latency_ms_p50'])}/{fmt(r['latency_ms_p99'])} ms, lag p50/p99 "
        f"{fmt(r['dispatch_lag_ms_p50'])}/{fmt(r['dispatch_lag_ms_p99'])} ms, gateway "
        f"{r['gateway_cpu_us_per_eval']} µs/eval ({r['gateway_cores']} cores), strategy "
        f"{r['strategy_cpu_us_per_eval']} µs/eval ({r['strategy_cores']} cores)"
    )


DISPATCH_HEADER = (
    "slots",
    "evals",
    "missed",
    "latency p50 / p99 ms",
    "dispatch lag p50 / p99 ms",
    "gateway µs/eval",
    "gateway cores",
    "strategy µs/eval",
    "strategy cores",
    "sim cores",
    "feed msg/s",
    "gateway µs/eval vs 16",
)


def dispatch_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    base = next((r for r in results if r["slots"] == min(x["slots"] for x in results)), None)
    rows = []
    first = next((r["slots"] for r in results if r["knee"]), None)
    for r in results:
        mark = "" if not r["knee"] else " (knee)" if r["slots"] == first else " (past knee)"
        ratio = (
            f"{r['gateway_cpu_us_per_eval'] / base['gateway_cpu_us_per_eval']:.2f}x"
            if base and base["gateway_cpu_us_per_eval"]
            else "-"
        )
        rows.append(
            [
                str(r["slots"]) + mark,
                str(r["evaluations"]),
                str(r["missed"]),
                f"{fmt(r['latency_ms_p50'])} / {fmt(r['latency_ms_p99'])}",
                f"{fmt(r['dispatch_lag_ms_p50'])} / {fmt(r['dispatch_lag_ms_p99'])}",
                fmt(r["gateway_cpu_us_per_eval"]),
                fmt(r["gateway_cores"], ".2f"),
                fmt(r["strategy_cpu_us_per_eval"]),
                fmt(r["strategy_cores"], ".2f"),
                fmt(r["sim_cores"], ".2f"),
                fmt(r["exchange_messages_per_s"], ".0f"),
                ratio,
            ]
        )
    return rows


# -- ingest -----------------------------------------------------------------------------------


async def ingest_point(
    streams: int, push_interval_s: float, window_s: float, workdir: Path, progress: Progress
) -> dict[str, Any]:
    specs = markets(streams // len(TIMEFRAMES))
    tag = f"ingest-{streams}-{push_interval_s:g}"
    procs = Processes(workdir / "logs" / tag)
    try:
        sim = await start_sim(
            procs, f"{tag}-sim", [m.partition("=")[2] for m in specs], push_interval_s
        )
        gateway = await start_gateway(
            procs, f"{tag}-gateway", sim, specs, workdir / f"{tag}.sqlite"
        )
        addr = gateway.ready["metrics_addr"]
        # Until every connection is subscribed, the REST backfill is over and updates flow.
        settled_s = await settle(gateway.pid, min_s=max(6.0, 3 * push_interval_s))
        load = load_average()
        msgs0 = await exchange_messages(addr)
        m0 = time.monotonic()
        g0, x0 = process_cpu_s(gateway.pid), process_cpu_s(sim.pid)
        cpu0 = sample()
        await asyncio.sleep(window_s)
        g1, x1 = process_cpu_s(gateway.pid), process_cpu_s(sim.pid)
        foreign = foreign_cores(cpu0, sample())
        m1 = time.monotonic()
        msgs1 = await exchange_messages(addr)
        m2 = time.monotonic()
    except ProcessFailed as exc:
        raise BenchError(f"{tag}: {exc}") from exc
    finally:
        await procs.close()
    # The messages were counted across the two scrapes; the CPU between the two samples
    # inside them (the second scrape's own cost is outside the CPU window).
    msgs = msgs1 - msgs0
    wall = m1 - m0
    rate = msgs / (m2 - m0)
    gw_cpu = g1 - g0
    us_per_msg = gw_cpu / (rate * wall) * 1e6 if rate else None
    result: dict[str, Any] = {
        "streams": streams,
        "push_interval_s": push_interval_s,
        "offered_per_s": round(streams / push_interval_s),
        "window_s": round(wall, 3),
        "messages": int(msgs),
        "messages_per_s": round(rate, 1),
        "gateway_cores": round(gw_cpu / wall, 3),
        "sim_cores": round((x1 - x0) / wall, 3),
        "gateway_cpu_us_per_message": None if us_per_msg is None else round(us_per_msg, 1),
        "messages_per_gateway_core_s": None if not us_per_msg else round(1e6 / us_per_msg),
        "foreign_cores": foreign,
        "load_avg_1m_at_start": round(load, 2),
        "settled_s": settled_s,
    }
    progress(
        f"{tag}: {result['messages_per_s']} msg/s (offered {result['offered_per_s']}), gateway "
        f"{result['gateway_cores']} cores, {result['gateway_cpu_us_per_message']} µs/msg, sim "
        f"{result['sim_cores']} cores"
    )
    return result


INGEST_HEADER = (
    "streams",
    "push interval s",
    "offered msg/s",
    "received msg/s",
    "gateway cores",
    "gateway µs/msg",
    "msg/s per gateway core",
    "sim cores",
)


def ingest_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            str(r["streams"]),
            f"{r['push_interval_s']:g}",
            str(r["offered_per_s"]),
            fmt(r["messages_per_s"], ".0f"),
            fmt(r["gateway_cores"], ".2f"),
            fmt(r["gateway_cpu_us_per_message"]),
            fmt(r["messages_per_gateway_core_s"], ".0f"),
            fmt(r["sim_cores"], ".2f"),
        ]
        for r in results
    ]


# -- tables, main -----------------------------------------------------------------------------


def knee(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first point with a miss or a p99 latency over half the cadence; what bounds it."""
    for r in results:
        if r["knee"]:
            bound = "gateway" if r["gateway_cores"] >= r["strategy_cores"] else "strategy"
            return {
                "slots": r["slots"],
                "evaluations_per_s": round(r["evaluations"] / r["window_s"]),
                "busiest_process": bound,
                "gateway_cores": r["gateway_cores"],
                "strategy_cores": r["strategy_cores"],
                "machine_busy_cores": r["machine_busy_cores"],
            }
    return None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument(
        "what",
        choices=["dispatch", "ingest", "all", "handoff", "book"],
        nargs="?",
        default="all",
        help="all: dispatch, then ingest (default); handoff and book run only on their own",
    )
    p.add_argument(
        "--slots",
        type=int,
        nargs="+",
        help=f"slot counts (dispatch: {' '.join(map(str, DEFAULT_SLOTS))}; handoff: "
        f"{' '.join(map(str, handoff_load.DEFAULT_SLOTS))}; book: one, the slots of each "
        f"strategy, {book.REFERENCE_SLOTS})",
    )
    p.add_argument(
        "--strategies",
        type=int,
        nargs="+",
        help=f"book: book sizes ({' '.join(map(str, book.DEFAULT_STRATEGIES))}; 1..16)",
    )
    p.add_argument(
        "--ticks",
        type=int,
        help=f"measured ticks per point; handoff: steady (20; book {book.DEFAULT_TICKS})",
    )
    p.add_argument("--warm-ticks", type=int, default=3, help="ticks before the window (3)")
    p.add_argument(
        "--handoffs",
        type=int,
        default=handoff_load.DEFAULT_HANDOFFS,
        help=f"handoff: consecutive handoffs per slot count ({handoff_load.DEFAULT_HANDOFFS})",
    )
    p.add_argument(
        "--ingest",
        nargs="+",
        metavar="STREAMS:PUSH_S",
        default=[f"{n}:{t:g}" for n, t in INGEST_POINTS],
        help="ingest points: streams and seconds between updates per stream (default: %(default)s)",
    )
    p.add_argument("--ingest-window-s", type=float, default=15.0, help="ingest window (15 s)")
    p.add_argument(
        "--out",
        type=Path,
        help=f"JSON ({DEFAULT_OUT}; handoff: {handoff_load.DEFAULT_OUT}; book: {book.DEFAULT_OUT})",
    )
    p.add_argument("--workdir", type=Path, help="keep ledgers and logs here (default: temp)")
    return p


async def _run(
    args: argparse.Namespace, workdir: Path, progress: Progress
) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {
        "dispatch": [],
        "ingest": [],
        "handoff": [],
        "book": [],
    }
    if args.what in ("dispatch", "all"):
        for slots in args.slots or DEFAULT_SLOTS:
            out["dispatch"].append(
                await dispatch_point(slots, args.ticks or 20, args.warm_ticks, workdir, progress)
            )
    if args.what in ("ingest", "all"):
        for point in args.ingest:
            n, _, push = point.partition(":")
            streams, push_s = int(n), float(push)
            out["ingest"].append(
                await ingest_point(streams, push_s, args.ingest_window_s, workdir, progress)
            )
    if args.what == "handoff":
        for slots in args.slots or handoff_load.DEFAULT_SLOTS:
            out["handoff"].append(
                await handoff_load.handoff_point(
                    slots, args.handoffs, args.ticks or 20, args.warm_ticks, workdir, progress
                )
            )
    if args.what == "book":
        out["book"] = await book.run(
            args.strategies or book.DEFAULT_STRATEGIES,
            args.slots[0] if args.slots else book.REFERENCE_SLOTS,
            args.ticks or book.DEFAULT_TICKS,
            args.warm_ticks,
            workdir,
            progress,
        )
    return out


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.what == "handoff" and args.handoffs < 1:
        print("bench.scale: --handoffs must be >= 1", file=sys.stderr)
        return 2
    if args.what == "book" and args.slots and len(args.slots) > 1:
        print("bench.scale: book takes one --slots (per strategy)", file=sys.stderr)
        return 2
    bad = [n for n in args.strategies or () if not 1 <= n <= BOOK_SIZE]
    if bad:
        print(f"bench.scale: --strategies must be in 1..{BOOK_SIZE}, not {bad}", file=sys.stderr)
        return 2
    try:
        results, document = run_live(
            "bench.scale",
            argv,
            args.workdir,
            lambda workdir, progress: _run(args, workdir, progress),
        )
    except BenchExit as exc:
        return exc.code
    document["timeframes"] = list(TIMEFRAMES)
    if results["dispatch"] or results["ingest"]:
        document["strategy"] = MOMENTUM_V1
    if results["dispatch"]:
        document |= tables("dispatch", DISPATCH_HEADER, dispatch_rows(results["dispatch"]))
        document["knee_rule"] = (
            f"first point with a miss or p99 latency > {KNEE_LATENCY_SHARE:g} cadence"
        )
        document["knee"] = knee(results["dispatch"])
        document["dispatch"] = results["dispatch"]
        print("\n".join(document["dispatch_table"]))
        print(f"knee: {document['knee']}\n")
    if results["ingest"]:
        document |= tables("ingest", INGEST_HEADER, ingest_rows(results["ingest"]))
        document["ingest"] = results["ingest"]
        print("\n".join(document["ingest_table"]))
    if results["handoff"]:
        document |= tables("handoff", handoff_load.HEADER, handoff_load.rows(results["handoff"]))
        document["claim"] = handoff_load.claim(results["handoff"])
        document["handoff"] = results["handoff"]
        print("\n".join(document["handoff_table"]))
        print(f"\nclaim: {document['claim']['text']}")
    if results["book"]:
        document["strategy"] = "bench.strategies:M01..M16 (book), " + MOMENTUM_V1 + " (single)"
        document |= tables("book", book.HEADER, book.rows(results["book"]))
        document["knee_reference"] = book.knee_reference()
        document["summary"] = book.summary(results["book"])
        document["book"] = results["book"]
        print("\n".join(document["book_table"]))
        print(f"\n{book.knee_line(document['knee_reference'])}")
        print(f"book: {document['summary']['text']}")
    defaults = {"handoff": handoff_load.DEFAULT_OUT, "book": book.DEFAULT_OUT}
    out: Path = args.out or defaults.get(args.what, DEFAULT_OUT)
    write_document(out, document)
    print(f"\nresults: {out}  ({document['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
