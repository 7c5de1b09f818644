"""The bot on this machine: the exchange simulator, the market gateway and strategy hosts as real
processes on loopback, each started with ``python -m baton`` and ready when it prints its ready
line (``baton.common.spawn_baton``), stopped in reverse order.

The one way Baton starts them outside Kubernetes: ``baton demo``, the tests' fixtures
(``tests/conftest.py``) and the benchmarks (``bench/harness.py``, ``bench/live.py``) all go
through ``Processes``. Each caller picks its settings (``SimOptions``, ``GatewayOptions``) and
its ready timeouts; every port is chosen by the kernel (port 0), so runs never clash with each
other or with a gateway on the default ports.
"""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baton.common import Service, spawn_baton

# spawn_baton's own default: how long a process has to print its ready line.
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0  # SIGTERM, then SIGKILL past this


@dataclass(frozen=True, slots=True)
class SimOptions:
    """``baton sim``'s flags; None leaves the simulator's own default."""

    seed: int = 11
    time_scale: float = 1.0  # simulated seconds per real second
    push_interval_s: float | None = None
    symbols: Sequence[str] | None = None  # None: its reference 8
    log_level: str | None = None

    def args(self) -> list[str]:
        args = ["sim", "--port", "0", "--seed", str(self.seed), "--time-scale"]
        args.append(f"{self.time_scale:g}")
        if self.push_interval_s is not None:
            args += ["--push-interval-s", f"{self.push_interval_s:g}"]
        if self.symbols is not None:
            args += ["--symbols", ",".join(self.symbols)]
        if self.log_level is not None:
            args += ["--log-level", self.log_level]
        return args


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    """The gateway's settings (``BATON_*`` environment); None leaves its configured default."""

    ledger: Path
    cadence_s: float
    timeframes: Sequence[str] | None = None
    markets: Sequence[str] | None = None  # gateway market specs; None: the reference 8
    stall_timeout_s: float | None = None  # the exchange feed's stall timeout
    log_level: str | None = None
    pricing: str | None = None  # venue.pricing: "random_walk" or "flat"

    def env(self, sim: Service) -> dict[str, str]:
        """Fed by ``sim``, gRPC and metrics on any free loopback port."""
        env = {
            "BATON_GATEWAY__LISTEN": "127.0.0.1:0",
            # Any free port: other gateways (tests, a demo, a benchmark) may hold 9464.
            "BATON_METRICS__LISTEN": "127.0.0.1:0",
            "BATON_GATEWAY__CADENCE_S": str(self.cadence_s),
            "BATON_EXCHANGE__WS_URL": sim.ready["ws_url"],
            "BATON_EXCHANGE__REST_URL": sim.ready["rest_url"],
            "BATON_LEDGER__PATH": str(self.ledger),
        }
        if self.timeframes is not None:
            env["BATON_GATEWAY__TIMEFRAMES"] = ",".join(self.timeframes)
        if self.markets is not None:
            env["BATON_GATEWAY__MARKETS"] = ",".join(self.markets)
        if self.stall_timeout_s is not None:
            env["BATON_EXCHANGE__STALL_TIMEOUT_S"] = str(self.stall_timeout_s)
        if self.log_level is not None:
            env["BATON_GATEWAY__LOG_LEVEL"] = self.log_level
        if self.pricing is not None:
            env["BATON_VENUE__PRICING"] = self.pricing
        return env


def strategy_args(
    gateway: Service | str,
    entrypoint: str,
    pod_name: str,
    config: Mapping[str, Any] | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """``baton strategy`` attached to ``gateway`` (its process, or an address: gateway replicas
    share one); ``config`` None: the strategy's defaults; ``extra``: more flags (``--standby
    hot``...)."""
    addr = gateway if isinstance(gateway, str) else gateway.ready["grpc_addr"]
    args = ["strategy", "--gateway", addr, "--entrypoint", entrypoint]
    if config is not None:
        args += ["--config", json.dumps(dict(config))]
    return [*args, "--pod-name", pod_name, *extra]


@dataclass
class Processes:
    """Every process one run started (logs in ``log_dir/<name>.log``), stopped in reverse order
    by ``close``."""

    log_dir: Path
    started: list[Service] = field(default_factory=list)

    async def spawn(
        self,
        name: str,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
    ) -> Service:
        service = await spawn_baton(
            name, args, log_dir=self.log_dir, env=env, ready_timeout_s=ready_timeout_s
        )
        self.started.append(service)
        return service

    async def sim(
        self, name: str, options: SimOptions, *, ready_timeout_s: float = READY_TIMEOUT_S
    ) -> Service:
        return await self.spawn(name, options.args(), ready_timeout_s=ready_timeout_s)

    async def gateway(
        self,
        name: str,
        sim: Service,
        options: GatewayOptions,
        *,
        env: Mapping[str, str] | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
    ) -> Service:
        """``env``: settings over ``options``' (a test's ``BATON_*`` overrides)."""
        full_env = {**options.env(sim), **(env or {})}
        return await self.spawn(name, ["gateway"], env=full_env, ready_timeout_s=ready_timeout_s)

    async def strategy(
        self,
        name: str,
        gateway: Service | str,
        entrypoint: str,
        *,
        pod_name: str | None = None,
        config: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
        extra: Sequence[str] = (),
    ) -> Service:
        """A strategy host; its pod name is ``name`` unless given."""
        args = strategy_args(gateway, entrypoint, pod_name or name, config, extra)
        return await self.spawn(name, args, env=env, ready_timeout_s=ready_timeout_s)

    async def reap(self, service: Service, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """Stop one process (SIGTERM, then SIGKILL past ``timeout_s``); its exit code."""
        code = await service.stop(timeout_s=timeout_s)
        with contextlib.suppress(ValueError):
            self.started.remove(service)
        return code

    async def kill(self, service: Service) -> int:
        """SIGKILL one process (a pod deleted with --grace-period=0); its exit code."""
        code = await service.stop(timeout_s=STOP_TIMEOUT_S, sig=signal.SIGKILL)
        with contextlib.suppress(ValueError):
            self.started.remove(service)
        return code

    async def close(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        for service in reversed(self.started):
            await service.stop(timeout_s=timeout_s)
        self.started.clear()
