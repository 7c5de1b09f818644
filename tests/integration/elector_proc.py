"""A gateway replica's elector alone, as a process of its own, for the election tests and
``bench.election``:

    python -m tests.integration.elector_proc --lease PATH --identity gw-a [--cas-rounds N ...]
    python -m tests.integration.elector_proc --kubeconfig FILE --namespace NS --identity gw-a
    python -m tests.integration.elector_proc --lease PATH --identity gw-a --commands \
        --lease-duration-ms 2000 --renew-deadline-ms 1500 --retry-period-ms 250

It prints one JSON line per change on stdout, with the machine-wide monotonic clock
(``CLOCK_MONOTONIC`` is shared by every process of the machine, so the parent can measure
across processes): ``{"event": "elected", "term": 3, "t_ms": ...}``, ``{"event": "deposed",
...}``. With ``--cas-rounds N`` it instead increments the lease's term N times by
compare-and-swap (read, write expecting the version read, retry on a conflict) and prints
``{"event": "done", "wins": N, "conflicts": K}``: the mutual exclusion test.

With ``--commands`` it reads one command a line on stdin, told by the parent when to act:
``resign`` (a planned handover: prints ``resigning`` as it starts and ``resigned`` once the
lease is written free), ``check`` (the leader said it released: read now), ``eligible``,
``fail`` (every store call refuses from now: prints ``cut`` with ``last_write_sent_ms``, the
last renewal that got through) and ``heal``. The end of stdin ends it as a crash would (no
release). The settings default to the reference ones.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path

from baton.gateway.core.leadership import LeaseRecord, Settings
from baton.gateway.election import Elector, monotonic_ms
from baton.gateway.lease import LeaseConflict, LeaseStore, LocalLease
from tests.integration.election_helpers import FaultyStore

S = Settings()  # the reference settings


def emit(**fields: object) -> None:
    sys.stdout.write(json.dumps({**fields, "t_ms": monotonic_ms()}) + "\n")
    sys.stdout.flush()


async def cas_rounds(store: LocalLease, identity: str, rounds: int, start_at_ms: int) -> None:
    await asyncio.sleep(max(0, start_at_ms - monotonic_ms()) / 1000)  # all start together
    wins = conflicts = 0
    while wins < rounds:
        current = await store.read()
        claim = LeaseRecord(identity, (current.term if current else 0) + 1, 1_000)
        try:
            if current is None:
                await store.try_acquire(claim, None)
            else:
                await store.renew(replace(claim), current.version)
            wins += 1
        except LeaseConflict:
            conflicts += 1
    emit(event="done", wins=wins, conflicts=conflicts)


async def elect(
    store: LeaseStore, identity: str, settings: Settings, *, commands: bool = False
) -> None:
    faulty = FaultyStore(store)
    elector = Elector(
        faulty,
        identity,
        settings,
        on_elected=lambda term: emit(event="elected", term=term),
        on_deposed=lambda reason: emit(event="deposed", reason=reason),
    )
    emit(event="started")
    if not commands:
        await elector.run()
        return
    running = asyncio.create_task(elector.run())
    try:
        await obey(elector, faulty)
    finally:
        running.cancel()  # stdin closed: stop as a crash would, without a release
        await asyncio.gather(running, return_exceptions=True)


async def obey(elector: Elector, store: FaultyStore) -> None:
    """Carry out the parent's commands (one a line on stdin) until stdin ends."""
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    while line := await reader.readline():
        command = line.decode().strip()
        if command == "resign":
            emit(event="resigning")
            await elector.resign()
            emit(event="resigned")
        elif command == "check":
            elector.check()
        elif command == "eligible":
            elector.set_eligible(True)
        elif command == "fail":
            store.fail()
            emit(event="cut", cut_ms=store.cut_at_ms, last_write_sent_ms=store.last_write_sent_ms)
        elif command == "heal":
            store.heal()
        else:
            emit(event="unknown", command=command)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--lease", type=Path, help="a local lease file")
    p.add_argument("--kubeconfig", type=Path, help="a Kubernetes Lease, with --namespace")
    p.add_argument("--namespace", default="default")
    p.add_argument("--identity", required=True)
    p.add_argument("--cas-rounds", type=int, default=0)
    p.add_argument("--start-at-ms", type=int, default=0, help="monotonic ms to start at")
    p.add_argument("--commands", action="store_true", help="obey commands on stdin")
    p.add_argument("--lease-duration-ms", type=int, default=S.lease_duration_ms)
    p.add_argument("--renew-deadline-ms", type=int, default=S.renew_deadline_ms)
    p.add_argument("--retry-period-ms", type=int, default=S.retry_period_ms)
    args = p.parse_args()
    settings = Settings(args.lease_duration_ms, args.renew_deadline_ms, args.retry_period_ms)
    if args.kubeconfig is not None:
        # Imported here: the Kubernetes client takes a second to import, which the local
        # lease's processes (bench.election starts dozens) need not pay.
        import kubernetes.client
        import kubernetes.config

        from baton.gateway.core.lease_rbac import DEFAULT_LEASE_NAME
        from baton.gateway.kube_lease import KubeLease

        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(args.kubeconfig), client_configuration=configuration
        )
        api = kubernetes.client.ApiClient(configuration)
        store: LeaseStore = KubeLease(api, args.namespace, DEFAULT_LEASE_NAME)
        asyncio.run(elect(store, args.identity, settings, commands=args.commands))
        return
    local = LocalLease(args.lease)
    if args.cas_rounds:
        asyncio.run(cas_rounds(local, args.identity, args.cas_rounds, args.start_at_ms))
    else:
        asyncio.run(elect(local, args.identity, settings, commands=args.commands))


if __name__ == "__main__":
    main()
