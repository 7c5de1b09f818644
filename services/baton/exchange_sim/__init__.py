"""A Binance-Spot-wire-compatible exchange simulator: kline streams, REST klines, faults.

Seeded price paths make every run reproducible; a time scale makes candles close fast; faults
(drops, stalls, malformed frames, REST errors, server shutdowns) are injected at runtime over
HTTP (``/_sim/faults/*``) or in-process (``ExchangeSim.faults``). Run it with ``baton sim``.
"""

from baton.exchange_sim.core.candles import (
    INTERVALS,
    Kline,
    build_kline,
    interval_close,
    interval_next,
    interval_open,
    select_opens,
)
from baton.exchange_sim.core.clock import SimClock
from baton.exchange_sim.core.config import DEFAULT_SYMBOLS, SimConfig
from baton.exchange_sim.core.faults import FaultState, MalformedKind, RestFault, corrupt
from baton.exchange_sim.core.prices import Bar, PricePath, SymbolSpec, symbol_spec
from baton.exchange_sim.server import ExchangeSim, SimFaults, SimStatus

__all__ = [
    "DEFAULT_SYMBOLS",
    "INTERVALS",
    "Bar",
    "ExchangeSim",
    "FaultState",
    "Kline",
    "MalformedKind",
    "PricePath",
    "RestFault",
    "SimClock",
    "SimConfig",
    "SimFaults",
    "SimStatus",
    "SymbolSpec",
    "build_kline",
    "corrupt",
    "interval_close",
    "interval_next",
    "interval_open",
    "select_opens",
    "symbol_spec",
]
