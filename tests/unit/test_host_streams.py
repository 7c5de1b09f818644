"""Which stream a host attached to several gateway replicas obeys (strategy/core/streams.py)."""

from __future__ import annotations

import pytest

from baton.strategy.core.streams import Streams, lost, parse_gateways, welcome
from baton.strategy.core.term import TermVerdict

A, B = "10.0.0.1:50051", "10.0.0.2:50051"


@pytest.mark.parametrize(
    ("before", "address", "term", "verdict", "obeyed", "switched_from", "switched"),
    [
        pytest.param(Streams(), A, 1, TermVerdict.ADOPT, A, None, True, id="first-welcome-obeyed"),
        pytest.param(
            Streams(((A, 1),), 1), B, 2, TermVerdict.ADOPT, B, A, True,
            id="new-leader-welcomes-while-old-still-attached-switch",
        ),
        pytest.param(
            Streams(((A, 2),), 2), B, 1, TermVerdict.REFUSE, A, None, False,
            id="deposed-leader-welcome-refused-not-attached",
        ),
        pytest.param(
            Streams((), 2), A, 2, TermVerdict.CURRENT, A, None, True,
            id="restart-of-stream-at-the-same-term-after-loss",
        ),
        pytest.param(
            Streams((), 3), A, 0, TermVerdict.REFUSE, None, None, False,
            id="term-0-gateway-refused-after-an-elected-one",
        ),
        pytest.param(
            Streams(((A, 1),), 1), A, 1, TermVerdict.CURRENT, A, None, False,
            id="same-address-again-same-term-no-switch",
        ),
    ],
)  # fmt: skip
def test_welcome(
    before: Streams,
    address: str,
    term: int,
    verdict: TermVerdict,
    obeyed: str | None,
    switched_from: str | None,
    switched: bool,
) -> None:
    change = welcome(before, address, term)
    assert change.check.verdict is verdict
    assert change.streams.obeyed == obeyed
    assert change.switched_from == switched_from
    assert change.switched is switched
    if verdict is TermVerdict.REFUSE:
        assert change.streams.attached == before.attached


def test_the_old_leaders_stream_lost_leaves_the_new_one_obeyed_and_the_term_kept() -> None:
    s = welcome(welcome(Streams(), A, 1).streams, B, 2).streams
    s = lost(s, A)
    assert (s.obeyed, s.highest, s.attached) == (B, 2, ((B, 2),))
    s = lost(s, B)
    assert (s.obeyed, s.highest, s.attached) == (None, 2, ())
    # A restarted old leader (a new process at a new term) is obeyed again.
    assert welcome(s, A, 3).streams.obeyed == A


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("gw:1", ("gw:1",), id="one-address"),
        pytest.param("a:1,b:2", ("a:1", "b:2"), id="two"),
        pytest.param(" a:1 , a:1 ,b:2", ("a:1", "b:2"), id="spaces-and-duplicates"),
        pytest.param("[::1]:5", ("[::1]:5",), id="ipv6"),
    ],
)
def test_parse_gateways(value: str, expected: tuple[str, ...]) -> None:
    assert parse_gateways(value) == expected


@pytest.mark.parametrize("value", ["", "a:1,", "a", "a:x", ":1"], ids=repr)
def test_parse_gateways_refuses(value: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_gateways(value)
