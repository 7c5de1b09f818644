"""Seeded, reproducible price paths: one per symbol, defined for every second since listing.

The path is a pure function of ``(seed, symbol, time)``: whoever asks, in whatever order, over
a WebSocket or REST, gets the same numbers. Random access makes that cheap, top down:

* **day anchors** (the log price at each UTC midnight) come from fractal value noise over
  octaves of 1 to 256 days, so any day is computed without walking from an origin;
* the **24 hours** of a day are a Brownian bridge between two anchors (one RNG per day, seeded
  from a hash of seed, symbol and day), each hour with a high/low excursion, volume, trades;
* the **60 minutes** of an hour, and the **60 seconds** of a minute, subdivide their parent
  the same way: a bridge from its open to its close, clamped into its range, one child
  touching its high and one its low, volume and trades split exactly.

So aggregating the children always gives back the parent exactly, and a candle of any
interval needs only the levels it spans (a 1d backfill never generates a minute). Prices are
integer ticks and volumes integer lots, so sums are exact. Seeds come from BLAKE2b, not
``hash()`` (salted per process), so two processes with one seed agree.
"""

from __future__ import annotations

import hashlib
import math
import random
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

DAY_S = 86_400
MINUTES_PER_DAY = 1_440
# No candles exist before this instant (2020-01-01T00:00:00Z). Real symbols have a listing
# date too; here it bounds the work a far-past REST query can ask for.
LISTING_MS = 1_577_836_800_000
LISTING_S = LISTING_MS // 1000
# Trade ids restart per day at day * TRADE_ID_DAY_STRIDE: contiguous within a day.
TRADE_ID_DAY_STRIDE = 100_000_000

_OCTAVE_DAYS = (1, 4, 16, 64, 256)


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from the parts' text, identical in every process.

    >>> stable_seed(1, "BTCUSDT") == stable_seed(1, "BTCUSDT") != stable_seed(2, "BTCUSDT")
    True
    """
    data = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """How one symbol's path looks: level, volatility, activity and display precision."""

    symbol: str
    base_price: float
    volatility: float  # standard deviation of the log price over one minute
    price_decimals: int  # the tick is 10**-price_decimals
    qty_decimals: int  # the lot is 10**-qty_decimals
    quote_per_minute: float  # typical traded value per minute, in the quote asset
    trades_per_minute: int

    @property
    def volume_lots_per_minute(self) -> int:
        lot: int = 10**self.qty_decimals
        return max(60, round(self.quote_per_minute / self.base_price * lot))


# Rough 2024 levels; only the look matters (prices of the right size, plausible moves).
_KNOWN: dict[str, tuple[float, float]] = {
    "BTCUSDT": (65_000.0, 0.0008),
    "ETHUSDT": (3_200.0, 0.0010),
    "SOLUSDT": (150.0, 0.0013),
    "XRPUSDT": (0.60, 0.0012),
    "DOGEUSDT": (0.15, 0.0015),
    "AVAXUSDT": (35.0, 0.0014),
    "LINKUSDT": (15.0, 0.0013),
    "POLUSDT": (0.50, 0.0015),
}


def symbol_spec(symbol: str) -> SymbolSpec:
    """The spec of ``symbol``: known levels for the reference markets, derived for others.

    >>> s = symbol_spec("BTCUSDT")
    >>> (s.price_decimals, s.qty_decimals)
    (2, 5)
    >>> symbol_spec("FOOUSDT") == symbol_spec("FOOUSDT")
    True
    """
    if symbol in _KNOWN:
        base, vol = _KNOWN[symbol]
    else:
        rng = random.Random(stable_seed("spec", symbol))
        base = 10 ** rng.uniform(-1.0, 3.5)
        vol = rng.uniform(0.0008, 0.0016)
    magnitude = math.floor(math.log10(base))
    return SymbolSpec(
        symbol=symbol,
        base_price=base,
        volatility=vol,
        price_decimals=min(8, max(2, 5 - magnitude)),
        qty_decimals=min(8, max(0, magnitude + 1)),
        quote_per_minute=500_000.0 if symbol in _KNOWN else 50_000.0,
        trades_per_minute=900,
    )


@dataclass(frozen=True, slots=True)
class Bar:
    """OHLCV over some span of seconds; prices in ticks, quantities in lots, quote in both."""

    open: int
    high: int
    low: int
    close: int
    volume: int
    quote_volume: int
    taker_volume: int
    taker_quote_volume: int
    trades: int
    first_trade_id: int
    last_trade_id: int


def merge_bars(bars: Iterable[Bar]) -> Bar | None:
    """Aggregate consecutive bars (oldest first) into one; None for none.

    >>> a = Bar(10, 12, 9, 11, 5, 55, 2, 22, 3, 100, 102)
    >>> b = Bar(11, 15, 10, 14, 1, 14, 1, 14, 1, 103, 103)
    >>> merge_bars([a, b])
    Bar(open=10, high=15, low=9, close=14, volume=6, quote_volume=69, taker_volume=3, \
taker_quote_volume=36, trades=4, first_trade_id=100, last_trade_id=103)
    """
    it = iter(bars)
    first = next(it, None)
    if first is None:
        return None
    o, h, lo, c = first.open, first.high, first.low, first.close
    v, q, tv, tq, n = (
        first.volume,
        first.quote_volume,
        first.taker_volume,
        first.taker_quote_volume,
        first.trades,
    )
    f, last = first.first_trade_id, first.last_trade_id
    for b in it:
        h = max(h, b.high)
        lo = min(lo, b.low)
        c = b.close
        v += b.volume
        q += b.quote_volume
        tv += b.taker_volume
        tq += b.taker_quote_volume
        n += b.trades
        last = b.last_trade_id
    return Bar(o, h, lo, c, v, q, tv, tq, n, f, last)


def split_int(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` split in proportion to integer ``weights``; the parts sum to ``total`` exactly.

    >>> split_int(10, [1, 1, 1])
    [4, 3, 3]
    >>> sum(split_int(12345, [3, 9, 1, 7]))
    12345
    """
    weight_sum = sum(weights)
    parts = [total * w // weight_sum for w in weights]
    for i in range(total - sum(parts)):  # the remainder is < len(weights)
        parts[i] += 1
    return parts


_NFIELDS = 11


def _fields(b: Bar) -> tuple[int, ...]:
    return (
        b.open,
        b.high,
        b.low,
        b.close,
        b.volume,
        b.quote_volume,
        b.taker_volume,
        b.taker_quote_volume,
        b.trades,
        b.first_trade_id,
        b.last_trade_id,
    )


class PackedBars:
    """Consecutive bars packed field by field in one int64 array: ~5x smaller than Bar
    objects, and a span aggregates with C-speed slices (max, min, sum)."""

    __slots__ = ("_data", "_n")

    def __init__(self, bars: Sequence[Bar]) -> None:
        self._n = n = len(bars)
        data = array("q", bytes(8 * n * _NFIELDS))
        for i, b in enumerate(bars):
            for f, value in enumerate(_fields(b)):
                data[f * n + i] = value
        self._data = data

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> Bar:
        return self.bar(i, i + 1)

    def __iter__(self) -> Iterator[Bar]:
        return (self.bar(i, i + 1) for i in range(self._n))

    def bar(self, a: int, b: int) -> Bar:
        """Bars [a, b) aggregated (``a < b``)."""
        d, n = self._data, self._n
        return Bar(
            open=d[a],
            high=max(d[n + a : n + b]),
            low=min(d[2 * n + a : 2 * n + b]),
            close=d[3 * n + b - 1],
            volume=sum(d[4 * n + a : 4 * n + b]),
            quote_volume=sum(d[5 * n + a : 5 * n + b]),
            taker_volume=sum(d[6 * n + a : 6 * n + b]),
            taker_quote_volume=sum(d[7 * n + a : 7 * n + b]),
            trades=sum(d[8 * n + a : 8 * n + b]),
            first_trade_id=d[9 * n + a],
            last_trade_id=d[10 * n + b - 1],
        )


_HOUR_S = 3_600
_CHILDREN = 60  # minutes per hour, seconds per minute


class PricePath:
    """The deterministic market of one symbol under one seed. Pure: no clock, no I/O.

    Generated levels are cached (bounded LRU); the cache never changes a result.
    """

    def __init__(self, seed: int, spec: SymbolSpec) -> None:
        self.spec = spec
        self._seed = seed
        self._tick_scale = 10**spec.price_decimals
        self._lattice: dict[tuple[int, int], float] = {}
        # Bounded: a 1000-candle daily backfill spans ~3 years of hours; live streams need a
        # few minutes of seconds.
        self._hours = _Lru[PackedBars](2_048)  # by day
        self._minutes = _Lru[PackedBars](512)  # by hour since the epoch
        self._seconds = _Lru[PackedBars](128)  # by minute since the epoch

    # -- public ---------------------------------------------------------------------------

    def bar(self, start_s: int, end_s: int) -> Bar | None:
        """Seconds [start_s, end_s) aggregated; None when the span is empty or before listing.

        The span is cut into the largest pieces (days, hours, minutes, seconds); all sums are
        of integers, so the cut never changes the result.
        """
        s = max(start_s, LISTING_S)
        parts: list[Bar] = []
        while s < end_s:
            left = end_s - s
            if s % DAY_S == 0 and left >= DAY_S:
                parts.append(self.day_bar(s // DAY_S))
                s += DAY_S
            elif s % _HOUR_S == 0 and left >= _HOUR_S:
                day, offset = divmod(s, DAY_S)
                h0, h1 = offset // _HOUR_S, min(24, (end_s - day * DAY_S) // _HOUR_S)
                parts.append(self.hours(day).bar(h0, h1))
                s = day * DAY_S + h1 * _HOUR_S
            elif s % 60 == 0 and left >= 60:
                hour, offset = divmod(s, _HOUR_S)
                m0, m1 = offset // 60, min(_CHILDREN, (end_s - hour * _HOUR_S) // 60)
                parts.append(self.minutes(hour).bar(m0, m1))
                s = hour * _HOUR_S + m1 * 60
            else:
                minute, offset = divmod(s, 60)
                stop = min(end_s, (minute + 1) * 60)
                parts.append(self.seconds(minute).bar(offset, stop - minute * 60))
                s = stop
        return merge_bars(parts)

    def day_bar(self, day: int) -> Bar:
        return self.hours(day).bar(0, 24)

    def hours(self, day: int) -> PackedBars:
        """The 24 one-hour bars of ``day`` (days since the epoch)."""
        return self._hours.get(day, self._generate_hours)

    def minutes(self, hour: int) -> PackedBars:
        """The 60 one-minute bars of ``hour`` (hours since the epoch)."""
        return self._minutes.get(hour, self._generate_minutes)

    def seconds(self, minute: int) -> PackedBars:
        """The 60 one-second bars of ``minute`` (minutes since the epoch)."""
        return self._seconds.get(minute, self._generate_seconds)

    # -- generation -----------------------------------------------------------------------

    def _lattice_value(self, octave: int, index: int) -> float:
        key = (octave, index)
        value = self._lattice.get(key)
        if value is None:
            value = random.Random(
                stable_seed(self._seed, self.spec.symbol, "lattice", octave, index)
            ).gauss(0.0, 1.0)
            if len(self._lattice) > 65_536:
                self._lattice.clear()
            self._lattice[key] = value
        return value

    def _anchor(self, day: int) -> float:
        """Log price at the start of ``day``: fractal value noise, amplitude ~ sqrt(period)."""
        level = math.log(self.spec.base_price)
        daily_sigma = self.spec.volatility * math.sqrt(MINUTES_PER_DAY)
        for octave, period in enumerate(_OCTAVE_DAYS):
            index, rest = divmod(day, period)
            g0 = self._lattice_value(octave, index)
            g1 = self._lattice_value(octave, index + 1)
            level += 0.5 * daily_sigma * math.sqrt(period) * (g0 + (g1 - g0) * rest / period)
        return level

    def _generate_hours(self, day: int) -> PackedBars:
        spec = self.spec
        rng = random.Random(stable_seed(self._seed, spec.symbol, "day", day))
        sigma = spec.volatility * math.sqrt(60.0)  # per hour
        start, end = self._anchor(day), self._anchor(day + 1)
        levels = _bridge(rng, start, end, 24, sigma)
        ticks = [max(1, round(math.exp(x) * self._tick_scale)) for x in levels]
        lots = spec.volume_lots_per_minute * 60
        bars: list[Bar] = []
        trade_id = day * TRADE_ID_DAY_STRIDE
        for h in range(24):
            o, c = ticks[h], ticks[h + 1]
            top, bottom = max(o, c), min(o, c)
            reach = 0.8 * sigma
            high = top + int(abs(rng.gauss(0.0, 1.0)) * reach * top)
            low = max(1, bottom - int(abs(rng.gauss(0.0, 1.0)) * reach * top))
            activity = math.exp(rng.gauss(0.0, 0.3))
            volume = max(3_600, round(lots * activity))
            taker = round(volume * (0.35 + 0.3 * rng.random()))
            # At least one trade per second, so that every second has a price.
            trades = max(3_600, round(spec.trades_per_minute * 60 * activity))
            vwap = (o + high + low + c) // 4
            bars.append(
                Bar(
                    o,
                    high,
                    low,
                    c,
                    volume,
                    vwap * volume,
                    taker,
                    vwap * taker,
                    trades,
                    trade_id,
                    trade_id + trades - 1,
                )
            )
            trade_id += trades
        return PackedBars(bars)

    def _generate_minutes(self, hour: int) -> PackedBars:
        day, h = divmod(hour, 24)
        parent = self.hours(day)[h]
        rng = random.Random(stable_seed(self._seed, self.spec.symbol, "hour", hour))
        return PackedBars(_subdivide(parent, rng, self.spec.volatility))

    def _generate_seconds(self, minute: int) -> PackedBars:
        hour, m = divmod(minute, 60)
        parent = self.minutes(hour)[m]
        rng = random.Random(stable_seed(self._seed, self.spec.symbol, "minute", minute))
        return PackedBars(_subdivide(parent, rng, self.spec.volatility / math.sqrt(60.0)))


def _bridge(rng: random.Random, start: float, end: float, steps: int, sigma: float) -> list[float]:
    """``steps + 1`` points of a Gaussian random walk from ``start``, bent to land on ``end``."""
    walk = [0.0] * (steps + 1)
    acc = 0.0
    for i in range(1, steps + 1):
        acc += rng.gauss(0.0, sigma)
        walk[i] = acc
    bend = (end - start - acc) / steps
    return [start + walk[i] + bend * i for i in range(steps + 1)]


def _subdivide(parent: Bar, rng: random.Random, sigma: float) -> list[Bar]:
    """60 consecutive child bars that aggregate exactly to ``parent``.

    Closes follow a bridge from the parent's open to its close, clamped into its range; the
    highest child reaches the parent's high and the lowest its low; volumes, quote volumes
    and trades are split by one set of random weights (each child trades at least once).
    """
    o, h, lo, c = parent.open, parent.high, parent.low, parent.close
    levels = _bridge(rng, math.log(o), math.log(c), _CHILDREN, sigma)
    closes = [min(h, max(lo, round(math.exp(x)))) for x in levels[1:]]
    closes[-1] = c
    # The parent's extremes are reached where the path already is highest and lowest (a
    # random child would grow a spike out of nowhere).
    at_high = max(range(_CHILDREN), key=lambda i: closes[i])
    at_low = min(range(_CHILDREN), key=lambda i: closes[i])
    if at_low == at_high:  # a flat path
        at_low = (at_high + 1) % _CHILDREN
    weights = [200 + rng.randrange(1000) for _ in range(_CHILDREN)]
    volumes = split_int(parent.volume, weights)
    quotes = split_int(parent.quote_volume, weights)
    takers = split_int(parent.taker_volume, weights)
    taker_quotes = split_int(parent.taker_quote_volume, weights)
    trades = [1 + t for t in split_int(parent.trades - _CHILDREN, weights)]
    reach = 0.5 * sigma
    bars: list[Bar] = []
    prev = o
    trade_id = parent.first_trade_id
    for i in range(_CHILDREN):
        close = closes[i]
        top, bottom = max(prev, close), min(prev, close)
        up = int(abs(rng.gauss(0.0, 1.0)) * reach * top)
        down = int(abs(rng.gauss(0.0, 1.0)) * reach * top)
        n = trades[i]
        bars.append(
            Bar(
                open=prev,
                high=h if i == at_high else min(h, top + up),
                low=lo if i == at_low else max(lo, bottom - down),
                close=close,
                volume=volumes[i],
                quote_volume=quotes[i],
                taker_volume=takers[i],
                taker_quote_volume=taker_quotes[i],
                trades=n,
                first_trade_id=trade_id,
                last_trade_id=trade_id + n - 1,
            )
        )
        trade_id += n
        prev = close
    return bars


T = TypeVar("T")


class _Lru(Generic[T]):
    """A bounded cache of generated values by integer key."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[int, T] = OrderedDict()

    def get(self, key: int, make: Callable[[int], T]) -> T:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
            return value
        value = make(key)
        self._items[key] = value
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return value
