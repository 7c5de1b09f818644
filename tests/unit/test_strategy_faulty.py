"""Faulty and FaultyV2: each injected fault, on schedule, and nothing when unconfigured.

The crash (``exit_on_seq``) ends the process, so it is exercised in a subprocess by
``tests/integration/test_strategy_host.py``; here only its schedule is tested.
"""

from __future__ import annotations

from typing import Any

import pytest

from baton.model import Action, Candle, EvaluationRequest, Role, Slot
from baton.strategy import StateImportError, decode_state, encode_state, state_digest
from baton.strategy.core.runtime import EncodedState, StrategyRuntime
from baton.strategy.examples.faulty import WRONG_EPOCH_OFFSET, Faulty, FaultyError, FaultyV2

BTC = Slot("BTC", "BTCUSDT", "5m")
ETH = Slot("ETH", "ETHUSDT", "5m")


def request(seq: int, slot: Slot = BTC, epoch: int = 4) -> EvaluationRequest:
    live = Candle(slot.symbol, "5m", 0, 299_999, 100.0, 100.0, 100.0, 100.0)
    return EvaluationRequest(slot, seq, 1000 * seq, 1000 * seq + 5000, epoch, Role.ACTIVE, live)


@pytest.mark.parametrize(
    ("config", "seqs", "delays"),
    [
        ({}, [1, 2, 3], [0.0, 0.0, 0.0]),
        ({"delay_ms": 20}, [1, 2, 3], [0.02, 0.02, 0.02]),
        ({"delay_ms": 20, "delay_every": 0}, [1, 7], [0.02, 0.02]),
        ({"delay_ms": 20, "delay_every": 3}, [1, 2, 3, 4, 6, 9], [0, 0, 0.02, 0, 0.02, 0.02]),
        ({"delay_every": 3}, [3], [0.0]),
    ],
    ids=[
        "no-delay-by-default",
        "delay-on-every-evaluation",
        "delay-every-0-means-every-evaluation",
        "delay-only-on-multiples",
        "delay-every-without-delay-ms-sleeps-nothing",
    ],
)
def test_delay_schedule(config: dict[str, Any], seqs: list[int], delays: list[float]) -> None:
    faulty = Faulty(config)
    assert [faulty.delay_for(seq) for seq in seqs] == delays


@pytest.mark.parametrize(
    ("exit_on_seq", "seq", "crashes"),
    [(0, 0, False), (0, 5, False), (5, 4, False), (5, 5, True), (5, 6, False)],
    ids=["off-seq-0", "off-seq-5", "before", "on-the-seq", "after"],
)
def test_crash_schedule(exit_on_seq: int, seq: int, crashes: bool) -> None:
    assert Faulty({"exit_on_seq": exit_on_seq}).crashes_on(seq) is crashes


def test_unconfigured_faulty_is_well_behaved() -> None:
    rt = StrategyRuntime(Faulty({}))
    decisions = [rt.evaluate(request(seq, slot)) for seq in (1, 2) for slot in (BTC, ETH)]
    assert {(d.epoch, d.action, d.error) for d in decisions} == {(4, Action.HOLD, "")}
    assert rt.applied_seq == {"BTC/5m": 2, "ETH/5m": 2}
    assert decode_state(Faulty({}), rt.export().data).state == {"BTC/5m": 2, "ETH/5m": 2}


def test_wrong_epoch_answers_under_an_epoch_it_was_never_given() -> None:
    rt = StrategyRuntime(Faulty({"wrong_epoch": True, "raise_every": 2}))
    ok, failed = rt.evaluate(request(1, epoch=9)), rt.evaluate(request(2, epoch=9))
    assert (ok.seq, ok.epoch, ok.action) == (1, 9 + WRONG_EPOCH_OFFSET, Action.HOLD)
    assert (failed.seq, failed.epoch, failed.action) == (2, 1009, None)
    assert failed.error.startswith("FaultyError")
    assert rt.applied_seq == {"BTC/5m": 2}  # the state still follows every request


def test_raise_every_still_counts_the_evaluation() -> None:
    faulty = Faulty({"raise_every": 3, "action": "DOWN"})
    state = faulty.initial_state()
    assert faulty.evaluate(request(2), state) == (Action.DOWN, "faulty")
    with pytest.raises(FaultyError, match="injected failure at BTC/5m seq 3"):
        faulty.evaluate(request(3), state)
    assert state == {"BTC/5m": 2}


def test_fail_import_fails_the_import_and_keeps_the_state() -> None:
    data = encode_state(Faulty({}), {"BTC/5m": 7}, {"BTC/5m": 7})
    with pytest.raises(StateImportError, match="injected import failure"):
        decode_state(FaultyV2({"fail_import": True}), data)
    rt = StrategyRuntime(FaultyV2({"fail_import": True}))
    rt.evaluate(request(1))
    before = rt.export()
    outcome = rt.import_(EncodedState("faulty", "v1", 1, data, state_digest(data), {"BTC/5m": 7}))
    assert not outcome.ok
    assert outcome.error == (
        "StateImportError: import_state of 'faulty' v2 raised FaultyError: "
        "injected import failure (fail_import)"
    )
    assert rt.export() == before


def test_faulty_v2_takes_v1s_state_with_the_same_digest() -> None:
    assert (FaultyV2.name, FaultyV2.version, FaultyV2.state_schema) == ("faulty", "v2", 1)
    blue, green = StrategyRuntime(Faulty({})), StrategyRuntime(FaultyV2({}))
    for seq in (1, 2, 3):
        blue.evaluate(request(seq))
    snapshot = blue.export()
    outcome = green.import_(snapshot)
    assert outcome.ok, outcome.error
    assert outcome.digest == outcome.migrated_digest == snapshot.digest
    assert (outcome.from_schema, outcome.state_schema) == (1, 1)
    assert green.applied_seq == {"BTC/5m": 3}


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"delay_every": -1}, "delay_every"),
        ({"delay_ms": -5}, "delay_ms"),
        ({"exit_on_seq": -1}, "exit_on_seq"),
        ({"exit_on_seq": 2.5}, "exit_on_seq"),
        ({"wrong_epoch": "maybe"}, "wrong_epoch"),
        ({"fail_import": 2}, "fail_import"),
        ({"crash": True}, "crash"),
    ],
    ids=[
        "negative-delay-every",
        "negative-delay",
        "negative-exit-on-seq",
        "fractional-exit-on-seq",
        "wrong-epoch-not-a-bool",
        "fail-import-not-a-bool",
        "unknown-key",
    ],
)
def test_config_errors_name_the_key(config: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=f"invalid setting {key}:"):
        FaultyV2(config)
