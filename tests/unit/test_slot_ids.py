"""The shape of a slot id, as a strategy's ``slots`` setting names them (host, operator, CRD)."""

from __future__ import annotations

import doctest
import re

import pytest

from baton.gateway.config import REFERENCE_TIMEFRAMES, reference_markets
from baton.model import SLOT_ID_PATTERN, Slot, _slot_ids, check_slot_ids, is_slot_id, make_slots


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("BTC/5m", id="reference"),
        pytest.param("MATIC/15m", id="renamed-market"),
        pytest.param("1INCH/1h", id="digit-first-market"),
        pytest.param("BTC/30s", id="seconds"),
        pytest.param("ETH/1d", id="days"),
    ],
)
def test_good_slot_ids(value: str) -> None:
    assert is_slot_id(value)
    assert re.fullmatch(SLOT_ID_PATTERN.strip("^$"), value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("btc/5m", id="lower-case-market"),
        pytest.param("BTC", id="no-timeframe"),
        pytest.param("BTC/", id="empty-timeframe"),
        pytest.param("/5m", id="empty-market"),
        pytest.param("BTC/5M", id="upper-case-unit"),
        pytest.param("BTC/0m", id="zero-length"),
        pytest.param("BTC/5w", id="unknown-unit"),
        pytest.param("BTC:5m", id="colon"),
        pytest.param("BTC /5m", id="space"),
        pytest.param("BTC/5m/x", id="two-slashes"),
        pytest.param("BTCUSDT@kline_5m", id="a-stream-name"),
        pytest.param(5, id="not-a-string"),
    ],
)
def test_bad_slot_ids(value: object) -> None:
    assert not is_slot_id(value)
    with pytest.raises(ValueError, match="must be MARKET/TIMEFRAME"):
        check_slot_ids(["BTC/5m", value])


def test_a_slot_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="'ETH/5m' is listed twice"):
        check_slot_ids(["ETH/5m", "BTC/5m", "ETH/5m"])


def test_every_slot_a_gateway_makes_has_the_shape() -> None:
    """The reference gateway's 16 slots (and a few more timeframes) are all valid slot ids."""
    slots = make_slots(reference_markets(), (*REFERENCE_TIMEFRAMES, "1s", "4h", "1d"))
    assert check_slot_ids([s.slot_id for s in slots]) == tuple(s.slot_id for s in slots)
    assert check_slot_ids([Slot("MATIC", "POLUSDT", "15m").slot_id]) == ("MATIC/15m",)
    assert check_slot_ids([]) == ()


def test_docstring_examples_run() -> None:
    result = doctest.testmod(_slot_ids)
    assert result.failed == 0
    assert result.attempted > 0
