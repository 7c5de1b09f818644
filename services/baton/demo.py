"""``baton demo``: the whole bot on this machine, no Kubernetes.

Starts the exchange simulator, the market gateway and strategy v1 as local processes (each on
loopback), lets the clock run for ``--duration`` seconds, stops the gateway cleanly (the tick in
flight is resolved and recorded), then prints the presence report read back from the ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

from baton.common import ProcessFailed, Service, spawn_baton
from baton.control import ControlClient, summary_line
from baton.gateway.report import format_report, presence_report, report_to_json
from baton.gateway.timeline import write_html
from baton.v1 import control_pb2 as ctl

V1 = "baton.strategy.examples.momentum_v1:MomentumV1"
V2 = "baton.strategy.examples.momentum_v2:MomentumV2"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="baton demo", description=__doc__)
    p.add_argument("--duration", type=float, default=60.0, help="seconds the clock runs (60)")
    p.add_argument(
        "--time-scale",
        type=float,
        default=60.0,
        help="simulated exchange seconds per real second (60: a 5m window closes every 5 s)",
    )
    p.add_argument("--cadence-s", type=float, default=5.0, help="evaluation cadence (5)")
    p.add_argument("--seed", type=int, default=7, help="price path seed (7)")
    p.add_argument(
        "--workdir",
        type=Path,
        help="keep ledger, logs and the timeline page presence.html here (default: a temp dir)",
    )
    p.add_argument(
        "--handoffs",
        type=int,
        default=0,
        help="live handoffs to perform while the clock runs, alternating v2 and v1 (0)",
    )
    p.add_argument("--bake-s", type=float, default=2.0, help="bake window of each handoff (2)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


async def run_demo(args: argparse.Namespace, workdir: Path) -> Path:
    """Run the processes; the ledger they wrote."""
    logs = workdir / "logs"
    ledger = workdir / "ledger.sqlite"
    services: list[Service] = []
    try:
        sim = await spawn_baton(
            "sim",
            ["sim", "--port", "0", "--seed", str(args.seed), "--time-scale", str(args.time_scale)],
            log_dir=logs,
        )
        services.append(sim)
        gateway = await spawn_baton(
            "gateway",
            ["gateway"],
            log_dir=logs,
            env={
                "BATON_GATEWAY__LISTEN": "127.0.0.1:0",
                "BATON_METRICS__LISTEN": "127.0.0.1:0",  # never clash with a gateway on 9464
                "BATON_GATEWAY__CADENCE_S": str(args.cadence_s),
                "BATON_EXCHANGE__WS_URL": sim.ready["ws_url"],
                "BATON_EXCHANGE__REST_URL": sim.ready["rest_url"],
                "BATON_LEDGER__PATH": str(ledger),
            },
        )
        services.append(gateway)
        strategy = await spawn_baton(
            "strategy-v1",
            [
                "strategy",
                "--gateway",
                gateway.ready["grpc_addr"],
                "--entrypoint",
                V1,
                "--pod-name",
                "momentum-v1",
            ],
            log_dir=logs,
        )
        services.append(strategy)
        print(
            f"demo: simulator, gateway and strategy v1 running; clock runs {args.duration:g}s "
            f"(logs in {logs})",
            file=sys.stderr,
        )
        await _run_handoffs(args, gateway, strategy, logs, services)
        code = await gateway.stop(timeout_s=args.cadence_s + 10)
        if code != 0:
            raise ProcessFailed(f"gateway exited with {code}:\n{gateway.log_tail()}")
    finally:
        for service in reversed(services):
            await service.stop()
    return ledger


async def _run_handoffs(
    args: argparse.Namespace,
    gateway: Service,
    blue: Service,
    logs: Path,
    services: list[Service],
) -> None:
    """Let the clock run for ``--duration``, performing ``--handoffs`` handoffs spread evenly
    over it: each starts the other version as a new process and promotes it."""
    loop = asyncio.get_running_loop()
    end = loop.time() + args.duration
    n = max(args.handoffs, 0)
    policy = ctl.HandoffPolicy(bake_s=args.bake_s)
    async with ControlClient(gateway.ready["grpc_addr"]) as client:
        for i in range(n):
            # Pace the handoffs through the run: this is the demo's schedule, not a wait.
            await asyncio.sleep(max(0.0, (end - loop.time()) / (n - i + 1)))
            version, entrypoint = ("v2", V2) if i % 2 == 0 else ("v1", V1)
            green = await spawn_baton(
                f"strategy-{version}-{i + 1}",
                [
                    "strategy",
                    "--gateway",
                    gateway.ready["grpc_addr"],
                    "--entrypoint",
                    entrypoint,
                    "--pod-name",
                    f"momentum-{version}-{i + 1}",
                ],
                log_dir=logs,
            )
            services.append(green)
            started = await client.promote(green.ready["instance_id"], policy)
            async with asyncio.timeout(120):
                status = await client.wait(started.handoff_id)
            print(f"demo: handoff {i + 1}/{n} {summary_line(status)}", file=sys.stderr)
            if status.phase == ctl.HANDOFF_PHASE_COMPLETED:
                await blue.stop()  # drained already: this only reaps the process
                blue = green
    await asyncio.sleep(max(0.0, end - loop.time()))


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="baton-demo-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            report = presence_report(asyncio.run(run_demo(args, workdir)))
        except ProcessFailed as exc:
            print(f"baton demo: {exc}", file=sys.stderr)
            return 1
        if args.workdir:  # a kept workdir gets the timeline page next to the ledger it draws
            page = write_html(workdir / "ledger.sqlite", workdir / "presence.html")
            print(f"demo: presence timeline: {page.resolve()}", file=sys.stderr)
        if args.json:
            print(json.dumps(report_to_json(report), indent=2, sort_keys=True))
        else:
            print(format_report(report))
    return 0
