"""The simulator's configuration: one frozen value, validated once, errors naming the setting."""

from __future__ import annotations

import math
from dataclasses import dataclass

from baton.common._config import ConfigError

# The reference bot's markets as the exchange trades them: MATIC is POLUSDT since 2024-09, so
# MATICUSDT is deliberately absent (REST answers -1121 for it, as Binance does).
DEFAULT_SYMBOLS: tuple[str, ...] = (
    "BTCUSDT",
    "ETHUSDT",
    "SOLUSDT",
    "XRPUSDT",
    "DOGEUSDT",
    "AVAXUSDT",
    "LINKUSDT",
    "POLUSDT",
)


@dataclass(frozen=True)
class SimConfig:
    """Everything ``baton sim`` can be told. Times ending in ``_s`` are real seconds."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (the bound one is in the ready line)
    seed: int = 1
    time_scale: float = 1.0  # simulated seconds per real second
    start_ms: int | None = None  # simulated time at start; None: the wall clock at start
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    push_interval_s: float = 2.0  # kline update cadence per stream (closing frames come extra)
    ping_interval_s: float = 20.0
    pong_timeout_s: float = 60.0
    max_lifetime_s: float = 86_400.0  # a connection is closed after this long
    shutdown_notice_s: float = 0.0  # >0: a serverShutdown event this long before that close
    max_streams_per_connection: int = 1024
    max_incoming_per_s: int = 5
    strict_symbols: bool = False  # unknown symbols refused instead of accepted and silent

    def __post_init__(self) -> None:
        def positive(name: str, value: float) -> None:
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(name, f"must be a positive number, got {value!r}")

        if not self.host:
            raise ConfigError("host", "must not be empty")
        if not 0 <= self.port <= 65_535:
            raise ConfigError("port", f"must be 0..65535, got {self.port}")
        positive("time_scale", self.time_scale)
        positive("push_interval_s", self.push_interval_s)
        positive("ping_interval_s", self.ping_interval_s)
        positive("pong_timeout_s", self.pong_timeout_s)
        positive("max_lifetime_s", self.max_lifetime_s)
        if not math.isfinite(self.shutdown_notice_s) or self.shutdown_notice_s < 0:
            raise ConfigError("shutdown_notice_s", f"must be >= 0, got {self.shutdown_notice_s}")
        if self.shutdown_notice_s >= self.max_lifetime_s:
            raise ConfigError("shutdown_notice_s", "must be shorter than max_lifetime_s")
        if self.max_streams_per_connection < 1:
            raise ConfigError("max_streams_per_connection", "must be >= 1")
        if self.max_incoming_per_s < 1:
            raise ConfigError("max_incoming_per_s", "must be >= 1")
        if self.start_ms is not None and self.start_ms < 0:
            raise ConfigError("start_ms", f"must be >= 0, got {self.start_ms}")
        if not self.symbols:
            raise ConfigError("symbols", "must not be empty")
        for symbol in self.symbols:
            if not symbol.isalnum() or symbol.upper() != symbol:
                raise ConfigError(
                    "symbols", f"expected upper-case symbols like BTCUSDT, got {symbol!r}"
                )

    @property
    def symbol_set(self) -> frozenset[str]:
        return frozenset(self.symbols)
