"""The clock's wait for the exchange backfill (core/warmup.py) and its setting."""

from __future__ import annotations

import pytest

from baton.common import ConfigError
from baton.gateway.config import DEFAULT_BACKFILL_WAIT_S, gateway_config_from
from baton.gateway.core.warmup import BackfillWait, WaitOutcome

START = 1_700_000_000_000
WAIT = BackfillWait(started_ms=START, max_wait_ms=5_000)


@pytest.mark.parametrize(
    ("backfilled", "now_ms", "expected", "remaining_ms"),
    [
        # still backfilling, inside the bound: keep waiting, for what is left of it
        (False, START, None, 5_000),
        (False, START + 4_999, None, 1),
        # the bound passes: the clock starts anyway
        (False, START + 5_000, WaitOutcome.TIMED_OUT, 0),
        (False, START + 60_000, WaitOutcome.TIMED_OUT, 0),
        # the backfill finished (delivered, or refused for good): start at once
        (True, START, WaitOutcome.BACKFILLED, 5_000),
        (True, START + 3_000, WaitOutcome.BACKFILLED, 2_000),
        # finished at the very moment the bound passes: the backfill wins
        (True, START + 5_000, WaitOutcome.BACKFILLED, 0),
        # a clock that steps back (NTP) does not end the wait early
        (False, START - 1_000, None, 6_000),
    ],
)
def test_when_the_clock_may_start(
    backfilled: bool, now_ms: int, expected: WaitOutcome | None, remaining_ms: int
) -> None:
    assert WAIT.decide(backfilled=backfilled, now_ms=now_ms) is expected
    assert WAIT.remaining_ms(now_ms) == remaining_ms


def test_no_wait_starts_at_once_unless_backfilled() -> None:
    now = BackfillWait(started_ms=START, max_wait_ms=0)
    assert now.deadline_ms == START
    assert now.decide(backfilled=False, now_ms=START) is WaitOutcome.TIMED_OUT
    assert now.decide(backfilled=True, now_ms=START) is WaitOutcome.BACKFILLED


def test_a_negative_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="max_wait_ms"):
        BackfillWait(started_ms=START, max_wait_ms=-1)


def test_the_bound_is_a_validated_setting() -> None:
    assert gateway_config_from({}).backfill_wait_s == DEFAULT_BACKFILL_WAIT_S == 5.0
    assert gateway_config_from({}).backfill_wait_ms == 5_000
    assert gateway_config_from({"gateway.backfill_wait_s": 0}).backfill_wait_ms == 0
    assert gateway_config_from({"gateway.backfill_wait_s": "2.5"}).backfill_wait_ms == 2_500
    for bad in (-1, 601, "soon", float("inf"), True):
        with pytest.raises(ConfigError, match=r"gateway\.backfill_wait_s"):
            gateway_config_from({"gateway.backfill_wait_s": bad})
