"""Fault state, malformed frames (each one caught by the gateway's parser), configuration."""

from __future__ import annotations

import pytest

from baton.common import ConfigError
from baton.exchange_sim import MalformedKind, RestFault, SimConfig, corrupt
from baton.exchange_sim.cli import _parser, config_from_args
from baton.exchange_sim.core.candles import build_kline
from baton.exchange_sim.core.faults import FaultState
from baton.exchange_sim.core.prices import PricePath, symbol_spec
from baton.exchange_sim.core.protocol import encode, kline_payload, wrap
from baton.gateway.core.binance import KlineEvent, Malformed, parse_frame

KLINE = build_kline(
    PricePath(1, symbol_spec("BTCUSDT")), "1m", 1_699_999_980_000, 1_700_000_100_000
)
assert KLINE is not None
EVENT = kline_payload(KLINE, 1_700_000_100_000)
STREAM = "btcusdt@kline_1m"


@pytest.mark.parametrize("combined", [True, False], ids=["combined", "raw"])
def test_an_intact_frame_parses(combined: bool) -> None:
    event = parse_frame(encode(wrap(STREAM, EVENT, combined)))
    assert isinstance(event, KlineEvent)
    assert event.candle.closed


@pytest.mark.parametrize("kind", list(MalformedKind), ids=lambda k: k.value)
@pytest.mark.parametrize("combined", [True, False], ids=["combined", "raw"])
def test_every_malformed_kind_is_caught_by_the_gateway(kind: MalformedKind, combined: bool) -> None:
    frame = corrupt(EVENT, STREAM if combined else None, kind)
    assert isinstance(parse_frame(frame), Malformed), frame


def test_malformed_frames_cycle_through_every_kind() -> None:
    state = FaultState()
    state.add_malformed(len(MalformedKind) + 1)
    kinds = [state.take_malformed() for _ in range(len(MalformedKind) + 2)]
    assert kinds[: len(MalformedKind)] == list(MalformedKind)
    assert kinds[-2] == MalformedKind.TRUNCATED_JSON
    assert kinds[-1] is None
    assert state.malformed_pending == 0


def test_stalls_extend_and_expire() -> None:
    state = FaultState()
    assert not state.stalled(0.0)
    state.stall(10.0, 2.0)
    state.stall(10.5, 1.0)  # a shorter stall does not cut a longer one short
    assert state.stalled(11.9)
    assert not state.stalled(12.0)


def test_rest_faults_are_consumed_one_per_call() -> None:
    state = FaultState()
    state.add_rest_errors(2, RestFault(429, 3))
    assert [state.take_rest_fault() for _ in range(3)] == [
        RestFault(429, 3),
        RestFault(429, 3),
        None,
    ]
    assert '"code":-1003' in RestFault(429).body()
    assert '"code":-1000' in RestFault(500).body()


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"time_scale": 0.0}, "time_scale"),
        ({"time_scale": float("inf")}, "time_scale"),
        ({"push_interval_s": -1.0}, "push_interval_s"),
        ({"pong_timeout_s": 0.0}, "pong_timeout_s"),
        ({"port": 70_000}, "port"),
        ({"symbols": ()}, "symbols"),
        ({"symbols": ("btcusdt",)}, "symbols"),
        ({"shutdown_notice_s": 5.0, "max_lifetime_s": 5.0}, "shutdown_notice_s"),
        ({"max_incoming_per_s": 0}, "max_incoming_per_s"),
        ({"start_ms": -1}, "start_ms"),
    ],
    ids=[
        "time must move",
        "time scale must be finite",
        "push interval must be positive",
        "pong timeout must be positive",
        "port out of range",
        "at least one symbol",
        "symbols are upper case",
        "the shutdown notice comes before the forced close",
        "the message rate limit must allow something",
        "start time before the epoch",
    ],
)
def test_invalid_configuration_names_the_setting(
    overrides: dict[str, object], setting: str
) -> None:
    with pytest.raises(ConfigError) as info:
        SimConfig(**overrides)  # type: ignore[arg-type]
    assert info.value.setting == setting


def test_cli_options_build_the_config() -> None:
    args = _parser().parse_args(
        ["--symbols", "btcusdt,ethusdt", "SOLUSDT", "--time-scale", "60", "--strict-symbols"]
    )
    config = config_from_args(args)
    assert config.symbols == ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    assert config.time_scale == 60.0
    assert config.strict_symbols
    assert "MATICUSDT" not in SimConfig().symbols
    assert "POLUSDT" in SimConfig().symbols
