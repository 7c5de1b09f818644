"""``python -m bench.election``: failover time against the Lease settings (issue 15,
docs/gateway-standby.md). Real processes on one machine: two gateway replicas' electors, one
process each (``tests.integration.elector_proc``, the election tests' child), on one
``LocalLease`` file; every moment is read on ``CLOCK_MONOTONIC``, which all processes of the
machine share.

Per setting (lease duration / renew deadline / retry period), ``reps`` rounds of three
measurements, each on the pair the round before left (the roles alternate):

- **planned**: the leader resigns (``Elector.resign()``: it stops, writes the lease free) and
  says so to the follower, which reads at once (``check()``; here the parent relays it, as the
  replication stream will): ms from the start of ``resign()`` to the follower leading.
- **store fails**: every lease call of the leader refuses from a moment on (the cut, at a random
  moment of its retry period): ms from the cut to the leader stopping (its renew deadline after
  its last renewal), to the follower being elected (a lease duration after it saw that
  renewal), and the margin between the two, during which nobody executes (the safety margin:
  at least lease - renew deadline).
- **SIGKILL**: the leader process is SIGKILLed at a random moment of its retry period: ms from
  the kill to the follower being elected; a new process takes the dead one's place.

Each setting promises a failover bound, ``lease + retry`` (plus a store call): a follower sees
the leader's last write within one retry period and waits one lease duration from then. The
table gives median and max per measurement, the bound, and each median as a ratio to the
reference settings' of the same run.

Prints the tables and writes every sample to ``bench/results/election.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baton.gateway.core.leadership import Settings
from baton.gateway.election import monotonic_ms
from bench.harness import REPO_ROOT, BenchError
from bench.live import BenchExit, Progress, fmt, run_live, save_document, tables

DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "election.json"
QUICK_OUT = REPO_ROOT / "bench" / "results" / "election-quick.json"
CHILD = (sys.executable, "-m", "tests.integration.elector_proc", "--commands")
#: How late past its bound a change may come before the run fails (a process start, a loaded
#: machine): the bound is checked in the results, this only ends a run that is stuck.
STUCK_S = 10.0
#: After a change, the follower reads the new lease within a retry period; half a period more
#: is room for a loaded machine's late wake-up.
SETTLE_RETRIES = 1.5


@dataclass(frozen=True, slots=True)
class Setup:
    """One set of Lease settings, and how many rounds it gets (a 15 s lease takes ~40 s a
    round: fewer)."""

    name: str
    settings: Settings
    reps: int
    description: str

    @property
    def label(self) -> str:
        s = self.settings
        return "/".join(
            f"{ms / 1000:g}" for ms in (s.lease_duration_ms, s.renew_deadline_ms, s.retry_period_ms)
        )


REFERENCE = "reference"
SETUPS = {
    s.name: s
    for s in (
        Setup(REFERENCE, Settings(4_000, 3_000, 500), 5, "Baton's defaults, for a 5 s cadence"),
        Setup("fast", Settings(2_000, 1_500, 250), 5, "half the reference"),
        Setup(
            "client-go", Settings(15_000, 10_000, 2_000), 2, "client-go leaderelection's defaults"
        ),
    )
}


@dataclass
class Samples:
    """What one setting measured, ms each."""

    planned: list[int] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)  # store fails: cut -> the leader stops
    elected: list[int] = field(default_factory=list)  # store fails: cut -> the other elected
    margin: list[int] = field(default_factory=list)  # store fails: stopped -> elected
    # Store fails: the leader's stop after its last renewal got through (<= renew deadline).
    stopped_after_renewal: list[int] = field(default_factory=list)


# -- the processes --------------------------------------------------------------------------------


class Replica:
    """One elector process: its commands in, its events out (with their monotonic ms)."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name=f"read-{name}")

    @classmethod
    async def start(cls, name: str, lease: Path, settings: Settings, log: Path) -> Replica:
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                *CHILD,
                *("--lease", str(lease), "--identity", name),
                *("--lease-duration-ms", str(settings.lease_duration_ms)),
                *("--renew-deadline-ms", str(settings.renew_deadline_ms)),
                *("--retry-period-ms", str(settings.retry_period_ms)),
                cwd=REPO_ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        replica = cls(name, proc)
        await replica.wait("started", 0, timeout_s=STUCK_S + 20)  # a cold import on a busy box
        return replica

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.events.append(json.loads(line))
            self._changed.set()
        self._changed.set()

    def mark(self) -> int:
        """Where the events stand now: ``wait`` looks only at the ones after."""
        return len(self.events)

    async def wait(self, event: str, since: int, *, timeout_s: float) -> dict[str, Any]:
        """The first ``event`` after ``since`` (bounded; a process that died fails it)."""
        async with asyncio.timeout(timeout_s):
            while True:
                for e in self.events[since:]:
                    if e["event"] == event:
                        return e
                if self._reader.done():
                    raise BenchError(f"{self.name} exited ({self.proc.returncode}) before {event}")
                self._changed.clear()
                await self._changed.wait()

    def tell(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{command}\n".encode())

    def kill(self) -> int:
        """SIGKILL; the moment it was sent."""
        killed = monotonic_ms()
        self.proc.send_signal(signal.SIGKILL)
        return killed

    async def close(self) -> None:
        """End stdin (the child stops as a crash would), then reap it; bounded."""
        if self.proc.returncode is None and self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            async with asyncio.timeout(5):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        await asyncio.gather(self._reader, return_exceptions=True)


# -- one setting ----------------------------------------------------------------------------------


async def settle(settings: Settings) -> None:
    """Let the follower read the lease as it now is. Its reads come every retry period; nothing
    reports one, so this waits one and a half (a scenario's pace, not a synchronisation)."""
    await asyncio.sleep(SETTLE_RETRIES * settings.retry_period_ms / 1000)


async def run_setup(
    setup: Setup, reps: int, workdir: Path, rng: random.Random, progress: Progress
) -> Samples:
    s = setup.settings
    bound_s = s.failover_bound_ms / 1000 + STUCK_S
    lease = workdir / f"{setup.name}.lease"
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = 0

    async def new_replica() -> Replica:
        nonlocal started
        started += 1
        name = f"{setup.name}-{started}"
        return await Replica.start(name, lease, s, logs / f"{name}.log")

    samples = Samples()
    everyone: list[Replica] = []
    try:
        leader = await new_replica()
        everyone.append(leader)
        await leader.wait("elected", 0, timeout_s=bound_s)
        follower = await new_replica()
        everyone.append(follower)
        await settle(s)
        for rep in range(reps):
            # Planned: resign, relay "released" to the follower.
            at, fat = leader.mark(), follower.mark()
            leader.tell("resign")
            resigning = await leader.wait("resigning", at, timeout_s=bound_s)
            await leader.wait("resigned", at, timeout_s=bound_s)
            follower.tell("check")
            elected = await follower.wait("elected", fat, timeout_s=bound_s)
            samples.planned.append(elected["t_ms"] - resigning["t_ms"])
            leader.tell("eligible")
            leader, follower = follower, leader
            await settle(s)

            # The leader's store refuses from the cut on, at a random moment of its renewal
            # cycle (the pace above would otherwise cut at the same moment every round).
            await asyncio.sleep(rng.random() * s.retry_period_ms / 1000)
            at, fat = leader.mark(), follower.mark()
            leader.tell("fail")
            cut = await leader.wait("cut", at, timeout_s=bound_s)
            deposed = await leader.wait("deposed", at, timeout_s=bound_s)
            elected = await follower.wait("elected", fat, timeout_s=bound_s)
            samples.stopped.append(deposed["t_ms"] - cut["cut_ms"])
            samples.elected.append(elected["t_ms"] - cut["cut_ms"])
            samples.margin.append(elected["t_ms"] - deposed["t_ms"])
            if cut["last_write_sent_ms"] is not None:
                samples.stopped_after_renewal.append(deposed["t_ms"] - cut["last_write_sent_ms"])
            leader.tell("heal")
            leader, follower = follower, leader
            await settle(s)

            # SIGKILL at a random moment of the leader's retry period.
            await asyncio.sleep(rng.random() * s.retry_period_ms / 1000)
            fat = follower.mark()
            killed = leader.kill()
            elected = await follower.wait("elected", fat, timeout_s=bound_s)
            samples.killed.append(elected["t_ms"] - killed)
            await leader.close()
            leader, follower = follower, await new_replica()
            everyone.append(follower)
            await settle(s)
            progress(
                f"{setup.name} ({setup.label} s) {rep + 1}/{reps}: planned "
                f"{samples.planned[-1]} ms; store fails: stopped {samples.stopped[-1]}, other "
                f"elected {samples.elected[-1]}, margin {samples.margin[-1]} ms; SIGKILL: "
                f"elected {samples.killed[-1]} ms"
            )
    finally:
        for r in everyone:
            await r.close()
    return samples


# -- figures (pure) -------------------------------------------------------------------------------


def median(values: Sequence[int]) -> float | None:
    """
    >>> median([3, 1, 2]), median([])
    (2, None)
    """
    return statistics.median(values) if values else None


def ratio(value: float | None, reference: float | None) -> float | None:
    """
    >>> ratio(9, 3), ratio(None, 3), ratio(1, 0)
    (3.0, None, None)
    """
    if value is None or not reference:
        return None
    return value / reference


def summary(setup: Setup, samples: Samples) -> dict[str, Any]:
    """One setting's figures: per measurement median, max (min for the margin, the safety
    figure), and what the settings promise."""
    s = setup.settings
    out: dict[str, Any] = {
        "setting": setup.name,
        "description": setup.description,
        "lease_duration_ms": s.lease_duration_ms,
        "renew_deadline_ms": s.renew_deadline_ms,
        "retry_period_ms": s.retry_period_ms,
        "bound_ms": s.failover_bound_ms,
        "margin_promised_ms": s.lease_duration_ms - s.renew_deadline_ms,
        "reps": len(samples.killed),
    }
    for name in ("planned", "killed", "stopped", "elected", "margin", "stopped_after_renewal"):
        values: list[int] = getattr(samples, name)
        out[name] = {
            "median_ms": median(values),
            "max_ms": max(values) if values else None,
            "min_ms": min(values) if values else None,
            "samples_ms": values,
        }
    # The bound is the settings' claim: how many SIGKILL take-overs went past it (a store call
    # and a loaded machine's wake-up are outside it).
    out["killed_over_bound"] = sum(1 for v in samples.killed if v > s.failover_bound_ms)
    out["margin_under_promise"] = sum(
        1 for v in samples.margin if v < s.lease_duration_ms - s.renew_deadline_ms
    )
    return out


def with_ratios(summaries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each summary with its medians as ratios to the reference setting's (same run)."""
    ref = next((x for x in summaries if x["setting"] == REFERENCE), None)
    out = []
    for x in summaries:
        ratios = {
            name: ratio(x[name]["median_ms"], ref[name]["median_ms"] if ref else None)
            for name in ("planned", "killed", "stopped", "elected", "margin")
        }
        out.append({**x, "ratio_to_reference": ratios})
    return out


HEADER = [
    "setting",
    "lease / renew / retry s",
    "reps",
    "bound (lease + retry) ms",
    "planned: resign -> other leading ms med / max",
    "SIGKILL -> other elected ms med / max",
    "store fails: leader stops ms med / max",
    "store fails: other elected ms med / max",
    "margin ms min / med (promised)",
]
RATIO_HEADER = [
    "setting",
    "planned",
    "SIGKILL -> elected",
    "store fails: stops",
    "store fails: elected",
    "margin",
]


def _pair(figure: dict[str, Any], first: str = "median_ms", second: str = "max_ms") -> str:
    return f"{fmt(figure[first], '.0f')} / {fmt(figure[second], '.0f')}"


def rows(summaries: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            x["setting"],
            "/".join(
                f"{x[k] / 1000:g}"
                for k in ("lease_duration_ms", "renew_deadline_ms", "retry_period_ms")
            ),
            str(x["reps"]),
            str(x["bound_ms"]),
            _pair(x["planned"]),
            _pair(x["killed"]),
            _pair(x["stopped"]),
            _pair(x["elected"]),
            f"{_pair(x['margin'], 'min_ms', 'median_ms')} ({x['margin_promised_ms']})",
        ]
        for x in summaries
    ]


def _times(r: float | None) -> str:
    """
    >>> _times(1.234), _times(None)
    ('1.23x', '-')
    """
    return "-" if r is None else f"{r:.2f}x"


def ratio_rows(summaries: Sequence[dict[str, Any]]) -> list[list[str]]:
    names = ("planned", "killed", "stopped", "elected", "margin")
    return [[x["setting"], *(_times(x["ratio_to_reference"][n]) for n in names)] for x in summaries]


# -- main -----------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.election",
        description="Leader election: failover time against the Lease settings.",
    )
    p.add_argument("--quick", action="store_true", help="one round per setting (about a minute)")
    p.add_argument(
        "--only",
        choices=list(SETUPS),
        action="append",
        help="run only this setting (repeatable; default all; ratios need the reference)",
    )
    p.add_argument(
        "--reps",
        type=int,
        help="rounds per setting (default: reference 5, fast 5, client-go 2: ~3 minutes; quick 1)",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the kill moments (default 1)")
    p.add_argument("--out", type=Path, help=f"JSON results (default {DEFAULT_OUT})")
    p.add_argument("--workdir", type=Path, help="keep the lease files and the children's logs")
    return p


async def _run(args: argparse.Namespace, workdir: Path, progress: Progress) -> list[dict[str, Any]]:
    rng = random.Random(args.seed)
    out = []
    for name in args.only or list(SETUPS):
        setup = SETUPS[name]
        reps = args.reps or (1 if args.quick else setup.reps)
        progress(f"{name}: {reps} round(s), bound {setup.settings.failover_bound_ms} ms")
        out.append(summary(setup, await run_setup(setup, reps, workdir, rng, progress)))
    return with_ratios(out)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.reps is not None and args.reps < 1:
        print("bench.election: --reps must be >= 1", file=sys.stderr)
        return 2
    try:
        summaries, document = run_live(
            "bench.election", argv, args.workdir, lambda w, p: _run(args, w, p)
        )
    except BenchExit as exc:
        return exc.code
    document |= tables("election", HEADER, rows(summaries))
    document |= tables("ratio", RATIO_HEADER, ratio_rows(summaries))
    document["lease_store"] = "LocalLease (a file under flock), one elector process per replica"
    document["settings"] = summaries
    print("\n".join(document["election_table"]))
    print("\nmedians as a ratio to the reference settings' (same run):")
    print("\n".join(document["ratio_table"]))
    return save_document(args.out or (QUICK_OUT if args.quick else DEFAULT_OUT), document)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
