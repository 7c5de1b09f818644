"""The host's fencing rule: the gateway term (docs/gateway-standby.md, "Fencing").

Every gateway -> strategy message that can make a host act carries the term of the gateway that
sent it: how many times the leadership lease was acquired (0: a gateway without leader
election). A host keeps the highest term it has seen, for its whole life (across reconnects:
a gateway it reconnects to may be a deposed leader that has not noticed yet). Then, for each
message, before it is handled:

- a higher term is **adopted** at once, and the message handled;
- the same term is **current**: the message is handled;
- a lower term is **refused**: the message is not acted on (no evaluation, no fill or
  settlement applied, no export, import, drain or role change); the host answers ``Fenced``.

Term 0 is an ordinary term, the lowest: a host that has seen term 3 refuses a gateway that runs
without election. Every kind of message follows the same rule, so it is one function of two
numbers; the kind only names what was refused.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class TermVerdict(enum.Enum):
    ADOPT = "adopt"  # a newer term: adopted before the message is handled
    CURRENT = "current"  # the highest term seen: handled
    REFUSE = "refuse"  # an older term: not acted on, answered with Fenced


@dataclass(frozen=True, slots=True)
class TermCheck:
    verdict: TermVerdict
    highest: int  # the highest term seen once this message is counted

    @property
    def acts(self) -> bool:
        """Whether the host handles the message."""
        return self.verdict is not TermVerdict.REFUSE


def check_term(highest: int, term: int) -> TermCheck:
    """The verdict on a message of ``term`` for a host whose highest term seen is ``highest``
    (0 before any message: the first gateway's term is then current or adopted, never refused).

    >>> check_term(2, 3), check_term(2, 2).acts, check_term(2, 1).acts
    (TermCheck(verdict=<TermVerdict.ADOPT: 'adopt'>, highest=3), True, False)
    """
    if term > highest:
        return TermCheck(TermVerdict.ADOPT, term)
    if term == highest:
        return TermCheck(TermVerdict.CURRENT, highest)
    return TermCheck(TermVerdict.REFUSE, highest)
