"""``baton demo``: the whole bot on this machine, no Kubernetes.

Starts the exchange simulator, the market gateway and strategy v1 as local processes (each on
loopback), lets the clock run for ``--duration`` seconds, stops the gateway cleanly (the tick in
flight is resolved and recorded), then prints the presence report read back from the ledger.
With ``--strategies 2`` a second, different strategy (``reversion``) shares the gateway: a book
of two, each with its own ACTIVE, epoch and bets; handoffs hand off ``momentum`` only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
from pathlib import Path

from baton import wire
from baton.common import ProcessFailed, Service
from baton.control import ControlClient, summary_line
from baton.demo_replicas import Replicas, run_changes
from baton.gateway.core.venue import PricingKind
from baton.gateway.report import format_report, presence_report, report_to_json
from baton.gateway.timeline import write_html
from baton.local import GatewayOptions, Processes, SimOptions
from baton.model import HandoffPolicy, Role, StandbyMode, StandbyPolicy
from baton.v1 import control_pb2 as ctl

V1 = "baton.strategy.examples.momentum_v1:MomentumV1"
V2 = "baton.strategy.examples.momentum_v2:MomentumV2"
# The book's other strategies, in the order --strategies adds them (each as its pod's name).
OTHERS = (("reversion", "baton.strategy.examples.reversion_v1:ReversionV1"),)


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
    p.add_argument(
        "--strategies",
        type=int,
        choices=range(1, len(OTHERS) + 2),
        default=1,
        help="strategies sharing the gateway: 1 (momentum) or 2 (and reversion); the report "
        "adds per_strategy",
    )
    p.add_argument(
        "--pricing",
        choices=[k.value for k in PricingKind],
        default=PricingKind.RANDOM_WALK.value,
        help="how the paper venue prices shares (random_walk; flat: 0.50 whatever the window did)",
    )
    p.add_argument(
        "--standby",
        choices=[m.value for m in StandbyMode],
        default=StandbyPolicy().mode.value,
        help="momentum's standby mode (docs/standby.md): hot runs a second instance that "
        "follows and takes over at once; checkpoint rebuilds the state in the next instance "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--kill-active",
        type=int,
        default=0,
        metavar="N",
        help="SIGKILL momentum's ACTIVE instance N times at random moments, starting a new "
        "instance each time (a pod's restart); the report adds failovers (0)",
    )
    p.add_argument(
        "--gateway-handovers",
        type=int,
        default=0,
        metavar="N",
        help="run the gateway as two replicas with leader election and hand the leadership "
        "over N times (a SIGTERM of the leader); the report adds gateway_handovers (0)",
    )
    p.add_argument(
        "--gateway-kills",
        type=int,
        default=0,
        metavar="N",
        help="run the gateway as two replicas and SIGKILL the leader N times at random moments, "
        "starting a new replica each time; the report adds gateway_failovers (0)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


async def run_demo(args: argparse.Namespace, workdir: Path) -> Path:
    """Run the processes; the ledger they wrote."""
    logs = workdir / "logs"
    ledger = workdir / "ledger.sqlite"
    procs = Processes(logs)
    replicas: Replicas | None = None
    try:
        sim = await procs.sim("sim", SimOptions(seed=args.seed, time_scale=args.time_scale))
        options = GatewayOptions(ledger=ledger, cadence_s=args.cadence_s, pricing=args.pricing)
        gateway: Service | str
        if args.gateway_handovers or args.gateway_kills:
            replicas = Replicas(procs, sim, options)
            gateway = await replicas.start()
        else:
            gateway = await procs.gateway("gateway", sim, options)
        addr = gateway if isinstance(gateway, str) else gateway.ready["grpc_addr"]
        standby = ["--standby", args.standby]
        strategy = await procs.strategy(
            "strategy-v1", gateway, V1, pod_name="momentum-v1", extra=standby
        )
        hosts = {"momentum-v1": strategy}
        if args.standby == StandbyMode.HOT.value:
            hosts["momentum-v1-b"] = await procs.strategy(
                "strategy-v1-b", gateway, V1, pod_name="momentum-v1-b", extra=standby
            )
        others = OTHERS[: args.strategies - 1]
        for name, entrypoint in others:
            await procs.strategy(f"strategy-{name}", gateway, entrypoint, pod_name=f"{name}-v1")
        book = ", ".join(["momentum v1", *(f"{name} v1" for name, _ in others)])
        print(
            f"demo: simulator, gateway and strategies {book} running; clock runs "
            f"{args.duration:g}s, bets priced {args.pricing} (logs in {logs})",
            file=sys.stderr,
        )
        if replicas is not None:
            await run_changes(
                replicas,
                handovers=args.gateway_handovers,
                kills=args.gateway_kills,
                duration_s=args.duration,
                cadence_s=args.cadence_s,
                seed=args.seed,
            )
            await replicas.stop(timeout_s=args.cadence_s + 10)
            return ledger
        if args.kill_active:
            await _run_kills(args, procs, addr, hosts)
        else:
            await _run_handoffs(args, procs, addr, strategy)
        assert isinstance(gateway, Service)
        code = await procs.reap(gateway, timeout_s=args.cadence_s + 10)
        if code != 0:
            raise ProcessFailed(f"gateway exited with {code}:\n{gateway.log_tail()}")
    finally:
        await procs.close()
    return ledger


async def _run_handoffs(
    args: argparse.Namespace, procs: Processes, gateway: str, blue: Service
) -> None:
    """Let the clock run for ``--duration``, performing ``--handoffs`` handoffs spread evenly
    over it: each starts the other version as a new process and promotes it."""
    loop = asyncio.get_running_loop()
    end = loop.time() + args.duration
    n = max(args.handoffs, 0)
    policy = wire.policy_to_proto(HandoffPolicy(bake_ms=round(args.bake_s * 1000)))
    async with ControlClient(gateway) as client:
        for i in range(n):
            # Pace the handoffs through the run: this is the demo's schedule, not a wait.
            await asyncio.sleep(max(0.0, (end - loop.time()) / (n - i + 1)))
            version, entrypoint = ("v2", V2) if i % 2 == 0 else ("v1", V1)
            green = await procs.strategy(
                f"strategy-{version}-{i + 1}",
                gateway,
                entrypoint,
                pod_name=f"momentum-{version}-{i + 1}",
            )
            started = await client.promote(green.ready["instance_id"], policy)
            async with asyncio.timeout(120):
                status = await client.wait(started.handoff_id)
            print(f"demo: handoff {i + 1}/{n} {summary_line(status)}", file=sys.stderr)
            if status.phase == ctl.HANDOFF_PHASE_COMPLETED:
                await procs.reap(blue)  # drained already: this only reaps the process
                blue = green
    await asyncio.sleep(max(0.0, end - loop.time()))


async def _run_kills(
    args: argparse.Namespace, procs: Processes, gateway: str, hosts: dict[str, Service]
) -> None:
    """Let the clock run for ``--duration``, SIGKILLing momentum's ACTIVE ``--kill-active``
    times at random moments; each time a new instance is started in its place (a pod's
    restart). With a hot standby, each kill waits (bounded) for the standby to follow first."""
    loop = asyncio.get_running_loop()
    end = loop.time() + args.duration
    n = args.kill_active
    rng = random.Random(args.seed)
    extra = ["--standby", args.standby]
    async with ControlClient(gateway) as client:
        for i in range(n):
            # The demo's schedule, with a random moment inside a tick: not a wait on a state.
            share = (end - loop.time()) / (n - i + 1)
            await asyncio.sleep(max(0.0, share - args.cadence_s) + rng.uniform(0, args.cadence_s))
            if args.standby == StandbyMode.HOT.value:
                await _standby_following(client, timeout_s=30)
            victim = _active_pod(await client.list_instances())
            if victim is None or victim not in hosts:
                print(f"demo: kill {i + 1}/{n}: no ACTIVE momentum to kill", file=sys.stderr)
                continue
            await procs.kill(hosts.pop(victim))
            print(f"demo: kill {i + 1}/{n}: SIGKILLed the ACTIVE {victim}", file=sys.stderr)
            pod = f"momentum-v1-r{i + 1}"
            hosts[pod] = await procs.strategy(
                f"strategy-{pod}", gateway, V1, pod_name=pod, extra=extra
            )
    await asyncio.sleep(max(0.0, end - loop.time()))


def _active_pod(listing: ctl.ListInstancesResponse) -> str | None:
    active = next((s.active_instance_id for s in listing.strategies if s.name == "momentum"), "")
    return next((i.pod_name for i in listing.instances if i.instance_id == active), None)


async def _standby_following(client: ControlClient, *, timeout_s: float) -> None:
    """Until momentum has a SHADOW that is not in a handoff (its hot standby), bounded."""
    shadow = wire.role_to_proto(Role.SHADOW)
    async with asyncio.timeout(timeout_s):
        while True:
            listing = await client.list_instances()
            if any(i.strategy == "momentum" and i.role == shadow for i in listing.instances):
                return
            await asyncio.sleep(0.1)  # polling the gateway's listing: no event to await here


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.gateway_handovers or args.gateway_kills) and (args.handoffs or args.kill_active):
        parser.error("--gateway-handovers/--gateway-kills: not with --handoffs or --kill-active")
    if min(args.gateway_handovers, args.gateway_kills) < 0:
        parser.error("--gateway-handovers and --gateway-kills must be >= 0")
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
