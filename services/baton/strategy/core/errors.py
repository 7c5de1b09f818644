"""The strategy component's errors: one base, a few typed subclasses, each with a clear message.

``retryable`` tells a caller whether trying the same thing again could succeed. None of these
can: they describe bad code, bad config or bad bytes, which do not heal by waiting.
"""

from __future__ import annotations


class StrategyError(Exception):
    """Base of every error the strategy SDK and host raise on purpose."""

    retryable = False


class EntrypointError(StrategyError):
    """``package.module:Class`` does not name a loadable, concrete Strategy subclass."""


class StrategyConfigError(StrategyError):
    """The strategy rejected its config (its ``__init__`` raised ``ValueError``)."""


class StateError(StrategyError):
    """Exporting or importing strategy state failed; the host's state is left untouched."""


class StateTooLargeError(StateError):
    """The encoded state is over the size limit (on export or on import)."""


class StateEncodeError(StateError):
    """``export_state`` returned something that is not canonical JSON (NaN, non-string keys...)."""


class StateDecodeError(StateError):
    """The bytes are not a state envelope this SDK wrote."""


class StateMismatchError(StateError):
    """The snapshot belongs to another strategy, or its digest does not match its bytes."""


class StateSchemaError(StateError):
    """The snapshot's state schema differs from this code's and ``migrate`` has no way from it.

    Raised by the default ``Strategy.migrate`` (and when an override raises
    ``NotImplementedError``): ``"no migration from schema N to M"``.
    """


class StateMigrationError(StateError):
    """``migrate`` raised (other than "no migration") or did not return a dict."""


class StateImportError(StateError):
    """The strategy's ``import_state`` raised on data in its own schema."""
