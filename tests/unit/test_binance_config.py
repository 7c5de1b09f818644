"""The exchange client's configuration: defaults point at Binance, errors name the setting."""

from __future__ import annotations

import pytest

from baton.common import ConfigError
from baton.gateway.exchange import ExchangeConfig, ExchangeFeed, FeedStats


def test_defaults_are_binance() -> None:
    config = ExchangeConfig()
    assert config.ws_url == "wss://stream.binance.com:9443"
    assert config.rest_url == "https://api.binance.com"
    assert (config.stall_timeout_s, config.backfill_limit) == (30.0, 100)
    assert config.max_streams_per_connection == 1024
    # The gateway reads these class attributes as the defaults of its own settings.
    assert ExchangeConfig.ws_url == config.ws_url
    assert ExchangeConfig.backfill_limit == 100


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"ws_url": "https://stream.binance.com"}, "exchange.ws_url"),
        ({"rest_url": "ftp://api.binance.com"}, "exchange.rest_url"),
        ({"stall_timeout_s": 0.0}, "exchange.stall_timeout_s"),
        ({"connect_timeout_s": float("nan")}, "exchange.connect_timeout_s"),
        ({"backfill_limit": 1001}, "exchange.backfill_limit"),
        ({"backfill_limit": -1}, "exchange.backfill_limit"),
        ({"max_streams_per_connection": 1025}, "exchange.max_streams_per_connection"),
        ({"rest_concurrency": 0}, "exchange.rest_concurrency"),
    ],
    ids=[
        "streams need a ws:// or wss:// URL",
        "REST needs an http(s) URL",
        "a stall timeout of zero",
        "a NaN timeout",
        "more history than one request returns",
        "negative history",
        "more streams than Binance allows on a connection",
        "no REST at all",
    ],
)
def test_invalid_settings_are_named(overrides: dict[str, object], setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        ExchangeConfig(**overrides)  # type: ignore[arg-type]
    assert info.value.setting == setting


class _NullSink:
    def on_candle(self, candle: object, source: str) -> None: ...
    def on_connection(self, event: str, detail: str) -> None: ...
    def on_malformed(self, reason: str, raw: str) -> None: ...


def test_a_feed_dedupes_its_streams_and_starts_idle() -> None:
    feed = ExchangeFeed(
        ExchangeConfig(), [("BTCUSDT", "5m"), ("BTCUSDT", "5m"), ("POLUSDT", "15m")], _NullSink()
    )
    assert feed.streams == ("btcusdt@kline_5m", "polusdt@kline_15m")
    assert feed.stats == FeedStats()
    assert not feed.connected.is_set()


def test_a_feed_refuses_an_interval_it_cannot_track() -> None:
    with pytest.raises(ValueError, match="invalid timeframe"):
        ExchangeFeed(ExchangeConfig(), [("BTCUSDT", "1w")], _NullSink())
