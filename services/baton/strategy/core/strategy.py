"""The ``Strategy`` base class: what a strategy author writes."""

from __future__ import annotations

import abc
import inspect
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Generic, TypeAlias, TypeVar

from baton.model import Action, EvaluationRequest, Fill, Settlement
from baton.strategy.core.errors import StateSchemaError

S = TypeVar("S")

#: What ``Strategy.evaluate`` returns: an action, or an action with a free-text reason that the
#: gateway records in its ledger next to the decision.
Outcome: TypeAlias = Action | tuple[Action, str]


class Strategy(abc.ABC, Generic[S]):
    """A trading strategy. The host owns the state object and passes it to every call.

    Subclasses set three class attributes and implement four methods. The host calls all of
    them on one worker thread, in the order the gateway's messages arrived, so a strategy never
    needs locks: ``state`` is only ever touched by one call at a time.

    - ``name``: the strategy's name. A handoff only moves state between two versions of the
      same name.
    - ``version``: this code's version, e.g. ``"v2"``.
    - ``state_schema``: the version of the state *layout*. Bump it whenever ``export_state``
      changes shape, and teach ``migrate`` to read the previous layout (and, if this version
      must take state back from a newer one, the newer layout too).

    Worked example, a strategy that counts evaluations per slot and always holds::

        from baton.model import Action
        from baton.strategy import Strategy

        class Counter(Strategy[dict[str, int]]):
            name = "counter"
            version = "v1"
            state_schema = 1

            def initial_state(self) -> dict[str, int]:
                return {}

            def evaluate(self, request, state):
                slot = request.slot.slot_id
                state[slot] = state.get(slot, 0) + 1
                return Action.HOLD, f"seen {state[slot]} times"

            def export_state(self, state):
                return dict(state)

            def import_state(self, data):
                return {k: int(v) for k, v in data.items()}
    """

    name: ClassVar[str]
    version: ClassVar[str]
    state_schema: ClassVar[int]

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        """Keep the strategy's config (from the StrategyVersion spec).

        Subclasses validate it here and raise ``ValueError`` naming the offending key;
        ``baton.common.Settings`` does both (typed reads, unknown keys rejected).
        """
        self.config: Mapping[str, Any] = MappingProxyType(dict(config or {}))

    @abc.abstractmethod
    def initial_state(self) -> S:
        """The state of a fresh start (no import)."""

    @abc.abstractmethod
    def evaluate(self, request: EvaluationRequest, state: S) -> Outcome:
        """Decide on one evaluation request; may update ``state`` in place.

        Return an ``Action`` or ``(Action, reason)``. The host builds the ``Decision`` (slot id,
        seq, epoch, timing). Raising is allowed: the host answers with a decision carrying the
        error and keeps going. Must be deterministic given the request and the state: a SHADOW
        instance evaluates the same requests to keep its state following the ACTIVE one.
        """

    def on_fill(self, fill: Fill, state: S) -> None:
        """The venue accepted a bet this strategy asked for. Default: nothing."""

    def on_settlement(self, settlement: Settlement, state: S) -> None:
        """A bet's window closed. Default: nothing."""

    @abc.abstractmethod
    def export_state(self, state: S) -> dict[str, Any]:
        """``state`` as a JSON-able dict in this strategy's ``state_schema``.

        Only ``dict`` (string keys), ``list``, ``str``, ``int``, finite ``float``, ``bool`` and
        ``None``. The SDK encodes it canonically, so equal states give equal digests.
        """

    @abc.abstractmethod
    def import_state(self, data: dict[str, Any]) -> S:
        """Build the state from ``data``, always in THIS strategy's ``state_schema``.

        Other layouts reach here only after ``migrate`` converted them.
        """

    def migrate(self, data: dict[str, Any], from_schema: int) -> dict[str, Any]:
        """Convert exported ``data`` of another ``from_schema`` to this ``state_schema``.

        Called on import whenever the snapshot's schema differs from this code's, in either
        direction: older (an upgrade, the usual handoff) or newer (a version that must accept
        state back from its successor, e.g. when deployments alternate between two versions).
        ``import_state`` then receives the result.

        Default: no migration. It raises ``StateSchemaError`` ("no migration from schema N to
        M"); the import fails and the host keeps its previous state. Override it for every
        schema you can read and call ``super().migrate(data, from_schema)`` for the rest.
        """
        raise StateSchemaError(
            f"no migration from schema {from_schema} to {self.state_schema} in strategy "
            f"{self.name!r} {self.version}"
        )


def normalize_outcome(outcome: object) -> tuple[Action, str]:
    """``(action, reason)`` from what ``evaluate`` returned, or ``TypeError`` explaining why not.

    >>> normalize_outcome(Action.UP)
    (<Action.UP: 'UP'>, '')
    >>> normalize_outcome((Action.HOLD, "flat"))
    (<Action.HOLD: 'HOLD'>, 'flat')
    """
    if isinstance(outcome, Action):
        return outcome, ""
    if (
        isinstance(outcome, tuple)
        and len(outcome) == 2
        and isinstance(outcome[0], Action)
        and isinstance(outcome[1], str)
    ):
        return outcome[0], outcome[1]
    raise TypeError(
        f"evaluate returned {outcome!r}; expected an Action or an (Action, reason) tuple"
    )


def check_strategy_class(obj: object, where: str) -> type[Strategy[Any]]:
    """``obj`` as a concrete Strategy subclass, or ``TypeError`` saying what is wrong with it.

    ``where`` names it in messages (the entrypoint string).
    """
    if not (isinstance(obj, type) and issubclass(obj, Strategy)):
        raise TypeError(f"{where} is not a subclass of baton.strategy.Strategy (got {obj!r})")
    if inspect.isabstract(obj):
        missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
        raise TypeError(f"{where} is abstract: it does not implement {missing}")
    for attr, kind in (("name", str), ("version", str), ("state_schema", int)):
        value = getattr(obj, attr, None)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise TypeError(
                f"{where} must set the class attribute {attr} ({kind.__name__}), got {value!r}"
            )
    if not obj.name or not obj.version:
        raise TypeError(f"{where} must set a non-empty name and version")
    if obj.state_schema < 1:
        raise TypeError(f"{where}.state_schema must be >= 1, got {obj.state_schema}")
    return obj
