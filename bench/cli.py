"""``python -m bench``: Baton's handoff against the two baselines, at two workloads.

Workloads (each run with real processes on loopback: simulator, gateway, strategy hosts):

- reference: the reference bot (8 markets x 5m/15m = 16 slots) with the momentum example,
  alternating v1 and v2 (a v1 -> v2 handoff migrates the state), at a 0.25 s cadence so that
  100+ handoffs fit in minutes;
- heavy: 256 made-up markets x 5m/15m = 512 slots at a 1 s cadence with ``Ballast``, a
  strategy whose state is ~10 MB of canonical JSON.

Scenarios per workload, each on its own gateway and ledger: Baton's handoff (``--handoffs``
consecutive ones), then ``--baseline-swaps`` of each baseline: stop-and-restart (SIGTERM the
strategy, start the new version cold) and a rolling swap without state transfer.

Prints one table row per scenario and writes every raw number to a JSON file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import REPO_ROOT, BenchError, Workload, run_workload
from bench.stats import (
    ScenarioResult,
    comparisons,
    format_table,
    scenario_to_json,
    summarize,
    to_json,
)

MOMENTUM_V1 = "baton.strategy.examples.momentum_v1:MomentumV1"
MOMENTUM_V2 = "baton.strategy.examples.momentum_v2:MomentumV2"
BALLAST_V1 = "bench.strategies:BallastV1"
BALLAST_V2 = "bench.strategies:BallastV2"
HEAVY_MARKETS = 256
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "handoff.json"
QUICK_OUT = REPO_ROOT / "bench" / "results" / "handoff-quick.json"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 10 reference handoffs, 5 heavy ones with a 2 MB state, 3 swaps of "
        "each baseline (under ~2 minutes)",
    )
    p.add_argument("--out", type=Path, help=f"JSON results (default {DEFAULT_OUT})")
    p.add_argument(
        "--handoffs", type=int, help="consecutive Baton handoffs per workload (100; quick 10)"
    )
    p.add_argument(
        "--heavy-handoffs", type=int, help="heavy workload handoffs (default: --handoffs; quick 5)"
    )
    p.add_argument(
        "--baseline-swaps", type=int, help="swaps of each baseline per workload (10; quick 3)"
    )
    p.add_argument(
        "--state-mb", type=float, help="Ballast state size in MB (10^6 bytes; 10; quick 2)"
    )
    p.add_argument(
        "--only",
        choices=["reference", "heavy"],
        action="append",
        help="run only this workload (repeatable; default both)",
    )
    p.add_argument(
        "--seed", type=int, default=1, help="seed of the swaps' start phases (default 1)"
    )
    p.add_argument(
        "--workdir", type=Path, help="keep ledgers and process logs here (default: a temp dir)"
    )
    return p


def reference_workload(handoffs: int, baseline_swaps: int) -> Workload:
    """The reference bot as the benchmarks run it (``bench.soak`` runs it too)."""
    return Workload(
        name="reference",
        description="8 markets x 5m/15m, momentum v1 <-> v2 (v1 -> v2 migrates)",
        cadence_s=0.25,
        v1=MOMENTUM_V1,
        v2=MOMENTUM_V2,
        strategy_config={},
        handoffs=handoffs,
        baseline_swaps=baseline_swaps,
        # Momentum is warm from its first request: the gateway sends 30 closed candles.
        warm_ticks=2,
        push_interval_s=0.1,
    )


def workloads(args: argparse.Namespace) -> list[Workload]:
    quick = bool(args.quick)
    handoffs = args.handoffs if args.handoffs is not None else (10 if quick else 100)
    heavy_handoffs = (
        args.heavy_handoffs if args.heavy_handoffs is not None else (5 if quick else handoffs)
    )
    swaps = args.baseline_swaps if args.baseline_swaps is not None else (3 if quick else 10)
    state_mb = args.state_mb if args.state_mb is not None else (2.0 if quick else 10.0)
    # Quick: a shorter ring warms up in fewer ticks (each baseline swap waits for a warm blue).
    window = 2 if quick else 8
    heavy_markets = tuple(f"C{i:03d}=C{i:03d}USDT" for i in range(1, HEAVY_MARKETS + 1))
    chosen = set(args.only or ["reference", "heavy"])
    out = []
    if "reference" in chosen:
        out.append(reference_workload(handoffs, swaps))
    if "heavy" in chosen:
        out.append(
            Workload(
                name="heavy",
                description=f"{HEAVY_MARKETS} markets x 5m/15m, Ballast v1 <-> v2, "
                f"~{state_mb:g} MB state",
                cadence_s=1.0,
                v1=BALLAST_V1,
                v2=BALLAST_V2,
                strategy_config={
                    "state_mb": state_mb,
                    "slots": 2 * HEAVY_MARKETS,
                    "window": window,
                },
                handoffs=heavy_handoffs,
                baseline_swaps=swaps,
                warm_ticks=window + 1,
                markets=heavy_markets,
                sim_symbols=tuple(m.partition("=")[2] for m in heavy_markets),
                # 512 streams: a kline update per stream per second (closing frames come on
                # time regardless) keeps the feed from eating a core of the 2.
                push_interval_s=1.0,
            )
        )
    return out


def machine_info() -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.partition(":")[2].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        mem_gb = round(int(first.split()[1]) / 1024 / 1024, 1)
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no").splitlines()
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model,
        "mem_gb": mem_gb,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": commit,
        # Tracked files that differ from the commit when the run started.
        "git_uncommitted_changes": dirty,
    }


def _git(*args: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5, check=False
        ).stdout.rstrip()  # not strip(): porcelain lines start with a status column
    return ""


async def _run(chosen: list[Workload], workdir: Path, seed: int) -> list[ScenarioResult]:
    began = time.monotonic()

    def progress(text: str) -> None:
        print(f"[{time.monotonic() - began:7.1f}s] {text}", file=sys.stderr, flush=True)

    # SIGTERM ends the run like Ctrl-C: cancelled waits unwind and every process is stopped.
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    results: list[ScenarioResult] = []
    for w in chosen:
        results += await run_workload(w, workdir, progress, seed)
    return results


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    chosen = workloads(args)
    if any(w.handoffs < 1 or w.baseline_swaps < 1 for w in chosen):
        print("bench: --handoffs and --baseline-swaps must be >= 1", file=sys.stderr)
        return 2
    out_path: Path = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    command = "python -m bench" + "".join(f" {shlex.quote(a)}" for a in argv)
    started = time.monotonic()
    machine = machine_info()  # before the run: the code that ran is the code at the start
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            results = asyncio.run(_run(chosen, workdir, args.seed))
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("bench: interrupted; every process was stopped", file=sys.stderr)
            return 130
    summaries = [summarize(r) for r in results]
    table = format_table(summaries)
    compared = comparisons(summaries)
    document = {
        "command": command,
        "machine": machine,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_s": round(time.monotonic() - started, 1),
        "workloads": [w.to_json() for w in chosen],
        "table": table.splitlines(),
        "table_markdown": format_table(summaries, markdown=True).splitlines(),
        "comparisons": compared,
        "summaries": [to_json(s) for s in summaries],
        "scenarios": [scenario_to_json(r) for r in results],
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    print(table)
    print()
    for c in compared:
        print(
            f"{c['workload']}: {c['baseline']} misses {c['missed_per_swap']:.1f} evaluations per "
            f"swap vs Baton's {c['baton_missed_per_swap']:.1f} "
            f"({c['missed_per_swap_vs_baton']}), loses {c['state_bytes_lost_per_swap']} state "
            f"bytes per swap vs 0, and answers {c['cold_decisions_per_swap']:.1f} times per "
            "swap on an empty state"
        )
    print(f"\nresults: {out_path}  ({document['wall_s']} s)")
    return 0
