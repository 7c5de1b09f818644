"""``python -m bench.standby``: what a killed ACTIVE costs with each standby mode, and what keeping
a strategy's state alive costs while nobody dies (issue 18, docs/standby.md). Real processes on
loopback, every mode in the same run.

- ``kills``: the reference bot (8 markets x 5m/15m = 16 slots, MomentumV1) at a 1 s cadence,
  one gateway and ledger per mode, ``none`` (no checkpoint, no digest check: Baton before issue
  18), ``checkpoint`` (the defaults) and ``hot`` (a second instance follows as SHADOW). After a
  warm-up, ``--kills`` times: at a moment of the tick (stratified, so that the kills cover the
  tick evenly, and the same moments for every mode: ``kill_moments``), SIGKILL of the
  strategy's ACTIVE process (a pod deleted with ``--grace-period=0``), a new process started in
  its place at once (the pod's restart); then until the gateway has recorded the failover and
  the next kill has something to work with (hot: a standby following again; checkpoint: a
  checkpoint of the new ACTIVE). Per mode, from the ledger's failovers (the figures ``baton
  presence`` and ``baton demo --kill-active`` report): missed evaluations per kill, take-over
  time (death to successor ACTIVE), the state the successor went on with (exact / unverified /
  diverged / empty = lost), and the restart of the process.
- ``cost``: the ``bench.scale dispatch`` set-up (simulator in real time, one kline update per
  stream every 2 s, made-up markets x 5m/15m, 1 s cadence, MomentumV1) at 16 and 1,000 slots, one
  simulator per slot count, one gateway per arm: ``none`` (``--standby none --verify-every 0``),
  ``checkpoint`` (the defaults: a checkpoint every 12 ticks, a digest check every tick),
  ``checkpoint-every-1`` and ``hot``. The measurement window of ``bench.scale``
  (``bench.live.measure_window``) per arm: gateway and strategy-host CPU (the hot standby's
  process counted apart), tick latency (a tick's dispatch to its last answer, from the ledger),
  checkpoints kept, their size and export time (the gateway's ``baton_checkpoint_*`` metrics);
  ratios against ``none`` of the same slot count.

Prints a table per part and writes every number to ``bench/results/standby.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baton import wire
from baton.common import ProcessFailed, Service
from baton.control import ControlClient
from baton.gateway.report import presence_report
from baton.local import Processes
from baton.model import Role, StandbyPolicy
from baton.strategy.core.runtime import EncodedState, StrategyRuntime
from baton.strategy.core.state import state_digest
from baton.strategy.examples.momentum_v1 import MomentumV1
from baton.v1 import control_pb2 as ctl
from bench.book import wait_live
from bench.cli import MOMENTUM_V1
from bench.harness import MISSED, REPO_ROOT, BenchError, now_ms, wait_for
from bench.live import (
    TIMEFRAMES,
    BenchExit,
    Progress,
    Window,
    fmt,
    ledger_rows,
    markets,
    max_scheduled_ms,
    measure_window,
    ms_quantile,
    outcome_counts,
    run_live,
    save_document,
    start_gateway,
    start_sim,
    start_strategy,
    tables,
)

DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "standby.json"
QUICK_OUT = REPO_ROOT / "bench" / "results" / "standby-quick.json"
STRATEGY = "momentum"
CADENCE_S = 1.0
REFERENCE_SLOTS = 16  # the reference 8 markets x 5m/15m
KILL_MODES = ("none", "checkpoint", "hot")
DEFAULT_KILLS = 20
DEFAULT_SLOTS = (16, 1000)
DEFAULT_TICKS = 20
# A failover is recorded once its state is verified (or known not to be): bounded.
FAILOVER_TIMEOUT_S = 60.0
# The kill part's simulator: the demo's (a 5m window closes every 5 s), the reference 8 markets.
KILL_TIME_SCALE = 60.0
KILL_PUSH_INTERVAL_S = 1.0
COST_PUSH_INTERVAL_S = 2.0  # per stream: bench.scale dispatch's (Binance's rate)


@dataclass(frozen=True, slots=True)
class Arm:
    """One way to run the strategy: its host flags, and whether a hot standby runs beside it."""

    name: str
    flags: tuple[str, ...]
    standby: bool = False
    description: str = ""


_DEFAULTS = StandbyPolicy()
ARMS = {
    a.name: a
    for a in (
        Arm(
            "none",
            ("--standby", "none", "--verify-every", "0"),
            description="no checkpoint, no digest check (Baton before issue 18)",
        ),
        Arm(
            "checkpoint",
            ("--standby", "checkpoint"),
            description=f"the defaults: a checkpoint every {_DEFAULTS.checkpoint_every_ticks} "
            f"ticks, a digest check every {_DEFAULTS.verify_every_ticks}",
        ),
        Arm(
            "checkpoint-every-1",
            ("--standby", "checkpoint", "--checkpoint-every", "1"),
            description="a checkpoint every tick",
        ),
        Arm(
            "checkpoint-no-verify",
            ("--standby", "checkpoint", "--verify-every", "0"),
            description=f"a checkpoint every {_DEFAULTS.checkpoint_every_ticks} ticks, "
            "no digest check",
        ),
        Arm(
            "hot",
            ("--standby", "hot"),
            standby=True,
            description="a hot standby (a second host following as SHADOW), checkpoints and "
            "digest checks as the defaults",
        ),
    )
}
DEFAULT_ARMS = ("none", "checkpoint", "checkpoint-every-1", "hot")


# -- kills ------------------------------------------------------------------------------------


class Fleet:
    """The strategy's host processes by instance id; each new one numbered in start order."""

    def __init__(self, procs: Processes, tag: str, gateway: Service, arm: Arm) -> None:
        self._procs, self._tag, self._gateway, self._arm = procs, tag, gateway, arm
        self.hosts: dict[str, Service] = {}
        self.started = 0

    async def start(self) -> tuple[Service, float]:
        """A new host; the ms from its start to its ready line (attached)."""
        self.started += 1
        t0 = now_ms()
        host = await start_strategy(
            self._procs,
            f"{self._tag}-strategy-{self.started:02d}",
            self._gateway,
            MOMENTUM_V1,
            extra=self._arm.flags,
        )
        self.hosts[host.ready["instance_id"]] = host
        return host, now_ms() - t0

    async def kill(self, instance_id: str) -> None:
        await self._procs.kill(self.hosts.pop(instance_id))


def _active(listing: ctl.ListInstancesResponse) -> str:
    return next((s.active_instance_id for s in listing.strategies if s.name == STRATEGY), "")


def _following(listing: ctl.ListInstancesResponse) -> bool:
    """A SHADOW of the strategy outside a handoff: its hot standby follows."""
    shadow = wire.role_to_proto(Role.SHADOW)
    return any(i.strategy == STRATEGY and i.role == shadow for i in listing.instances)


def _count(ledger: Path, sql: str, *params: Any) -> int:
    rows = ledger_rows(ledger, sql, *params)
    return int(rows[0][0] or 0) if rows else 0


def failovers_recorded(ledger: Path) -> int:
    return _count(ledger, "SELECT COUNT(*) FROM failovers")


def checkpoints_of(ledger: Path, instance_id: str) -> int:
    return _count(ledger, "SELECT COUNT(*) FROM checkpoints WHERE instance_id = ?", instance_id)


async def _ready_to_kill(
    mode: str, ledger: Path, client: ControlClient, active: str, timeout_s: float
) -> None:
    """Until the next kill has what its mode works with: hot, a standby following the ACTIVE;
    checkpoint, a checkpoint of the ACTIVE kept; none, an ACTIVE."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        listing = await client.list_instances()
        now_active = _active(listing)
        if now_active and (
            mode == "none"
            or (mode == "hot" and _following(listing))
            or (mode == "checkpoint" and checkpoints_of(ledger, now_active) > 0)
        ):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise BenchError(
                f"{mode}: not ready for a kill after {timeout_s:g}s (last ACTIVE {active!r})"
            )
        await asyncio.sleep(0.1)  # polling the gateway's listing and the ledger: no event here


def kill_moments(kills: int, spread_ticks: int, seed: int) -> list[tuple[int, float]]:
    """Per kill: whole ticks to let pass first (0 .. ``spread_ticks`` - 1), and the moment in
    the tick, a share of the cadence: stratified (one in each 1/``kills`` of the tick, in a
    random order) so that every part of a tick is hit as often, and the same for every mode
    (seeded by ``seed`` only): the modes are compared on the same moments.

    >>> m = kill_moments(4, 3, 1)
    >>> sorted(int(phase * 4) for _, phase in m), all(0 <= t < 3 for t, _ in m)
    ([0, 1, 2, 3], True)
    >>> m == kill_moments(4, 3, 1)
    True
    """
    rng = random.Random(f"{seed}:kills")
    phases = [(i + rng.random()) / kills for i in range(kills)]
    rng.shuffle(phases)
    return [(rng.randrange(max(1, spread_ticks)), phase) for phase in phases]


async def at_moment(ticks: int, phase: float, cadence_s: float) -> None:
    """Sleep until ``phase`` x cadence past a tick boundary, ``ticks`` boundaries from now (the
    gateway's ticks are aligned to multiples of the cadence in Unix time)."""
    cadence_ms = cadence_s * 1000
    now = now_ms()
    target = (now // cadence_ms) * cadence_ms + phase * cadence_ms
    if target <= now:
        target += cadence_ms
    target += ticks * cadence_ms
    await asyncio.sleep((target - now) / 1000)


async def kill_run(
    mode: str,
    kills: int,
    slots: int,
    spread_ticks: int,
    seed: int,
    workdir: Path,
    progress: Progress,
) -> dict[str, Any]:
    """One gateway and ledger, the strategy under ``mode``, ``kills`` kills of its ACTIVE."""
    arm = ARMS[mode]
    tag = f"kills-{mode}" if slots == REFERENCE_SLOTS else f"kills-{slots}-{mode}"
    ledger = workdir / f"{tag}.sqlite"
    procs = Processes(workdir / "logs" / tag)
    # The reference 8 markets; other slot counts on made-up ones (as the cost part).
    specs = None if slots == REFERENCE_SLOTS else markets(slots // len(TIMEFRAMES))
    kill_log: list[dict[str, Any]] = []
    try:
        sim = await start_sim(
            procs,
            f"{tag}-sim",
            None if specs is None else [m.partition("=")[2] for m in specs],
            KILL_PUSH_INTERVAL_S if specs is None else COST_PUSH_INTERVAL_S,
            time_scale=KILL_TIME_SCALE,
        )
        gateway = await start_gateway(
            procs, f"{tag}-gateway", sim, specs, ledger, cadence_s=CADENCE_S
        )
        fleet = Fleet(procs, tag, gateway, arm)
        await fleet.start()
        if arm.standby:
            await fleet.start()
        async with ControlClient(gateway.ready["grpc_addr"]) as client:
            await wait_for(
                lambda: max_scheduled_ms(ledger) > 0,
                timeout_s=60,
                what="a first tick",
                poll_s=0.2,
            )
            await _ready_to_kill(mode, ledger, client, "", timeout_s=120)
            progress(f"{tag}: {len(fleet.hosts)} host(s) up, ready; {kills} kills")
            for i, (ticks, phase) in enumerate(kill_moments(kills, spread_ticks, seed)):
                await at_moment(ticks, phase, CADENCE_S)
                victim = _active(await client.list_instances())
                if victim not in fleet.hosts:
                    raise BenchError(f"{tag}: the ACTIVE {victim!r} is not one of our hosts")
                before = failovers_recorded(ledger)

                def recorded(n: int = before) -> bool:
                    return failovers_recorded(ledger) > n

                killed_ms = now_ms()
                await fleet.kill(victim)
                _, restart_ms = await fleet.start()
                await wait_for(
                    recorded,
                    timeout_s=FAILOVER_TIMEOUT_S,
                    what=f"the failover of kill {i + 1}",
                    poll_s=0.1,
                )
                recorded_ms = now_ms()
                kill_log.append(
                    {
                        "victim": victim,
                        "killed_ms": round(killed_ms),
                        "phase_ms": round(killed_ms % (CADENCE_S * 1000), 1),
                        "restart_ms": round(restart_ms, 1),
                        "recorded_after_ms": round(recorded_ms - killed_ms, 1),
                    }
                )
                await _ready_to_kill(mode, ledger, client, victim, timeout_s=120)
                progress(
                    f"{tag} {i + 1}/{kills}: killed {victim}, restart {restart_ms:.0f} ms, "
                    f"failover recorded {recorded_ms - killed_ms:.0f} ms after the kill"
                )
            # The ticks right after the last take-over, then a clean stop (the tick in flight
            # is resolved and recorded).
            last = max_scheduled_ms(ledger)
            await wait_for(
                lambda: max_scheduled_ms(ledger) >= last + 2 * CADENCE_S * 1000,
                timeout_s=30,
                what="two more ticks",
                poll_s=0.2,
            )
        code = await procs.reap(gateway, timeout_s=CADENCE_S + 20)
        if code != 0:
            raise BenchError(f"{tag}: gateway exited with {code}:\n{gateway.log_tail()}")
    except ProcessFailed as exc:
        raise BenchError(f"{tag}: {exc}") from exc
    finally:
        await procs.close()
    return kill_summary(mode, arm, ledger, kill_log)


def kill_summary(
    mode: str, arm: Arm, ledger: Path, kill_log: list[dict[str, Any]]
) -> dict[str, Any]:
    report = presence_report(ledger)
    failovers = [f for f in report.failovers if f.strategy == STRATEGY]
    missed = [f.missed for f in failovers]
    takeover = [float(f.takeover_ms) for f in failovers if f.takeover_ms is not None]
    restart = [float(k["restart_ms"]) for k in kill_log]
    # An evaluation recorded twice, or a bet placed twice: what a take-over must never do.
    doubled = _count(
        ledger,
        "SELECT COUNT(*) FROM (SELECT 1 FROM evaluations GROUP BY slot_id, seq "
        "HAVING COUNT(*) > 1)",
    ) + _count(
        ledger, "SELECT COUNT(*) FROM (SELECT 1 FROM bets GROUP BY bet_id HAVING COUNT(*) > 1)"
    )
    states = outcome_counts([f.state for f in failovers])
    result: dict[str, Any] = {
        "mode": mode,
        "flags": list(arm.flags),
        "slots": report.slots,
        "cadence_s": CADENCE_S,
        "kills": len(kill_log),
        "failovers": len(failovers),
        "results": outcome_counts([f.result for f in failovers]),
        "states": states,
        # "empty" is the state lost: the successor started from nothing.
        "state_lost": states.get("empty", 0),
        "kills_with_misses": sum(1 for n in missed if n),
        "missed_per_kill_mean": round(sum(missed) / len(missed), 2) if missed else None,
        "missed_per_kill_max": max(missed, default=None),
        "missed_ticks_per_kill_mean": (
            round(sum(missed) / len(missed) / report.slots, 2) if missed and report.slots else None
        ),
        "takeover_ms_p50": ms_quantile(takeover, 50),
        "takeover_ms_max": max(takeover, default=None),
        "restart_ms_p50": ms_quantile(restart, 50),
        "restart_ms_max": max(restart, default=None),
        "scheduled": report.scheduled,
        "missed_total": report.missed,
        "missed_by_reason": {k: v for k, v in report.missed_by_reason.items() if v},
        "missed_outside_failovers": report.missed - sum(missed),
        "unaccounted": report.unaccounted,
        "doubled": doubled,
        "kill_log": kill_log,
        "failover_rows": [
            {
                "from": f.from_instance,
                "to": f.to_instance,
                "takeover_ms": f.takeover_ms,
                "missed": f.missed,
                "state": f.state,
                "result": f.result,
                "message": f.message,
            }
            for f in failovers
        ],
    }
    return result


KILL_HEADER = (
    "mode",
    "kills",
    "kills with misses",
    "missed / kill mean (max)",
    "ticks dark / kill",
    "take-over p50 / max ms",
    "state after: exact / unverified / diverged / lost",
    "restart p50 ms",
    "doubled",
)


def kill_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in results:
        s = r["states"]
        rows.append(
            [
                r["mode"],
                f"{r['failovers']} / {r['kills']}",
                str(r["kills_with_misses"]),
                f"{fmt(r['missed_per_kill_mean'])} ({fmt(r['missed_per_kill_max'], 'd')})",
                fmt(r["missed_ticks_per_kill_mean"], ".2f"),
                f"{fmt(r['takeover_ms_p50'], '.0f')} / {fmt(r['takeover_ms_max'], '.0f')}",
                " / ".join(str(s.get(k, 0)) for k in ("exact", "unverified", "diverged", "empty")),
                fmt(r["restart_ms_p50"], ".0f"),
                str(r["doubled"]),
            ]
        )
    return rows


# -- cost -------------------------------------------------------------------------------------


def tick_latencies(rows: Sequence[tuple[Any, ...]]) -> list[float]:
    """Per tick, from its dispatch to its last answer: ``max(decided_ms) - min(dispatched_ms)``
    of the tick's executed evaluations (rows ``(scheduled_ms, dispatched_ms, decided_ms,
    outcome)``); a tick with none executed has no latency.

    >>> tick_latencies([(0, 2, 9, "executed"), (0, 3, 14, "executed"), (1000, 1001, None,
    ...     "timeout"), (2000, 2001, 2005, "executed")])
    [12.0, 4.0]
    """
    ticks: dict[Any, tuple[float, float]] = {}
    for scheduled, dispatched, decided, outcome in rows:
        if outcome != "executed" or dispatched is None or decided is None:
            continue
        first, last = ticks.get(scheduled, (float(dispatched), float(decided)))
        ticks[scheduled] = (min(first, float(dispatched)), max(last, float(decided)))
    return [last - first for _, (first, last) in sorted(ticks.items())]


def _checkpoint_figures(w: Window) -> dict[str, Any]:
    taken = w.metric_delta("baton_checkpoint_seconds_count")
    seconds = w.metric_delta("baton_checkpoint_seconds_sum")
    size = w.metrics_after.get(f'baton_checkpoint_bytes{{strategy="{STRATEGY}"}}')
    return {
        "checkpoints": int(taken),
        "checkpoint_bytes": None if size is None or (not taken and not size) else int(size),
        "checkpoint_export_ms_mean": round(seconds / taken * 1000, 2) if taken else None,
        "checkpoint_bytes_per_s": (
            round(taken * size / w.window_s) if taken and size is not None else 0
        ),
    }


def state_costs(ledger: Path, repeats: int = 9) -> dict[str, Any] | None:
    """What one export and one import of the strategy's real state cost in this process (the
    work the host's worker does for a digest check or a checkpoint, and a take-over's import):
    the latest checkpoint the ledger kept, imported into a fresh MomentumV1 runtime, then
    exported ``repeats`` times (canonical JSON + sha256). Median ms; None without a checkpoint.
    Precise where ``/proc`` is not (10 ms clock ticks over a 20 s window at 16 slots)."""
    rows = ledger_rows(
        ledger,
        "SELECT strategy, version, state_schema, state, digest FROM checkpoints "
        "ORDER BY taken_ms DESC LIMIT 1",
    )
    if not rows:
        return None
    strategy, version, schema, data, digest = rows[0]
    runtime = StrategyRuntime(MomentumV1())
    t0 = time.perf_counter()
    outcome = runtime.import_(EncodedState(strategy, version, schema, bytes(data), digest))
    import_ms = (time.perf_counter() - t0) * 1000
    if not outcome.ok:
        raise BenchError(f"the checkpoint of {ledger.name} does not import: {outcome.error}")
    exports = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        again = runtime.export()
        exports.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    state_digest(again.data)
    digest_ms = (time.perf_counter() - t0) * 1000
    return {
        "state_bytes": len(data),
        "export_ms": round(statistics.median(exports), 3),
        "digest_only_ms": round(digest_ms, 3),  # the sha256 part of an export
        "import_ms": round(import_ms, 3),
        "same_digest": again.digest == digest,
    }


async def cost_point(
    sim: Service,
    specs: Sequence[str],
    arm: Arm,
    ticks: int,
    warm_ticks: int,
    workdir: Path,
    progress: Progress,
) -> dict[str, Any]:
    slots = len(specs) * len(TIMEFRAMES)
    tag = f"cost-{slots}-{arm.name}"
    ledger = workdir / f"{tag}.sqlite"
    procs = Processes(workdir / "logs" / tag)
    try:
        gateway = await start_gateway(procs, f"{tag}-gateway", sim, specs, ledger)
        fleet = Fleet(procs, tag, gateway, arm)
        active, _ = await fleet.start()
        standby = (await fleet.start())[0] if arm.standby else None
        async with ControlClient(gateway.ready["grpc_addr"]) as client:
            attached = now_ms()
            await wait_for(
                lambda: max_scheduled_ms(ledger) >= attached + warm_ticks * CADENCE_S * 1000,
                timeout_s=warm_ticks * CADENCE_S * 3 + 120,
                what=f"{warm_ticks} ticks",
                poll_s=0.5,
            )
            live_s = await wait_live(ledger, slots)
            if standby is not None:
                await _ready_to_kill("hot", ledger, client, "", timeout_s=120)
            w = await measure_window(
                gateway,
                {
                    "gateway": [gateway],
                    "active": [active],
                    "standby": [standby] if standby is not None else [],
                },
                ledger,
                ticks=ticks,
                cadence_s=CADENCE_S,
            )
            listing = await client.list_instances()
        still_active = _active(listing) == active.ready["instance_id"]
    except ProcessFailed as exc:
        raise BenchError(f"{tag}: {exc}") from exc
    finally:
        await procs.close()
    rows = ledger_rows(
        ledger,
        "SELECT scheduled_ms, dispatched_ms, decided_ms, outcome FROM evaluations "
        "WHERE scheduled_ms >= ? AND scheduled_ms < ?",
        int(w.t0_ms),
        int(w.t1_ms),
    )
    evaluations = len(rows)
    per_tick = tick_latencies(rows)
    latency = [float(d - s) for s, _, d, o in rows if o == "executed" and d is not None]
    strategy_cpu = w.cpu_s["active"] + w.cpu_s["standby"]
    result: dict[str, Any] = {
        "slots": slots,
        "arm": arm.name,
        "flags": list(arm.flags),
        "window_s": round(w.window_s, 3),
        "ticks": len({r[0] for r in rows}),
        "evaluations": evaluations,
        "missed": sum(1 for r in rows if r[3] in MISSED),
        "outcomes": outcome_counts([str(r[3]) for r in rows]),
        "tick_ms_p50": ms_quantile(per_tick, 50),
        "tick_ms_p99": ms_quantile(per_tick, 99),
        "tick_ms_max": max(per_tick, default=None),
        "latency_ms_p50": ms_quantile(latency, 50),
        "latency_ms_p99": ms_quantile(latency, 99),
        "gateway_cores": w.cores("gateway"),
        "active_cores": w.cores("active"),
        "standby_cores": w.cores("standby"),
        "strategy_cores": round(strategy_cpu / w.window_s, 3),
        "gateway_cpu_us_per_eval": w.cpu_us_per("gateway", evaluations),
        "strategy_cpu_us_per_eval": round(strategy_cpu / (evaluations or 1) * 1e6, 1),
        **_checkpoint_figures(w),
        "divergences": int(w.metric_delta("baton_state_divergences_total")),
        "active_unchanged": still_active,
        "exchange_messages_per_s": w.exchange_messages_per_s,
        "machine_busy_cores": w.machine_busy_cores,
        "foreign_cores": w.foreign_cores,
        "load_avg_1m_at_start": w.load_avg_1m_at_start,
        "live_wait_s": live_s,
        "settled_s": w.settled_s,
    }
    progress(f"{tag}: {_cost_line(result)}")
    return result


def _cost_line(r: dict[str, Any]) -> str:
    return (
        f"{r['evaluations']} evals, missed {r['missed']}, tick p50/p99 "
        f"{fmt(r['tick_ms_p50'])}/{fmt(r['tick_ms_p99'])} ms, gateway {r['gateway_cores']} "
        f"cores, strategy {r['strategy_cores']} cores (standby {r['standby_cores']}), "
        f"{r['checkpoints']} checkpoints of {fmt(r['checkpoint_bytes'], 'd')} B "
        f"({fmt(r['checkpoint_export_ms_mean'], '.1f')} ms), other processes "
        f"{fmt(r['foreign_cores'], '.2f')} cores"
    )


def _ratio(a: float | None, b: float | None) -> float | None:
    """
    >>> _ratio(3.0, 2.0), _ratio(1.0, 0.0), _ratio(None, 1.0)
    (1.5, None, None)
    """
    return None if a is None or not b else round(a / b, 2)


def with_ratios(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each point with its ratios against the ``none`` arm of its slot count (same run)."""
    base = {p["slots"]: p for p in points if p["arm"] == "none"}
    out = []
    for p in points:
        b = base.get(p["slots"])
        ratios = {
            f"{key}_vs_none": None if b is None else _ratio(p[key], b[key])
            for key in ("gateway_cores", "strategy_cores", "tick_ms_p50", "tick_ms_p99")
        }
        out.append(p | ratios)
    return out


async def cost_run(
    slot_counts: Sequence[int],
    arms: Sequence[Arm],
    ticks: int,
    warm_ticks: int,
    workdir: Path,
    progress: Progress,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The points (with their ratios against ``none``), and per slot count what one export
    and one import of the state cost (``state_costs``, from the first arm's checkpoint)."""
    points, states = [], []
    for slots in slot_counts:
        if slots < 2 or slots % len(TIMEFRAMES):
            raise BenchError(f"slots must be a multiple of {len(TIMEFRAMES)}, got {slots}")
        specs = markets(slots // len(TIMEFRAMES))
        procs = Processes(workdir / "logs" / f"cost-{slots}")
        try:
            sim = await start_sim(
                procs,
                f"cost-{slots}-sim",
                [m.partition("=")[2] for m in specs],
                COST_PUSH_INTERVAL_S,
            )
            progress(f"cost-{slots}: simulator up; arms {', '.join(a.name for a in arms)}")
            for arm in arms:
                points.append(
                    await cost_point(sim, specs, arm, ticks, warm_ticks, workdir, progress)
                )
        except ProcessFailed as exc:
            raise BenchError(f"cost-{slots}: {exc}") from exc
        finally:
            await procs.close()
        for arm in arms:
            costs = state_costs(workdir / f"cost-{slots}-{arm.name}.sqlite")
            if costs is not None:
                # A digest check every tick costs the host one export a tick.
                share = costs["export_ms"] / (CADENCE_S * 1000)
                states.append(
                    {
                        "slots": slots,
                        "from_arm": arm.name,
                        **costs,
                        "digest_every_tick_cores": round(share, 4),
                    }
                )
                progress(f"cost-{slots}: state {costs}")
                break
    return with_ratios(points), states


COST_HEADER = (
    "slots",
    "arm",
    "missed / evals",
    "tick p50 / p99 ms",
    "gateway cores",
    "strategy cores (standby)",
    "checkpoints in window, bytes, asked -> received ms",
    "gateway vs none",
    "strategy vs none",
    "tick p50 / p99 vs none",
    "other processes cores",
)


def cost_rows(points: list[dict[str, Any]]) -> list[list[str]]:
    def x(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}x"

    rows = []
    for p in points:
        standby = f" ({fmt(p['standby_cores'], '.3f')})" if p["standby_cores"] else ""
        checkpoints = (
            f"{p['checkpoints']}, {fmt(p['checkpoint_bytes'], ',d')} B, "
            f"{fmt(p['checkpoint_export_ms_mean'])}"
            if p["checkpoint_bytes"] is not None
            else "-"
        )
        rows.append(
            [
                str(p["slots"]),
                p["arm"],
                f"{p['missed']} / {p['evaluations']}",
                f"{fmt(p['tick_ms_p50'])} / {fmt(p['tick_ms_p99'])}",
                fmt(p["gateway_cores"], ".3f"),
                fmt(p["strategy_cores"], ".3f") + standby,
                checkpoints,
                x(p["gateway_cores_vs_none"]),
                x(p["strategy_cores_vs_none"]),
                f"{x(p['tick_ms_p50_vs_none'])} / {x(p['tick_ms_p99_vs_none'])}",
                fmt(p["foreign_cores"], ".2f"),
            ]
        )
    return rows


STATE_HEADER = (
    "slots",
    "state bytes",
    "export (encode + sha256) ms",
    "of which sha256 ms",
    "import ms",
    "a digest check every tick: cores at a 1 s / 5 s cadence",
)


def state_rows(states: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            str(s["slots"]),
            f"{s['state_bytes']:,}",
            fmt(s["export_ms"], ".2f"),
            fmt(s["digest_only_ms"], ".3f"),
            fmt(s["import_ms"], ".2f"),
            f"{s['digest_every_tick_cores']:.4f} / {s['digest_every_tick_cores'] / 5:.4f}",
        ]
        for s in states
    ]


# -- main -------------------------------------------------------------------------------------


def findings(kills: list[dict[str, Any]], cost: list[dict[str, Any]]) -> list[str]:
    """One line per mode and per slot count: the numbers the docs quote."""
    lines = []
    for r in kills:
        lines.append(
            f"kills, {r['mode']}: {r['failovers']} failovers of {r['kills']} kills, missed "
            f"{fmt(r['missed_per_kill_mean'])} per kill (max {fmt(r['missed_per_kill_max'], 'd')})"
            f", take-over p50 {fmt(r['takeover_ms_p50'], '.0f')} ms (max "
            f"{fmt(r['takeover_ms_max'], '.0f')}), states {r['states']}"
        )
    for p in cost:
        if p["arm"] == "none":
            continue
        lines.append(
            f"cost, {p['slots']} slots, {p['arm']}: gateway {x_or_dash(p['gateway_cores_vs_none'])}"
            f", strategy {x_or_dash(p['strategy_cores_vs_none'])}, tick p99 "
            f"{x_or_dash(p['tick_ms_p99_vs_none'])} of none"
        )
    return lines


def x_or_dash(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.standby",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument(
        "what",
        choices=["all", "kills", "cost"],
        nargs="?",
        default="all",
        help="kills, cost, or both (default)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 3 kills per mode, 16 slots only, 5-tick windows (~2 minutes)",
    )
    p.add_argument("--kills", type=int, help=f"kills per mode ({DEFAULT_KILLS}; quick 3)")
    p.add_argument(
        "--modes",
        nargs="+",
        choices=KILL_MODES,
        default=list(KILL_MODES),
        help="kills: the modes (default: all three)",
    )
    p.add_argument(
        "--spread-ticks",
        type=int,
        default=3,
        help="kills: once the previous failover is over, each kill lets 0 .. this - 1 ticks "
        "pass (random), then comes at its moment of the tick (3)",
    )
    p.add_argument(
        "--kill-slots",
        type=int,
        default=REFERENCE_SLOTS,
        help=f"kills: slots ({REFERENCE_SLOTS}: the reference 8 markets; else made-up markets)",
    )
    p.add_argument(
        "--slots",
        type=int,
        nargs="+",
        help=f"cost: slot counts ({' '.join(map(str, DEFAULT_SLOTS))}; quick 16)",
    )
    p.add_argument(
        "--arms",
        nargs="+",
        choices=list(ARMS),
        help=f"cost: the arms, none first ({' '.join(DEFAULT_ARMS)})",
    )
    p.add_argument("--ticks", type=int, help=f"cost: ticks per window ({DEFAULT_TICKS}; quick 5)")
    p.add_argument("--warm-ticks", type=int, default=3, help="cost: ticks before the window (3)")
    p.add_argument("--seed", type=int, default=1, help="seed of the kill moments (1)")
    p.add_argument("--out", type=Path, help=f"JSON results (default {DEFAULT_OUT})")
    p.add_argument("--workdir", type=Path, help="keep ledgers and logs here (default: temp)")
    return p


async def _run(
    args: argparse.Namespace, workdir: Path, progress: Progress
) -> dict[str, list[dict[str, Any]]]:
    quick = bool(args.quick)
    out: dict[str, list[dict[str, Any]]] = {"kills": [], "cost": [], "state": []}
    if args.what in ("all", "kills"):
        kills = args.kills if args.kills is not None else (3 if quick else DEFAULT_KILLS)
        for mode in args.modes:
            out["kills"].append(
                await kill_run(
                    mode, kills, args.kill_slots, args.spread_ticks, args.seed, workdir, progress
                )
            )
    if args.what in ("all", "cost"):
        slot_counts = args.slots or ((REFERENCE_SLOTS,) if quick else DEFAULT_SLOTS)
        arms = [ARMS[a] for a in args.arms or DEFAULT_ARMS]
        ticks = args.ticks or (5 if quick else DEFAULT_TICKS)
        out["cost"], out["state"] = await cost_run(
            slot_counts, arms, ticks, args.warm_ticks, workdir, progress
        )
    return out


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.kills is not None and args.kills < 1:
        print("bench.standby: --kills must be >= 1", file=sys.stderr)
        return 2
    try:
        results, document = run_live(
            "bench.standby",
            argv,
            args.workdir,
            lambda workdir, progress: _run(args, workdir, progress),
        )
    except BenchExit as exc:
        return exc.code
    document["strategy"] = MOMENTUM_V1
    document["cadence_s"] = CADENCE_S
    document["policy_defaults"] = {
        "mode": _DEFAULTS.mode.value,
        "checkpoint_every_ticks": _DEFAULTS.checkpoint_every_ticks,
        "checkpoints_kept": _DEFAULTS.checkpoints_kept,
        "verify_every_ticks": _DEFAULTS.verify_every_ticks,
    }
    document["arms"] = {
        a.name: {"flags": list(a.flags), "hot_standby": a.standby, "description": a.description}
        for a in ARMS.values()
    }
    if results["kills"]:
        document |= tables("kills", KILL_HEADER, kill_rows(results["kills"]))
        print("\n".join(document["kills_table"]))
        print()
    if results["cost"]:
        document |= tables("cost", COST_HEADER, cost_rows(results["cost"]))
        print("\n".join(document["cost_table"]))
        print()
    if results["state"]:
        document |= tables("state", STATE_HEADER, state_rows(results["state"]))
        print("\n".join(document["state_table"]))
        print()
    document["findings"] = findings(results["kills"], results["cost"])
    document["kills"] = results["kills"]
    document["cost"] = results["cost"]
    document["state"] = results["state"]
    print("\n".join(document["findings"]))
    return save_document(args.out or (QUICK_OUT if args.quick else DEFAULT_OUT), document)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
