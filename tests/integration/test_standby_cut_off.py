"""A standby cut off from a live leader is no candidate (core/eligibility.py): two replicas
with ledgers of their own, the standby's replication stream through a TCP proxy the test cuts.

While the leader renews the lease behind a broken stream it goes on committing (and telling
strategies of fills the standby never got): the standby says so (``baton_gateway_cut_off``) and
stops being a candidate; with the stream back and the head held it is one again. Cut off when
the leader dies, it does not take over (a `leader.bootstrap` replica would).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.common import ProcessFailed, Service
from baton.demo_replicas import free_port
from baton.gateway.core.leadership import Settings
from baton.local import Processes
from tests.procs import CADENCE_S, V1, gateway_env, run_ticks, wait_until
from tests.scrape import metric, scrape
from tests.tcp_proxy import TcpProxy

S = Settings()  # the reference lease: 4 s, renew deadline 3 s, retry 0.5 s


async def test_a_standby_cut_off_from_a_live_leader_is_no_candidate_until_it_holds_the_head(
    procs: Processes, sim: Service, tmp_path: Path
) -> None:
    port = free_port()
    addr = f"127.0.0.1:{port}"
    proxy = TcpProxy("127.0.0.1", port)
    await proxy.start()

    async def replica(name: str, replicate_from: str) -> Service:
        ledger = tmp_path / f"{name}.sqlite"
        env = {
            **gateway_env(sim, ledger),
            "BATON_GATEWAY__LISTEN": addr,
            "BATON_GATEWAY__CADENCE_S": str(CADENCE_S),
            "BATON_LEADER__BACKEND": "local",
            "BATON_LEADER__IDENTITY": name,
            "BATON_LEADER__LEASE_PATH": str(tmp_path / "lease"),
            "BATON_LEADER__REPLICATE_FROM": replicate_from,
        }
        return await procs.spawn(name, ["gateway"], env=env)

    try:
        a = await replica("gw-a", addr)
        await a.wait_announced("role", "leader", timeout_s=15)
        b = await replica("gw-b", proxy.addr)
        metrics = str(b.ready["metrics_addr"])
        await procs.spawn(
            "strategy", ["strategy", "--gateway", addr, "--entrypoint", V1, "--pod-name", "pod-0"]
        )
        await run_ticks(tmp_path / "gw-a.sqlite", 3)

        def candidate() -> bool:
            return metric(metrics, "baton_gateway_candidate") == 1

        def cut_off() -> bool:
            return metric(metrics, "baton_gateway_cut_off") == 1

        await wait_until(candidate, timeout_s=15, what="gw-b caught up: a candidate")

        # Cut: the leader renews on; within the margin and a lease read the standby knows.
        await proxy.cut()
        await wait_until(cut_off, timeout_s=10, what="gw-b cut off from a live leader")
        assert not candidate()

        # Back: the stream reopens, the standby applies what it lacked and is a candidate again.
        await proxy.start()
        await wait_until(
            lambda: candidate() and not cut_off(), timeout_s=15, what="gw-b a candidate again"
        )

        # Cut again, then the leader dies: the standby must not take over from its stale copy.
        await proxy.cut()
        await wait_until(cut_off, timeout_s=10, what="gw-b cut off again")
        assert await procs.kill(a) == -9
        # Past the lease's expiry and an election's worth of reads: still nobody leads.
        wait_s = (S.lease_duration_ms + 4 * S.retry_period_ms) / 1000 + 2
        with pytest.raises(ProcessFailed, match="did not announce"):
            await b.wait_announced("role", "leader", timeout_s=wait_s)
        leader = ("baton_gateway_leader", frozenset({("replica", str(b.ready["replica"]))}))
        assert scrape(metrics)[leader] == 0  # the series exists, at 0
        assert cut_off()
        assert not candidate()
    finally:
        await proxy.close()
