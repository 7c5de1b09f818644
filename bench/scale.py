"""``python -m bench.scale``: how the cost grows with the work (real processes on loopback).

- ``dispatch``: simulator, gateway and one strategy host (MomentumV1, the reference strategy)
  at a 1 s cadence, for each slot count (default 16, 512, 1000, 1500, 2000, 4000; made-up markets x
  5m/15m). After a warm-up, a window of ``--ticks`` ticks: from the ledger, tick -> decision
  latency (``decided_ms - scheduled_ms``), dispatch lag (``dispatched_ms - scheduled_ms``) and
  misses; from ``/proc/<pid>/stat``, the CPU the gateway and the strategy host used per
  evaluation. The simulator pushes one kline update per stream every 2 s (Binance's rate) in
  real time (``--time-scale 1``), so the gateway also ingests ~0.5 messages per slot and second:
  its CPU per evaluation includes that feed, as it would in production.
- ``ingest``: simulator and gateway, no strategy (no tick runs): the simulator pushes many
  streams fast; messages per second the gateway received and parsed
  (``baton_exchange_messages_total`` from its ``/metrics``), and its CPU per message.

Prints a table per benchmark and writes every number to ``bench/results/scale.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import signal
import sqlite3
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from baton.common import ProcessFailed, Service
from bench.cli import machine_info
from bench.cpu import foreign_cores, sample
from bench.harness import MISSED, REPO_ROOT, BenchError, Processes, now_ms, wait_for
from bench.stats import percentile

MOMENTUM_V1 = "baton.strategy.examples.momentum_v1:MomentumV1"
TIMEFRAMES = ("5m", "15m")
DEFAULT_SLOTS = (16, 512, 1000, 1500, 2000, 4000)
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "scale.json"
_HZ = os.sysconf("SC_CLK_TCK")
# The knee: the first point with a miss, or with a p99 tick -> decision latency over this share
# of the cadence (past it, a stall of a few hundred ms turns into misses).
KNEE_LATENCY_SHARE = 0.5
# Ingest points: (streams, seconds between kline updates per stream).
INGEST_POINTS = ((1000, 1.0), (1000, 0.1), (2000, 0.05))

Progress = Callable[[str], None]


def markets(n: int) -> list[str]:
    return [f"S{i:05d}=S{i:05d}USDT" for i in range(1, n + 1)]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one live process (all its threads)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _HZ


def machine_busy_s() -> float:
    """CPU seconds every core spent busy since boot (everything but idle and iowait)."""
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / _HZ


def load_average() -> float:
    return os.getloadavg()[0]


async def exchange_messages(metrics_addr: str) -> float:
    """``baton_exchange_messages_total`` summed over its kinds, from the gateway's /metrics."""

    def fetch() -> str:
        with urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=30) as r:
            return str(r.read().decode())

    total = 0.0
    for line in (await asyncio.to_thread(fetch)).splitlines():
        if line.startswith("baton_exchange_messages_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def start_sim(
    procs: Processes, name: str, symbols: Sequence[str], push_interval_s: float
) -> Service:
    args = ["sim", "--port", "0", "--seed", "11", "--time-scale", "1", "--log-level", "WARNING"]
    args += ["--push-interval-s", str(push_interval_s), "--symbols", ",".join(symbols)]
    return await procs.spawn(name, args, ready_timeout_s=120)


async def start_gateway(
    procs: Processes, name: str, sim: Service, market_specs: Sequence[str], ledger: Path
) -> Service:
    env = {
        "BATON_GATEWAY__LISTEN": "127.0.0.1:0",
        "BATON_METRICS__LISTEN": "127.0.0.1:0",
        "BATON_GATEWAY__CADENCE_S": "1.0",
        "BATON_GATEWAY__TIMEFRAMES": ",".join(TIMEFRAMES),
        "BATON_GATEWAY__MARKETS": ",".join(market_specs),
        "BATON_EXCHANGE__WS_URL": sim.ready["ws_url"],
        "BATON_EXCHANGE__REST_URL": sim.ready["rest_url"],
        "BATON_LEDGER__PATH": str(ledger),
        "BATON_GATEWAY__LOG_LEVEL": "WARNING",
    }
    return await procs.spawn(name, ["gateway"], env=env, ready_timeout_s=180)


def _ledger_rows(ledger: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    if not ledger.exists():
        return []
    conn = sqlite3.connect(f"{ledger.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:  # no table yet
        return []
    finally:
        conn.close()


async def settle(pid: int, *, min_s: float = 6.0, max_s: float = 90.0) -> float:
    """Wait until the process's CPU use is steady (start-up work such as the feed's REST
    backfill of every stream is over): two consecutive 2 s intervals within 15% (or 0.03
    cores) of each other, after at least ``min_s``. Seconds waited."""
    began = time.monotonic()
    step = 2.0
    last: float | None = None
    while True:
        c0 = process_cpu_s(pid)
        await asyncio.sleep(step)
        cores = (process_cpu_s(pid) - c0) / step
        waited = time.monotonic() - began
        steady = last is not None and abs(cores - last) <= max(0.03, 0.15 * last)
        if (steady and waited >= min_s) or waited >= max_s:
            return round(waited, 1)
        last = cores


def _ms(values: list[float], q: float) -> float | None:
    p = percentile(values, q)
    return None if p is None else round(p, 1)


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
        env = {
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
            )
        }
        strategy = await procs.spawn(
            f"{tag}-strategy",
            [
                "strategy",
                "--gateway",
                gateway.ready["grpc_addr"],
                "--entrypoint",
                MOMENTUM_V1,
                "--config",
                "{}",
                "--pod-name",
                f"{tag}-strategy",
            ],
            env=env,
            ready_timeout_s=120,
        )
        progress(f"{tag}: processes up; warming up {warm_ticks} ticks")
        await wait_for(
            lambda: _count(ledger) >= warm_ticks * slots,
            timeout_s=warm_ticks * cadence_s * 3 + 120,
            what=f"{warm_ticks} ticks in the ledger",
            poll_s=0.5,
        )
        settled_s = await settle(gateway.pid)
        msgs0 = await exchange_messages(gateway.ready["metrics_addr"])
        m0 = time.monotonic()
        load = load_average()
        cpu0 = sample()
        t0, busy0 = now_ms(), machine_busy_s()
        g0, s0, x0 = (process_cpu_s(p.pid) for p in (gateway, strategy, sim))
        await asyncio.sleep(ticks * cadence_s)
        g1, s1, x1 = (process_cpu_s(p.pid) for p in (gateway, strategy, sim))
        t1, busy1 = now_ms(), machine_busy_s()
        foreign = foreign_cores(cpu0, sample())
        msgs1 = await exchange_messages(gateway.ready["metrics_addr"])
        m1 = time.monotonic()
        # The window's last tick resolves at its deadline (the next tick); then the flush.
        await wait_for(
            lambda: _max_scheduled(ledger) >= t1,
            timeout_s=cadence_s * 3 + 30,
            what="the window's ticks in the ledger",
            poll_s=0.5,
        )
    except ProcessFailed as exc:
        raise BenchError(f"{tag}: {exc}") from exc
    finally:
        await procs.close()
    rows = _ledger_rows(
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
    per_eval = evaluations or 1
    result: dict[str, Any] = {
        "slots": slots,
        "markets": len(specs),
        "cadence_s": cadence_s,
        "window_s": round(window_s, 3),
        "ticks": n_ticks,
        "evaluations": evaluations,
        "executed": sum(1 for *_, o in rows if o == "executed"),
        "missed": missed,
        "outcomes": _outcomes(rows),
        "latency_ms_p50": _ms(latency, 50),
        "latency_ms_p99": _ms(latency, 99),
        "latency_ms_max": max(latency) if latency else None,
        "dispatch_lag_ms_p50": _ms(lag, 50),
        "dispatch_lag_ms_p99": _ms(lag, 99),
        "gateway_cores": round((g1 - g0) / window_s, 3),
        "strategy_cores": round((s1 - s0) / window_s, 3),
        "sim_cores": round((x1 - x0) / window_s, 3),
        "gateway_cpu_us_per_eval": round((g1 - g0) / per_eval * 1e6, 1),
        "strategy_cpu_us_per_eval": round((s1 - s0) / per_eval * 1e6, 1),
        "exchange_messages_per_s": round((msgs1 - msgs0) / (m1 - m0), 1),
        "machine_busy_cores": round((busy1 - busy0) / window_s, 3),
        "foreign_cores": foreign,
        "load_avg_1m_at_start": round(load, 2),
        "settled_s": settled_s,
    }
    result["knee"] = bool(
        missed
        or (result["latency_ms_p99"] or 0) > KNEE_LATENCY_SHARE * cadence_s * 1000
        or n_ticks < ticks - 1
    )
    progress(f"{tag}: {_dispatch_line(result)}")
    return result


def _count(ledger: Path) -> int:
    rows = _ledger_rows(ledger, "SELECT MAX(id) FROM evaluations")
    return int(rows[0][0] or 0) if rows else 0


def _max_scheduled(ledger: Path) -> float:
    rows = _ledger_rows(ledger, "SELECT MAX(scheduled_ms) FROM evaluations")
    return float(rows[0][0] or 0) if rows else 0.0


def _outcomes(rows: list[tuple[Any, ...]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for *_, outcome in rows:
        out[str(outcome)] = out.get(str(outcome), 0) + 1
    return out


def _f(v: object, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def _dispatch_line(r: dict[str, Any]) -> str:
    return (
        f"{r['evaluations']} evals, missed {r['missed']}, latency p50/p99 "
        f"{_f(r['latency_ms_p50'])}/{_f(r['latency_ms_p99'])} ms, lag p50/p99 "
        f"{_f(r['dispatch_lag_ms_p50'])}/{_f(r['dispatch_lag_ms_p99'])} ms, gateway "
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
                f"{_f(r['latency_ms_p50'])} / {_f(r['latency_ms_p99'])}",
                f"{_f(r['dispatch_lag_ms_p50'])} / {_f(r['dispatch_lag_ms_p99'])}",
                _f(r["gateway_cpu_us_per_eval"]),
                _f(r["gateway_cores"], ".2f"),
                _f(r["strategy_cpu_us_per_eval"]),
                _f(r["strategy_cores"], ".2f"),
                _f(r["sim_cores"], ".2f"),
                _f(r["exchange_messages_per_s"], ".0f"),
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
            _f(r["messages_per_s"], ".0f"),
            _f(r["gateway_cores"], ".2f"),
            _f(r["gateway_cpu_us_per_message"]),
            _f(r["messages_per_gateway_core_s"], ".0f"),
            _f(r["sim_cores"], ".2f"),
        ]
        for r in results
    ]


# -- tables, main -----------------------------------------------------------------------------


def format_table(header: Sequence[str], rows: list[list[str]], *, markdown: bool = False) -> str:
    """
    >>> print(format_table(["a", "bb"], [["1", "2"]], markdown=True))
    | a | bb |
    | --- | --- |
    | 1 | 2 |
    """
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    out = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


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
    p.add_argument("what", choices=["dispatch", "ingest", "all"], nargs="?", default="all")
    p.add_argument(
        "--slots", type=int, nargs="+", default=list(DEFAULT_SLOTS), help="dispatch slot counts"
    )
    p.add_argument("--ticks", type=int, default=20, help="measured ticks per point (20)")
    p.add_argument("--warm-ticks", type=int, default=3, help="ticks before the window (3)")
    p.add_argument(
        "--ingest",
        nargs="+",
        metavar="STREAMS:PUSH_S",
        default=[f"{n}:{t:g}" for n, t in INGEST_POINTS],
        help="ingest points: streams and seconds between updates per stream (default: %(default)s)",
    )
    p.add_argument("--ingest-window-s", type=float, default=15.0, help="ingest window (15 s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON ({DEFAULT_OUT})")
    p.add_argument("--workdir", type=Path, help="keep ledgers and logs here (default: temp)")
    return p


async def _run(args: argparse.Namespace, workdir: Path) -> dict[str, list[dict[str, Any]]]:
    began = time.monotonic()

    def progress(text: str) -> None:
        print(f"[{time.monotonic() - began:7.1f}s] {text}", file=sys.stderr, flush=True)

    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    out: dict[str, list[dict[str, Any]]] = {"dispatch": [], "ingest": []}
    if args.what in ("dispatch", "all"):
        for slots in args.slots:
            out["dispatch"].append(
                await dispatch_point(slots, args.ticks, args.warm_ticks, workdir, progress)
            )
    if args.what in ("ingest", "all"):
        for point in args.ingest:
            n, _, push = point.partition(":")
            streams, push_s = int(n), float(push)
            out["ingest"].append(
                await ingest_point(streams, push_s, args.ingest_window_s, workdir, progress)
            )
    return out


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    command = "python -m bench.scale" + "".join(f" {shlex.quote(a)}" for a in argv)
    started = time.monotonic()
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="baton-scale-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            results = asyncio.run(_run(args, workdir))
        except BenchError as exc:
            print(f"bench.scale: {exc}", file=sys.stderr)
            return 1
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("bench.scale: interrupted; every process was stopped", file=sys.stderr)
            return 130
    document: dict[str, Any] = {
        "command": command,
        "machine": machine,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_s": round(time.monotonic() - started, 1),
        "strategy": MOMENTUM_V1,
        "timeframes": list(TIMEFRAMES),
        "knee_rule": f"first point with a miss or p99 latency > {KNEE_LATENCY_SHARE:g} cadence",
    }
    if results["dispatch"]:
        rows = dispatch_rows(results["dispatch"])
        document["dispatch_table"] = format_table(DISPATCH_HEADER, rows).splitlines()
        document["dispatch_table_markdown"] = format_table(
            DISPATCH_HEADER, rows, markdown=True
        ).splitlines()
        document["knee"] = knee(results["dispatch"])
        document["dispatch"] = results["dispatch"]
        print("\n".join(document["dispatch_table"]))
        print(f"knee: {document['knee']}\n")
    if results["ingest"]:
        rows = ingest_rows(results["ingest"])
        document["ingest_table"] = format_table(INGEST_HEADER, rows).splitlines()
        document["ingest_table_markdown"] = format_table(
            INGEST_HEADER, rows, markdown=True
        ).splitlines()
        document["ingest"] = results["ingest"]
        print("\n".join(document["ingest_table"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nresults: {args.out}  ({document['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
