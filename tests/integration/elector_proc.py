"""A gateway replica's elector alone, as a process of its own, for the election tests:

    python -m tests.integration.elector_proc --lease PATH --identity gw-a [--cas-rounds N ...]
    python -m tests.integration.elector_proc --kubeconfig FILE --namespace NS --identity gw-a

It prints one JSON line per change on stdout, with the machine-wide monotonic clock
(``CLOCK_MONOTONIC`` is shared by every process of the machine, so the parent can measure
across processes): ``{"event": "elected", "term": 3, "t_ms": ...}``, ``{"event": "deposed",
...}``. With ``--cas-rounds N`` it instead increments the lease's term N times by
compare-and-swap (read, write expecting the version read, retry on a conflict) and prints
``{"event": "done", "wins": N, "conflicts": K}``: the mutual exclusion test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path

import kubernetes.client
import kubernetes.config

from baton.gateway.core.leadership import LeaseRecord, Settings
from baton.gateway.core.lease_rbac import DEFAULT_LEASE_NAME
from baton.gateway.election import Elector, monotonic_ms
from baton.gateway.kube_lease import KubeLease
from baton.gateway.lease import LeaseConflict, LeaseStore, LocalLease

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


async def elect(store: LeaseStore, identity: str, settings: Settings) -> None:
    elector = Elector(
        store,
        identity,
        settings,
        on_elected=lambda term: emit(event="elected", term=term),
        on_deposed=lambda reason: emit(event="deposed", reason=reason),
    )
    emit(event="started")
    await elector.run()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--lease", type=Path, help="a local lease file")
    p.add_argument("--kubeconfig", type=Path, help="a Kubernetes Lease, with --namespace")
    p.add_argument("--namespace", default="default")
    p.add_argument("--identity", required=True)
    p.add_argument("--cas-rounds", type=int, default=0)
    p.add_argument("--start-at-ms", type=int, default=0, help="monotonic ms to start at")
    args = p.parse_args()
    if args.kubeconfig is not None:
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(args.kubeconfig), client_configuration=configuration
        )
        api = kubernetes.client.ApiClient(configuration)
        asyncio.run(elect(KubeLease(api, args.namespace, DEFAULT_LEASE_NAME), args.identity, S))
        return
    store = LocalLease(args.lease)
    if args.cas_rounds:
        asyncio.run(cas_rounds(store, args.identity, args.cas_rounds, args.start_at_ms))
    else:
        asyncio.run(elect(store, args.identity, S))


if __name__ == "__main__":
    main()
