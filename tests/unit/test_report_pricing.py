"""The report names the model that priced the bets, from each run's recorded config."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.gateway.config import load_gateway_config
from baton.gateway.ledger import Ledger
from baton.gateway.report import format_report, presence_report, report_to_json

T0 = 1_700_000_000_000


def config_json(pricing: str | None) -> str:
    if pricing is None:
        return "{}"  # a run recorded before venue.pricing existed: its bets priced flat
    return load_gateway_config(None, environ={"BATON_VENUE__PRICING": pricing}).to_json()


@pytest.mark.parametrize(
    ("runs", "expected"),
    [
        pytest.param([], None, id="no-run"),
        pytest.param([None], "flat", id="an-old-ledger-priced-flat"),
        pytest.param(["random_walk"], "random_walk", id="the-default"),
        pytest.param(["flat"], "flat", id="flat-configured"),
        pytest.param(["flat", "random_walk", "random_walk"], "flat, random_walk", id="changed"),
    ],
)
def test_the_report_names_the_pricing_of_its_runs(
    tmp_path: Path, runs: list[str | None], expected: str | None
) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path).close()
    for i, pricing in enumerate(runs):
        with Ledger(path) as led:
            led.record_run(
                started_ms=T0 + i,
                cadence_ms=5000,
                slots=["BTC/5m"],
                config_json=config_json(pricing),
            )
    report = presence_report(path)
    assert report.pricing == expected
    assert report_to_json(report)["pricing"] == expected
    assert f"pricing: {expected or '-'}" in format_report(report).splitlines()


def test_an_unreadable_run_config_reads_as_flat(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as led:
        led.record_run(started_ms=T0, cadence_ms=5000, slots=[], config_json="not json")
    assert presence_report(path).pricing == "flat"
