"""Gateway configuration: reference defaults, file + environment layering, named errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.common import ConfigError
from baton.gateway.config import ClockStart, LeaderBackend, load_gateway_config
from baton.gateway.core.venue import PricingKind


def test_defaults_are_the_reference_workload() -> None:
    config = load_gateway_config(None, environ={})
    assert [m.name for m in config.markets] == [
        "BTC",
        "ETH",
        "SOL",
        "XRP",
        "DOGE",
        "AVAX",
        "LINK",
        "MATIC",
    ]
    assert len(config.slots) == 16
    assert config.cadence_ms == 5000
    assert config.venue.stake == 5.0
    assert (config.venue.pricing, config.venue.spread, config.venue.vol_window) == (
        PricingKind.RANDOM_WALK,
        0.02,
        30,
    )
    matic = next(m for m in config.markets if m.name == "MATIC")
    assert matic.symbol == "POLUSDT", "MATIC trades as POL since 2024"
    assert ("POLUSDT", "15m") in config.streams
    assert config.exchange.ws_url == "wss://stream.binance.com:9443"


@pytest.mark.parametrize(
    ("markets", "expected"),
    [(8, 8192), (1024, 8192), (1025, 8200), (5000, 40_000)],
    ids=["reference", "4-ticks-at-the-floor", "past-the-floor", "10000-slots"],
)
def test_the_send_queue_default_holds_four_ticks(markets: int, expected: int) -> None:
    names = ",".join(f"M{i}" for i in range(markets))
    config = load_gateway_config(None, environ={"BATON_GATEWAY__MARKETS": names})
    assert config.send_queue == expected
    assert config.send_queue >= 4 * len(config.slots)


def test_leader_election_is_off_by_default_and_each_start_is_a_new_candidate() -> None:
    config = load_gateway_config(None, environ={})
    assert config.leader.backend is LeaderBackend.OFF
    assert not config.leader.enabled
    assert (
        config.leader.lease.lease_duration_ms,
        config.leader.lease.renew_deadline_ms,
        config.leader.lease.retry_period_ms,
    ) == (4000, 3000, 500)
    env = {"BATON_LEADER__BACKEND": "local", "BATON_LEADER__IDENTITY": "gw-a"}
    first, second = (load_gateway_config(None, environ=env).leader for _ in range(2))
    assert first.enabled
    assert first.identity.startswith("gw-a-")
    assert second.identity.startswith("gw-a-")
    # A restarted replica never mistakes the lease its previous life held for its own.
    assert first.identity != second.identity


def test_flat_pricing_stays_a_named_option() -> None:
    config = load_gateway_config(
        None, environ={"BATON_VENUE__PRICING": "flat", "BATON_VENUE__SPREAD": "0"}
    )
    assert config.venue.pricing is PricingKind.FLAT
    assert config.venue.spread == 0.0
    assert '"pricing": "flat"' in config.to_json()


def test_file_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(
        '[gateway]\nmarkets = ["BTC", "MATIC=POLUSDT"]\ntimeframes = ["1m"]\ncadence_s = 2\n'
        '[ledger]\npath = "/tmp/x.sqlite"\n'
    )
    config = load_gateway_config(
        path, environ={"BATON_GATEWAY__CADENCE_S": "0.5", "BATON_GATEWAY__CLOCK_START": "immediate"}
    )
    assert [s.slot_id for s in config.slots] == ["BTC/1m", "MATIC/1m"]
    assert config.cadence_s == 0.5
    assert config.clock_start is ClockStart.IMMEDIATE
    assert config.ledger_path == Path("/tmp/x.sqlite")


@pytest.mark.parametrize(
    ("env", "setting", "problem"),
    [
        ({"BATON_GATEWAY__CADENCE_S": "-1"}, "gateway.cadence_s", "must be >="),
        ({"BATON_GATEWAY__CADENCE_S": "fast"}, "gateway.cadence_s", "expected a number"),
        ({"BATON_GATEWAY__TIMEFRAMES": "5m,7x"}, "gateway.timeframes", "invalid timeframe"),
        ({"BATON_GATEWAY__TIMEFRAMES": "5m,5m"}, "gateway.timeframes", "duplicate"),
        ({"BATON_GATEWAY__MARKETS": "BTC,BTC"}, "gateway.markets", "duplicate"),
        ({"BATON_GATEWAY__MARKETS": "BT-C"}, "gateway.markets", "bad market"),
        ({"BATON_GATEWAY__MARKETS": ""}, "gateway.markets", "must not be empty"),
        ({"BATON_GATEWAY__LISTEN": "nowhere"}, "gateway.listen", "HOST:PORT"),
        ({"BATON_GATEWAY__CLOCK_START": "later"}, "gateway.clock_start", "expected one of"),
        ({"BATON_EXCHANGE__WS_URL": "http://x"}, "exchange.ws_url", "ws://"),
        ({"BATON_VENUE__STAKE": "0"}, "venue.stake", "must be >"),
        ({"BATON_VENUE__FEE_RATE": "2"}, "venue.fee_rate", "must be <="),
        ({"BATON_VENUE__PRICING": "black_scholes"}, "venue.pricing", "expected one of"),
        ({"BATON_VENUE__SPREAD": "0.6"}, "venue.spread", "must be <="),
        ({"BATON_VENUE__SPREAD": "-0.01"}, "venue.spread", "must be >="),
        ({"BATON_VENUE__VOL_WINDOW": "0"}, "venue.vol_window", "must be >="),
        ({"BATON_GATEWAY__HISTORY": "1.5"}, "gateway.history", "expected an integer"),
        ({"BATON_GATEWAY__CADENCS_S": "1"}, "gateway.cadencs_s", "unknown setting"),
        ({"BATON_GATEWAY__SEND_QUEUE": "20"}, "gateway.send_queue", "at least two ticks (32"),
        ({"BATON_LEADER__BACKEND": "zookeeper"}, "leader.backend", "expected one of off, local"),
        (
            {"BATON_LEADER__RENEW_DEADLINE_MS": "4000"},
            "leader.renew_deadline_ms",
            "must be < leader.lease_duration_ms (4000)",
        ),
        ({"BATON_LEADER__RETRY_PERIOD_MS": "0"}, "leader.retry_period_ms", "must be > 0"),
        ({"BATON_LEADER__LEASE_DURATION_MS": "4s"}, "leader.lease_duration_ms", "an integer"),
        ({"BATON_LEADER__IDENTITY": "gw a"}, "leader.identity", "expected letters"),
        ({"BATON_LEADER__LEASE_NAME": "Leader_1"}, "leader.lease_name", "a DNS label"),
        ({"BATON_LEADER__REPLICATE_FROM": "127.0.0.1:7001"}, "leader.replicate_from", "needs"),
        (
            {"BATON_LEADER__BACKEND": "local", "BATON_LEADER__REPLICATE_FROM": "gw:0"},
            "leader.replicate_from",
            "needs a port",
        ),
        (
            {"BATON_LEADER__BACKEND": "local", "BATON_LEADER__REPLICATE_FROM": "gw"},
            "leader.replicate_from",
            "HOST:PORT",
        ),
    ],
    ids=[
        "negative cadence",
        "cadence not a number",
        "bad timeframe",
        "duplicate timeframe",
        "duplicate market",
        "bad market name",
        "no markets",
        "listen without port",
        "unknown clock start",
        "exchange url scheme",
        "zero stake",
        "fee rate above 1",
        "unknown pricing model",
        "spread above one half",
        "negative spread",
        "empty volatility window",
        "fractional history",
        "a typo is an unknown setting, not silently ignored",
        "send queue shorter than two ticks",
        "unknown election backend",
        "renew deadline not under the lease",
        "no retry period",
        "lease duration with a unit",
        "identity with a space",
        "lease name not a DNS label",
        "replication without an election",
        "replication from port 0",
        "replication address without a port",
    ],
)
def test_errors_name_the_setting(env: dict[str, str], setting: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_gateway_config(None, environ=env)
    assert info.value.setting == setting
    assert problem in str(info.value)
    assert setting in str(info.value)


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_gateway_config(tmp_path / "nope.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_gateway_config(bad, environ={})
