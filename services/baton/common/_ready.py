"""The ready line: how a parent process (demo, tests, pod runner) learns a service is up.

A service prints exactly one JSON line ``{"ready": {...}}`` on stdout once it serves, carrying
what the parent needs (bound ports, paths). Logs go to stderr, so stdout stays parseable.
"""

from __future__ import annotations

import json
import sys
from typing import Any

READY_KEY = "ready"


def announce_ready(**fields: Any) -> None:
    sys.stdout.write(json.dumps({READY_KEY: fields}) + "\n")
    sys.stdout.flush()


def parse_ready(line: str) -> dict[str, Any] | None:
    """The fields of a ready line, or None for any other line."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if isinstance(obj, dict) and isinstance(obj.get(READY_KEY), dict):
        fields: dict[str, Any] = obj[READY_KEY]
        return fields
    return None
