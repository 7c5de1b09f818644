"""The strategy host's fencing rule (``baton.strategy.core.term``): a newer gateway term is
adopted, the current one acted on, an older one refused; term 0 is an ordinary, lowest term."""

from __future__ import annotations

import pytest

from baton.strategy.core.term import TermCheck, TermVerdict, check_term

ADOPT, CURRENT, REFUSE = TermVerdict.ADOPT, TermVerdict.CURRENT, TermVerdict.REFUSE


@pytest.mark.parametrize(
    ("highest", "term", "verdict", "after"),
    [
        pytest.param(0, 0, CURRENT, 0, id="no-election-gateway-on-a-fresh-host"),
        pytest.param(0, 1, ADOPT, 1, id="first-elected-term-adopted"),
        pytest.param(2, 3, ADOPT, 3, id="next-term-adopted"),
        pytest.param(2, 9, ADOPT, 9, id="a-jump-of-terms-adopted"),
        pytest.param(2, 2, CURRENT, 2, id="same-term-acted-on"),
        pytest.param(2, 1, REFUSE, 2, id="older-term-refused"),
        pytest.param(3, 0, REFUSE, 3, id="no-election-gateway-refused-after-term-3"),
        pytest.param(2**64 - 1, 2**64 - 2, REFUSE, 2**64 - 1, id="uint64-range"),
    ],
)
def test_the_term_rule(highest: int, term: int, verdict: TermVerdict, after: int) -> None:
    check = check_term(highest, term)
    assert check == TermCheck(verdict, after)
    assert check.acts is (verdict is not REFUSE)


def test_the_highest_term_never_goes_down_whatever_the_order() -> None:
    highest = 0
    seen = []
    for term in (0, 2, 1, 2, 0, 5, 3, 5):
        check = check_term(highest, term)
        highest = check.highest
        seen.append((term, check.verdict, highest))
    assert seen == [
        (0, CURRENT, 0),
        (2, ADOPT, 2),
        (1, REFUSE, 2),
        (2, CURRENT, 2),
        (0, REFUSE, 2),
        (5, ADOPT, 5),
        (3, REFUSE, 5),
        (5, CURRENT, 5),
    ]
