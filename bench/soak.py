"""``python -m bench.soak``: a bounded soak of the reference workload (real processes).

The reference bot as ``python -m bench`` runs it (8 markets x 5m/15m = 16 slots, MomentumV1,
0.25 s cadence, the simulator at 600x so a 5m candle closes every 0.5 s: 30 minutes carry
12.5 simulated days of candles, windows, bets and settlements through the gateway), for
``--minutes`` of wall time (30; ``--quick``: 2), optionally with a handoff (v1 <-> v2) every
``--handoff-every-min`` minutes.

Every ``--sample-s`` seconds: the resident set (``VmRSS`` of ``/proc/<pid>/status``) and the
CPU time (``/proc/<pid>/stat``) of the gateway, each strategy host and the simulator, and the
ledger's size on disk (database + WAL) and evaluation rows. At the end, per process: RSS after
the warm-up, at the end, the maximum, and the slope over the second half (least squares,
MiB/hour); from the ledger: the simulated time its candles cover and every evaluation's outcome
(all of them must be executed). Prints a table and writes ``bench/results/soak.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baton.common import ProcessFailed, Service
from baton.control import ControlClient, phase_name
from baton.gateway.report import presence_report
from baton.local import Processes
from baton.v1 import control_pb2 as ctl
from bench.cli import reference_workload
from bench.cpu import CpuSample, foreign_cores, sample
from bench.harness import REPO_ROOT, BenchError, Workload, now_ms, wait_for
from bench.live import (
    MIB,
    BenchExit,
    Progress,
    StrategySpawner,
    evaluations_recorded,
    fmt,
    hand_off,
    ledger_rows,
    max_scheduled_ms,
    ms_quantile,
    outcome_counts,
    process_cpu_s,
    rss_bytes,
    run_live,
    start_gateway,
    start_sim,
    tables,
    write_document,
)

DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "soak.json"
QUICK_OUT = REPO_ROOT / "bench" / "results" / "soak-quick.json"
DAY_MS = 86_400_000
# "Steady": RSS grows by less than this over the second half (least squares). Why 5 MiB/h
# (docs/benchmarks.md has the long form):
# - it catches the leaks that matter: at the soak's 64 evaluations/s (230,400 an hour) it is
#   ~23 bytes per evaluation, less than one small Python object (a float is 24 bytes) kept per
#   evaluation; ~360 bytes per tick (14,400 an hour); ~70 bytes per closed candle (~77,000 an
#   hour at 600x);
# - anything under it is harmless in production, where the same growth per evaluation would
#   be 20x slower (3.2 evaluations/s at the reference 5 s cadence): 0.25 MiB/h, months before
#   a strategy pod's 512 MiB limit (examples/strategyversion-v1.yaml) or the gateway's 1 GiB
#   (charts/baton/values.yaml); even growth per wall-clock second at 5 MiB/h would take the
#   gateway (~55 MiB here) ~8 days to reach its limit;
# - it leaves room for noise: RSS moves in allocator steps, and a step in the middle of the
#   half window reads as a slope of ~1.5 x step / window (1 MiB over 15 min: 6 MiB/h).
STEADY_MIB_PER_H = 5.0
# A slope needs a long enough second half to mean anything (quick runs get no verdict).
MIN_HALF_S = 300.0
LATENCY_QUARTER = 0.25  # latency drift: p99 of the first vs the last quarter of the run


@dataclass
class Series:
    """One process's samples: seconds since the run began, RSS bytes, CPU seconds."""

    name: str
    role: str  # gateway, strategy, sim
    pid: int
    spawned_s: float
    t_s: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    ended_s: float | None = None


@dataclass
class LedgerSample:
    t_s: float
    bytes: int  # database + WAL
    evaluations: int
    # Cores used by processes outside the benchmark since the previous sample (a shared
    # machine: a stall while something else ate a core reads differently).
    foreign_cores: float | None = None


class Sampler:
    """Samples every watched process and the ledger; a process is watched from its start to
    its end (a handoff retires blue and adds green)."""

    def __init__(self, ledger: Path, began: float) -> None:
        self.ledger = ledger
        self.began = began
        self.series: list[Series] = []
        self.ledger_samples: list[LedgerSample] = []
        self._cpu: CpuSample | None = None

    def now_s(self) -> float:
        return time.monotonic() - self.began

    def watch(self, service: Service, role: str) -> None:
        self.series.append(Series(service.name, role, service.pid, self.now_s()))

    def unwatch(self, service: Service) -> None:
        for s in self.series:
            if s.pid == service.pid and s.ended_s is None:
                s.ended_s = self.now_s()

    def sample(self) -> None:
        for s in self.series:
            if s.ended_s is not None:
                continue
            t = self.now_s()
            try:
                rss, cpu = rss_bytes(s.pid), process_cpu_s(s.pid)
            except (OSError, ValueError, IndexError):
                continue  # exiting between the check and the read
            s.t_s.append(round(t, 2))
            s.rss.append(rss)
            s.cpu_s.append(cpu)
        size = sum(
            p.stat().st_size
            for p in (self.ledger, self.ledger.with_name(self.ledger.name + "-wal"))
            if p.exists()
        )
        machine = sample()
        foreign, self._cpu = foreign_cores(self._cpu, machine), machine
        self.ledger_samples.append(
            LedgerSample(round(self.now_s(), 2), size, evaluations_recorded(self.ledger), foreign)
        )

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(interval_s)

    def latest(self) -> str:
        parts = [
            f"{s.name.rpartition('-')[2] if s.role == 'strategy' else s.role} "
            f"{s.rss[-1] / MIB:.1f} MiB"
            for s in self.series
            if s.ended_s is None and s.rss
        ]
        if self.ledger_samples:
            last = self.ledger_samples[-1]
            parts.append(f"ledger {last.bytes / MIB:.1f} MiB, {last.evaluations} evaluations")
        return "; ".join(parts)


# -- figures (pure) ---------------------------------------------------------------------------


def slope_per_hour(t_s: Sequence[float], values: Sequence[float]) -> float | None:
    """Least-squares slope of ``values`` over ``t_s`` (seconds), per hour; None for fewer than
    3 points or no spread in time.

    >>> slope_per_hour([0, 1800, 3600], [10.0, 11.0, 12.0])
    2.0
    >>> slope_per_hour([0, 60, 120, 180], [5.0, 5.0, 5.0, 5.0])
    0.0
    >>> slope_per_hour([0, 1], [1.0, 2.0]) is None
    True
    """
    n = len(t_s)
    if n < 3 or n != len(values):
        return None
    mt, mv = sum(t_s) / n, sum(values) / n
    var = sum((t - mt) ** 2 for t in t_s)
    if var == 0:
        return None
    cov = sum((t - mt) * (v - mv) for t, v in zip(t_s, values, strict=True))
    return round(cov / var * 3600, 6)


def second_half(t_s: Sequence[float], start_s: float) -> int:
    """Index of the first sample of the second half of ``[start_s, t_s[-1]]``.

    >>> second_half([0, 10, 20, 30, 40, 50], 10)
    3
    """
    mid = (start_s + t_s[-1]) / 2
    return next(i for i, t in enumerate(t_s) if t >= mid)


def verdict(slope: float | None, half_s: float) -> str:
    """
    >>> verdict(1.2, 900), verdict(7.5, 900), verdict(1.0, 60), verdict(None, 900)
    ('steady', 'growing', 'too short', 'too short')
    """
    if slope is None or half_s < MIN_HALF_S:
        return "too short"
    return "steady" if slope < STEADY_MIB_PER_H else "growing"


def overall(verdicts: Sequence[str]) -> str:
    """The run's verdict from its long-lived processes': one growing process makes it growing.

    >>> overall(["steady", "steady"]), overall(["steady", "too short"]), overall(["too short",
    ...     "growing"])
    ('steady', 'too short', 'growing')
    """
    if "growing" in verdicts:
        return "growing"
    return "steady" if verdicts and all(v == "steady" for v in verdicts) else "too short"


def process_figures(s: Series, warm_s: float) -> dict[str, Any]:
    """RSS after the warm-up (``warm_s`` after the run began, or after the process started if
    it started later), at the end, the maximum, the slope over the second half; CPU."""
    start_at = max(warm_s, s.spawned_s + warm_s)
    first = next((i for i, t in enumerate(s.t_s) if t >= start_at), None)
    out: dict[str, Any] = {
        "name": s.name,
        "role": s.role,
        "pid": s.pid,
        "spawned_s": round(s.spawned_s, 1),
        "ended_s": None if s.ended_s is None else round(s.ended_s, 1),
        "samples": len(s.t_s),
        "rss_max_mib": round(max(s.rss) / MIB, 2) if s.rss else None,
    }
    if first is None or len(s.t_s) - first < 3:
        return out | {"verdict": "too short", "rss_start_mib": None, "rss_end_mib": None}
    t, rss, cpu = s.t_s[first:], s.rss[first:], s.cpu_s[first:]
    half = second_half(t, t[0])
    slope = slope_per_hour(t[half:], [r / MIB for r in rss[half:]])
    span = t[-1] - t[0]
    half_s = t[-1] - t[half]
    return out | {
        "measured_s": round(span, 1),
        "rss_start_mib": round(rss[0] / MIB, 2),
        "rss_end_mib": round(rss[-1] / MIB, 2),
        "rss_growth_mib": round((rss[-1] - rss[0]) / MIB, 2),
        "slope_mib_per_h": slope,
        "slope_window_s": round(half_s, 1),
        "cores": round((cpu[-1] - cpu[0]) / span, 3) if span else None,
        "cores_first_half": _cores(t[: half + 1], cpu[: half + 1]),
        "cores_second_half": _cores(t[half:], cpu[half:]),
        "verdict": verdict(slope, half_s),
    }


def _cores(t: Sequence[float], cpu: Sequence[float]) -> float | None:
    return round((cpu[-1] - cpu[0]) / (t[-1] - t[0]), 3) if len(t) > 1 and t[-1] > t[0] else None


def ledger_figures(samples: Sequence[LedgerSample], warm_s: float) -> dict[str, Any]:
    after = [s for s in samples if s.t_s >= warm_s] or list(samples)
    if not after:
        return {}
    first, last = after[0], after[-1]
    hours = (last.t_s - first.t_s) / 3600
    rows = last.evaluations - first.evaluations
    growth = last.bytes - first.bytes
    foreign = [s.foreign_cores for s in samples if s.foreign_cores is not None]
    return {
        "bytes_start": first.bytes,
        "bytes_end": last.bytes,
        "mib_per_h": round(growth / MIB / hours, 2) if hours else None,
        "evaluations_start": first.evaluations,
        "evaluations_end": last.evaluations,
        "bytes_per_evaluation": round(growth / rows) if rows else None,
        "foreign_cores_mean": round(sum(foreign) / len(foreign), 3) if foreign else None,
        "foreign_cores_max": max(foreign, default=None),
    }


# -- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    workload: Workload
    minutes: float
    warm_s: float
    sample_s: float
    handoff_every_s: float  # 0: no handoffs


async def soak(plan: Plan, workdir: Path, progress: Progress) -> dict[str, Any]:
    w = plan.workload
    ledger = workdir / "soak.sqlite"
    procs = Processes(workdir / "logs" / "soak")
    began = time.monotonic()
    end_at = began + plan.minutes * 60
    sampler = Sampler(ledger, began)
    handoffs: list[dict[str, Any]] = []
    spawner = StrategySpawner(procs, "soak-strategy", w.strategy_config)

    async def strategy(gateway: Service, entrypoint: str) -> Service:
        service = await spawner.start(gateway, entrypoint)
        sampler.watch(service, "strategy")
        return service

    sampling: asyncio.Task[None] | None = None
    try:
        sim = await start_sim(procs, "soak-sim", None, w.push_interval_s, time_scale=w.time_scale)
        sampler.watch(sim, "sim")
        sim_start_ms = int(sim.ready["start_ms"])
        gateway = await start_gateway(
            procs, "soak-gateway", sim, None, ledger, cadence_s=w.cadence_s
        )
        sampler.watch(gateway, "gateway")
        blue = await strategy(gateway, w.v1)
        running = w.v1
        t_first_ms = now_ms()
        sampling = asyncio.create_task(sampler.run(plan.sample_s))
        progress(
            f"soak: {w.slots} slots at {w.cadence_s:g} s, simulator x{w.time_scale:g}, "
            f"{plan.minutes:g} min"
            + (f", a handoff every {plan.handoff_every_s:g} s" if plan.handoff_every_s else "")
        )
        next_report = began + 60
        next_handoff = began + plan.handoff_every_s if plan.handoff_every_s else end_at
        async with ControlClient(gateway.ready["grpc_addr"]) as client:
            while (now := time.monotonic()) < end_at:
                if now >= next_handoff:
                    successor = w.v2 if running == w.v1 else w.v1
                    t0 = now_ms()
                    green = await strategy(gateway, successor)
                    status, new_blue, why = await hand_off(procs, client, blue, green, w.policy())
                    sampler.unwatch(green if new_blue is blue else blue)
                    if new_blue is green:
                        running = successor
                    blue = new_blue
                    handoffs.append(_handoff_record(status, why, t0))
                    progress(f"soak: handoff {len(handoffs)}: {_handoff_text(handoffs[-1])}")
                    next_handoff += plan.handoff_every_s
                if now >= next_report:
                    progress(f"soak: {sampler.latest()}")
                    next_report += 60
                await asyncio.sleep(min(1.0, max(0.0, end_at - time.monotonic())))
        t_last_ms = now_ms()
        sampling.cancel()
        sampler.sample()  # the end, exactly
        await wait_for(
            lambda: max_scheduled_ms(ledger) >= t_last_ms - 1000 * w.cadence_s,
            timeout_s=w.cadence_s * 3 + 30,
            what="the last ticks in the ledger",
            poll_s=0.2,
        )
        gateway_exit = await procs.reap(gateway, timeout_s=w.cadence_s + 20)
        if gateway_exit != 0:
            progress(f"soak: gateway exited with {gateway_exit}:\n{gateway.log_tail()}")
    except ProcessFailed as exc:
        raise BenchError(f"soak: {exc}") from exc
    finally:
        if sampling is not None:
            sampling.cancel()
        await procs.close()
    return _result(
        plan, ledger, sampler, handoffs, (t_first_ms, t_last_ms), gateway_exit, sim_start_ms
    )


def _handoff_record(status: ctl.HandoffStatus | None, why: str, t0: float) -> dict[str, Any]:
    if status is None:
        return {"result": "error", "message": why, "spawned_ms": int(t0)}
    return {
        "result": phase_name(status.phase),
        "message": why,
        "spawned_ms": int(t0),
        "from_version": status.from_version,
        "to_version": status.to_version,
        "pause_ms": round(status.pause_ms, 3),
        "transfer_ms": round(status.transfer_ms, 3),
        "state_bytes": status.state_bytes,
        "missed_status": status.missed,
    }


def _handoff_text(h: dict[str, Any]) -> str:
    if "pause_ms" not in h:
        return f"{h['result']} ({h['message']})"
    return (
        f"{h['result']} {h['from_version']}->{h['to_version']}, pause {h['pause_ms']:.1f} ms, "
        f"{h['state_bytes']} B, gateway counted {h['missed_status']} missed"
        + (f" ({h['message']})" if h["message"] else "")
    )


def _result(
    plan: Plan,
    ledger: Path,
    sampler: Sampler,
    handoffs: list[dict[str, Any]],
    span_ms: tuple[float, float],
    gateway_exit: int,
    sim_start_ms: int,
) -> dict[str, Any]:
    w = plan.workload
    outcomes = outcome_counts(
        [str(o) for (o,) in ledger_rows(ledger, "SELECT outcome FROM evaluations")]
    )
    scheduled = sum(outcomes.values())
    executed = outcomes.get("executed", 0)
    report = presence_report(ledger)
    # From the simulator's start (the REST backfill before it is history, not soak) to the
    # last candle that closed in the ledger.
    (c_last, c_n) = ledger_rows(
        ledger,
        "SELECT MAX(close_time_ms), COUNT(*) FROM candles WHERE close_time_ms > ?",
        sim_start_ms,
    )[0]
    sim_days = (c_last + 1 - sim_start_ms) / DAY_MS if c_n else 0.0
    processes = [process_figures(s, plan.warm_s) for s in sampler.series]
    # The verdict is Baton's: the gateway and the strategy host that ran to the end. The
    # simulator stands in for the exchange; its row is reported, its verdict not counted (its
    # price caches are bounded LRUs that take 512 simulated hours to fill: ~51 min at 600x).
    long_lived = [p for p in processes if p["role"] != "sim" and p["ended_s"] is None]
    wall_s = (span_ms[1] - span_ms[0]) / 1000
    steady = all(p["verdict"] == "steady" for p in long_lived)
    return {
        "workload": w.to_json(),
        "minutes": plan.minutes,
        "warm_s": plan.warm_s,
        "sample_s": plan.sample_s,
        "handoff_every_s": plan.handoff_every_s,
        "steady_threshold_mib_per_h": STEADY_MIB_PER_H,
        "min_half_s": MIN_HALF_S,
        "gateway_exit_code": gateway_exit,
        "sim_days_covered": round(sim_days, 2),
        "sim_days_expected": round(wall_s * w.time_scale * 1000 / DAY_MS, 2),
        "candles": int(c_n),
        "bets": report.bets,
        "settled": report.settled,
        "scheduled": scheduled,
        "executed": executed,
        "outcomes": outcomes,
        "all_executed": scheduled > 0 and executed == scheduled,
        "unaccounted": report.unaccounted,
        "max_gap_ms": report.max_gap_ms,
        "latency": _latency_drift(ledger, span_ms[0] + plan.warm_s * 1000, span_ms[1]),
        "handoffs": handoffs,
        "processes": processes,
        "ledger": ledger_figures(sampler.ledger_samples, plan.warm_s),
        "steady": steady,
        "verdict": overall([p["verdict"] for p in long_lived]),
        "series": [dataclasses.asdict(s) for s in sampler.series],
        "ledger_series": [dataclasses.asdict(s) for s in sampler.ledger_samples],
    }


def _latency_drift(ledger: Path, t0_ms: float, t1_ms: float) -> dict[str, Any]:
    """Tick -> decision p99 of the first and the last quarter after the warm-up: a path that
    slows down as the ledger or the in-memory books grow shows here."""
    q = (t1_ms - t0_ms) * LATENCY_QUARTER

    def p99(a: float, b: float) -> float | None:
        rows = ledger_rows(
            ledger,
            "SELECT decided_ms - scheduled_ms FROM evaluations WHERE outcome = 'executed' "
            "AND scheduled_ms >= ? AND scheduled_ms < ?",
            int(a),
            int(b),
        )
        return ms_quantile([float(v) for (v,) in rows], 99)

    first, last = p99(t0_ms, t0_ms + q), p99(t1_ms - q, t1_ms)
    return {
        "p99_first_quarter_ms": first,
        "p99_last_quarter_ms": last,
        "ratio": round(last / first, 2) if first and last is not None else None,
    }


HEADER = (
    "process",
    "RSS start MiB",
    "RSS end MiB",
    "RSS max MiB",
    "slope MiB/h (2nd half)",
    "cores (1st / 2nd half)",
    "verdict",
)


def rows(result: dict[str, Any]) -> list[list[str]]:
    return [
        [
            p["name"].removeprefix("soak-"),
            fmt(p["rss_start_mib"]),
            fmt(p["rss_end_mib"]),
            fmt(p["rss_max_mib"]),
            fmt(p.get("slope_mib_per_h"), ".2f"),
            f"{fmt(p.get('cores_first_half'), '.2f')} / {fmt(p.get('cores_second_half'), '.2f')}",
            p["verdict"],
        ]
        for p in result["processes"]
    ]


def summary(result: dict[str, Any]) -> list[str]:
    led = result["ledger"]
    lat = result["latency"]
    lines = [
        f"simulated days covered: {result['sim_days_covered']} (candles in the ledger; "
        f"expected {result['sim_days_expected']}), {result['candles']} closed candles, "
        f"{result['bets']} bets, {result['settled']} settled",
        f"evaluations: {result['executed']} executed of {result['scheduled']} scheduled: "
        + ("all" if result["all_executed"] else f"NOT ALL ({result['outcomes']})"),
        f"ledger: {fmt(led.get('bytes_end', 0) / 2**20)} MiB at the end, "
        f"{fmt(led.get('mib_per_h'))} MiB/h, {fmt(led.get('bytes_per_evaluation'), '.0f')} "
        "bytes per evaluation",
        f"other processes on the machine: {fmt(led.get('foreign_cores_mean'), '.2f')} cores "
        f"on average, {fmt(led.get('foreign_cores_max'), '.2f')} at most (per sample interval)",
        f"tick -> decision p99: {fmt(lat['p99_first_quarter_ms'])} ms in the first quarter, "
        f"{fmt(lat['p99_last_quarter_ms'])} ms in the last"
        + (f" ({lat['ratio']:.2f}x)" if lat["ratio"] is not None else ""),
    ]
    if result["handoffs"]:
        done = sum(1 for h in result["handoffs"] if h["result"] == "completed")
        lines.append(f"handoffs: {done}/{len(result['handoffs'])} completed")
    growing = [p["name"] for p in result["processes"] if p["verdict"] == "growing"]
    lines.append(
        f"memory: {result['verdict'].upper()}"
        + (f" ({', '.join(growing)})" if growing else "")
        + "; steady: the RSS slope of the gateway and of the strategy host running at the end, "
        f"over the second half, under {STEADY_MIB_PER_H:g} MiB/h, measured over >= "
        f"{MIN_HALF_S / 60:g} min (the simulator's is reported, not judged)"
    )
    return lines


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--quick", action="store_true", help="a 2-minute smoke run (no verdict)")
    p.add_argument("--minutes", type=float, help="wall time (30; quick 2)")
    p.add_argument("--warmup-s", type=float, help="seconds before the start figures (60; quick 30)")
    p.add_argument("--sample-s", type=float, help="seconds between samples (5; quick 2)")
    p.add_argument(
        "--handoff-every-min",
        type=float,
        default=0.0,
        help="a handoff (v1 <-> v2) every this many minutes (default 0: none)",
    )
    p.add_argument("--cadence-s", type=float, help="evaluation cadence (the reference 0.25)")
    p.add_argument(
        "--time-scale", type=float, help="simulated seconds per real second (the reference 600)"
    )
    p.add_argument(
        "--out", type=Path, help=f"JSON (default {DEFAULT_OUT}; quick: {QUICK_OUT.name})"
    )
    p.add_argument("--workdir", type=Path, help="keep the ledger and logs here (default: temp)")
    return p


def plan_of(args: argparse.Namespace) -> Plan:
    quick = bool(args.quick)
    w = reference_workload(handoffs=0, baseline_swaps=0)
    if args.cadence_s is not None:
        w = dataclasses.replace(w, cadence_s=args.cadence_s)
    if args.time_scale is not None:
        w = dataclasses.replace(w, time_scale=args.time_scale)
    return Plan(
        workload=w,
        minutes=args.minutes if args.minutes is not None else (2.0 if quick else 30.0),
        warm_s=args.warmup_s if args.warmup_s is not None else (30.0 if quick else 60.0),
        sample_s=args.sample_s if args.sample_s is not None else (2.0 if quick else 5.0),
        handoff_every_s=args.handoff_every_min * 60,
    )


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    plan = plan_of(args)
    if plan.minutes * 60 <= plan.warm_s or plan.sample_s <= 0 or plan.handoff_every_s < 0:
        print("bench.soak: --minutes must exceed the warm-up; --sample-s > 0", file=sys.stderr)
        return 2
    try:
        result, document = run_live(
            "bench.soak",
            argv,
            args.workdir,
            lambda workdir, progress: soak(plan, workdir, progress),
        )
    except BenchExit as exc:
        return exc.code
    document |= tables("soak", HEADER, rows(result))
    document["summary"] = summary(result)
    document |= result
    out: Path = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    write_document(out, document)
    print("\n".join(document["soak_table"]))
    print()
    print("\n".join(document["summary"]))
    print(f"\nresults: {out}  ({document['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
