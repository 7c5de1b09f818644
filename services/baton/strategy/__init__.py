"""Strategy host and SDK: load user strategy code, attach to the gateway, move state.

Strategy authors need only this package's top level (re-exported from ``baton.strategy.sdk``);
``baton.strategy.host`` runs a strategy against a gateway, ``baton strategy`` is its command.
"""

from baton.strategy.sdk import *  # noqa: F403 - the SDK is this package's public face
from baton.strategy.sdk import __all__ as __all__
