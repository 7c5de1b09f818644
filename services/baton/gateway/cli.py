"""``baton gateway``: run the market gateway until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from prometheus_client import disable_created_metrics

from baton.common import ConfigError, announce_ready, load_settings, setup_logging, setup_tracing
from baton.gateway.app import Gateway
from baton.gateway.config import GatewayConfig, gateway_config_from
from baton.gateway.replica import Exit, Replica, lease_store

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="baton gateway", description=__doc__)
    p.add_argument("--config", type=Path, help="TOML file (see docs/configuration.md)")
    p.add_argument("--listen", help="HOST:PORT for gRPC (port 0 = any); overrides gateway.listen")
    p.add_argument("--ledger", help="ledger SQLite path; overrides ledger.path")
    p.add_argument("--exchange-ws", help="overrides exchange.ws_url")
    p.add_argument("--exchange-rest", help="overrides exchange.rest_url")
    p.add_argument("--cadence-s", help="overrides gateway.cadence_s")
    p.add_argument(
        "--metrics-listen",
        help="HOST:PORT for Prometheus /metrics (port 0 = any, 'off' = none); overrides "
        "metrics.listen (default 127.0.0.1:9464: a second gateway on one machine needs another)",
    )
    return p


class StartError(Exception):
    """The gateway could not start serving (a port in use): said in one line, exit 1."""


def build_config(args: argparse.Namespace) -> GatewayConfig:
    flat = load_settings(args.config)
    for key, value in (
        ("gateway.listen", args.listen),
        ("ledger.path", args.ledger),
        ("exchange.ws_url", args.exchange_ws),
        ("exchange.rest_url", args.exchange_rest),
        ("gateway.cadence_s", args.cadence_s),
        ("metrics.listen", args.metrics_listen),
    ):
        if value is not None:
            flat[key] = value
    return gateway_config_from(flat)


async def serve_replica(config: GatewayConfig) -> Exit:
    """Under leader election (``leader.backend``): follow, lead once, stop."""
    replica = Replica(config, lease_store(config))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, replica.request_stop)
    return await replica.run()


async def serve(config: GatewayConfig) -> None:
    gateway = Gateway(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, gateway.request_stop)
    try:
        await gateway.start()
    except OSError as exc:
        await gateway.stop()
        raise StartError(str(exc)) from exc
    host = config.listen.rpartition(":")[0]
    announce_ready(
        grpc_addr=f"{host}:{gateway.port}",
        ledger=str(config.ledger_path),
        metrics_addr=gateway.metrics_addr,  # null when metrics.listen is "off"
    )
    try:
        await gateway.wait_stopped()
    finally:
        await gateway.stop()


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        config = build_config(args)
    except ConfigError as exc:
        print(f"baton gateway: {exc}", file=sys.stderr)
        return 2
    setup_logging("gateway", config.log_level)
    # Process-wide: no *_created series (half of a scrape's size and of its time on the GIL).
    disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated in the library
    provider = setup_tracing("baton-gateway")
    try:
        if config.leader.enabled:
            # 3: deposed (its supervisor starts a new follower); 1: elected but could not start.
            return asyncio.run(serve_replica(config)).code
        asyncio.run(serve(config))
    except StartError as exc:
        print(f"baton gateway: {exc}", file=sys.stderr)
        return 1
    finally:
        provider.shutdown()  # flush the spans still batched (SIGTERM ends serve() cleanly)
    return 0
