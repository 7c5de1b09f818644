"""``baton strategy``: run a strategy host attached to a gateway (or to each of its replicas).

Exit codes: 0 drained or stopped (SIGTERM/SIGINT); 1 disconnected with ``--exit-on-disconnect``
or refused by the gateway; 2 bad arguments, entrypoint or strategy config.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import signal
import sys
from typing import Any

from baton.common import announce_ready, setup_logging, setup_tracing
from baton.model import StandbyMode, StandbyPolicy, check_slot_ids
from baton.strategy.core.errors import StrategyError
from baton.strategy.core.state import DEFAULT_MAX_STATE_BYTES
from baton.strategy.core.streams import parse_gateways
from baton.strategy.host import (
    DEFAULT_CONNECT_TIMEOUT_S,
    Attachment,
    StrategyHost,
    check_connect_timeout,
    default_pod_name,
)
from baton.strategy.loader import build_strategy, load_strategy_class, parse_config

log = logging.getLogger(__name__)


def parse_slots(values: list[str]) -> tuple[str, ...]:
    """``--slots`` as given (each a comma-separated list) to the slot ids; ``ValueError`` naming
    the malformed or repeated one.

    >>> parse_slots(["BTC/5m,ETH/5m", "SOL/15m"])
    ('BTC/5m', 'ETH/5m', 'SOL/15m')
    >>> parse_slots(["BTC/5m,"])
    Traceback (most recent call last):
    ...
    ValueError: '' must be MARKET/TIMEFRAME, e.g. BTC/5m or MATIC/15m
    """
    return check_slot_ids(item.strip() for value in values for item in value.split(","))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="baton strategy",
        description="Run a strategy host: load a Strategy class, attach it to a gateway.",
    )
    p.add_argument(
        "--gateway",
        required=True,
        metavar="HOST:PORT[,HOST:PORT...]",
        help="gateway gRPC address; the replicas of one gateway as a comma list: the host keeps "
        "attaching to every one at once and obeys the highest gateway term "
        "(docs/gateway-standby.md)",
    )
    p.add_argument(
        "--entrypoint",
        required=True,
        metavar="MODULE:CLASS",
        help="the Strategy subclass, e.g. baton.strategy.examples.momentum_v1:MomentumV1",
    )
    p.add_argument(
        "--config",
        metavar="JSON|@FILE",
        help="strategy config: a JSON object inline, or @path to a JSON file",
    )
    p.add_argument(
        "--pod-name", metavar="NAME", help="instance name (default: $POD_NAME or hostname-pid)"
    )
    p.add_argument(
        "--exit-on-disconnect",
        action="store_true",
        help="exit 1 when the gateway connection is lost instead of attaching again",
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=DEFAULT_CONNECT_TIMEOUT_S,
        metavar="S",
        help="give up an attach attempt whose connection is not up within this many seconds and "
        "try again on a new connection, 0.1 to 60 (default: %(default)g; gRPC alone waits 20 s "
        "for an address that swallows the handshake, such as a terminating pod)",
    )
    p.add_argument(
        "--no-shed-late",
        dest="shed_late",
        action="store_false",
        help="evaluate every request even when it arrives past its deadline (the gateway drops "
        "such answers as late; by default they are skipped so the requests behind them are "
        "answered in time)",
    )
    p.add_argument(
        "--slots",
        action="append",
        default=[],
        metavar="SLOT[,SLOT...]",
        help="the gateway's slots this strategy evaluates, as slot ids MARKET/TIMEFRAME (e.g. "
        "BTC/5m,ETH/15m); repeatable (default: every slot of the gateway)",
    )
    p.add_argument(
        "--stake",
        type=float,
        metavar="USD",
        help="this strategy's stake per bet, > 0 (default: the gateway's venue.stake)",
    )
    defaults = StandbyPolicy()
    p.add_argument(
        "--standby",
        choices=[m.value for m in StandbyMode],
        default=defaults.mode.value,
        help="what keeps this strategy's state if its ACTIVE instance dies (docs/standby.md): "
        "hot (a standby instance of this version follows and takes over at once), checkpoint "
        "(the gateway checkpoints the state and a new instance replays from it), none "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=defaults.checkpoint_every_ticks,
        metavar="TICKS",
        help="a state checkpoint every this many ticks, >= 1 (default: %(default)s)",
    )
    p.add_argument(
        "--checkpoints-kept",
        type=int,
        default=defaults.checkpoints_kept,
        metavar="N",
        help="checkpoints the gateway keeps in its ledger, >= 1 (default: %(default)s)",
    )
    p.add_argument(
        "--verify-every",
        type=int,
        default=defaults.verify_every_ticks,
        metavar="TICKS",
        help="a state digest check every this many ticks, 0 = never (default: %(default)s)",
    )
    p.add_argument(
        "--max-state-mib",
        type=float,
        default=DEFAULT_MAX_STATE_BYTES / (1024 * 1024),
        metavar="MIB",
        help="largest state accepted on export and import (default: %(default)g)",
    )
    p.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="log level (default: INFO)",
    )
    return p


async def _serve(host: StrategyHost) -> int:
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, host.stop)
    try:
        end = await host.run()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        host.close()
    log.info("strategy host exiting", extra={"reason": end.value, "exit_code": end.exit_code})
    return end.exit_code


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    setup_logging("strategy", args.log_level)
    if args.max_state_mib <= 0:
        print("baton strategy: --max-state-mib must be > 0", file=sys.stderr)
        return 2
    try:
        slots = parse_slots(args.slots)
    except ValueError as exc:
        print(f"baton strategy: --slots: {exc}", file=sys.stderr)
        return 2
    try:
        gateways = parse_gateways(args.gateway)
    except ValueError as exc:
        print(f"baton strategy: --gateway: {exc}", file=sys.stderr)
        return 2
    try:
        connect_timeout_s = check_connect_timeout(args.connect_timeout)
    except ValueError as exc:
        print(f"baton strategy: --connect-timeout: {exc}", file=sys.stderr)
        return 2
    if args.stake is not None and not (math.isfinite(args.stake) and args.stake > 0):
        print(f"baton strategy: --stake: must be a number > 0, got {args.stake:g}", file=sys.stderr)
        return 2
    try:
        standby = StandbyPolicy(
            mode=StandbyMode(args.standby),
            checkpoint_every_ticks=args.checkpoint_every,
            checkpoints_kept=args.checkpoints_kept,
            verify_every_ticks=args.verify_every,
        )
    except ValueError as exc:
        print(f"baton strategy: --standby/--checkpoint-*/--verify-every: {exc}", file=sys.stderr)
        return 2
    try:
        cls = load_strategy_class(args.entrypoint)
        strategy = build_strategy(cls, parse_config(args.config))
    except StrategyError as exc:
        print(f"baton strategy: {exc}", file=sys.stderr)
        return 2
    provider = setup_tracing(
        "baton-strategy", version=cls.version, attributes={"baton.strategy": cls.name}
    )
    pod_name = args.pod_name or default_pod_name()

    def ready(attachment: Attachment) -> None:
        # One ready line per process: later attaches (after a reconnect) are only logged.
        if attachment.attach_count == 1:
            fields: dict[str, Any] = {
                "instance_id": attachment.instance_id,
                "role": attachment.role.value if attachment.role else None,
                "strategy": cls.name,
                "version": cls.version,
                "state_schema": cls.state_schema,
                "epoch": attachment.epoch,
                "pod_name": pod_name,
            }
            announce_ready(**fields)

    host = StrategyHost(
        strategy,
        gateways,
        pod_name=pod_name,
        exit_on_disconnect=args.exit_on_disconnect,
        connect_timeout_s=connect_timeout_s,
        max_state_bytes=int(args.max_state_mib * 1024 * 1024),
        on_attached=ready,
        shed_late=args.shed_late,
        slots=slots,
        stake=args.stake,
        standby=standby,
    )
    try:
        return asyncio.run(_serve(host))
    finally:
        provider.shutdown()
