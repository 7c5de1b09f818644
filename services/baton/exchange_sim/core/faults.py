"""Fault injection state and malformed frames. Pure: the server passes the time in."""

from __future__ import annotations

import copy
import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from baton.exchange_sim.core.protocol import encode


class MalformedKind(enum.Enum):
    """Ways a kline frame is broken. Each is detectable by a strict client."""

    TRUNCATED_JSON = "truncated_json"
    NOT_JSON = "not_json"
    WRONG_SHAPE = "wrong_shape"  # valid JSON, but an array
    MISSING_PAYLOAD = "missing_payload"  # no "data" (combined) / no "k" (raw)
    MISSING_FIELD = "missing_field"  # kline without its close price
    PRICE_AS_NUMBER = "price_as_number"  # "o": 16500.1 instead of "16500.10000000"
    TIME_AS_STRING = "time_as_string"  # "t": "1672515780000"
    PRICE_NOT_NUMERIC = "price_not_numeric"  # "h": "not-a-price"
    CLOSED_NOT_BOOL = "closed_not_bool"  # "x": "false"
    INCONSISTENT_TIMES = "inconsistent_times"  # T != t + interval - 1


def corrupt(event: dict[str, Any], stream: str | None, kind: MalformedKind) -> str:
    """The frame carrying kline ``event`` (wrapped for ``stream`` when combined), broken.

    >>> ev = {"e": "kline", "E": 2, "s": "X", "k": {"t": 0, "T": 59999, "c": "1.0"}}
    >>> corrupt(ev, None, MalformedKind.MISSING_FIELD)
    '{"e":"kline","E":2,"s":"X","k":{"t":0,"T":59999}}'
    """
    ev = copy.deepcopy(event)
    k: dict[str, Any] = ev.get("k", {})
    if kind is MalformedKind.TRUNCATED_JSON:
        text = encode(ev if stream is None else {"stream": stream, "data": ev})
        return text[: len(text) // 2]
    if kind is MalformedKind.NOT_JSON:
        return "<html><body><h1>502 Bad Gateway</h1></body></html>"
    if kind is MalformedKind.WRONG_SHAPE:
        return encode([ev])
    if kind is MalformedKind.MISSING_PAYLOAD:
        if stream is not None:
            return encode({"stream": stream})
        ev.pop("k", None)
        return encode(ev)
    if kind is MalformedKind.MISSING_FIELD:
        k.pop("c", None)
    elif kind is MalformedKind.PRICE_AS_NUMBER:
        k["o"] = float(k.get("o", "0"))
    elif kind is MalformedKind.TIME_AS_STRING:
        k["t"] = str(k.get("t", ""))
    elif kind is MalformedKind.PRICE_NOT_NUMERIC:
        k["h"] = "not-a-price"
    elif kind is MalformedKind.CLOSED_NOT_BOOL:
        k["x"] = "true" if k.get("x") else "false"
    elif kind is MalformedKind.INCONSISTENT_TIMES:
        k["T"] = int(k.get("t", 0)) - 1
    return encode(ev if stream is None else {"stream": stream, "data": ev})


@dataclass(frozen=True, slots=True)
class RestFault:
    """How an injected REST failure answers: 5xx, or 429 with a ``Retry-After``."""

    status: int = 500
    retry_after_s: int = 1

    def body(self) -> str:
        if self.status == 429:
            return encode(
                {
                    "code": -1003,
                    "msg": "Too much request weight used; current limit is 6000 request weight"
                    " per 1 MINUTE. Please use WebSocket Streams for live updates to avoid"
                    " polling the API.",
                }
            )
        return encode(
            {"code": -1000, "msg": "An unknown error occurred while processing the request."}
        )


class FaultState:
    """Pending faults. Mutated only by the server's event loop; time comes in as arguments."""

    def __init__(self) -> None:
        self.stall_until = 0.0
        self.malformed_pending = 0
        self._malformed_index = 0
        self.rest_pending = 0
        self.rest_fault = RestFault()
        self.duplicate_pending = 0
        self.reorder_pending = 0
        self.rest_delay_s = 0.0  # every REST answer waits this long (a slow exchange)

    def set_rest_delay(self, seconds: float) -> None:
        self.rest_delay_s = seconds

    def stall(self, now: float, seconds: float) -> None:
        self.stall_until = max(self.stall_until, now + seconds)

    def stalled(self, now: float) -> bool:
        return now < self.stall_until

    def add_malformed(self, count: int) -> None:
        self.malformed_pending += count

    def take_malformed(self) -> MalformedKind | None:
        """The way to break the next frame, cycling through all kinds; None when none pending."""
        if self.malformed_pending <= 0:
            return None
        self.malformed_pending -= 1
        kinds = list(MalformedKind)
        kind = kinds[self._malformed_index % len(kinds)]
        self._malformed_index += 1
        return kind

    def add_rest_errors(self, count: int, fault: RestFault) -> None:
        self.rest_pending += count
        self.rest_fault = fault

    def take_rest_fault(self) -> RestFault | None:
        if self.rest_pending <= 0:
            return None
        self.rest_pending -= 1
        return self.rest_fault

    def add_duplicates(self, count: int) -> None:
        self.duplicate_pending += count

    def take_duplicates(self) -> int:
        """How many recent frames to send again now (all that is pending; 0 when none)."""
        count, self.duplicate_pending = self.duplicate_pending, 0
        return count

    def add_reorders(self, count: int) -> None:
        self.reorder_pending += count

    def take_reorder(self) -> bool:
        """Whether to hold the next frame back until the one after it has gone."""
        if self.reorder_pending <= 0:
            return False
        self.reorder_pending -= 1
        return True


# Kline frames a connection remembers for ``duplicate`` faults.
DISORDER_MEMORY = 64


class Disorder:
    """One connection's duplicate and reorder faults over its outgoing kline frames.

    ``outgoing`` turns the (stream, frame) pairs due now into the frames to send: first the
    most recent frames sent again (a pending ``duplicate``), then the due ones, of which each
    frame picked by a pending ``reorder`` is held back and sent right after the next frame of
    its stream (in a later batch if none follows in this one).

    >>> faults, d = FaultState(), Disorder()
    >>> d.outgoing([("x", "x1"), ("y", "y1")], faults)
    ['x1', 'y1']
    >>> faults.add_duplicates(2); faults.add_reorders(1)
    >>> d.outgoing([("x", "x2"), ("y", "y2"), ("x", "x3")], faults)
    ['x1', 'y1', 'y2', 'x3', 'x2']
    """

    def __init__(self, memory: int = DISORDER_MEMORY) -> None:
        self._recent: deque[str] = deque(maxlen=memory)
        self.held: dict[str, str] = {}  # stream -> the frame held back

    def outgoing(self, frames: Sequence[tuple[str, str]], faults: FaultState) -> list[str]:
        out: list[str] = []
        repeat = min(faults.take_duplicates(), len(self._recent))
        if repeat:
            out.extend(list(self._recent)[-repeat:])
        for stream, frame in frames:
            held = self.held.pop(stream, None)
            if held is not None:
                out += [frame, held]
            elif faults.take_reorder():
                self.held[stream] = frame
            else:
                out.append(frame)
        self._recent.extend(out[repeat:])
        return out
