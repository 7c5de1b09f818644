"""Stale evaluations with real processes: the simulator over a real WebSocket, the gateway, a
strategy host. An evaluation answered without live market data is counted stale (ledger,
report, metric), never as a fresh evaluation; the exchange problem behind it is a WARNING."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from baton.common import Service
from baton.gateway.report import presence_report
from tests.procs import (
    SLOTS,
    StartGateway,
    StartStrategy,
    count,
    log_entries,
    query,
    run_ticks,
    sim_fault,
    wait_until,
)

# Plain MATIC: MATICUSDT, which the exchange (and the simulator) no longer trades: the stream
# subscribes and stays silent, REST answers -1121.
UNKNOWN_MATIC = "BTC,ETH,SOL,XRP,DOGE,AVAX,LINK,MATIC"
MATIC_SLOTS = ("MATIC/5m", "MATIC/15m")


def metric(gateway: Service, name: str, **labels: str) -> float:
    """One sample of the gateway's /metrics (0 when the series does not exist)."""
    addr = gateway.ready["metrics_addr"]
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


def warnings(gateway: Service, msg: str) -> list[dict[str, Any]]:
    """The gateway's WARNING log lines with message ``msg``."""
    return [e for e in log_entries(gateway, msg) if e.get("level") == "warning"]


def stale_by_slot(ledger: Path, outcome: str = "executed") -> dict[tuple[str, str], int]:
    rows = query(
        ledger,
        "SELECT slot_id, stale, count(*) FROM evaluations WHERE outcome = ? GROUP BY 1, 2",
        outcome,
    )
    return {(str(slot), str(stale)): int(n) for slot, stale, n in rows}


async def test_an_unknown_symbol_is_stale_never_evaluated_as_fresh(
    start_gateway: StartGateway, start_strategy: StartStrategy, ledger: Path
) -> None:
    gateway = await start_gateway(BATON_GATEWAY__MARKETS=UNKNOWN_MATIC)
    await start_strategy(gateway)
    await run_ticks(ledger, 4)
    await wait_until(
        lambda: metric(gateway, "baton_evaluations_stale_total", slot="MATIC/5m") > 0,
        timeout_s=10,
        what="the stale metric of MATIC/5m to move",
    )

    by_slot = stale_by_slot(ledger)
    for slot in MATIC_SLOTS:
        # Answered every tick, never on live data: no frame of MATICUSDT ever arrived.
        assert by_slot.get((slot, "no_live"), 0) >= 3, by_slot
        assert by_slot.get((slot, ""), 0) == 0, by_slot
    # The known markets are evaluated on live data (the clock's first tick waits for their
    # backfill: test_first_tick_backfill.py).
    for slot in ("BTC/5m", "LINK/15m"):
        assert by_slot.get((slot, ""), 0) >= 2, by_slot
    assert count(ledger, "SELECT count(*) FROM evaluations WHERE stale = 'old'") == 0

    report = presence_report(ledger)
    per_slot = {s.slot_id: s for s in report.per_slot}
    assert len(per_slot) == SLOTS
    for slot in MATIC_SLOTS:
        assert per_slot[slot].stale == per_slot[slot].evaluated > 0
    assert report.stale >= per_slot["MATIC/5m"].stale + per_slot["MATIC/15m"].stale
    assert report.stale_by_reason["no_live"] >= per_slot["MATIC/5m"].stale

    stale_logs = warnings(gateway, "market data stale: evaluations counted stale")
    named = [(s, e["why"]) for e in stale_logs for s in e["streams"]]
    # Logged once when the stream turns stale, not once per tick.
    assert sorted(n for n in named if n[0].startswith("MATICUSDT")) == [
        ("MATICUSDT@15m", "no_live"),
        ("MATICUSDT@5m", "no_live"),
    ], stale_logs
    problems = warnings(gateway, "exchange feed problem")
    assert any(e["event"] == "backfill_failed" and "-1121" in e["detail"] for e in problems), (
        problems
    )
    assert metric(gateway, "baton_exchange_problems_total", event="backfill_failed") >= 1


async def test_a_feed_stall_counts_stale_evaluations_while_it_lasts(
    sim: Service, start_gateway: StartGateway, start_strategy: StartStrategy, ledger: Path
) -> None:
    # 1.5 s: three of the simulator's push intervals are far shorter, a 4 s stall far longer.
    gateway = await start_gateway(BATON_GATEWAY__STALE_AFTER_MS="1500")
    await start_strategy(gateway)
    await run_ticks(ledger, 3)
    assert count(ledger, "SELECT count(*) FROM evaluations WHERE stale = 'old'") == 0
    before = metric(gateway, "baton_evaluations_stale_total", slot="BTC/5m")

    sim_fault(sim, "/_sim/faults/stall?seconds=4")
    await wait_until(
        lambda: (
            count(ledger, "SELECT count(DISTINCT slot_id) FROM evaluations WHERE stale = 'old'")
            == SLOTS
        ),
        timeout_s=15,
        what="an evaluation of every slot counted stale during the stall",
    )
    (last_old,) = query(ledger, "SELECT max(seq) FROM evaluations WHERE stale = 'old'")[0]
    # After the stall the feed reconnects and the evaluations are fresh again.
    await wait_until(
        lambda: (
            count(
                ledger,
                "SELECT count(DISTINCT slot_id) FROM evaluations WHERE stale = '' AND seq > ?",
                last_old,
            )
            == SLOTS
        ),
        timeout_s=20,
        what="fresh evaluations of every slot after the stall",
    )

    # Stale, not missed: the strategy answered every evaluation in time.
    outcomes = query(ledger, "SELECT outcome, count(*) FROM evaluations GROUP BY 1")
    assert {str(o) for o, _ in outcomes} == {"executed"}, outcomes
    report = presence_report(ledger)
    assert report.missed == 0
    assert report.stale_by_reason["old"] >= SLOTS
    assert report.stale <= report.evaluated
    await wait_until(
        lambda: metric(gateway, "baton_evaluations_stale_total", slot="BTC/5m") > before,
        timeout_s=10,
        what="the stale metric to move",
    )
    assert any(e["event"] == "stalled" for e in warnings(gateway, "exchange feed problem"))
    assert metric(gateway, "baton_exchange_problems_total", event="stalled") >= 1
    stale_logs = warnings(gateway, "market data stale: evaluations counted stale")
    assert any(e["why"] == "old" for e in stale_logs), stale_logs
