"""The ledger health the control API reports: the gateway's value after each flush, its
message, and the line ``baton instances`` prints. No gateway, no event loop."""

from __future__ import annotations

import pytest

from baton import wire
from baton.control import ledger_line
from baton.model import LedgerHealth
from baton.v1 import control_pb2 as ctl

ERROR = "ledger /x.sqlite flush of 48 rows failed, kept for the next flush: disk I/O error"


def after(*steps: str) -> LedgerHealth:
    """``ok`` / ``fail`` flushes from a fresh gateway; the nth flush at t = 1000 * n,
    leaving 16 rows more pending per failure."""
    h = LedgerHealth()
    pending = 0
    for n, step in enumerate(steps, start=1):
        if step == "ok":
            pending = 0
            h = h.flushed(now_ms=1000 * n, pending_rows=0, discarded_rows=h.discarded_rows)
        else:
            pending += 16
            h = h.failed(f"error {n}", pending_rows=pending, discarded_rows=h.discarded_rows)
    return h


@pytest.mark.parametrize(
    ("steps", "ok", "failed_flushes", "pending_rows", "last_error", "last_ok_flush_ms"),
    [
        pytest.param((), True, 0, 0, "", 0, id="a fresh gateway is ok with no flush yet"),
        pytest.param(("ok",), True, 0, 0, "", 1000, id="a good flush stamps its time"),
        pytest.param(("ok", "ok"), True, 0, 0, "", 2000, id="the last good flush's time"),
        pytest.param(("fail",), False, 1, 16, "error 1", 0, id="failing before any good flush"),
        pytest.param(
            ("ok", "fail", "fail", "fail"),
            False, 3, 48, "error 4", 1000,
            id="consecutive failures count up and keep the last good flush",
        ),
        pytest.param(
            ("ok", "fail", "fail", "ok"),
            True, 0, 0, "error 3", 4000,
            id="a good flush recovers and keeps the last error",
        ),
        pytest.param(
            ("fail", "ok", "fail"),
            False, 1, 16, "error 3", 2000,
            id="a new outage counts from one again",
        ),
    ],
)  # fmt: skip
def test_health_after_flushes(
    steps: tuple[str, ...],
    ok: bool,
    failed_flushes: int,
    pending_rows: int,
    last_error: str,
    last_ok_flush_ms: int,
) -> None:
    h = after(*steps)
    assert (h.ok, h.failed_flushes, h.pending_rows, h.last_error, h.last_ok_flush_ms) == (
        ok,
        failed_flushes,
        pending_rows,
        last_error,
        last_ok_flush_ms,
    )


def test_discarded_rows_are_as_the_ledger_counts_them() -> None:
    h = LedgerHealth().failed(ERROR, pending_rows=100, discarded_rows=7)
    assert h.discarded_rows == 7
    assert h.flushed(now_ms=5, pending_rows=0, discarded_rows=7).discarded_rows == 7


def test_to_proto_carries_every_field() -> None:
    h = LedgerHealth(
        pending_rows=48, discarded_rows=7, failed_flushes=3, last_error=ERROR, last_ok_flush_ms=9
    )
    assert wire.ledger_health_to_proto(h) == ctl.LedgerHealth(
        ok=False,
        pending_rows=48,
        discarded_rows=7,
        failed_flushes=3,
        last_error=ERROR,
        last_ok_flush_ms=9,
    )
    assert wire.ledger_health_to_proto(LedgerHealth()).ok
    assert wire.ledger_health_from_proto(wire.ledger_health_to_proto(h)) == h


def listing(
    *,
    ok: bool,
    pending_rows: int = 0,
    discarded_rows: int = 0,
    failed_flushes: int = 0,
    last_error: str = "",
    last_ok_flush_ms: int = 0,
) -> ctl.ListInstancesResponse:
    health = ctl.LedgerHealth(
        ok=ok,
        pending_rows=pending_rows,
        discarded_rows=discarded_rows,
        failed_flushes=failed_flushes,
        last_error=last_error,
        last_ok_flush_ms=last_ok_flush_ms,
    )
    return ctl.ListInstancesResponse(ledger=health)


NOW = 1_700_000_010_000


@pytest.mark.parametrize(
    ("response", "line"),
    [
        pytest.param(
            ctl.ListInstancesResponse(),
            "ledger: unknown (this gateway does not report it)",
            id="an older gateway's answer is not read as failing",
        ),
        pytest.param(
            listing(ok=True),
            "ledger: ok (no good flush yet)",
            id="ok before the clock's first flush",
        ),
        pytest.param(
            listing(ok=True, last_ok_flush_ms=NOW - 400),
            "ledger: ok (last good flush 0.4 s ago)",
            id="ok",
        ),
        pytest.param(
            listing(ok=True, last_ok_flush_ms=NOW + 50),
            "ledger: ok (last good flush 0.0 s ago)",
            id="a gateway clock ahead of ours is not in the future",
        ),
        pytest.param(
            listing(
                ok=False, failed_flushes=3, pending_rows=120, last_ok_flush_ms=NOW - 3100,
                last_error=ERROR,
            ),
            f"ledger: FAILING (3 failed flushes, 120 rows pending, last good flush 3.1 s ago): "
            f"{ERROR}",
            id="failing",
        ),
        pytest.param(
            listing(ok=False, failed_flushes=1, pending_rows=1, last_error="disk I/O error"),
            "ledger: FAILING (1 failed flush, 1 row pending, no good flush yet): disk I/O error",
            id="failing from the first flush, singular",
        ),
        pytest.param(
            listing(
                ok=False, failed_flushes=9, pending_rows=500, discarded_rows=20,
                last_ok_flush_ms=NOW - 9000, last_error="disk full",
            ),
            "ledger: FAILING (9 failed flushes, 500 rows pending, 20 rows discarded, "
            "last good flush 9.0 s ago): disk full",
            id="failing past the buffer bound shows what was discarded",
        ),
        pytest.param(
            listing(ok=False, failed_flushes=2),
            "ledger: FAILING (2 failed flushes, 0 rows pending, no good flush yet): no error text",
            id="failing with an empty error text",
        ),
        pytest.param(
            listing(ok=True, last_ok_flush_ms=NOW - 200, last_error="disk I/O error"),
            "ledger: ok (last good flush 0.2 s ago; recovered from: disk I/O error)",
            id="recovered",
        ),
        pytest.param(
            listing(
                ok=True, last_ok_flush_ms=NOW - 200, discarded_rows=7, last_error="disk full"
            ),
            "ledger: ok (last good flush 0.2 s ago; 7 rows discarded; recovered from: disk full)",
            id="recovered after discarding rows",
        ),
    ],
)  # fmt: skip
def test_ledger_line(response: ctl.ListInstancesResponse, line: str) -> None:
    assert ledger_line(response, now_ms=NOW) == line
