"""The gateway's metrics: the ``metrics.listen`` setting, and what each call does to the series
(per-tick commit, outcomes, misses, latency, handoffs, membership, the exchange feed)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from baton.common import ConfigError
from baton.common.metrics_http import split_host_port
from baton.gateway.config import DEFAULT_METRICS_LISTEN, load_gateway_config, parse_metrics_listen
from baton.gateway.core.binance import ControlReply, Malformed
from baton.gateway.core.records import EvalOutcome, EvaluationRecord, Staleness
from baton.gateway.metrics import GatewayMetrics
from baton.model import Role

SLOTS = ("BTC/5m", "ETH/5m")


def value(metrics: GatewayMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def record(
    slot: str, seq: int, outcome: EvalOutcome, *, scheduled_ms: int = 10_000
) -> EvaluationRecord:
    answered = outcome.answered
    return EvaluationRecord(
        slot,
        seq,
        scheduled_ms,
        scheduled_ms + 1000,
        outcome,
        dispatched_ms=scheduled_ms if outcome is not EvalOutcome.NO_ACTIVE else None,
        decided_ms=scheduled_ms + 3 if answered else None,
    )


# -- the setting --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("127.0.0.1:9464", "127.0.0.1:9464"),
        ("0.0.0.0:0", "0.0.0.0:0"),
        ("[::1]:9464", "[::1]:9464"),
        (" localhost:9100 ", "localhost:9100"),
        ("off", None),
        ("OFF", None),
        ("", None),
    ],
    ids=[
        "loopback",
        "any interface, any free port",
        "ipv6 in brackets",
        "surrounding spaces are trimmed",
        "off",
        "off in capitals",
        "empty is off",
    ],
)
def test_metrics_listen_values(raw: str, expected: str | None) -> None:
    assert parse_metrics_listen(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["9464", "localhost", ":9464", "localhost:http", "localhost:70000", "localhost:-1", "no"],
    ids=[
        "port without host",
        "host without port",
        "empty host",
        "port by name",
        "port above 65535",
        "negative port",
        "neither an address nor off",
    ],
)
def test_bad_metrics_listen_names_the_setting(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_gateway_config(None, environ={"BATON_METRICS__LISTEN": raw})
    assert info.value.setting == "metrics.listen"
    assert "metrics.listen" in str(info.value)
    assert repr(raw) in str(info.value)


def test_metrics_listen_from_file_default_and_environment(tmp_path: Path) -> None:
    assert load_gateway_config(None, environ={}).metrics_listen == DEFAULT_METRICS_LISTEN
    path = tmp_path / "gw.toml"
    path.write_text('[metrics]\nlisten = "0.0.0.0:9100"\n')
    assert load_gateway_config(path, environ={}).metrics_listen == "0.0.0.0:9100"
    env = {"BATON_METRICS__LISTEN": "off"}
    assert load_gateway_config(path, environ=env).metrics_listen is None
    path.write_text("[metrics]\nlisten = 9100\n")
    with pytest.raises(ConfigError, match=r"metrics\.listen: expected HOST:PORT"):
        load_gateway_config(path, environ={})


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::]:0", ("::", 0)),
        ("localhost:1", ("localhost", 1)),
    ],
    ids=["ipv4", "ipv6 brackets removed", "name"],
)
def test_split_host_port(listen: str, expected: tuple[str, int]) -> None:
    assert split_host_port(listen) == expected


# -- evaluations --------------------------------------------------------------------------------


def test_counts_move_at_commit_once_per_tick() -> None:
    m = GatewayMetrics(SLOTS)
    m.tick_dispatched(10_000, 10_000.4)
    m.resolved(record("BTC/5m", 1, EvalOutcome.EXECUTED))
    m.resolved(record("ETH/5m", 1, EvalOutcome.EXECUTED))
    executed = {"slot": "BTC/5m", "outcome": "executed"}
    assert value(m, "baton_evaluations_total", **executed) == 0, "not before the commit"
    assert value(m, "baton_decision_latency_seconds_count") == 0
    m.commit()
    assert value(m, "baton_evaluations_total", **executed) == 1
    assert value(m, "baton_evaluations_total", slot="ETH/5m", outcome="executed") == 1
    assert value(m, "baton_decision_latency_seconds_count") == 2
    assert value(m, "baton_tick_dispatch_lag_seconds_count") == 1
    assert value(m, "baton_tick_dispatch_lag_seconds_sum") == pytest.approx(0.0004)
    m.commit()  # nothing new: nothing moves
    assert value(m, "baton_evaluations_total", **executed) == 1


@pytest.mark.parametrize(
    ("outcome", "missed"),
    [
        (EvalOutcome.EXECUTED, 0),
        (EvalOutcome.ERROR, 0),
        (EvalOutcome.TIMEOUT, 1),
        (EvalOutcome.NO_ACTIVE, 1),
        (EvalOutcome.GATEWAY_LATE, 1),
        (EvalOutcome.UNDELIVERED, 1),
    ],
    ids=lambda v: v.value if isinstance(v, EvalOutcome) else f"missed={v}",
)
def test_each_outcome_is_counted_and_misses_also_per_slot(
    outcome: EvalOutcome, missed: int
) -> None:
    m = GatewayMetrics(SLOTS)
    m.resolved(record("ETH/5m", 7, outcome))
    m.commit()
    assert value(m, "baton_evaluations_total", slot="ETH/5m", outcome=outcome.value) == 1
    assert value(m, "baton_evaluations_missed_total", slot="ETH/5m") == missed
    assert value(m, "baton_evaluations_missed_total", slot="BTC/5m") == 0
    executed = 1 if outcome is EvalOutcome.EXECUTED else 0
    assert value(m, "baton_decision_latency_seconds_count") == executed


def test_series_that_exist_from_the_start() -> None:
    m = GatewayMetrics(SLOTS)
    for slot in SLOTS:
        assert value(m, "baton_evaluations_total", slot=slot, outcome="executed") == 0
        assert value(m, "baton_evaluations_missed_total", slot=slot) == 0
        # Rare outcomes appear with their first occurrence (cardinality at 20,000 slots).
        assert value(m, "baton_evaluations_total", slot=slot, outcome="timeout") is None
    assert value(m, "baton_slots") == 2
    for result in ("completed", "aborted", "rolled_back"):
        assert value(m, "baton_handoffs_total", result=result) == 0
    # Instances are counted per strategy: the series come with a strategy into the book.
    for role in Role:
        assert value(m, "baton_instances", role=role.value) is None


def test_an_unknown_slot_is_ignored_not_a_new_series() -> None:
    m = GatewayMetrics(SLOTS)
    m.resolved(record("DOGE/5m", 1, EvalOutcome.TIMEOUT))
    m.commit()
    assert value(m, "baton_evaluations_total", slot="DOGE/5m", outcome="timeout") is None
    assert value(m, "baton_evaluations_missed_total", slot="DOGE/5m") is None


def test_latency_runs_from_the_ticks_dispatch_and_falls_back_to_the_record() -> None:
    m = GatewayMetrics(SLOTS)
    m.tick_dispatched(10_000, 10_000.0)
    m.resolved(record("BTC/5m", 1, EvalOutcome.EXECUTED))
    m.commit()
    measured = value(m, "baton_decision_latency_seconds_sum")
    assert measured is not None
    assert 0 <= measured < 1.0
    # A tick whose dispatch time is no longer kept (or never was): the record's own ms.
    m.resolved(record("BTC/5m", 2, EvalOutcome.EXECUTED, scheduled_ms=2_000))
    m.commit()
    assert value(m, "baton_decision_latency_seconds_count") == 2
    assert value(m, "baton_decision_latency_seconds_sum") == pytest.approx(measured + 0.003)


def test_only_recent_ticks_dispatch_times_are_kept() -> None:
    m = GatewayMetrics(SLOTS)
    for tick in range(100):
        m.tick_dispatched(tick * 1000, tick * 1000.0)
    assert len(m._dispatched) <= 8
    assert value(m, "baton_tick_dispatch_lag_seconds_count") == 100


# -- handoffs, membership, the ledger, the feed --------------------------------------------------


@pytest.mark.parametrize(
    ("result", "pause_ms", "pauses"),
    [("completed", 3.5, 1), ("rolled_back", 4.0, 1), ("aborted", None, 0)],
    ids=["completed with a pause", "rolled back after its flip", "aborted before any flip"],
)
def test_handoffs(result: str, pause_ms: float | None, pauses: int) -> None:
    m = GatewayMetrics(SLOTS)
    m.handoff(result, pause_ms)
    assert value(m, "baton_handoffs_total", result=result) == 1
    assert value(m, "baton_handoff_pause_seconds_count") == pauses
    if pause_ms is not None:
        assert value(m, "baton_handoff_pause_seconds_sum") == pytest.approx(pause_ms / 1000)


def test_membership_sets_every_role_and_the_epoch() -> None:
    m = GatewayMetrics(SLOTS)
    m.membership("momentum", [Role.ACTIVE, Role.SHADOW, Role.STANDBY, Role.STANDBY], epoch=3)
    m.membership("reversion", [Role.ACTIVE], epoch=1)  # another strategy: its own series
    assert value(m, "baton_instances", strategy="momentum", role="ACTIVE") == 1
    assert value(m, "baton_instances", strategy="momentum", role="STANDBY") == 2
    assert value(m, "baton_epoch", strategy="momentum") == 3
    assert value(m, "baton_epoch", strategy="reversion") == 1
    m.membership("momentum", [Role.ACTIVE], epoch=4)  # a role nobody holds goes back to 0
    assert value(m, "baton_instances", strategy="momentum", role="STANDBY") == 0
    assert value(m, "baton_instances", strategy="reversion", role="ACTIVE") == 1
    assert value(m, "baton_instances", strategy="momentum", role="SHADOW") == 0
    assert value(m, "baton_epoch", strategy="momentum") == 4


def test_ledger_flushes() -> None:
    m = GatewayMetrics(SLOTS)
    m.ledger_flushed(0.002)
    assert value(m, "baton_ledger_write_seconds_count") == 1
    assert value(m, "baton_ledger_write_seconds_bucket", le="0.002") == 1
    assert value(m, "baton_ledger_write_seconds_bucket", le="0.001") == 0


def test_feed_messages_connections_and_reconnects() -> None:
    m = GatewayMetrics(SLOTS)
    feed = m.feed
    feed.connection("0", up=True)
    feed.message(ControlReply(id=1, result=None))
    feed.message(Malformed("bad json", "{"))
    feed.message(object())  # not a frame kind: not counted
    feed.malformed()
    feed.reconnect()
    assert value(m, "baton_exchange_connected", connection="0") == 1
    assert value(m, "baton_exchange_messages_total", kind="control_reply") == 1
    assert value(m, "baton_exchange_messages_total", kind="malformed") == 1
    assert value(m, "baton_exchange_messages_total", kind="kline") == 0
    assert value(m, "baton_exchange_messages_malformed_total") == 1
    assert value(m, "baton_exchange_reconnects_total") == 1
    feed.connection("0", up=False)
    assert value(m, "baton_exchange_connected", connection="0") == 0


def test_gateways_do_not_share_series() -> None:
    """Each gateway has its own registry: two in one process (tests) count separately."""
    a, b = GatewayMetrics(SLOTS), GatewayMetrics(SLOTS)
    a.resolved(record("BTC/5m", 1, EvalOutcome.TIMEOUT))
    a.commit()
    assert value(a, "baton_evaluations_missed_total", slot="BTC/5m") == 1
    assert value(b, "baton_evaluations_missed_total", slot="BTC/5m") == 0
    shared = CollectorRegistry()
    GatewayMetrics(SLOTS, shared)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        GatewayMetrics(SLOTS, shared)


def test_stale_executed_evaluations_are_counted_per_slot_at_commit() -> None:
    m = GatewayMetrics(SLOTS)
    for slot in SLOTS:
        assert value(m, "baton_evaluations_stale_total", slot=slot) == 0  # from the start
    m.resolved(replace(record("BTC/5m", 1, EvalOutcome.EXECUTED), stale=Staleness.NO_LIVE))
    m.resolved(replace(record("BTC/5m", 2, EvalOutcome.EXECUTED), stale=Staleness.OLD))
    m.resolved(record("BTC/5m", 3, EvalOutcome.EXECUTED))  # fresh
    # Stale but not evaluated: a miss or an error is not a stale evaluation.
    m.resolved(replace(record("ETH/5m", 1, EvalOutcome.TIMEOUT), stale=Staleness.OLD))
    m.resolved(replace(record("ETH/5m", 2, EvalOutcome.ERROR), stale=Staleness.OLD))
    assert value(m, "baton_evaluations_stale_total", slot="BTC/5m") == 0  # not before commit
    m.commit()
    assert value(m, "baton_evaluations_stale_total", slot="BTC/5m") == 2
    assert value(m, "baton_evaluations_stale_total", slot="ETH/5m") == 0
    assert value(m, "baton_evaluations_total", slot="BTC/5m", outcome="executed") == 3


@pytest.mark.parametrize("event", ["disconnected", "stalled", "server_shutdown", "backfill_failed"])
def test_feed_problems_are_counted_by_event(event: str) -> None:
    m = GatewayMetrics(SLOTS)
    assert value(m, "baton_exchange_problems_total", event=event) == 0  # from the start
    m.feed.problem(event)
    m.feed.problem("connected")  # not a problem: no series
    assert value(m, "baton_exchange_problems_total", event=event) == 1
    assert value(m, "baton_exchange_problems_total", event="connected") is None
