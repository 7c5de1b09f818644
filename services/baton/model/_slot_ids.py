"""Slot ids as a strategy names them: which of a gateway's slots it evaluates (the book).

A slot id is ``MARKET/TIMEFRAME`` (``Slot.slot_id``): a market's name as the gateway configures
it (letters and digits, upper case: ``BTC``, ``MATIC``) and a timeframe (``<n><s|m|h|d>``,
e.g. ``5m``). The strategy host, the operator and the CRD check the same shape; whether the
gateway has the slot is the gateway's to say when the strategy attaches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: The shape of one slot id; the CRD's ``spec.slots`` pattern is the same expression.
SLOT_ID_PATTERN = r"^[A-Z0-9]{1,32}/[1-9][0-9]{0,5}[smhd]$"
_SLOT_ID = re.compile(SLOT_ID_PATTERN)
SLOT_ID_HINT = "must be MARKET/TIMEFRAME, e.g. BTC/5m or MATIC/15m"


def is_slot_id(value: object) -> bool:
    """
    >>> is_slot_id("BTC/5m"), is_slot_id("MATIC/15m"), is_slot_id("btc/5m"), is_slot_id("BTC-5m")
    (True, True, False, False)
    """
    return isinstance(value, str) and _SLOT_ID.match(value) is not None


def check_slot_ids(values: Iterable[object]) -> tuple[str, ...]:
    """The slot ids, in the order given; ``ValueError`` saying which one is malformed or repeated.

    >>> check_slot_ids(["BTC/5m", "ETH/15m"])
    ('BTC/5m', 'ETH/15m')
    >>> check_slot_ids(["BTC/5m", "BTC:5m"])
    Traceback (most recent call last):
    ...
    ValueError: 'BTC:5m' must be MARKET/TIMEFRAME, e.g. BTC/5m or MATIC/15m
    """
    out: list[str] = []
    for value in values:
        if not is_slot_id(value):
            raise ValueError(f"{value!r} {SLOT_ID_HINT}")
        assert isinstance(value, str)
        if value in out:
            raise ValueError(f"{value!r} is listed twice")
        out.append(value)
    return tuple(out)
