"""Who else used the CPU: the machine's busy time minus the benchmark's own processes'.

The benchmark runs on a small machine (2 cores) that other work may share; a swap that misses
evaluations while something else ate a core says something different from one that missed on a
quiet machine. Linux only (``/proc``); elsewhere every sample is None.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class CpuSample:
    t_s: float  # monotonic
    busy_s: float  # CPU time every core spent busy since boot
    own_s: float  # CPU time of this process and its children (live or reaped)


def foreign_cores(a: CpuSample | None, b: CpuSample | None) -> float | None:
    """Cores used by processes outside the benchmark between two samples.

    >>> foreign_cores(CpuSample(0.0, 10.0, 4.0), CpuSample(2.0, 13.0, 6.0))
    0.5
    >>> foreign_cores(None, CpuSample(2.0, 13.0, 6.0)) is None
    True
    """
    if a is None or b is None or b.t_s <= a.t_s:
        return None
    return round(max(0.0, (b.busy_s - a.busy_s) - (b.own_s - a.own_s)) / (b.t_s - a.t_s), 3)


def _stat_fields(text: str) -> list[str]:
    """The fields of a ``/proc/<pid>/stat`` line after the command name (which may hold spaces):
    index 1 is the parent pid, 11..14 utime, stime, cutime, cstime."""
    return text[text.rindex(")") + 2 :].split()


def _process_cpu_s(fields: list[str]) -> float:
    return sum(int(x) for x in fields[11:15]) / _HZ


def sample() -> CpuSample | None:
    """Now; None where ``/proc`` is not available."""
    try:
        line = Path("/proc/stat").read_text().splitlines()[0].split()
        # user nice system idle iowait irq softirq steal: everything but idle and iowait.
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in line[1:9])
        busy = (user + nice + system + irq + softirq + steal) / _HZ
        me = os.getpid()
        own = _process_cpu_s(_stat_fields(Path(f"/proc/{me}/stat").read_text()))
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = _stat_fields((entry / "stat").read_text())
            except (OSError, ValueError):
                continue  # it exited while we looked
            if int(fields[1]) == me:
                own += _process_cpu_s(fields)
    except (OSError, ValueError, IndexError):
        return None
    return CpuSample(time.monotonic(), busy, own)
