"""Fills and settlements reach the strategy only once the standby holds them (core/release.py,
docs/gateway-standby.md): two replicas with ledgers of their own, a strategy host that bets.

What is asserted, from the leader's /metrics and both ledgers: with the standby following,
every fill goes out ``replicated`` (none ``timed_out``) and every bet the leader wrote is in the
standby's ledger within the tick; with the standby frozen (SIGSTOP: its stream open, its acks
gone) the fills still go out, ``timed_out``, no sooner than ``ledger.release_wait_ms``; thawed,
they go out ``replicated`` again, and the two ledgers hold the same bets.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from baton.common import Service
from baton.demo_replicas import free_port
from baton.local import Processes
from tests.procs import CADENCE_S, V1, count, gateway_env, query, wait_until
from tests.scrape import metric, sample, scrape

WAIT_MS = 400  # ledger.release_wait_ms here: well inside the test cadence


def released(addr: str, how: str) -> float:
    return metric(addr, "baton_gateway_released_total", how=how)


def bets(ledger: Path) -> list[str]:
    return [str(r[0]) for r in query(ledger, "SELECT bet_id FROM bets ORDER BY bet_id")]


async def test_fills_go_out_once_the_standby_holds_them_and_never_wait_past_the_bound(
    procs: Processes, sim: Service, tmp_path: Path
) -> None:
    addr = f"127.0.0.1:{free_port()}"
    ledgers = {name: tmp_path / f"{name}.sqlite" for name in ("a", "b")}

    async def replica(name: str) -> Service:
        env = {
            **gateway_env(sim, ledgers[name]),
            "BATON_GATEWAY__LISTEN": addr,
            "BATON_GATEWAY__CADENCE_S": str(CADENCE_S),
            "BATON_LEADER__BACKEND": "local",
            "BATON_LEADER__IDENTITY": f"gw-{name}",
            "BATON_LEADER__LEASE_PATH": str(tmp_path / "lease"),
            "BATON_LEADER__REPLICATE_FROM": addr,
            "BATON_LEDGER__RELEASE_WAIT_MS": str(WAIT_MS),
        }
        return await procs.spawn(f"gw-{name}", ["gateway"], env=env)

    a = await replica("a")
    led = await a.wait_announced("role", "leader", timeout_s=15)
    metrics = str(led["metrics_addr"])
    b = await replica("b")
    await procs.spawn(
        "strategy", ["strategy", "--gateway", addr, "--entrypoint", V1, "--pod-name", "pod-0"]
    )

    # Following: fills go out replicated, none past the bound.
    await wait_until(
        lambda: released(metrics, "replicated") >= 8, timeout_s=60, what="8 fills replicated"
    )
    assert released(metrics, "timed_out") == 0
    s = scrape(metrics)
    n = sample(s, "baton_gateway_release_delay_seconds_count")
    mean_ms = 1000 * sample(s, "baton_gateway_release_delay_seconds_sum") / n
    within_25ms = sample(s, "baton_gateway_release_delay_seconds_bucket", le="0.025") / n
    print(f"\nrelease delay, standby following: mean {mean_ms:.1f} ms, {within_25ms:.0%} <= 25 ms")
    # What the strategy was told, the standby holds: every bet of the leader's ledger is in
    # the standby's once the leader's last commit is acknowledged (a tick at most).
    await wait_until(
        lambda: set(bets(ledgers["a"])) <= set(bets(ledgers["b"])),
        timeout_s=10,
        what="the standby holds the leader's bets",
    )

    # Frozen: its stream stays open, its acknowledgements stop; fills go out at the bound.
    os.kill(b.pid, signal.SIGSTOP)
    try:
        before = released(metrics, "timed_out")
        await wait_until(
            lambda: released(metrics, "timed_out") >= before + 4,
            timeout_s=30,
            what="fills told at the bound while the standby is frozen",
        )
        s = scrape(metrics)
        # Every release waited at least the bound or was acknowledged before it: the smallest
        # bucket at or above the bound holds at most the releases before the freeze.
        under = sample(s, "baton_gateway_release_delay_seconds_bucket", le="0.25")
        told = sample(s, "baton_gateway_released_total", how="replicated")
        told += sample(s, "baton_gateway_released_total", how="committed")
        assert under <= told, s
    finally:
        os.kill(b.pid, signal.SIGCONT)

    # Thawed: it catches up, and fills go out replicated again.
    again = released(metrics, "replicated")
    await wait_until(
        lambda: released(metrics, "replicated") >= again + 4, timeout_s=60, what="replicated again"
    )
    await wait_until(
        lambda: set(bets(ledgers["a"])) <= set(bets(ledgers["b"])),
        timeout_s=10,
        what="the standby holds the leader's bets again",
    )
    assert count(ledgers["a"], "SELECT count(*) FROM bets") > 0
    assert await procs.reap(a) == 0
