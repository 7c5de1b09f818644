"""The strategy SDK: write a ``Strategy`` subclass, and the host does the rest.

A strategy is a class with four methods (``initial_state``, ``evaluate``, ``export_state``,
``import_state``), two optional hooks (``on_fill``, ``on_settlement``) and a migration hook
(``migrate``). The host owns the state object and passes it to every call; exported state is
encoded canonically (``encode_state``) so that equal states have equal digests and a handoff can
prove that green imported exactly what blue exported. See ``docs/strategy-sdk.md``.

Worked example, end to end without a gateway (the host does exactly this, on one thread)::

    >>> from baton.model import Candle, EvaluationRequest, Role, Slot
    >>> from baton.strategy.examples.momentum_v1 import MomentumV1
    >>> strategy = MomentumV1({"threshold": 0.5})
    >>> state = strategy.initial_state()
    >>> slot = Slot("BTC", "BTCUSDT", "5m")
    >>> live = Candle("BTCUSDT", "5m", 0, 299_999, open=100.0, high=101, low=99, close=100.0)
    >>> req = EvaluationRequest(slot, seq=1, scheduled_ms=5_000, deadline_ms=10_000, epoch=1,
    ...                         role=Role.ACTIVE, live=live)
    >>> strategy.evaluate(req, state)[0]
    <Action.HOLD: 'HOLD'>
    >>> data = encode_state(strategy, state, {"BTC/5m": 1})
    >>> state_digest(data).startswith("sha256:")
    True
    >>> decode_state(strategy, data).applied_seq
    {'BTC/5m': 1}
"""

from baton.strategy.core.errors import (
    EntrypointError,
    StateDecodeError,
    StateEncodeError,
    StateError,
    StateImportError,
    StateMigrationError,
    StateMismatchError,
    StateSchemaError,
    StateTooLargeError,
    StrategyConfigError,
    StrategyError,
)
from baton.strategy.core.state import (
    DEFAULT_MAX_STATE_BYTES,
    STATE_FORMAT,
    DecodedState,
    canonical_json,
    check_json_value,
    decode_state,
    encode_state,
    state_digest,
)
from baton.strategy.core.strategy import Outcome, Strategy, check_strategy_class, normalize_outcome

__all__ = [
    "DEFAULT_MAX_STATE_BYTES",
    "STATE_FORMAT",
    "DecodedState",
    "EntrypointError",
    "Outcome",
    "StateDecodeError",
    "StateEncodeError",
    "StateError",
    "StateImportError",
    "StateMigrationError",
    "StateMismatchError",
    "StateSchemaError",
    "StateTooLargeError",
    "Strategy",
    "StrategyConfigError",
    "StrategyError",
    "canonical_json",
    "check_json_value",
    "check_strategy_class",
    "decode_state",
    "encode_state",
    "normalize_outcome",
    "state_digest",
]
