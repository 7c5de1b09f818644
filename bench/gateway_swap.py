"""``python -m bench.gateway_swap``: what replacing the gateway costs, three ways, in one run
(issue 15, docs/gateway-standby.md). Real processes on loopback: the simulator, the gateway(s),
one strategy host (MomentumV1), the reference 16 slots.

- ``restart``: one gateway without election, stopped (SIGTERM: it resolves its tick in flight
  and writes it) and a new process started on the same ledger and address: a deployment of the
  gateway before issue 15.

Every swap is asked at a random moment of the tick (the same moments in every arm, ``--seed``).
- ``handover``: two replicas with leader election (``leader.backend = local``, one ledger, an
  address each, the host given both, ``baton.demo_replicas``); the leader asked to hand over
  (``ControlService.Handover``, as ``baton gateway handover``): at a tick boundary.
- ``failover``: the same replicas, the leader SIGKILLed at a random moment of the tick.

Each arm swaps ``--swaps`` times, a few ticks apart, and is measured from its own ledger by the
report's own reading of consecutive runs (``report_gateways.gateway_changes``): per swap the
ticks nobody evaluated (``missed_ticks``) and the pause (from the schedule of the first tick
the old gateway did not dispatch to the new one's first dispatch). Ratios are against
``restart`` of the same run. Prints a table and writes ``bench/results/gateway_swap.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
from pathlib import Path
from typing import Any

from baton.common import Service
from baton.demo_replicas import Replicas, free_port
from baton.gateway.ledger import open_readonly
from baton.gateway.report_gateways import GatewayChange, gateway_changes
from baton.local import GatewayOptions, Processes, SimOptions
from bench.cli import MOMENTUM_V1
from bench.harness import REPO_ROOT, BenchError, wait_for
from bench.live import BenchExit, Progress, run_live

ARMS = ("restart", "handover", "failover")
DEFAULT_SWAPS = 5
DEFAULT_CADENCE_S = 5.0  # the reference workload
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "gateway_swap.json"
BETWEEN_TICKS = 3  # ticks between two swaps (the strategy re-attached and evaluated again)


def _executed(ledger: Path) -> int:
    conn = open_readonly(ledger)
    try:
        (n,) = conn.execute(
            "SELECT COUNT(*) FROM evaluations WHERE outcome = 'executed'"
        ).fetchone()
        return int(n)
    finally:
        conn.close()


async def _ticks_pass(ledger: Path, ticks: int, cadence_s: float, slots: int) -> None:
    """Until ``ticks`` more ticks were executed (bounded): the swap before is over."""
    target = _executed(ledger) + ticks * slots
    await wait_for(
        lambda: _executed(ledger) >= target,
        timeout_s=ticks * cadence_s + 60,
        what=f"{ticks} more ticks executed",
    )


async def arm_run(
    arm: str, swaps: int, cadence_s: float, seed: int, workdir: Path, progress: Progress
) -> dict[str, Any]:
    ledger = workdir / f"{arm}.sqlite"
    procs = Processes(workdir / f"logs-{arm}")
    options = GatewayOptions(ledger=ledger, cadence_s=cadence_s, stall_timeout_s=5.0)
    rng = random.Random(seed)
    slots = 16
    try:
        sim = await procs.sim("sim", SimOptions(seed=seed, time_scale=60.0))
        replicas: Replicas | None = None
        gateway: Service | None = None
        if arm == "restart":
            addr = f"127.0.0.1:{free_port()}"
            env = {"BATON_GATEWAY__LISTEN": addr}
            gateway = await procs.gateway("gateway-0", sim, options, env=env)
        else:
            replicas = Replicas(procs, sim, options)
            addr = await replicas.start()
        await procs.strategy("strategy", addr, MOMENTUM_V1, pod_name="momentum-v1")
        await _ticks_pass(ledger, BETWEEN_TICKS, cadence_s, slots)
        for i in range(swaps):
            # Every swap is asked at a random moment of the tick, as a deploy or a crash comes
            # (a handover then waits for its next tick by itself).
            await asyncio.sleep(rng.uniform(0, cadence_s))
            if replicas is not None:
                await replicas.change("handover" if arm == "handover" else "failover")
            else:
                assert gateway is not None
                await procs.reap(gateway, timeout_s=cadence_s + 10)
                gateway = await procs.gateway(f"gateway-{i + 1}", sim, options, env=env)
            progress(f"{arm}: swap {i + 1}/{swaps}")
            await _ticks_pass(ledger, BETWEEN_TICKS, cadence_s, slots)
        if replicas is not None:
            await replicas.stop(timeout_s=cadence_s + 10)
        elif gateway is not None:
            await procs.reap(gateway, timeout_s=cadence_s + 10)
    finally:
        await procs.close()
    conn = open_readonly(ledger)
    try:
        changes = gateway_changes(conn, restarts=True)
    finally:
        conn.close()
    if len(changes) != swaps:
        raise BenchError(f"{arm}: {len(changes)} swaps in the ledger, expected {swaps}")
    return summary(arm, changes, cadence_s)


def summary(arm: str, changes: tuple[GatewayChange, ...], cadence_s: float) -> dict[str, Any]:
    missed = [c.missed_ticks for c in changes]
    pauses = [c.pause_ms for c in changes if c.pause_ms is not None]
    return {
        "arm": arm,
        "swaps": len(changes),
        "cadence_s": cadence_s,
        "missed_ticks_per_swap": statistics.fmean(missed),
        "missed_ticks_max": max(missed),
        "swaps_with_0_missed": sum(1 for m in missed if m == 0),
        "pause_ms_median": statistics.median(pauses) if pauses else None,
        "pause_ms_max": max(pauses) if pauses else None,
        "changes": [
            {"kind": c.kind, "term": c.term, "missed_ticks": c.missed_ticks, "pause_ms": c.pause_ms}
            for c in changes
        ],
    }


def rows(results: list[dict[str, Any]]) -> list[list[str]]:
    base = next((r for r in results if r["arm"] == "restart"), None)
    out = []
    for r in results:
        ratio = "-"
        if base is not None and base["pause_ms_median"] and r["pause_ms_median"] is not None:
            ratio = f"{r['pause_ms_median'] / base['pause_ms_median']:.3f}x"
        out.append(
            [
                r["arm"],
                str(r["swaps"]),
                f"{r['missed_ticks_per_swap']:.1f}",
                str(r["missed_ticks_max"]),
                f"{r['swaps_with_0_missed']}/{r['swaps']}",
                "-" if r["pause_ms_median"] is None else f"{r['pause_ms_median']:.0f}",
                "-" if r["pause_ms_max"] is None else str(r["pause_ms_max"]),
                ratio,
            ]
        )
    return out


def table(results: list[dict[str, Any]]) -> str:
    headers = [
        "arm", "swaps", "missed ticks/swap", "max", "0 missed", "pause ms p50", "max",
        "pause vs restart",
    ]  # fmt: skip
    body = rows(results)
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.gateway_swap",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS), help="(all three)")
    p.add_argument("--swaps", type=int, default=DEFAULT_SWAPS, help=f"per arm ({DEFAULT_SWAPS})")
    p.add_argument(
        "--cadence-s", type=float, default=DEFAULT_CADENCE_S, help=f"({DEFAULT_CADENCE_S:g})"
    )
    p.add_argument("--seed", type=int, default=1, help="kill moments and prices (1)")
    p.add_argument("--out", type=Path, help=f"JSON results (default {DEFAULT_OUT})")
    p.add_argument("--workdir", type=Path, help="keep ledgers and logs here (default: temp)")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.swaps < 1:
        print("bench.gateway_swap: --swaps must be >= 1", file=sys.stderr)
        return 2

    async def body(workdir: Path, progress: Progress) -> list[dict[str, Any]]:
        return [
            await arm_run(arm, args.swaps, args.cadence_s, args.seed, workdir, progress)
            for arm in args.arms
        ]

    try:
        results, document = run_live("bench.gateway_swap", argv, args.workdir, body)
    except BenchExit as exc:
        return exc.code
    document["results"] = results
    out = args.out or DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    print(table(results))
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
