"""The reference mean-reversion strategy: decision rule, bookkeeping, state round trip."""

from __future__ import annotations

from typing import Any

import pytest

from baton.common import ConfigError
from baton.model import Action, Candle, EvaluationRequest, Fill, Role, Settlement, Slot
from baton.strategy import decode_state, encode_state, state_digest
from baton.strategy.examples.momentum_v1 import MomentumV1
from baton.strategy.examples.reversion_v1 import ReversionState, ReversionV1

FIVE_MIN = 300_000
BTC = Slot("BTC", "BTCUSDT", "5m")
ETH = Slot("ETH", "ETHUSDT", "5m")
# Mean 100.5; close-to-close log-return sigma ~ 1.09 %: 102 is ~ +1.36 sigma above the mean.
ALTERNATING = [100.0, 101.0, 100.0, 101.0, 100.0, 101.0]


def candle(i: int, close: float, open_: float | None = None, closed: bool = True) -> Candle:
    o = close if open_ is None else open_
    return Candle(
        "BTCUSDT", "5m", i * FIVE_MIN, (i + 1) * FIVE_MIN - 1, o, max(o, close), min(o, close),
        close, closed=closed,
    )  # fmt: skip


def request(
    seq: int,
    closes: list[float],
    live_close: float | None = 100.5,
    *,
    slot: Slot = BTC,
    live_open: float = 100.5,
) -> EvaluationRequest:
    i = len(closes)
    return EvaluationRequest(
        slot=slot,
        seq=seq,
        scheduled_ms=i * FIVE_MIN + 1000 * seq,
        deadline_ms=i * FIVE_MIN + 1000 * seq + 5000,
        epoch=1,
        role=Role.ACTIVE,
        live=None if live_close is None else candle(i, live_close, live_open, closed=False),
        history=tuple(candle(j, c) for j, c in enumerate(closes)),
    )


def fill(
    bet_id: str, side: Action, window_index: int, slot: Slot = BTC, stake: float = 2.0
) -> Fill:
    start = window_index * FIVE_MIN
    price = 0.5
    return Fill(
        bet_id, slot.slot_id, 1, side, stake, price, stake / price, 0.0, start, start + FIVE_MIN
    )


def settlement(bet_id: str, side: Action, window_index: int, won: bool) -> Settlement:
    start = window_index * FIVE_MIN
    outcome = side if won else (Action.DOWN if side is Action.UP else Action.UP)
    return Settlement(
        bet_id, BTC.slot_id, side, start, start + FIVE_MIN, 100.0, 101.0, outcome, won,
        4.0 if won else 0.0, 2.0 if won else -2.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("config", "closes", "live_close", "action", "reason"),
    [
        pytest.param(
            {},
            ALTERNATING,
            102.0,
            Action.DOWN,
            "stretch=+1.36 threshold=1",
            id="stretched-up-bets-down",
        ),
        pytest.param(
            {},
            ALTERNATING,
            99.0,
            Action.UP,
            "stretch=-1.38 threshold=1",
            id="stretched-down-bets-up",
        ),
        pytest.param(
            {}, ALTERNATING, 100.6, Action.HOLD, "stretch=+0.09", id="near-the-mean-holds"
        ),
        pytest.param(
            {}, ALTERNATING, 101.6, Action.HOLD, "stretch=+1.00", id="just-under-threshold-holds"
        ),
        pytest.param(
            {"threshold": 1.5},
            ALTERNATING,
            102.0,
            Action.HOLD,
            "threshold=1.5",
            id="higher-threshold-holds",
        ),
        pytest.param(
            {"threshold": 0.05},
            ALTERNATING,
            100.6,
            Action.DOWN,
            "stretch=+0.09",
            id="lower-threshold-bets",
        ),
        pytest.param(
            {}, ALTERNATING, None, Action.HOLD, "no live candle", id="no-live-candle-holds"
        ),
        pytest.param(
            {}, ALTERNATING[:4], 110.0, Action.HOLD, "warming up (4/5)", id="warming-up-holds"
        ),
        pytest.param(
            {"min_closes": 3},
            ALTERNATING[:4],
            110.0,
            Action.DOWN,
            "stretch=",
            id="fewer-min-closes-configured-bets",
        ),
        pytest.param({}, [100.0] * 6, 110.0, Action.HOLD, "no volatility", id="flat-history-holds"),
        pytest.param(
            {}, ALTERNATING, 0.0, Action.HOLD, "no volatility", id="zero-live-price-holds"
        ),
    ],
)
def test_decision_rule(
    config: dict[str, Any],
    closes: list[float],
    live_close: float | None,
    action: Action,
    reason: str,
) -> None:
    strategy = ReversionV1(config)
    got = strategy.evaluate(request(1, closes, live_close), strategy.initial_state())
    assert isinstance(got, tuple)
    assert got[0] is action
    assert reason in got[1]


def test_it_bets_against_momentum() -> None:
    """The same stretched-up market: momentum bets UP on the live candle's rise, reversion
    bets DOWN on the price's distance above its average."""
    req = request(1, ALTERNATING, 102.0, live_open=100.0)
    momentum, reversion = MomentumV1({}), ReversionV1({})
    assert momentum.evaluate(req, momentum.initial_state())[0] is Action.UP  # type: ignore[index]
    assert reversion.evaluate(req, reversion.initial_state())[0] is Action.DOWN  # type: ignore[index]


def test_at_most_one_bet_per_slot_window_and_slots_are_independent() -> None:
    s = ReversionV1({})
    state = s.initial_state()
    assert s.evaluate(request(1, ALTERNATING, 102.0), state)[0] is Action.DOWN  # type: ignore[index]
    assert s.evaluate(request(2, ALTERNATING, 103.0), state) == (
        Action.HOLD,
        "already bet this window",
    )
    # ETH has its own window of closes and its own bets.
    assert s.evaluate(request(1, ALTERNATING, 99.0, slot=ETH), state)[0] is Action.UP  # type: ignore[index]
    s.on_fill(fill("b1", Action.DOWN, len(ALTERNATING)), state)
    assert s.evaluate(request(3, ALTERNATING, 99.0), state)[0] is Action.HOLD  # type: ignore[index]
    # The next window: free to bet again once more history arrived.
    assert s.evaluate(request(4, [*ALTERNATING, 100.0], 98.5), state)[0] is Action.UP  # type: ignore[index]
    assert state.slots["BTC/5m"].stats.evaluations == 4
    assert state.slots["ETH/5m"].stats.evaluations == 1


def test_fills_and_settlements_are_kept_per_slot() -> None:
    s = ReversionV1({})
    state = s.initial_state()
    s.on_fill(fill("b1", Action.DOWN, 6, stake=2.0), state)
    s.on_fill(fill("b2", Action.UP, 7, stake=2.0), state)
    btc = state.slots["BTC/5m"]
    assert set(btc.open_bets) == {"b1", "b2"}
    assert btc.open_bets["b1"].stake == 2.0  # the strategy's own stake, as the venue filled it
    s.on_settlement(settlement("b1", Action.DOWN, 6, won=True), state)
    s.on_settlement(settlement("b2", Action.UP, 7, won=False), state)
    assert btc.open_bets == {}
    assert (btc.stats.bets, btc.stats.wins, btc.stats.losses, btc.stats.pnl) == (2, 1, 1, 0.0)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param({"threshold": 0}, "threshold", id="zero-threshold"),
        pytest.param({"threshold": "far"}, "threshold", id="threshold-not-a-number"),
        pytest.param({"window": 2}, "window", id="window-too-small"),
        pytest.param({"window": 10, "min_closes": 11}, "min_closes", id="min-closes-over-window"),
        pytest.param({"treshold": 1}, "treshold: unknown setting", id="typo-is-refused"),
    ],
)
def test_bad_config_names_the_key(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        ReversionV1(config)
    assert message in str(err.value)


def _played(s: ReversionV1) -> ReversionState:
    """A state with every part filled: two slots, closes, a decision, an open and a settled bet."""
    state = s.initial_state()
    s.evaluate(request(1, ALTERNATING, 102.0), state)
    s.evaluate(request(1, ALTERNATING[:3], 100.0, slot=ETH), state)
    s.on_fill(fill("b1", Action.DOWN, 6), state)
    s.on_fill(fill("b0", Action.UP, 5), state)
    s.on_settlement(settlement("b0", Action.UP, 5, won=True), state)
    return state


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda s: s.initial_state(), id="empty"),
        pytest.param(_played, id="played"),
    ],
)
def test_state_round_trip_is_byte_identical(make: Any) -> None:
    """export -> import -> export gives the same bytes (same digest), so a handoff between two
    hosts of this version reports the digest it exported."""
    s = ReversionV1({})
    state = make(s)
    data = encode_state(s, state, applied_seq={"BTC/5m": 1, "ETH/5m": 1})
    decoded = decode_state(ReversionV1({}), data)
    assert not decoded.migrated
    assert decoded.applied_seq == {"BTC/5m": 1, "ETH/5m": 1}
    assert decoded.state == state
    again = encode_state(s, decoded.state, applied_seq=decoded.applied_seq)
    assert again == data
    assert state_digest(again) == state_digest(data)


def test_imported_state_decides_as_the_original() -> None:
    """The state carries what the rule needs: a successor decides the next request the same."""
    s = ReversionV1({})
    state = _played(s)
    imported = decode_state(s, encode_state(s, state, applied_seq={})).state
    nxt = request(2, [*ALTERNATING, 100.0], 98.0)
    assert s.evaluate(nxt, imported) == s.evaluate(nxt, state)
    assert imported == state


def test_state_of_another_strategy_is_refused() -> None:
    momentum = MomentumV1({})
    data = encode_state(momentum, momentum.initial_state(), applied_seq={})
    with pytest.raises(Exception, match=r"another strategy|momentum"):
        decode_state(ReversionV1({}), data)
