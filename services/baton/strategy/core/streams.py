"""A host attached to several gateway replicas: which stream it obeys (docs/gateway-standby.md,
"Strategy hosts on both replicas").

``baton strategy --gateway A,B`` keeps an attach loop to every address at once. Only the leader
listens, so in practice the host is attached to the replica that leads and keeps dialling the
other: when that one is elected (a failover, a handover) the host attaches to it within one
attempt. For a moment two streams may be attached (the old leader not closed yet, the new one
welcoming): the host still has ONE runtime and ONE state, and the term rule
(``core/term.py``) decides, message by message, whose requests it acts on: the highest term
seen wins, anything of an older term is refused (``Fenced``). The stream whose Welcome carried
the highest term is the one the host **obeys**; when that changes from one address to another
the host has **switched** (logged, a span).

``Streams`` is the record of it, a value; ``observe`` / ``welcome`` / ``lost`` return the next
value and what happened. Nothing here reads the time or does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from baton.strategy.core.term import TermCheck, check_term


def parse_gateways(value: str) -> tuple[str, ...]:
    """``--gateway`` to the addresses: a comma list (one address stays valid), duplicates
    dropped, order kept; ``ValueError`` naming the malformed one.

    >>> parse_gateways("127.0.0.1:5001, 127.0.0.1:5002,127.0.0.1:5001")
    ('127.0.0.1:5001', '127.0.0.1:5002')
    >>> parse_gateways("gw:50051,")
    Traceback (most recent call last):
    ...
    ValueError: '' must be HOST:PORT
    """
    addresses: list[str] = []
    for item in value.split(","):
        address = item.strip()
        host, sep, port = address.rpartition(":")
        if not (sep and host and port.isdigit()):
            raise ValueError(f"{address!r} must be HOST:PORT")
        if address not in addresses:
            addresses.append(address)
    return tuple(addresses)


@dataclass(frozen=True, slots=True)
class Streams:
    """The host's attached streams and the highest term it has seen (for its whole life)."""

    attached: tuple[tuple[str, int], ...] = ()  # (address, its Welcome's term), attach order
    highest: int = 0

    @property
    def obeyed(self) -> str | None:
        """The attached stream of the highest term (the latest attached on a tie: one gateway
        leads a term, so a tie is one gateway known under two addresses)."""
        best: str | None = None
        for address, term in self.attached:
            if term == self.highest:
                best = address
        return best

    def term_of(self, address: str) -> int | None:
        for a, term in self.attached:
            if a == address:
                return term
        return None


@dataclass(frozen=True, slots=True)
class Change:
    streams: Streams
    check: TermCheck
    switched_from: str | None = None  # the address obeyed before, when another is now
    switched: bool = False  # the obeyed stream changed (from nothing included)


def observe(streams: Streams, term: int) -> tuple[Streams, TermCheck]:
    """A message of ``term`` on any stream: the term rule, the highest term kept."""
    check = check_term(streams.highest, term)
    return replace(streams, highest=check.highest), check


def welcome(streams: Streams, address: str, term: int) -> Change:
    """A Welcome of ``term`` on ``address``. Refused (an older term than seen): nothing is
    attached. Otherwise the stream is attached with its term, and may be the one now obeyed."""
    before = streams.obeyed
    after, check = observe(streams, term)
    if not check.acts:
        return Change(after, check)
    kept = tuple((a, t) for a, t in after.attached if a != address)
    after = replace(after, attached=(*kept, (address, term)))
    now = after.obeyed
    return Change(
        after,
        check,
        switched_from=before if before is not None and before != now else None,
        switched=now != before,
    )


def lost(streams: Streams, address: str) -> Streams:
    """The stream of ``address`` ended (or was never attached: unchanged)."""
    return replace(streams, attached=tuple((a, t) for a, t in streams.attached if a != address))
