"""The book of strategies (``core.book``): who is admitted with which slots and stake, and the
per-strategy rows the ledger and the report keep. Table tests, ids naming each case."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from baton.gateway.core import book as bk
from baton.gateway.core.records import EvalOutcome, EvaluationRecord
from baton.gateway.core.router import InstanceInfo, Router
from baton.gateway.ledger import _MIGRATIONS, SCHEMA_VERSION, Ledger, LedgerReader
from baton.gateway.report import format_report, presence_report, report_to_json
from baton.model import Action, Fill, Settlement, Slot

BTC5, BTC15, ETH5 = (
    Slot("BTC", "BTCUSDT", "5m"),
    Slot("BTC", "BTCUSDT", "15m"),
    Slot("ETH", "ETHUSDT", "5m"),
)
GATEWAY = (BTC5, BTC15, ETH5)
MOM = bk.StrategyEntry("momentum", (), GATEWAY, 5.0)
REV = bk.StrategyEntry("reversion", ("BTC/5m", "ETH/5m"), (BTC5, ETH5), 2.5, asked_stake=2.5)
# Restored from a ledger written when venue.stake was 3: it asked for no stake of its own.
OLD_DEFAULT = bk.StrategyEntry("momentum", (), GATEWAY, 3.0)


@pytest.mark.parametrize(
    ("name", "slots", "stake", "known", "expected"),
    [
        ("momentum", [], None, {}, MOM),
        ("reversion", ["ETH/5m", "BTC/5m"], 2.5, {}, REV),  # any order: the gateway's is kept
        ("momentum", [], None, {"momentum": MOM}, MOM),
        ("momentum", [], None, {"momentum": OLD_DEFAULT}, OLD_DEFAULT),
        ("reversion", ["BTC/5m", "ETH/5m"], 2.5, {"momentum": MOM, "reversion": REV}, REV),
        ("momentum", ["BTC/5m"], None, {"momentum": MOM}, bk.Refusal.SHAPE_CHANGED),
        ("momentum", [], 7.0, {"momentum": MOM}, bk.Refusal.SHAPE_CHANGED),
        ("momentum", [], 5.0, {"momentum": MOM}, bk.Refusal.SHAPE_CHANGED),
        ("momentum", ["DOGE/5m"], None, {}, bk.Refusal.UNKNOWN_SLOT),
        ("momentum", ["BTC/5m", "BTC/5m"], None, {}, bk.Refusal.DUPLICATE_SLOT),
        ("momentum", [], 0.0, {}, bk.Refusal.BAD_STAKE),
        ("momentum", [], float("nan"), {}, bk.Refusal.BAD_STAKE),
        ("no spaces", [], None, {}, bk.Refusal.BAD_NAME),
        ("", [], None, {}, bk.Refusal.BAD_NAME),
    ],
    ids=[
        "new-all-slots-default-stake",
        "new-subset-own-stake",
        "known-same-shape",
        "known-default-stake-follows-the-setting",
        "known-subset-same-shape",
        "known-other-slots-refused",
        "known-other-stake-refused",
        "known-default-vs-named-stake-refused",
        "unknown-slot-refused",
        "duplicate-slot-refused",
        "zero-stake-refused",
        "nan-stake-refused",
        "bad-name-refused",
        "empty-name-refused",
    ],
)
def test_admit(
    name: str,
    slots: list[str],
    stake: float | None,
    known: dict[str, bk.StrategyEntry],
    expected: bk.StrategyEntry | bk.Refusal,
) -> None:
    got = bk.admit(name, slots, stake, gateway_slots=GATEWAY, default_stake=5.0, known=known)
    if isinstance(expected, bk.Refusal):
        assert isinstance(got, bk.Refused)
        assert got.why is expected
        assert got.invalid_argument is (expected is not bk.Refusal.SHAPE_CHANGED)
        assert name in got.message or expected is bk.Refusal.BAD_NAME
    else:
        assert got == expected


def test_a_restored_entry_drops_the_slots_the_gateway_no_longer_evaluates() -> None:
    entry = bk.restore(
        "reversion", ("BTC/5m", "SOL/5m"), 2.5, gateway_slots=GATEWAY, default_stake=5.0
    )
    assert (entry.slot_ids, entry.requested, entry.stake) == (
        ("BTC/5m",),
        ("BTC/5m", "SOL/5m"),
        2.5,
    )
    default = bk.restore("momentum", (), None, gateway_slots=GATEWAY, default_stake=7.0)
    assert (default.slot_ids, default.stake, default.asked_stake) == (MOM.slot_ids, 7.0, None)


def test_routers_of_two_strategies_tag_their_records_and_share_seqs() -> None:
    """Every record names its strategy; one clock gives both the same seq for a (slot, tick)."""
    from baton.gateway.core.clock import SlotClock

    base = {"BTC/5m": 10}
    mom = Router(GATEWAY, strategy="momentum", seq_base=dict(base))
    rev = Router((BTC5, ETH5), strategy="reversion", seq_base=dict(base))
    mom.attach(InstanceInfo("m", "momentum", "v1", 1), 0, number=1)
    tick = SlotClock.starting_after(1000, 0).tick(3)
    mom_plan, rev_plan = mom.on_tick(tick, tick.scheduled_ms), rev.on_tick(tick, tick.scheduled_ms)
    assert {s.seq for s in mom_plan.sends if s.slot == BTC5} == {13}
    assert [(r.strategy, r.slot_id, r.seq, r.outcome) for r in rev_plan.missed] == [
        ("reversion", "BTC/5m", 13, EvalOutcome.NO_ACTIVE),
        ("reversion", "ETH/5m", 1 + 3, EvalOutcome.NO_ACTIVE),
    ]
    assert {r.strategy for r in mom.expire(tick.deadline_ms)} == {"momentum"}


T0 = 1_700_000_000_000


def _eval(strategy: str, slot: str, seq: int, outcome: EvalOutcome) -> EvaluationRecord:
    return EvaluationRecord(
        slot, seq, T0 + seq * 1000, T0 + (seq + 1) * 1000, outcome,
        dispatched_ms=T0 + seq * 1000, decided_ms=T0 + seq * 1000 + 5 if outcome.answered else None,
        instance_id=f"i-{strategy}", version="v1", epoch=1,
        action="UP" if outcome.answered else None, strategy=strategy,
    )  # fmt: skip


def _fill(strategy: str, seq: int) -> Fill:
    return Fill(f"{strategy}:BTC/5m@{T0}#{seq}", "BTC/5m", seq, Action.UP, 5.0, 0.5, 10.0, 0.1,
                T0, T0 + 300_000)  # fmt: skip


def test_two_strategies_evaluate_one_slot_and_seq_once_each_and_report_apart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.sqlite"
    E, TO = EvalOutcome.EXECUTED, EvalOutcome.TIMEOUT
    with Ledger(path) as led:
        led.record_run(started_ms=T0, cadence_ms=1000, slots=["BTC/5m"], config_json="{}")
        led.record_strategy(name="momentum", slot_ids=(), stake=5.0, added_ms=T0)
        led.record_strategy(name="reversion", slot_ids=("BTC/5m",), stake=2.5, added_ms=T0 + 1)
        for seq in (1, 2, 3):
            led.record_evaluation(_eval("momentum", "BTC/5m", seq, E))
            led.record_evaluation(_eval("reversion", "BTC/5m", seq, TO if seq == 2 else E))
        with pytest.raises(Exception, match="reversion:BTC/5m#3"):
            led.record_evaluation(_eval("reversion", "BTC/5m", 3, TO))
        for strategy, seq in (("momentum", 1), ("reversion", 1), ("reversion", 3)):
            led.record_bet(
                _fill(strategy, seq), instance_id=f"i-{strategy}", version="v1", epoch=1,
                placed_ms=T0, strategy=strategy, pricing="random_walk",
            )  # fmt: skip
        f = _fill("reversion", 1)
        led.record_settlement(
            Settlement(f.bet_id, f.slot_id, f.side, f.window_start_ms, f.window_end_ms, 1.0, 2.0,
                       Action.UP, True, 10.0, 4.9), settled_ms=T0)  # fmt: skip
        assert [b.bet_id for b in led.open_bets("reversion")] == [_fill("reversion", 3).bet_id]
        assert len(led.open_bets()) == 2
    with LedgerReader(path) as r:
        assert next((b.strategy, b.pricing) for b in r.bets()) == ("momentum", "random_walk")
        assert [(x.name, x.slot_ids, x.stake) for x in r.strategies()] == [
            ("momentum", (), 5.0),
            ("reversion", ("BTC/5m",), 2.5),
        ]
        assert len(r.evaluations(strategy="reversion")) == 3
    report = presence_report(path)
    assert (report.scheduled, report.evaluated, report.missed, report.unaccounted) == (6, 5, 1, 0)
    rows = {x.name: x for x in report.per_strategy}
    assert list(rows) == ["momentum", "reversion"]  # the book's order
    assert (rows["momentum"].scheduled, rows["momentum"].missed, rows["momentum"].bets) == (3, 0, 1)
    rev = rows["reversion"]
    assert (rev.scheduled, rev.evaluated, rev.missed, rev.bets, rev.settled, rev.wins) == (
        3, 2, 1, 2, 1, 1,
    )  # fmt: skip
    assert rev.pnl == pytest.approx(4.9)
    assert (rev.stake, rev.slots) == (2.5, 1)
    assert [(s.slot_id, s.scheduled, s.unaccounted) for s in report.per_slot] == [("BTC/5m", 6, 0)]
    assert [(v.strategy, v.version, v.scheduled) for v in report.per_version] == [
        ("momentum", "v1", 3),
        ("reversion", "v1", 3),
    ]
    data = json.loads(json.dumps(report_to_json(report)))
    assert [x["name"] for x in data["per_strategy"]] == ["momentum", "reversion"]
    assert "per strategy" in format_report(report).splitlines()


def test_a_schema_3_ledger_is_its_one_strategy_after_the_migration(tmp_path: Path) -> None:
    """Rows of a pre-book ledger take the name of the strategy that ledger served."""
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    for statements in _MIGRATIONS[:3]:
        for statement in statements:
            conn.execute(statement)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '3')")
    conn.execute(
        "INSERT INTO instance_events (run_id, t_ms, instance_id, event, pod_name, strategy, "
        "version, role, epoch, detail) VALUES (1, ?, 'i1-p', 'attached', 'p', 'momentum', 'v1', "
        "'ACTIVE', 1, '')",
        (T0,),
    )
    conn.execute(
        "INSERT INTO evaluations (run_id, slot_id, seq, scheduled_ms, deadline_ms, outcome, "
        "instance_id, version, epoch, reason, error, eval_us) "
        "VALUES (1, 'BTC/5m', 7, ?, ?, 'executed', 'i1-p', 'v1', 1, '', '', 5)",
        (T0, T0 + 1000),
    )
    conn.execute("INSERT INTO slot_seqs (slot_id, last_seq) VALUES ('BTC/5m', 7)")
    conn.close()
    with LedgerReader(path) as r:  # a reader leaves it as it is and reads it as momentum's
        assert r.schema_version() == 3
        assert [e.strategy for e in r.evaluations()] == ["momentum"]
        assert [x.name for x in presence_report(path).per_strategy] == ["momentum"]
    with Ledger(path) as led:  # a gateway migrates it
        assert led.last_seqs() == {"BTC/5m": 7}
        led.record_evaluation(_eval("momentum", "BTC/5m", 8, EvalOutcome.EXECUTED))
        led.record_evaluation(_eval("reversion", "BTC/5m", 7, EvalOutcome.EXECUTED))
    with LedgerReader(path) as r:
        assert r.schema_version() == SCHEMA_VERSION
        # Its one strategy is its book: every slot, the default stake (so a restarted gateway
        # schedules it, and its instances, naming neither, are admitted as before).
        assert [(x.name, x.slot_ids, x.stake) for x in r.strategies()] == [("momentum", (), None)]
        assert [(e.strategy, e.seq) for e in r.evaluations()] == [
            ("momentum", 7),
            ("momentum", 8),
            ("reversion", 7),
        ]


def test_the_timeline_of_a_book_has_a_row_per_strategy_and_slot(tmp_path: Path) -> None:
    from baton.gateway.timeline import read_timeline

    path = tmp_path / "ledger.sqlite"
    E, NA = EvalOutcome.EXECUTED, EvalOutcome.NO_ACTIVE
    with Ledger(path) as led:
        led.record_run(started_ms=T0, cadence_ms=1000, slots=["BTC/5m"], config_json="{}")
        for seq in (1, 2):
            led.record_evaluation(_eval("momentum", "BTC/5m", seq, E))
            led.record_evaluation(_eval("reversion", "BTC/5m", seq, NA if seq == 2 else E))
    report, timeline = read_timeline(path)
    assert timeline.slots == ("momentum BTC/5m", "reversion BTC/5m")
    marks = sorted((c.slot_id, c.seq, c.executed, bool(c.missed)) for c in timeline.cells)
    assert marks == [
        ("momentum BTC/5m", 1, 1, False),
        ("momentum BTC/5m", 2, 1, False),
        ("reversion BTC/5m", 1, 1, False),
        ("reversion BTC/5m", 2, 0, True),
    ]
    assert [band.version for band in timeline.versions] == ["momentum v1, reversion v1"]
    assert report.missed == 1


def test_a_retired_strategy_leaves_the_book_and_enters_it_anew(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as led:
        led.record_strategy(name="momentum", slot_ids=(), stake=None, added_ms=T0)
        led.record_strategy(name="reversion", slot_ids=("BTC/5m",), stake=2.5, added_ms=T0 + 1)
        led.record_strategy(name="momentum", slot_ids=("ETH/5m",), stake=9.0, added_ms=T0 + 2)
        assert [(x.name, x.slot_ids) for x in led.strategies()] == [
            ("momentum", ()),  # in the book: the first shape stays
            ("reversion", ("BTC/5m",)),
        ]
        led.retire_strategy("momentum", retired_ms=T0 + 3)
        assert [x.name for x in led.strategies()] == ["reversion"]
        led.record_strategy(name="momentum", slot_ids=("ETH/5m",), stake=9.0, added_ms=T0 + 4)
    with LedgerReader(path) as r:
        assert [(x.name, x.slot_ids, x.stake, x.retired_ms) for x in r.strategies()] == [
            ("reversion", ("BTC/5m",), 2.5, None),
            ("momentum", ("ETH/5m",), 9.0, None),  # entered anew, with its new shape
        ]
