"""Market data: candles, timeframes and evaluation slots."""

from __future__ import annotations

from dataclasses import dataclass

_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def timeframe_ms(timeframe: str) -> int:
    """Length of a Binance-style interval in ms.

    >>> timeframe_ms("5m"), timeframe_ms("15m"), timeframe_ms("1h")
    (300000, 900000, 3600000)
    """
    if len(timeframe) < 2 or timeframe[-1] not in _UNIT_MS or not timeframe[:-1].isdigit():
        raise ValueError(f"invalid timeframe {timeframe!r}: expected <n><s|m|h|d>, e.g. '5m'")
    n = int(timeframe[:-1])
    if n <= 0:
        raise ValueError(f"invalid timeframe {timeframe!r}: length must be positive")
    return n * _UNIT_MS[timeframe[-1]]


def window_start(t_ms: int, timeframe: str) -> int:
    """Start of the UTC-aligned window of ``timeframe`` containing ``t_ms``.

    >>> window_start(1_672_515_782_136, "5m")
    1672515600000
    """
    size = timeframe_ms(timeframe)
    return t_ms - t_ms % size


@dataclass(frozen=True, slots=True)
class Candle:
    """One kline. ``closed`` is true once the exchange sent the candle's final frame."""

    symbol: str
    interval: str
    open_time_ms: int
    close_time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0
    trades: int = 0
    closed: bool = False


@dataclass(frozen=True, slots=True)
class Market:
    """A market: the name users call it by, and the symbol the exchange trades it as.

    They differ: MATIC trades as POLUSDT since 2024.
    """

    name: str
    symbol: str


@dataclass(frozen=True, slots=True)
class Slot:
    """One evaluation slot: a market on one timeframe."""

    market: str
    symbol: str
    timeframe: str

    @property
    def slot_id(self) -> str:
        return f"{self.market}/{self.timeframe}"

    @property
    def stream(self) -> str:
        """The exchange stream carrying this slot's candles, e.g. ``btcusdt@kline_5m``."""
        return f"{self.symbol.lower()}@kline_{self.timeframe}"


def make_slots(markets: tuple[Market, ...], timeframes: tuple[str, ...]) -> tuple[Slot, ...]:
    """Slots = markets x timeframes, market-major, in configuration order."""
    return tuple(Slot(m.name, m.symbol, tf) for m in markets for tf in timeframes)
