"""Gateway configuration: one frozen value, built and validated once at start.

Sources, later ones winning: defaults (the reference workload), a TOML file (``--config``),
environment variables ``BATON_<SECTION>__<KEY>`` (e.g. ``BATON_GATEWAY__CADENCE_S=1``).
A wrong setting fails at start with ``ConfigError`` naming it, e.g.
``invalid setting gateway.cadence_s: must be > 0, got -1``.

Example file (every key optional)::

    [gateway]
    listen = "127.0.0.1:50051"
    markets = ["BTC", "ETH", "SOL", "XRP", "DOGE", "AVAX", "LINK", "MATIC=POLUSDT"]
    timeframes = ["5m", "15m"]
    cadence_s = 5.0
    history = 30
    clock_start = "on_first_active"   # or "immediate"
    stale_after_ms = 10000   # default: max(2 x cadence, 5 s); see docs/gateway.md
    backfill_wait_s = 5.0    # the first tick waits this long at most for the REST backfill

    [exchange]
    ws_url = "wss://stream.binance.com:9443"
    rest_url = "https://api.binance.com"

    [venue]
    stake = 5.0
    pricing = "random_walk"   # or "flat" (0.50 on both sides)
    spread = 0.02
    vol_window = 30

    [ledger]
    path = "baton-ledger.sqlite"
    release_wait_ms = 1000   # a fill is told once written (and replicated), or after this

    [metrics]
    listen = "127.0.0.1:9464"   # Prometheus /metrics; "off" disables, port 0 picks a free one

    [leader]                    # two replicas, one leader (docs/gateway-standby.md)
    backend = "off"             # "local" (a lease file) or "kube" (a coordination.k8s.io Lease)
    identity = ""               # default: $POD_NAME or the host name; a random suffix is added
    lease_duration_ms = 4000
    renew_deadline_ms = 3000
    retry_period_ms = 500
    lease_path = ""             # local: default <ledger path>.lease (replicas sharing its folder)
    replicate_from = ""         # HOST:PORT where the leader serves: each replica keeps its own
                                # ledger, a copy of the leader's; "": the replicas share one
    bootstrap = false           # with replicate_from: may lead without being caught up
    lease_name = "baton-gateway-leader"   # kube: the Lease's name ...
    namespace = ""              # ... and namespace (default: $POD_NAMESPACE, the pod's own)
"""

from __future__ import annotations

import enum
import json
import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from baton.common import ConfigError, Settings, load_settings
from baton.gateway.core.freshness import default_stale_after_ms
from baton.gateway.core.leadership import SettingError
from baton.gateway.core.leadership import Settings as LeaseSettings
from baton.gateway.core.venue import PricingKind, VenueConfig
from baton.gateway.exchange import ExchangeConfig
from baton.gateway.ledger import DEFAULT_MAX_PENDING_ROWS
from baton.model import Market, Slot, make_slots, timeframe_ms

# The reference bot. MATIC's spot pairs were replaced by POL in 2024: display name and
# exchange symbol are separate settings.
REFERENCE_MARKETS = ("BTC", "ETH", "SOL", "XRP", "DOGE", "AVAX", "LINK", "MATIC=POLUSDT")
REFERENCE_TIMEFRAMES = ("5m", "15m")
QUOTE = "USDT"
# A gateway serves at most this many slots; past it, shard across gateways (docs/scaling.md).
MAX_SLOTS = 20_000
DEFAULT_SEND_QUEUE = 8192  # evaluations queued per instance (at least 4 ticks' worth)
# Prometheus' conventional port for a service's own exporter; "off" (or "") disables it.
DEFAULT_METRICS_LISTEN = "127.0.0.1:9464"
# The clock's first tick waits at most this long for the exchange backfill (docs/gateway.md):
# the reference workload's 16 streams backfill in well under a second (16 REST requests, 4 in
# flight), and past it at most one tick of the reference cadence (5 s) is not scheduled.
DEFAULT_BACKFILL_WAIT_S = 5.0
MAX_BACKFILL_WAIT_S = 600.0
METRICS_OFF = ("", "off")
# A fill waits at most this long for the ledger and the standby (~3 ms at the reference
# workload, bench.replication): past it a failing disk or a stuck standby delays no strategy.
DEFAULT_RELEASE_WAIT_MS = 1000


DEFAULT_LEASE_NAME = "baton-gateway-leader"
# Where a pod finds its own namespace (the service account's mount).
POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def reference_markets() -> tuple[Market, ...]:
    return tuple(parse_market(spec, "gateway.markets") for spec in REFERENCE_MARKETS)


class ClockStart(enum.Enum):
    ON_FIRST_ACTIVE = "on_first_active"  # presence counts from the first deployed strategy
    IMMEDIATE = "immediate"  # the clock runs (and records misses) from gateway start


class LeaderBackend(enum.Enum):
    OFF = "off"  # one gateway, always executing (no election): today's single replica
    LOCAL = "local"  # a lease file under flock: replicas on one machine (demo, tests)
    KUBE = "kube"  # a coordination.k8s.io/v1 Lease: the chart's replicas


@dataclass(frozen=True, slots=True)
class LeaderConfig:
    """Leader election among gateway replicas (docs/gateway-standby.md). ``identity`` is this
    process's, unique per start: a restarted replica is a new candidate, never the old holder."""

    backend: LeaderBackend = LeaderBackend.OFF
    identity: str = ""
    lease: LeaseSettings = field(default_factory=LeaseSettings)
    lease_path: Path | None = None  # LOCAL; None: beside the ledger
    lease_name: str = DEFAULT_LEASE_NAME  # KUBE
    namespace: str = "default"  # KUBE
    # Where the leader serves ReplicationService (docs/gateway-standby.md): each replica keeps
    # its own ledger, a copy of the leader's. None: the replicas share one ledger (one machine).
    replicate_from: str | None = None
    # With replicate_from: a candidate even when not caught up (after every replica was down,
    # on the one whose ledger is the newest). Off: only a caught-up standby takes over.
    bootstrap: bool = False

    @property
    def enabled(self) -> bool:
        return self.backend is not LeaderBackend.OFF


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    listen: str = "127.0.0.1:50051"
    markets: tuple[Market, ...] = field(default_factory=reference_markets)
    timeframes: tuple[str, ...] = REFERENCE_TIMEFRAMES
    cadence_s: float = 5.0
    history: int = 30
    clock_start: ClockStart = ClockStart.ON_FIRST_ACTIVE
    send_queue: int = 8192  # evaluations; build_config's default grows with the slots
    ledger_path: Path = Path("baton-ledger.sqlite")
    ledger_max_pending_rows: int = DEFAULT_MAX_PENDING_ROWS
    # A fill or settlement reaches the strategy once the ledger (and a standby following it)
    # holds it, or after this long at most (docs/gateway-standby.md, core/release.py).
    release_wait_ms: int = DEFAULT_RELEASE_WAIT_MS
    exchange: ExchangeConfig = field(default_factory=ExchangeConfig)
    venue: VenueConfig = field(default_factory=VenueConfig)
    log_level: str = "INFO"
    metrics_listen: str | None = DEFAULT_METRICS_LISTEN  # None: no /metrics endpoint
    # A stream not updated for longer than this makes its evaluations stale; None (not set):
    # the cadence's default, max(2 x cadence, 5 s) (core/freshness.py).
    stale_after_ms_setting: int | None = None
    # The clock's first tick waits at most this long for the backfill of every stream.
    backfill_wait_s: float = DEFAULT_BACKFILL_WAIT_S
    leader: LeaderConfig = field(default_factory=LeaderConfig)

    @property
    def stale_after_ms(self) -> int:
        if self.stale_after_ms_setting is not None:
            return self.stale_after_ms_setting
        return default_stale_after_ms(self.cadence_ms)

    @property
    def backfill_wait_ms(self) -> int:
        return round(self.backfill_wait_s * 1000)

    @property
    def slots(self) -> tuple[Slot, ...]:
        return make_slots(self.markets, self.timeframes)

    @property
    def cadence_ms(self) -> int:
        return round(self.cadence_s * 1000)

    @property
    def streams(self) -> list[tuple[str, str]]:
        """Distinct (symbol, interval) pairs the feed must subscribe to."""
        return list(dict.fromkeys((s.symbol, s.timeframe) for s in self.slots))

    def to_json(self) -> str:
        def default(o: object) -> object:
            return o.value if isinstance(o, enum.Enum) else str(o)

        return json.dumps(asdict(self), default=default, sort_keys=True)


def parse_market(spec: str, setting: str) -> Market:
    """``"BTC"`` -> BTC/BTCUSDT; ``"MATIC=POLUSDT"`` -> display MATIC, symbol POLUSDT."""
    name, _, symbol = spec.partition("=")
    name, symbol = name.strip(), symbol.strip()
    if not name.isalnum() or (symbol and not symbol.isalnum()):
        raise ConfigError(setting, f"bad market {spec!r}: expected NAME or NAME=SYMBOL")
    return Market(name.upper(), (symbol or name + QUOTE).upper())


def _listen(settings: Settings, key: str, default: str) -> str:
    value = settings.text(key, default)
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(key, f"expected HOST:PORT, got {value!r}")
    return value


def parse_metrics_listen(value: object) -> str | None:
    """The ``metrics.listen`` setting: ``HOST:PORT`` (port 0: any free port), or ``"off"`` /
    ``""`` for no endpoint (None)."""
    if not isinstance(value, str):
        raise ConfigError("metrics.listen", f'expected HOST:PORT or "off", got {value!r}')
    text = value.strip()
    if text.lower() in METRICS_OFF:
        return None
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError("metrics.listen", f'expected HOST:PORT or "off", got {value!r}')
    return text


def load_gateway_config(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> GatewayConfig:
    return gateway_config_from(load_settings(path, environ))


def gateway_config_from(flat: Mapping[str, Any]) -> GatewayConfig:
    s = Settings(flat)
    markets = tuple(
        parse_market(m, "gateway.markets")
        for m in s.string_list("gateway.markets", REFERENCE_MARKETS)
    )
    names = [m.name for m in markets]
    if len(set(names)) != len(names):
        raise ConfigError("gateway.markets", f"duplicate market names in {names}")
    timeframes = s.string_list("gateway.timeframes", REFERENCE_TIMEFRAMES)
    for tf in timeframes:
        try:
            timeframe_ms(tf)
        except ValueError as exc:
            raise ConfigError("gateway.timeframes", str(exc)) from None
    if len(set(timeframes)) != len(timeframes):
        raise ConfigError("gateway.timeframes", f"duplicate timeframes in {list(timeframes)}")
    if len(markets) * len(timeframes) > MAX_SLOTS:
        raise ConfigError(
            "gateway.markets",
            f"{len(markets) * len(timeframes)} slots exceed the limit of {MAX_SLOTS} per gateway",
        )
    n_slots = len(markets) * len(timeframes)
    # Counted in evaluations (a tick's batch weighs its slots): room for a few ticks, so that a
    # shadow's journal replay plus its live ticks fit; at least two (one being written, the next).
    send_queue = s.integer("gateway.send_queue", max(DEFAULT_SEND_QUEUE, 4 * n_slots), minimum=16)
    if send_queue < 2 * n_slots:
        raise ConfigError(
            "gateway.send_queue",
            f"must hold at least two ticks ({2 * n_slots} evaluations for {n_slots} slots), "
            f"got {send_queue}",
        )
    cadence_s = s.number("gateway.cadence_s", 5.0, minimum=0.05, maximum=3600.0)
    clock_start_raw = s.text("gateway.clock_start", ClockStart.ON_FIRST_ACTIVE.value)
    try:
        clock_start = ClockStart(clock_start_raw)
    except ValueError:
        choices = ", ".join(c.value for c in ClockStart)
        raise ConfigError(
            "gateway.clock_start", f"expected one of {choices}, got {clock_start_raw!r}"
        ) from None
    # Defaults read from instances: slotted dataclasses have no class-level default values.
    xd, vd = ExchangeConfig(), VenueConfig()
    exchange = ExchangeConfig(
        ws_url=_url(s, "exchange.ws_url", xd.ws_url, ("ws://", "wss://")),
        rest_url=_url(s, "exchange.rest_url", xd.rest_url, ("http://", "https://")),
        stall_timeout_s=s.number("exchange.stall_timeout_s", xd.stall_timeout_s, minimum=0.1),
        backfill_limit=s.integer(
            "exchange.backfill_limit", xd.backfill_limit, minimum=1, maximum=1000
        ),
    )
    venue = VenueConfig(
        stake=s.number("venue.stake", vd.stake, minimum=0.0, exclusive_minimum=True),
        fee_rate=s.number("venue.fee_rate", vd.fee_rate, minimum=0.0, maximum=1.0),
        fee_exponent=s.number("venue.fee_exponent", vd.fee_exponent, minimum=0.0),
        max_open_per_window=s.integer(
            "venue.max_open_per_window", vd.max_open_per_window, minimum=1
        ),
        pricing=_choice(s, "venue.pricing", vd.pricing),
        spread=s.number("venue.spread", vd.spread, minimum=0.0, maximum=0.5),
        vol_window=s.integer("venue.vol_window", vd.vol_window, minimum=1, maximum=1000),
    )
    config = GatewayConfig(
        listen=_listen(s, "gateway.listen", "127.0.0.1:50051"),
        markets=markets,
        timeframes=timeframes,
        cadence_s=cadence_s,
        history=s.integer("gateway.history", 30, minimum=0, maximum=1000),
        clock_start=clock_start,
        send_queue=send_queue,
        ledger_path=Path(s.text("ledger.path", "baton-ledger.sqlite")),
        ledger_max_pending_rows=s.integer(
            "ledger.max_pending_rows", DEFAULT_MAX_PENDING_ROWS, minimum=1
        ),
        release_wait_ms=s.integer(
            "ledger.release_wait_ms", DEFAULT_RELEASE_WAIT_MS, minimum=0, maximum=60_000
        ),
        exchange=exchange,
        venue=venue,
        log_level=_log_level(s),
        metrics_listen=parse_metrics_listen(s.raw("metrics.listen", DEFAULT_METRICS_LISTEN)),
        stale_after_ms_setting=(
            None
            if s.raw("gateway.stale_after_ms", None) is None
            else s.integer("gateway.stale_after_ms", 0, minimum=1)
        ),
        backfill_wait_s=s.number(
            "gateway.backfill_wait_s",
            DEFAULT_BACKFILL_WAIT_S,
            minimum=0.0,
            maximum=MAX_BACKFILL_WAIT_S,
        ),
        leader=_leader(s),
    )
    s.check_unknown(())
    return config


def _leader(s: Settings) -> LeaderConfig:
    raw = s.text("leader.backend", LeaderBackend.OFF.value)
    try:
        backend = LeaderBackend(raw.strip().lower())
    except ValueError:
        choices = ", ".join(b.value for b in LeaderBackend)
        raise ConfigError("leader.backend", f"expected one of {choices}, got {raw!r}") from None
    d = LeaseSettings()
    try:
        lease = LeaseSettings(
            lease_duration_ms=s.integer("leader.lease_duration_ms", d.lease_duration_ms),
            renew_deadline_ms=s.integer("leader.renew_deadline_ms", d.renew_deadline_ms),
            retry_period_ms=s.integer("leader.retry_period_ms", d.retry_period_ms),
        )
    except SettingError as exc:
        raise ConfigError(exc.setting, exc.problem) from None
    base = _optional_text(s, "leader.identity") or os.environ.get("POD_NAME", "")
    base = base or socket.gethostname() or "gateway"
    if not all(c.isalnum() or c in "-_." for c in base):
        raise ConfigError(
            "leader.identity", f"expected letters, digits, '-', '_', '.', got {base!r}"
        )
    # The pod's namespace: $POD_NAMESPACE (the chart's downward API), else its ServiceAccount's.
    namespace = _optional_text(s, "leader.namespace") or os.environ.get("POD_NAMESPACE", "")
    if not namespace:
        try:
            namespace = POD_NAMESPACE_FILE.read_text().strip() or "default"
        except OSError:
            namespace = "default"
    lease_path = _optional_text(s, "leader.lease_path")
    replicate_from = _optional_text(s, "leader.replicate_from")
    if replicate_from:
        replicate_from = _listen(s, "leader.replicate_from", replicate_from)
        if replicate_from.endswith(":0"):
            raise ConfigError("leader.replicate_from", f"needs a port, got {replicate_from!r}")
    if replicate_from and backend is LeaderBackend.OFF:
        raise ConfigError("leader.replicate_from", "needs leader.backend local or kube")
    return LeaderConfig(
        backend=backend,
        # A random suffix: a replica that restarts (same pod name) is a new candidate and never
        # mistakes the lease its previous life held for its own.
        identity=f"{base}-{secrets.token_hex(3)}",
        lease=lease,
        lease_path=Path(lease_path) if lease_path else None,
        lease_name=_dns_label(s.text("leader.lease_name", DEFAULT_LEASE_NAME), "leader.lease_name"),
        namespace=_dns_label(namespace, "leader.namespace"),
        replicate_from=replicate_from or None,
        bootstrap=s.boolean("leader.bootstrap", False),
    )


def _optional_text(s: Settings, key: str) -> str:
    """A text setting whose absence (or "") means "derive it": "" when not given."""
    if s.raw(key, None) in (None, ""):
        return ""
    return s.text(key, "").strip()


def _dns_label(value: str, key: str) -> str:
    text = value.strip()
    ok = 0 < len(text) <= 63 and text[0].isalnum() and text[-1].isalnum()
    if not ok or not all(c.islower() or c.isdigit() or c == "-" for c in text):
        raise ConfigError(key, f"expected a DNS label (a-z, 0-9, '-', <= 63), got {value!r}")
    return text


def _choice(s: Settings, key: str, default: PricingKind) -> PricingKind:
    raw = s.text(key, default.value)
    try:
        return PricingKind(raw)
    except ValueError:
        choices = ", ".join(k.value for k in PricingKind)
        raise ConfigError(key, f"expected one of {choices}, got {raw!r}") from None


def _url(s: Settings, key: str, default: str, schemes: tuple[str, ...]) -> str:
    value = s.text(key, default)
    if not value.startswith(schemes):
        raise ConfigError(key, f"expected a {' or '.join(schemes)} URL, got {value!r}")
    return value.rstrip("/")


def _log_level(s: Settings) -> str:
    level = s.text("gateway.log_level", "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("gateway.log_level", f"expected DEBUG/INFO/WARNING/ERROR, got {level!r}")
    return level
