"""``baton sim``: run the exchange simulator until SIGTERM/SIGINT.

Prints one ready line on stdout once it serves: ``{"ready": {"ws_url", "rest_url", "port",
...}}``; logs go to stderr as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from baton.common import ConfigError, announce_ready, setup_logging
from baton.exchange_sim.core.config import DEFAULT_SYMBOLS, SimConfig
from baton.exchange_sim.server import ExchangeSim


def _parser() -> argparse.ArgumentParser:
    d = SimConfig()
    p = argparse.ArgumentParser(prog="baton sim", description=__doc__.split("\n")[0])
    p.add_argument("--host", default=d.host, help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=d.port, help="port; 0 = any free port (default)")
    p.add_argument("--seed", type=int, default=d.seed, help="price path seed (default %(default)s)")
    p.add_argument(
        "--time-scale",
        type=float,
        default=d.time_scale,
        help="simulated seconds per real second (default %(default)s)",
    )
    p.add_argument(
        "--start-ms", type=int, default=None, help="simulated time at start (default: now)"
    )
    p.add_argument(
        "--symbols",
        nargs="+",
        default=list(DEFAULT_SYMBOLS),
        help="listed symbols, space- or comma-separated (default: the reference 8, with POLUSDT"
        " for MATIC)",
    )
    p.add_argument(
        "--push-interval-s",
        type=float,
        default=d.push_interval_s,
        help="real seconds between kline updates per stream; closing frames come on time"
        " anyway (default %(default)s)",
    )
    p.add_argument(
        "--ping-interval-s",
        type=float,
        default=d.ping_interval_s,
        help="server ping interval (default %(default)s)",
    )
    p.add_argument(
        "--pong-timeout-s",
        type=float,
        default=d.pong_timeout_s,
        help="close a connection whose pong is this late (default %(default)s)",
    )
    p.add_argument(
        "--max-lifetime-s",
        type=float,
        default=d.max_lifetime_s,
        help="forced close after this long, like Binance's 24 h (default %(default)s)",
    )
    p.add_argument(
        "--shutdown-notice-s",
        type=float,
        default=d.shutdown_notice_s,
        help="send serverShutdown this long before the lifetime close (0 = never)",
    )
    p.add_argument(
        "--strict-symbols",
        action="store_true",
        help="refuse streams of unknown symbols (Binance accepts them and stays silent)",
    )
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    return p


def config_from_args(args: argparse.Namespace) -> SimConfig:
    symbols = tuple(s.strip().upper() for arg in args.symbols for s in arg.split(",") if s.strip())
    return SimConfig(
        host=args.host,
        port=args.port,
        seed=args.seed,
        time_scale=args.time_scale,
        start_ms=args.start_ms,
        symbols=symbols,
        push_interval_s=args.push_interval_s,
        ping_interval_s=args.ping_interval_s,
        pong_timeout_s=args.pong_timeout_s,
        max_lifetime_s=args.max_lifetime_s,
        shutdown_notice_s=args.shutdown_notice_s,
        strict_symbols=args.strict_symbols,
    )


async def serve(config: SimConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with ExchangeSim(config) as sim:
        announce_ready(
            ws_url=sim.ws_url,
            rest_url=sim.rest_url,
            port=sim.port,
            seed=config.seed,
            time_scale=config.time_scale,
            start_ms=sim.start_ms,
            symbols=list(config.symbols),
        )
        await stop.wait()


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"baton sim: {exc}", file=sys.stderr)
        return 2
    setup_logging("exchange-sim", args.log_level)
    if args.log_level.upper() != "DEBUG":
        # websockets logs every connection and every REST response at INFO: too chatty.
        logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        print(f"baton sim: cannot serve on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    return 0
