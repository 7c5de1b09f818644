"""What the real-process benchmarks (``bench.scale``, its ``handoff`` point, ``bench.soak``)
share: starting the simulator, a gateway and strategy hosts on loopback, reading ``/proc`` and
the ledger, the text tables, and the ``main`` scaffolding (progress lines, a work folder,
SIGTERM, the JSON document's header).

``bench.harness`` runs ``python -m bench``'s scenarios with its own ``Workload``; this module
builds on its plumbing (``wait_for``, ``BenchError``). Processes are started and stopped by
``baton.local.Processes``, as in ``baton demo`` and the tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import sqlite3
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from baton.common import Service
from baton.control import ControlClient, ControlError
from baton.local import GatewayOptions, Processes, SimOptions
from baton.v1 import control_pb2 as ctl
from bench.cli import machine_info
from bench.cpu import foreign_cores, sample
from bench.harness import (
    HANDOFF_TIMEOUT_S,
    REAP_TIMEOUT_S,
    REPO_ROOT,
    BenchError,
    now_ms,
    wait_for,
)
from bench.stats import percentile

T = TypeVar("T")
Progress = Callable[[str], None]
TIMEFRAMES = ("5m", "15m")
_HZ = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


def markets(n: int) -> list[str]:
    """``n`` made-up gateway market specs (``S00001=S00001USDT`` ...)."""
    return [f"S{i:05d}=S{i:05d}USDT" for i in range(1, n + 1)]


# -- /proc ------------------------------------------------------------------------------------


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one live process (all its threads)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _HZ


def rss_bytes(pid: int) -> int:
    """Resident set size of one live process (``VmRSS`` of ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no VmRSS for pid {pid} (a zombie?)")


def machine_busy_s() -> float:
    """CPU seconds every core spent busy since boot (everything but idle and iowait)."""
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / _HZ


def load_average() -> float:
    return os.getloadavg()[0]


async def settle(pid: int, *, min_s: float = 6.0, max_s: float = 90.0) -> float:
    """Wait until the process's CPU use is steady (start-up work such as the feed's REST
    backfill of every stream is over): two consecutive 2 s intervals within 15% (or 0.03
    cores) of each other, after at least ``min_s``. Seconds waited."""
    began = time.monotonic()
    step = 2.0
    last: float | None = None
    while True:
        c0 = process_cpu_s(pid)
        await asyncio.sleep(step)
        cores = (process_cpu_s(pid) - c0) / step
        waited = time.monotonic() - began
        steady = last is not None and abs(cores - last) <= max(0.03, 0.15 * last)
        if (steady and waited >= min_s) or waited >= max_s:
            return round(waited, 1)
        last = cores


async def scrape_metrics(metrics_addr: str) -> dict[str, float]:
    """Every sample of the gateway's ``/metrics``, by its name and labels as exposed
    (``baton_checkpoint_bytes{strategy="momentum"}``)."""

    def fetch() -> str:
        with urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=30) as r:
            return str(r.read().decode())

    return parse_metrics(await asyncio.to_thread(fetch))


def parse_metrics(text: str) -> dict[str, float]:
    """
    >>> parse_metrics('# HELP x y\\nx_total{k="a b"} 2.0\\nx_total{k="c"} 1\\ny 3')
    {'x_total{k="a b"}': 2.0, 'x_total{k="c"}': 1.0, 'y': 3.0}
    """
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def metric_sum(samples: Mapping[str, float], name: str) -> float:
    """The samples of metric ``name`` summed over their labels.

    >>> metric_sum({'a_total{k="x"}': 1.0, 'a_total{k="y"}': 2.0, "a_sum": 9.0}, "a_total")
    3.0
    """
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


async def exchange_messages(metrics_addr: str) -> float:
    """``baton_exchange_messages_total`` summed over its kinds, from the gateway's /metrics."""
    return metric_sum(await scrape_metrics(metrics_addr), "baton_exchange_messages_total")


@dataclass(frozen=True, slots=True)
class Window:
    """A measured window of ticks (``measure_window``): what each group of processes used and
    the gateway's metrics at both ends."""

    t0_ms: float  # wall clock (the ledger's): the window's ticks are scheduled in [t0, t1)
    t1_ms: float
    cpu_s: Mapping[str, float]  # CPU seconds per group of processes
    metrics_before: Mapping[str, float]
    metrics_after: Mapping[str, float]
    scrape_s: float  # monotonic seconds between the two scrapes of /metrics
    machine_busy_cores: float
    foreign_cores: float | None
    load_avg_1m_at_start: float
    settled_s: float

    @property
    def window_s(self) -> float:
        return (self.t1_ms - self.t0_ms) / 1000

    def cores(self, group: str) -> float:
        return round(self.cpu_s[group] / self.window_s, 3)

    def cpu_us_per(self, group: str, n: int) -> float:
        """CPU µs of ``group`` per one of ``n`` things (evaluations) in the window."""
        return round(self.cpu_s[group] / (n or 1) * 1e6, 1)

    def metric_delta(self, name: str) -> float:
        return metric_sum(self.metrics_after, name) - metric_sum(self.metrics_before, name)

    @property
    def exchange_messages_per_s(self) -> float:
        return round(self.metric_delta("baton_exchange_messages_total") / self.scrape_s, 1)


async def measure_window(
    gateway: Service,
    groups: Mapping[str, Sequence[Service]],
    ledger: Path,
    *,
    ticks: int,
    cadence_s: float,
) -> Window:
    """Once the gateway's CPU has settled, a window of ``ticks`` ticks: the CPU each group of
    processes used (``/proc``), the machine's and other processes', the gateway's metrics
    before and after; returns once the window's last tick is in the ledger (it resolves at
    its deadline, the next tick; then the flush)."""
    settled_s = await settle(gateway.pid)
    addr = gateway.ready["metrics_addr"]
    before = await scrape_metrics(addr)
    m0 = time.monotonic()
    load = load_average()
    cpu0 = sample()
    t0, busy0 = now_ms(), machine_busy_s()
    c0 = {name: sum(process_cpu_s(p.pid) for p in ps) for name, ps in groups.items()}
    await asyncio.sleep(ticks * cadence_s)
    c1 = {name: sum(process_cpu_s(p.pid) for p in ps) for name, ps in groups.items()}
    t1, busy1 = now_ms(), machine_busy_s()
    foreign = foreign_cores(cpu0, sample())
    after = await scrape_metrics(addr)
    m1 = time.monotonic()
    await wait_for(
        lambda: max_scheduled_ms(ledger) >= t1,
        timeout_s=cadence_s * 3 + 30,
        what="the window's ticks in the ledger",
        poll_s=0.5,
    )
    return Window(
        t0_ms=t0,
        t1_ms=t1,
        cpu_s={name: c1[name] - c0[name] for name in groups},
        metrics_before=before,
        metrics_after=after,
        scrape_s=m1 - m0,
        machine_busy_cores=round((busy1 - busy0) / ((t1 - t0) / 1000), 3),
        foreign_cores=foreign,
        load_avg_1m_at_start=round(load, 2),
        settled_s=settled_s,
    )


# -- processes --------------------------------------------------------------------------------


def strategy_env() -> dict[str, str]:
    """``bench.strategies`` importable from the strategy host."""
    return {
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
        )
    }


async def start_sim(
    procs: Processes,
    name: str,
    symbols: Sequence[str] | None,
    push_interval_s: float,
    *,
    time_scale: float = 1.0,
) -> Service:
    """The simulator; ``symbols`` None: its reference 8."""
    options = SimOptions(
        seed=11,
        time_scale=time_scale,
        push_interval_s=push_interval_s,
        symbols=symbols,
        log_level="WARNING",
    )
    return await procs.sim(name, options, ready_timeout_s=120)


async def start_gateway(
    procs: Processes,
    name: str,
    sim: Service,
    market_specs: Sequence[str] | None,
    ledger: Path,
    *,
    cadence_s: float = 1.0,
) -> Service:
    """A gateway fed by ``sim``; ``market_specs`` None: the reference 8 markets."""
    options = GatewayOptions(
        ledger=ledger,
        cadence_s=cadence_s,
        timeframes=TIMEFRAMES,
        markets=market_specs,
        log_level="WARNING",
    )
    return await procs.gateway(name, sim, options, ready_timeout_s=180)


async def start_strategy(
    procs: Processes,
    name: str,
    gateway: Service,
    entrypoint: str,
    config: Mapping[str, Any] | None = None,
    extra: Sequence[str] = (),
) -> Service:
    """A strategy host attached to ``gateway`` (pod name = ``name``); ``extra``: more flags
    (``--standby hot``...)."""
    return await procs.strategy(
        name,
        gateway,
        entrypoint,
        config=config or {},
        env=strategy_env(),
        ready_timeout_s=120,
        extra=extra,
    )


class StrategySpawner:
    """Starts strategy hosts numbered in start order, named ``<prefix>-<n>-<class>`` (pod name
    and log file), so that the hosts of consecutive handoffs can be told apart."""

    def __init__(self, procs: Processes, prefix: str, config: Mapping[str, Any]) -> None:
        self._procs, self._prefix, self._config = procs, prefix, config
        self.spawned = 0

    async def start(self, gateway: Service, entrypoint: str) -> Service:
        self.spawned += 1
        name = f"{self._prefix}-{self.spawned:03d}-{entrypoint.rpartition(':')[2].lower()}"
        return await start_strategy(self._procs, name, gateway, entrypoint, self._config)


async def hand_off(
    procs: Processes,
    client: ControlClient,
    blue: Service,
    green: Service,
    policy: ctl.HandoffPolicy,
) -> tuple[ctl.HandoffStatus | None, Service, str]:
    """Promote ``green`` (already attached) and wait for the handoff's end (bounded). Reaps the
    instance that lost: blue after a completed handoff (it has drained), green otherwise.
    Returns the terminal status (None if the control call failed), the instance now ACTIVE,
    and why it failed ("" when it completed)."""
    try:
        started = await client.promote(green.ready["instance_id"], policy)
        status = await asyncio.wait_for(client.wait(started.handoff_id), HANDOFF_TIMEOUT_S)
    except (ControlError, TimeoutError) as exc:
        await procs.reap(green, timeout_s=REAP_TIMEOUT_S)
        return None, blue, f"{type(exc).__name__}: {exc}"
    if status.phase == ctl.HANDOFF_PHASE_COMPLETED:
        await procs.reap(blue, timeout_s=REAP_TIMEOUT_S)
        return status, green, ""
    await procs.reap(green, timeout_s=REAP_TIMEOUT_S)
    return status, blue, status.message or "not completed"


# -- ledger -----------------------------------------------------------------------------------


def ledger_rows(ledger: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of a read-only query (safe while the gateway writes: WAL); [] before the schema."""
    if not ledger.exists():
        return []
    conn = sqlite3.connect(f"{ledger.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:  # no table yet
        return []
    finally:
        conn.close()


def evaluations_recorded(ledger: Path) -> int:
    """Evaluation rows so far (the highest id: rows are never deleted)."""
    rows = ledger_rows(ledger, "SELECT MAX(id) FROM evaluations")
    return int(rows[0][0] or 0) if rows else 0


def max_scheduled_ms(ledger: Path) -> float:
    rows = ledger_rows(ledger, "SELECT MAX(scheduled_ms) FROM evaluations")
    return float(rows[0][0] or 0) if rows else 0.0


def outcome_counts(outcomes: Sequence[str]) -> dict[str, int]:
    """
    >>> outcome_counts(["executed", "timeout", "executed"])
    {'executed': 2, 'timeout': 1}
    """
    out: dict[str, int] = {}
    for outcome in outcomes:
        out[outcome] = out.get(outcome, 0) + 1
    return dict(sorted(out.items()))


# -- figures and tables -----------------------------------------------------------------------


def ms_quantile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile rounded to 0.1 (ms); None for no values."""
    p = percentile(values, q)
    return None if p is None else round(p, 1)


def fmt(v: object, spec: str = ".1f") -> str:
    """
    >>> fmt(None), fmt(2.345), fmt(3, "d")
    ('-', '2.3', '3')
    """
    return "-" if v is None else format(v, spec)


def format_table(header: Sequence[str], rows: list[list[str]], *, markdown: bool = False) -> str:
    """
    >>> print(format_table(["a", "bb"], [["1", "2"]], markdown=True))
    | a | bb |
    | --- | --- |
    | 1 | 2 |
    """
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    out = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def tables(name: str, header: Sequence[str], rows: list[list[str]]) -> dict[str, list[str]]:
    """A table as text and Markdown lines, for the JSON document."""
    return {
        f"{name}_table": format_table(header, rows).splitlines(),
        f"{name}_table_markdown": format_table(header, rows, markdown=True).splitlines(),
    }


# -- main -------------------------------------------------------------------------------------


class BenchExit(Exception):
    """The run ended early; ``code`` is the exit status (the reason is already printed)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def run_live(
    prog: str,
    argv: Sequence[str],
    workdir: Path | None,
    body: Callable[[Path, Progress], Awaitable[T]],
) -> tuple[T, dict[str, Any]]:
    """``body(workdir, progress)`` in a fresh event loop, in ``workdir`` (a temp folder,
    removed afterwards, unless given). Progress lines go to stderr with the seconds since the
    start. SIGTERM ends the run like Ctrl-C: cancelled waits unwind and every process is
    stopped. Raises ``BenchExit`` (1 on a ``BenchError``, 130 when interrupted).

    Returns what ``body`` returned and the JSON document's head (``document_head``), with the
    machine taken before the run: the code that ran is the code at the start."""
    began = time.monotonic()
    machine = machine_info()

    def progress(text: str) -> None:
        print(f"[{time.monotonic() - began:7.1f}s] {text}", file=sys.stderr, flush=True)

    async def main(path: Path) -> T:
        task = asyncio.current_task()
        if task is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await body(path, progress)

    with tempfile.TemporaryDirectory(prefix=f"baton-{prog.rpartition('.')[2]}-") as tmp:
        path = workdir or Path(tmp)
        path.mkdir(parents=True, exist_ok=True)
        try:
            result = asyncio.run(main(path))
        except BenchError as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            raise BenchExit(1) from exc
        except (KeyboardInterrupt, asyncio.CancelledError) as exc:
            print(f"{prog}: interrupted; every process was stopped", file=sys.stderr)
            raise BenchExit(130) from exc
    return result, document_head(prog, argv, machine, began)


def document_head(
    prog: str, argv: Sequence[str], machine: Mapping[str, Any], started: float
) -> dict[str, Any]:
    """The JSON document's first fields: the command, the machine (taken before the run: the
    code that ran is the code at the start), when it finished and how long it took."""
    return {
        "command": f"python -m {prog}" + "".join(f" {shlex.quote(a)}" for a in argv),
        "machine": dict(machine),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_s": round(time.monotonic() - started, 1),
    }


def write_document(path: Path, document: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def save_document(path: Path, document: Mapping[str, Any]) -> int:
    """A run's last step: write ``document``, say where, exit status 0."""
    write_document(path, document)
    print(f"\nresults: {path}  ({document['wall_s']} s)")
    return 0
