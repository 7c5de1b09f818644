"""The book: the strategies one gateway serves, each with its own slots and stake.

A strategy enters the book with the first Hello that names it, choosing its slots (a subset of
the gateway's markets x timeframes; none named: all of them) and its stake (unset: the venue's
default). Every later instance of that strategy must choose the same: a handoff moves state
within one shape of the book, never changes it (docs/gateway.md#a-book-of-strategies). The book
is kept in the ledger, so a restarted gateway schedules every strategy it served, attached or
not (a strategy nobody runs is missed, not forgotten).

Pure: decisions on values, no I/O.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from baton.model import Slot

# Strategy names become label values, ledger keys and parts of bet ids: keep them plain.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True, slots=True)
class StrategyEntry:
    """One strategy of the book."""

    name: str
    requested: tuple[str, ...]  # the slot ids its instances name, sorted; () = all of them
    slots: tuple[Slot, ...]  # what that is on this gateway, in the gateway's slot order
    stake: float

    @property
    def slot_ids(self) -> tuple[str, ...]:
        return tuple(s.slot_id for s in self.slots)


class Refusal(enum.Enum):
    BAD_NAME = "bad_name"
    UNKNOWN_SLOT = "unknown_slot"
    DUPLICATE_SLOT = "duplicate_slot"
    BAD_STAKE = "bad_stake"
    SHAPE_CHANGED = "shape_changed"  # another slot selection or stake than the book has


@dataclass(frozen=True, slots=True)
class Refused:
    why: Refusal
    message: str

    @property
    def invalid_argument(self) -> bool:
        """The Hello itself is wrong (vs. right but at odds with the book)."""
        return self.why is not Refusal.SHAPE_CHANGED


def admit(
    name: str,
    slot_ids: Sequence[str],
    stake: float | None,
    *,
    gateway_slots: Sequence[Slot],
    default_stake: float,
    known: Mapping[str, StrategyEntry],
) -> StrategyEntry | Refused:
    """The book's entry for an instance of ``name`` asking for ``slot_ids`` and ``stake``: the
    existing entry when it asks for the same, a new one for a new name, or why not."""
    if not _NAME.match(name):
        return Refused(
            Refusal.BAD_NAME,
            f"strategy name {name!r}: letters, digits, '_', '.', '-' (at most 63, "
            "starting with a letter or digit)",
        )
    by_id = {s.slot_id: s for s in gateway_slots}
    unknown = [s for s in slot_ids if s not in by_id]
    if unknown:
        return Refused(
            Refusal.UNKNOWN_SLOT,
            f"strategy {name!r} asks for slots this gateway does not evaluate: "
            f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''} "
            f"(it evaluates {len(by_id)}: e.g. {', '.join(list(by_id)[:3])})",
        )
    if len(set(slot_ids)) != len(slot_ids):
        dup = sorted({s for s in slot_ids if list(slot_ids).count(s) > 1})
        return Refused(
            Refusal.DUPLICATE_SLOT, f"strategy {name!r} names a slot twice: {', '.join(dup)}"
        )
    if stake is not None and not (math.isfinite(stake) and stake > 0):
        return Refused(Refusal.BAD_STAKE, f"strategy {name!r}: stake must be > 0, got {stake}")
    entry = _entry(name, slot_ids, default_stake if stake is None else stake, gateway_slots)
    existing = known.get(name)
    if existing is None:
        return entry
    if existing.requested != entry.requested or existing.stake != entry.stake:
        return Refused(
            Refusal.SHAPE_CHANGED,
            f"strategy {name!r} is in the book with {len(existing.slots)} slots and stake "
            f"{existing.stake:g}; this instance asks for {len(entry.slots)} slots and stake "
            f"{entry.stake:g}. Instances of one strategy share one shape: give the new shape "
            "a new strategy name",
        )
    return existing


def restore(
    name: str, slot_ids: Sequence[str], stake: float, *, gateway_slots: Sequence[Slot]
) -> StrategyEntry:
    """A book entry as the ledger kept it, on a gateway whose slots may have changed since:
    the slots it no longer evaluates are left out (their ticks are no longer scheduled)."""
    return _entry(name, slot_ids, stake, gateway_slots)


def _entry(
    name: str, slot_ids: Sequence[str], stake: float, gateway_slots: Sequence[Slot]
) -> StrategyEntry:
    wanted = set(slot_ids)
    slots = tuple(s for s in gateway_slots if not wanted or s.slot_id in wanted)
    return StrategyEntry(name, tuple(sorted(wanted)), slots, stake)
