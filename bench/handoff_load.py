"""``python -m bench.scale handoff``: consecutive handoffs under heavy load (real processes).

Per slot count (default 1000, 2000, 3000 and 4000: up to the knee of ``bench.scale dispatch``): the
dispatch point's set-up (simulator in real time, one kline update per stream every 2 s; a gateway at
a 1 s cadence; made-up markets x 5m/15m) with a blue strategy host running MomentumV1. After a
warm-up, a **steady window** of ``--ticks`` ticks with blue alone, then a **handoff window**:
``--handoffs`` consecutive handoffs alternating MomentumV2 and MomentumV1 (v1 -> v2 migrates the
state), each one a new strategy host process started, promoted (shadow 1 tick, bake 2 ticks, as
``python -m bench``) and its predecessor reaped. The handoff window runs from the first green's
start to the last handoff's end.

From the ledger: evaluations not executed (any outcome but ``executed``) and tick -> decision
latency (``decided_ms - scheduled_ms``) in each window, and their ratio; from each
``HandoffStatus``: pause, state transfer, duration, the gateway's own miss count. The claim
under test: zero evaluations missed across the handoffs at the largest slot count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from baton.common import ProcessFailed
from baton.control import ControlClient, phase_name
from baton.local import Processes
from baton.v1 import control_pb2 as ctl
from bench.cli import MOMENTUM_V1, MOMENTUM_V2
from bench.cpu import foreign_cores, sample
from bench.harness import (
    REPO_ROOT,
    BenchError,
    Workload,
    ledger_ticks,
    now_ms,
    wait_for,
)
from bench.live import (
    TIMEFRAMES,
    Progress,
    StrategySpawner,
    evaluations_recorded,
    fmt,
    hand_off,
    ledger_rows,
    machine_busy_s,
    markets,
    max_scheduled_ms,
    ms_quantile,
    outcome_counts,
    process_cpu_s,
    settle,
    start_gateway,
    start_sim,
)
from bench.stats import bucket

DEFAULT_SLOTS = (1000, 2000, 3000, 4000)
DEFAULT_HANDOFFS = 3
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "scale-handoff.json"
CADENCE_S = 1.0
EXECUTED = "executed"


def workload(slots: int, handoffs: int, warm_ticks: int) -> Workload:
    """The point as a ``bench.harness.Workload``: its handoff policy and JSON are the main
    benchmark's."""
    if slots % len(TIMEFRAMES):
        raise BenchError(f"slots must be a multiple of {len(TIMEFRAMES)}, got {slots}")
    specs = tuple(markets(slots // len(TIMEFRAMES)))
    return Workload(
        name=f"handoff-{slots}",
        description=f"{len(specs)} made-up markets x 5m/15m, momentum v1 <-> v2, 1 s cadence",
        cadence_s=CADENCE_S,
        v1=MOMENTUM_V1,
        v2=MOMENTUM_V2,
        strategy_config={},
        handoffs=handoffs,
        baseline_swaps=0,
        warm_ticks=warm_ticks,
        markets=specs,
        sim_symbols=tuple(m.partition("=")[2] for m in specs),
        push_interval_s=2.0,  # Binance's rate, as bench.scale dispatch
        time_scale=1.0,
    )


def window_figures(rows: Sequence[tuple[int, int | None, int | None, str]]) -> dict[str, Any]:
    """Figures of the evaluations ``(scheduled_ms, dispatched_ms, decided_ms, outcome)`` of one
    window.

    >>> w = window_figures([(0, 1, 10, "executed"), (0, 2, 30, "executed"), (1000, 1001, None,
    ...     "timeout")])
    >>> w["evaluations"], w["ticks"], w["not_executed"], w["outcomes"], w["latency_ms_max"]
    (3, 2, 1, {'executed': 2, 'timeout': 1}, 30.0)
    """
    latency = [float(d - s) for s, _, d, o in rows if o == EXECUTED and d is not None]
    lag = [float(p - s) for s, p, _, _ in rows if p is not None]
    outcomes = outcome_counts([o for *_, o in rows])
    return {
        "evaluations": len(rows),
        "ticks": len({s for s, *_ in rows}),
        "executed": outcomes.get(EXECUTED, 0),
        "not_executed": len(rows) - outcomes.get(EXECUTED, 0),
        "outcomes": outcomes,
        "latency_ms_p50": ms_quantile(latency, 50),
        "latency_ms_p99": ms_quantile(latency, 99),
        "latency_ms_max": max(latency) if latency else None,
        "dispatch_lag_ms_p99": ms_quantile(lag, 99),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 2)


def _in(rows: list[tuple[Any, ...]], t0: float, t1: float) -> list[tuple[Any, ...]]:
    return [r for r in rows if t0 <= r[0] < t1]


def _handoff_record(
    index: int, status: ctl.HandoffStatus | None, spawned_ms: float, ended_ms: float, why: str
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": index,
        "result": "error" if status is None else phase_name(status.phase),
        "message": why,
        "spawned_ms": int(spawned_ms),
        "ended_ms": int(ended_ms),
        "cycle_ms": round(ended_ms - spawned_ms, 1),
    }
    if status is not None:
        out |= {
            "handoff_id": status.handoff_id,
            "from_version": status.from_version,
            "to_version": status.to_version,
            "pause_ms": round(status.pause_ms, 3),
            "transfer_ms": round(status.transfer_ms, 3),
            "handoff_ms": status.finished_ms - status.started_ms,
            "state_bytes": status.state_bytes,
            "digest_ok": bool(status.export_digest)
            and status.import_digest == status.export_digest,
            "missed_status": status.missed,
            "divergences": status.divergences,
            "steps": [(s.name, s.t_ms - status.started_ms, s.detail) for s in status.steps],
        }
    return out


def _handoff_line(h: dict[str, Any], n: int) -> str:
    text = f"handoff {h['index'] + 1}/{n}: {h['result']}"
    if "pause_ms" in h:
        text += (
            f" {h['from_version']}->{h['to_version']}, pause {h['pause_ms']:.1f} ms, "
            f"{h['state_bytes']} B in {h['transfer_ms']:.0f} ms, handoff {h['handoff_ms']} ms, "
            f"gateway counted {h['missed_status']} missed"
        )
    text += f", cycle {h['cycle_ms']:.0f} ms"
    return text + (f" ({h['message']})" if h["message"] else "")


async def handoff_point(
    slots: int,
    handoffs: int,
    ticks: int,
    warm_ticks: int,
    workdir: Path,
    progress: Progress,
) -> dict[str, Any]:
    w = workload(slots, handoffs, warm_ticks)
    tag = w.name
    ledger = workdir / f"{tag}.sqlite"
    procs = Processes(workdir / "logs" / tag)
    records: list[dict[str, Any]] = []
    strategy = StrategySpawner(procs, tag, w.strategy_config).start

    try:
        sim = await start_sim(procs, f"{tag}-sim", w.sim_symbols, w.push_interval_s)
        gateway = await start_gateway(procs, f"{tag}-gateway", sim, w.markets, ledger)
        blue = await strategy(gateway, w.v1)
        progress(f"{tag}: processes up; warming up {warm_ticks} ticks")
        await wait_for(
            lambda: evaluations_recorded(ledger) >= warm_ticks * slots,
            timeout_s=warm_ticks * CADENCE_S * 3 + 120,
            what=f"{warm_ticks} ticks in the ledger",
            poll_s=0.5,
        )
        await settle(gateway.pid)
        # Steady window: blue alone.
        cpu0, busy0, g0 = sample(), machine_busy_s(), process_cpu_s(gateway.pid)
        t0 = now_ms()
        await asyncio.sleep(ticks * CADENCE_S)
        t1 = now_ms()
        g1, busy1, cpu1 = process_cpu_s(gateway.pid), machine_busy_s(), sample()
        steady_cpu = _cpu(g1 - g0, busy1 - busy0, foreign_cores(cpu0, cpu1), t1 - t0)
        progress(f"{tag}: steady window of {ticks} ticks done; {handoffs} handoffs")
        # Handoff window: from the first green's start to the last handoff's end.
        async with ControlClient(gateway.ready["grpc_addr"]) as client:
            h0 = now_ms()
            running = w.v1
            for i in range(handoffs):
                spawned_ms = now_ms()
                # Every handoff deploys the other version (after a failed one, the same move).
                successor = w.v2 if running == w.v1 else w.v1
                green = await strategy(gateway, successor)
                status, blue, why = await hand_off(procs, client, blue, green, w.policy())
                if status is not None and status.phase == ctl.HANDOFF_PHASE_COMPLETED:
                    running = successor
                records.append(_handoff_record(i, status, spawned_ms, now_ms(), why))
                progress(f"{tag}: {_handoff_line(records[-1], handoffs)}")
            h1 = now_ms()
        g2, busy2, cpu2 = process_cpu_s(gateway.pid), machine_busy_s(), sample()
        handoff_cpu = _cpu(g2 - g1, busy2 - busy1, foreign_cores(cpu1, cpu2), h1 - t1)
        # The handoff window's last tick resolves at its deadline (the next tick), then flushes.
        await wait_for(
            lambda: max_scheduled_ms(ledger) >= h1,
            timeout_s=CADENCE_S * 3 + 30,
            what="the handoff window's ticks in the ledger",
            poll_s=0.5,
        )
        gateway_exit = await procs.reap(gateway, timeout_s=CADENCE_S + 20)
        if gateway_exit != 0:
            progress(f"{tag}: gateway exited with {gateway_exit}:\n{gateway.log_tail()}")
    except ProcessFailed as exc:
        raise BenchError(f"{tag}: {exc}") from exc
    finally:
        await procs.close()
    return _point_result(w, ledger, records, (t0, t1, h0, h1), steady_cpu, handoff_cpu) | {
        "gateway_exit_code": gateway_exit
    }


def _cpu(
    gateway_s: float, busy_s: float, foreign: float | None, window_ms: float
) -> dict[str, Any]:
    window_s = window_ms / 1000
    return {
        "gateway_cores": round(gateway_s / window_s, 3),
        "machine_busy_cores": round(busy_s / window_s, 3),
        "foreign_cores": foreign,
    }


def _point_result(
    w: Workload,
    ledger: Path,
    records: list[dict[str, Any]],
    bounds: tuple[float, float, float, float],
    steady_cpu: dict[str, Any],
    handoff_cpu: dict[str, Any],
) -> dict[str, Any]:
    t0, t1, h0, h1 = bounds
    rows = ledger_rows(
        ledger,
        "SELECT scheduled_ms, dispatched_ms, decided_ms, outcome FROM evaluations "
        "WHERE scheduled_ms >= ? AND scheduled_ms < ? ORDER BY scheduled_ms",
        int(t0),
        int(h1),
    )
    steady = window_figures(_in(rows, t0, t1)) | steady_cpu | {"window_s": _s3(t1 - t0)}
    during = window_figures(_in(rows, h0, h1)) | handoff_cpu | {"window_s": _s3(h1 - h0)}
    # Per handoff, by deadline (as python -m bench): from its green's start to the next one's.
    ticks = ledger_ticks(ledger)
    not_executed = frozenset(t.outcome for t in ticks) - {EXECUTED}
    starts = [r["spawned_ms"] for r in records] + [int(h1)]
    _, intervals = bucket(ticks, starts, not_executed)
    for r, interval, end in zip(records, intervals[: len(records)], starts[1:], strict=True):
        r["not_executed_ledger"] = interval.missed
        r["not_executed_by_outcome"] = interval.missed_by_reason
        r["latency_ms_p99"] = window_figures(_in(rows, r["spawned_ms"], end))["latency_ms_p99"]
    completed = [r for r in records if r["result"] == "completed"]
    result: dict[str, Any] = {
        "slots": w.slots,
        "workload": w.to_json(),
        "handoffs": len(records),
        "completed": len(completed),
        "steady": steady,
        "during_handoffs": during,
        "latency_p99_ratio": _ratio(during["latency_ms_p99"], steady["latency_ms_p99"]),
        "gateway_cores_ratio": _ratio(during["gateway_cores"], steady["gateway_cores"]),
        "pause_ms": _spread([r["pause_ms"] for r in completed]),
        "transfer_ms": _spread([r["transfer_ms"] for r in completed]),
        "handoff_ms": _spread([float(r["handoff_ms"]) for r in completed]),
        "state_bytes": max((r["state_bytes"] for r in completed), default=None),
        "digests_ok": all(r["digest_ok"] for r in completed),
        "missed_status": sum(r.get("missed_status", 0) for r in records),
        "handoff_records": records,
    }
    result["zero_missed"] = during["not_executed"] == 0 and len(completed) == len(records)
    return result


def _spread(values: list[float]) -> dict[str, float | None]:
    """
    >>> _spread([3.0, 1.0, 2.0])
    {'min': 1.0, 'p50': 2.0, 'max': 3.0}
    >>> _spread([])
    {'min': None, 'p50': None, 'max': None}
    """
    return {
        "min": min(values, default=None),
        "p50": ms_quantile(values, 50),
        "max": max(values, default=None),
    }


HEADER = (
    "slots",
    "handoffs ok",
    "not executed: steady / handoffs",
    "pause p50 / max ms",
    "transfer p50 / max ms",
    "handoff p50 / max s",
    "latency p99 ms: steady / handoffs",
    "p99 ratio",
    "gateway cores: steady / handoffs",
    "state",
)


def rows(results: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in results:
        s, d = r["steady"], r["during_handoffs"]
        h = r["handoff_ms"]
        out.append(
            [
                str(r["slots"]),
                f"{r['completed']}/{r['handoffs']}",
                f"{s['not_executed']} / {d['not_executed']}",
                f"{fmt(r['pause_ms']['p50'])} / {fmt(r['pause_ms']['max'])}",
                f"{fmt(r['transfer_ms']['p50'], '.0f')} / {fmt(r['transfer_ms']['max'], '.0f')}",
                f"{_s(h['p50'])} / {_s(h['max'])}",
                f"{fmt(s['latency_ms_p99'])} / {fmt(d['latency_ms_p99'])}",
                "-" if r["latency_p99_ratio"] is None else f"{r['latency_p99_ratio']:.2f}x",
                f"{s['gateway_cores']:.2f} / {d['gateway_cores']:.2f}",
                "-" if r["state_bytes"] is None else f"{r['state_bytes'] / 1e3:.0f} kB",
            ]
        )
    return out


def _s(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f}"


def claim(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The claim at the largest slot count measured: every evaluation scheduled during the
    handoffs executed, and every handoff completed."""
    top = max(results, key=lambda r: r["slots"])
    d = top["during_handoffs"]
    held = bool(top["zero_missed"])
    text = (
        f"zero missed across {top['handoffs']} handoffs at {top['slots']} slots: "
        + ("HELD" if held else "NOT HELD")
        + f" ({d['not_executed']} of {d['evaluations']} evaluations not executed"
        + (f": {_nonexecuted(d['outcomes'])}" if d["not_executed"] else "")
        + f"; {top['completed']}/{top['handoffs']} handoffs completed)"
    )
    return {"slots": top["slots"], "held": held, "text": text}


def _nonexecuted(outcomes: dict[str, int]) -> str:
    return ", ".join(f"{n} {o}" for o, n in outcomes.items() if o != EXECUTED)


def _s3(ms: float) -> float:
    return round(ms / 1000, 3)
