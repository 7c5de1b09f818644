"""Runs the scenarios with real processes on loopback: one exchange simulator per workload, one
gateway (and ledger) per scenario, one strategy host process per deployed version.

Every wait is bounded; every process started is stopped on the way out, failure or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baton.common import ProcessFailed, Service
from baton.control import ControlClient, ControlError, phase_name
from baton.gateway.core.records import MISSED_OUTCOMES
from baton.gateway.report import presence_report
from baton.local import GatewayOptions, Processes, SimOptions
from baton.v1 import control_pb2 as ctl
from bench.cpu import foreign_cores, sample
from bench.stats import LedgerTick, Scenario, ScenarioResult, Swap, bucket, percentile

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_MARKETS = 8
MISSED = frozenset(o.value for o in MISSED_OUTCOMES)
# A strategy host reaped after a swap gets this long to exit after SIGTERM before SIGKILL.
REAP_TIMEOUT_S = 15.0
# A handoff's whole run (export, import, shadow, bake, drain) must end within this.
HANDOFF_TIMEOUT_S = 180.0


class BenchError(RuntimeError):
    """The benchmark could not go on (a process failed, a wait timed out)."""


@dataclass(frozen=True, slots=True)
class Workload:
    """One workload: the same for Baton's handoff and for both baselines."""

    name: str
    cadence_s: float
    v1: str  # entrypoints of the two versions the swaps alternate between
    v2: str
    strategy_config: Mapping[str, Any]
    handoffs: int
    baseline_swaps: int
    warm_ticks: int  # ticks a fresh instance needs before its state is warm (full)
    markets: tuple[str, ...] = ()  # gateway.markets; empty: the reference 8
    sim_symbols: tuple[str, ...] = ()  # the simulator's listing; empty: its reference 8
    timeframes: tuple[str, ...] = ("5m", "15m")
    shadow_ticks: int = 1
    bake_ticks: int = 2
    push_interval_s: float = 0.1
    # Simulated seconds per real second (600: a 5m candle closes every 0.5 s).
    time_scale: float = 600.0
    ready_timeout_s: float = 60.0
    description: str = ""

    @property
    def slots(self) -> int:
        return (len(self.markets) or REFERENCE_MARKETS) * len(self.timeframes)

    def policy(self, *, skip_state_transfer: bool = False) -> ctl.HandoffPolicy:
        return ctl.HandoffPolicy(
            shadow_ticks=self.shadow_ticks,
            bake_s=self.bake_ticks * self.cadence_s,
            step_timeout_s=30.0,
            skip_state_transfer=skip_state_transfer,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "slots": self.slots,
            "markets": len(self.markets) or REFERENCE_MARKETS,
            "timeframes": list(self.timeframes),
            "cadence_s": self.cadence_s,
            "v1": self.v1,
            "v2": self.v2,
            "strategy_config": dict(self.strategy_config),
            "handoffs": self.handoffs,
            "baseline_swaps": self.baseline_swaps,
            "warm_ticks": self.warm_ticks,
            "policy": {
                "shadow_ticks": self.shadow_ticks,
                "bake_s": self.bake_ticks * self.cadence_s,
            },
            "sim_time_scale": self.time_scale,
            "sim_push_interval_s": self.push_interval_s,
        }


def now_ms() -> float:
    """Wall clock in ms: the gateway stamps the ledger with the same clock."""
    return time.time_ns() / 1e6


async def start_sim(w: Workload, procs: Processes) -> Service:
    options = SimOptions(
        seed=11,
        time_scale=w.time_scale,
        push_interval_s=w.push_interval_s,
        symbols=w.sim_symbols or None,
        log_level="WARNING",
    )
    return await procs.sim(f"{w.name}-sim", options, ready_timeout_s=w.ready_timeout_s)


def gateway_options(w: Workload, ledger: Path) -> GatewayOptions:
    return GatewayOptions(
        ledger=ledger, cadence_s=w.cadence_s, timeframes=w.timeframes, markets=w.markets or None
    )


# -- ledger reads (read-only, safe while the gateway writes) ----------------------------------


@contextlib.contextmanager
def _ledger(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        yield conn
    finally:
        conn.close()


def executed_by(ledger: Path, instance_id: str) -> int:
    if not ledger.exists():
        return 0
    with _ledger(ledger) as conn:
        try:
            (n,) = conn.execute(
                "SELECT COUNT(*) FROM evaluations WHERE instance_id = ? AND outcome = 'executed'",
                (instance_id,),
            ).fetchone()
        except sqlite3.OperationalError:  # no table yet: the gateway has not migrated
            return 0
    return int(n)


def is_warm(ledger: Path, instance_id: str, slots: int, ticks: int) -> bool:
    """``instance_id`` executed ``ticks`` ticks, and its latest complete tick was decided on a
    full state for every slot: no "warming up" answer, and no slot without a live candle
    (Ballast's ring only grows with live observations)."""
    if executed_by(ledger, instance_id) < ticks * slots:
        return False
    with _ledger(ledger) as conn:
        rows = conn.execute(
            "SELECT COUNT(*), SUM(reason LIKE 'warming up%' OR reason = 'no live candle') "
            "FROM evaluations WHERE instance_id = ? AND outcome = 'executed' "
            "GROUP BY scheduled_ms ORDER BY scheduled_ms DESC LIMIT 3",
            (instance_id,),
        ).fetchall()
    complete = [int(cold or 0) for n, cold in rows if n == slots]
    return bool(complete) and complete[0] == 0


def ledger_ticks(ledger: Path) -> list[LedgerTick]:
    """Per tick and outcome: how many, and how many executed answers were made cold."""
    with _ledger(ledger) as conn:
        rows = conn.execute(
            "SELECT MAX(deadline_ms), outcome, COUNT(*), "
            "SUM(outcome = 'executed' AND reason LIKE 'warming up%') "
            "FROM evaluations GROUP BY scheduled_ms, outcome ORDER BY scheduled_ms"
        ).fetchall()
    return [LedgerTick(int(t), str(o), int(n), int(c or 0)) for t, o, n, c in rows]


async def wait_for(
    predicate: Callable[[], bool], *, timeout_s: float, what: str, poll_s: float = 0.05
) -> None:
    """Wait (bounded) for a condition another process makes true: a ledger row, a role."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s:g}s waiting for {what}")
        await asyncio.sleep(poll_s)


# -- one scenario ----------------------------------------------------------------------------


@dataclass
class _Partial:
    """A swap as measured live; the ledger's figures are added once the gateway has stopped."""

    index: int
    from_version: str
    to_version: str
    result: str
    started_ms: float
    cycle_ms: float
    status: ctl.HandoffStatus | None = None
    outage_ms: float | None = None
    message: str = ""
    foreign_cores: float | None = None


class ScenarioRun:
    """One gateway, one ledger, a blue strategy, then ``n`` swaps of one kind."""

    def __init__(
        self,
        w: Workload,
        scenario: Scenario,
        sim: Service,
        workdir: Path,
        *,
        lost_bytes: int,
        progress: Callable[[str], None],
        seed: int = 1,
    ) -> None:
        self.w = w
        self.scenario = scenario
        self.sim = sim
        self.tag = f"{w.name}-{scenario.name.lower()}"
        self.ledger = workdir / f"{self.tag}.sqlite"
        self.procs = Processes(workdir / "logs" / self.tag)
        self.lost_bytes = lost_bytes
        self.progress = progress
        # Seeded per scenario: a rerun with the same seed starts its swaps at the same phases.
        self.rng = random.Random(f"{seed}:{self.tag}")
        self._spawned = 0
        self._entrypoint_of: dict[str, str] = {}  # service name -> the entrypoint it runs
        self._env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), _pythonpath()]))}

    async def strategy(self, gateway: Service, entrypoint: str) -> Service:
        self._spawned += 1
        version = entrypoint.rpartition(":")[2].lower()
        name = f"{self.tag}-{self._spawned:03d}-{version}"
        self._entrypoint_of[name] = entrypoint
        return await self.procs.strategy(
            name,
            gateway,
            entrypoint,
            config=self.w.strategy_config,
            env=self._env,
            ready_timeout_s=self.w.ready_timeout_s,
        )

    def successor(self, blue: Service) -> str:
        """The other version's entrypoint: every swap deploys a new version (after a failed
        handoff blue still runs the old one, so the next swap tries the same move again)."""
        return self.w.v1 if self._entrypoint_of[blue.name] == self.w.v2 else self.w.v2

    async def wait_warm(self, instance: Service) -> None:
        """Until ``instance`` has executed ``warm_ticks`` ticks: its state is as big as it
        gets, so a baseline swap loses a full state, not a half-built one."""
        instance_id = instance.ready["instance_id"]
        await wait_for(
            lambda: is_warm(self.ledger, instance_id, self.w.slots, self.w.warm_ticks),
            timeout_s=self.w.warm_ticks * self.w.cadence_s * 3 + 60,
            what=f"{instance_id} to be warm ({self.w.warm_ticks} ticks, no cold answer)",
        )

    async def run(self) -> ScenarioResult:
        began = time.monotonic()
        cpu = sample()
        partials: list[_Partial] = []
        try:
            gateway = await self.procs.gateway(
                f"{self.tag}-gateway",
                self.sim,
                gateway_options(self.w, self.ledger),
                ready_timeout_s=self.w.ready_timeout_s,
            )
            async with ControlClient(gateway.ready["grpc_addr"]) as client:
                blue = await self.strategy(gateway, self.w.v1)
                await self.wait_warm(blue)
                n = self.w.handoffs if self.scenario is Scenario.BATON else self.w.baseline_swaps
                for i in range(n):
                    if not self.scenario.carries_state:
                        await self.wait_warm(blue)  # a baseline throws away a full state
                    # Deploys do not wait for a tick: start each swap at a random phase of the
                    # cadence (the ledger waits above return right after a tick's flush).
                    await asyncio.sleep(self.rng.uniform(0.0, self.w.cadence_s))
                    cpu = sample()
                    partial, blue = await self._swap(i, gateway, client, blue)
                    partial.foreign_cores = foreign_cores(cpu, sample())
                    partials.append(partial)
                    self.progress(self._describe(partial, n))
                    if self._failing(partials):
                        raise BenchError(f"{self.tag}: the last 3 swaps failed; giving up")
                # Let the last swap's new instance warm up (baselines: its cold answers are
                # counted) or run a couple of ticks (Baton: the ticks right after a handoff).
                if self.scenario is Scenario.BATON:
                    await self._run_ticks(gateway, blue, 2)
                else:
                    await self.wait_warm(blue)
            code = await self.procs.reap(gateway, timeout_s=self.w.cadence_s + 20)
            if code != 0:
                raise BenchError(f"{self.tag}: gateway exited with {code}:\n{gateway.log_tail()}")
        finally:
            await self.procs.close()
        return self._result(partials, time.monotonic() - began, foreign_cores(cpu, sample()))

    async def _run_ticks(self, gateway: Service, instance: Service, ticks: int) -> None:
        instance_id = instance.ready["instance_id"]
        target = executed_by(self.ledger, instance_id) + ticks * self.w.slots
        await wait_for(
            lambda: executed_by(self.ledger, instance_id) >= target,
            timeout_s=ticks * self.w.cadence_s * 3 + 30,
            what=f"{ticks} more ticks from {instance_id}",
        )

    @staticmethod
    def _failing(partials: list[_Partial]) -> bool:
        last = partials[-3:]
        return len(last) == 3 and all(p.result not in ("completed", "restarted") for p in last)

    def _describe(self, p: _Partial, n: int) -> str:
        text = f"{self.tag} {p.index + 1}/{n} {p.from_version}->{p.to_version}: {p.result}"
        if p.status is not None:
            s = p.status
            # The gateway sends -1 for what it did not measure (no flip: no pause).
            pause = f"{s.pause_ms:.2f} ms" if s.pause_ms >= 0 else "-"
            text += f", pause {pause}, missed {s.missed}"
            if s.state_bytes:
                transfer = f"{s.transfer_ms:.0f} ms" if s.transfer_ms >= 0 else "-"
                text += f", {s.state_bytes} B in {transfer}"
            text += f", handoff {s.finished_ms - s.started_ms} ms"
        if p.outage_ms is not None:
            text += f", outage {p.outage_ms:.0f} ms"
        if p.foreign_cores is not None and p.foreign_cores >= 0.2:
            text += f", other processes used {p.foreign_cores:.2f} cores"
        text += f", cycle {p.cycle_ms:.0f} ms"
        return text + (f" ({p.message})" if p.message else "")

    async def _swap(
        self, i: int, gateway: Service, client: ControlClient, blue: Service
    ) -> tuple[_Partial, Service]:
        if self.scenario is Scenario.STOP_RESTART:
            return await self._stop_restart(i, gateway, client, blue)
        return await self._handoff(i, gateway, client, blue)

    async def _handoff(
        self, i: int, gateway: Service, client: ControlClient, blue: Service
    ) -> tuple[_Partial, Service]:
        """Start green, promote it (with or without state transfer), wait for the end."""
        skip = self.scenario is Scenario.ROLLING
        t0 = now_ms()
        green = await self.strategy(gateway, self.successor(blue))
        partial = _Partial(
            i, blue.ready["version"], green.ready["version"], "error", t0, 0.0, message=""
        )
        try:
            started = await client.promote(
                green.ready["instance_id"], self.w.policy(skip_state_transfer=skip)
            )
            status = await asyncio.wait_for(client.wait(started.handoff_id), HANDOFF_TIMEOUT_S)
        except (ControlError, TimeoutError) as exc:
            partial.message = f"{type(exc).__name__}: {exc}"
            await self.procs.reap(green, timeout_s=REAP_TIMEOUT_S)
            partial.cycle_ms = now_ms() - t0
            return partial, blue
        partial.status = status
        partial.result = phase_name(status.phase)
        partial.message = status.message
        if status.phase == ctl.HANDOFF_PHASE_COMPLETED:
            # Blue drained and detached: this only reaps its process.
            await self.procs.reap(blue, timeout_s=REAP_TIMEOUT_S)
            blue = green
        else:
            await self.procs.reap(green, timeout_s=REAP_TIMEOUT_S)
        partial.cycle_ms = now_ms() - t0
        return partial, blue

    async def _stop_restart(
        self, i: int, gateway: Service, client: ControlClient, blue: Service
    ) -> tuple[_Partial, Service]:
        """SIGTERM blue, wait for it to exit, start the new version: with no ACTIVE instance
        left, the gateway makes it ACTIVE as it attaches, with a fresh state."""
        from_version = blue.ready["version"]
        t0 = now_ms()
        await self.procs.reap(blue, timeout_s=REAP_TIMEOUT_S)
        green = await self.strategy(gateway, self.successor(blue))
        attached = now_ms()
        green_id = green.ready["instance_id"]
        if green.ready.get("role") != "ACTIVE":
            # The gateway had not yet seen blue's stream end when green attached.
            async def is_active() -> bool:
                listed = await client.list_instances()
                return bool(listed.active_instance_id == green_id)

            deadline = time.monotonic() + 10
            while not await is_active():
                if time.monotonic() > deadline:
                    raise BenchError(f"{green_id} never became ACTIVE after blue stopped")
                await asyncio.sleep(0.05)
            attached = now_ms()
        partial = _Partial(
            i,
            from_version,
            green.ready["version"],
            "restarted",
            t0,
            cycle_ms=now_ms() - t0,
            outage_ms=attached - t0,
        )
        return partial, green

    # -- results ------------------------------------------------------------------------------

    def _result(
        self, partials: list[_Partial], wall_s: float, foreign: float | None
    ) -> ScenarioResult:
        report = presence_report(self.ledger)
        ledger_pause = {h.handoff_id: h.pause_ms_ledger for h in report.handoffs}
        before, intervals = bucket(
            ledger_ticks(self.ledger), [int(p.started_ms) for p in partials], MISSED
        )
        swaps = []
        for p, interval in zip(partials, intervals, strict=True):
            s = p.status
            completed = s is not None and s.phase == ctl.HANDOFF_PHASE_COMPLETED
            swapped = completed or p.result == "restarted"
            carried = s.state_bytes if s is not None and completed else 0
            # A baseline that swapped lost blue's whole (warm) state; Baton loses nothing: a
            # failed handoff leaves blue serving with its state.
            lost = self.lost_bytes if swapped and not self.scenario.carries_state else 0
            swaps.append(
                Swap(
                    index=p.index,
                    from_version=p.from_version,
                    to_version=p.to_version,
                    result=p.result,
                    started_ms=int(p.started_ms),
                    missed_ledger=interval.missed,
                    cold_decisions=interval.cold,
                    state_bytes_carried=carried,
                    state_bytes_lost=lost,
                    cycle_ms=round(p.cycle_ms, 3),
                    missed_status=None if s is None else s.missed,
                    pause_ms=None if s is None or not completed else round(s.pause_ms, 3),
                    pause_ms_ledger=None if s is None else ledger_pause.get(s.handoff_id),
                    transfer_ms=(
                        None
                        if s is None or self.scenario is not Scenario.BATON
                        else round(s.transfer_ms, 3)
                    ),
                    handoff_ms=None if s is None else s.finished_ms - s.started_ms,
                    outage_ms=None if p.outage_ms is None else round(p.outage_ms, 3),
                    divergences=0 if s is None else s.divergences,
                    digest_ok=(
                        None
                        if s is None or self.scenario is not Scenario.BATON
                        else bool(s.export_digest) and s.import_digest == s.export_digest
                    ),
                    missed_by_reason=interval.missed_by_reason,
                    foreign_cpu_cores=p.foreign_cores,
                    steps=()
                    if s is None
                    else tuple((st.name, st.t_ms - s.started_ms, st.detail) for st in s.steps),
                )
            )
        return ScenarioResult(
            workload=self.w.name,
            scenario=self.scenario,
            slots=self.w.slots,
            cadence_s=self.w.cadence_s,
            swaps=tuple(swaps),
            scheduled=report.scheduled,
            evaluated=report.evaluated,
            missed=report.missed,
            missed_by_reason={k: v for k, v in report.missed_by_reason.items() if v},
            missed_before_first_swap=before.missed,
            unaccounted=report.unaccounted,
            wall_s=round(wall_s, 3),
            foreign_cpu_cores=foreign,
        )


def _pythonpath() -> str:
    return os.environ.get("PYTHONPATH", "")


async def run_workload(
    w: Workload, workdir: Path, progress: Callable[[str], None], seed: int = 1
) -> list[ScenarioResult]:
    """Baton's handoffs first (their exports size the state the baselines lose), then the two
    baselines, each on a fresh gateway and ledger fed by the same simulator."""
    procs = Processes(workdir / "logs" / w.name)
    results: list[ScenarioResult] = []
    try:
        sim = await start_sim(w, procs)
        progress(f"{w.name}: simulator up ({w.slots} slots, cadence {w.cadence_s:g} s)")
        lost = 0
        for scenario in (Scenario.BATON, Scenario.STOP_RESTART, Scenario.ROLLING):
            run = ScenarioRun(
                w, scenario, sim, workdir, lost_bytes=lost, progress=progress, seed=seed
            )
            try:
                result = await run.run()
            except ProcessFailed as exc:
                raise BenchError(f"{run.tag}: {exc}") from exc
            results.append(result)
            if scenario is Scenario.BATON:
                # Blue's warm state as Baton exported it: what a baseline swap throws away.
                sizes = [
                    float(s.state_bytes_carried) for s in result.swaps if s.state_bytes_carried
                ]
                lost = round(percentile(sizes, 50) or 0)
    finally:
        await procs.close()
    return results
