"""``python -m bench.replication``: what ledger replication costs (docs/gateway-standby.md,
"Replication"). Real SQLite files, real gRPC on loopback, no gateway: the ledger writes of
``tests/ledger_workload.py`` (every record type through the real ``record_*`` methods).

- ``batches``: at 16 and 1,000 slots, ``--ticks`` ticks each one flush: per batch, the
  leader's commit (the flush with its hook), the wire (to proto, its size, from proto) and the
  follower's ``apply``; then the same ticks with a ``Replicator`` served on loopback and a
  ``Follower``: the time from the flush's return to the follower's acknowledgement
  (``wait_acked``), which is what a fill waits before it is released.
- ``snapshot``: a ledger of ``--snapshot-ticks`` ticks of 1,000 slots: its rows, the image's
  size, the time to take it (``serialize`` on a connection of its own) and to install it
  (write, sync, check, rename).

Prints the figures and writes them to ``bench/results/replication.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from baton.gateway.core.replication import FollowerSettings, LedgerBatch
from baton.gateway.follower import Follower
from baton.gateway.ledger import Ledger, install_snapshot, snapshot_ledger
from baton.gateway.replication import (
    Replicator,
    add_replication_servicer,
    batch_from_proto,
    batch_to_proto,
)
from baton.v1 import replication_pb2 as pb
from tests.ledger_workload import slot_ids, start_run, tables, tick

OUT = Path(__file__).parent / "results" / "replication.json"


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


def batches(workdir: Path, slots: int, ticks: int) -> dict[str, Any]:
    ids = slot_ids(slots)
    seen: list[LedgerBatch] = []
    leader = Ledger(workdir / f"leader-{slots}.sqlite", term=1, on_commit=seen.append)
    follower = Ledger(workdir / f"follower-{slots}.sqlite")
    start_run(leader, ids)
    for batch in seen:
        follower.apply(batch)
    seen.clear()
    commit, encode, decode, apply, size, rows = [], [], [], [], [], []
    for n in range(1, ticks + 1):
        tick(leader, n, ids, flush=False)
        t0 = time.perf_counter()
        leader.flush()
        commit.append(time.perf_counter() - t0)
        (batch,) = seen
        seen.clear()
        t0 = time.perf_counter()
        wire = batch_to_proto(batch).SerializeToString()
        encode.append(time.perf_counter() - t0)
        size.append(len(wire))
        rows.append(batch.rows)
        t0 = time.perf_counter()
        received = batch_from_proto(pb.LedgerBatch.FromString(wire))
        decode.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        follower.apply(received)
        apply.append(time.perf_counter() - t0)
    leader.close()
    follower.close()
    assert tables(leader.path) == tables(follower.path)
    return {
        "slots": slots,
        "batches": ticks,
        "rows_per_batch_median": statistics.median(rows),
        "wire_bytes_median": statistics.median(size),
        "leader_flush": _ms(commit),
        "encode": _ms(encode),
        "decode": _ms(decode),
        "apply": _ms(apply),
    }


async def acked(workdir: Path, slots: int, ticks: int) -> dict[str, Any]:
    ids = slot_ids(slots)
    leader = Ledger(workdir / f"leader-acked-{slots}.sqlite", term=1)
    replicator = Replicator(leader)
    server = grpc.aio.server()
    add_replication_servicer(server, replicator)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    follower = Follower(
        workdir / f"follower-acked-{slots}.sqlite",
        f"127.0.0.1:{port}",
        "bench",
        settings=FollowerSettings(backoff_initial_s=0.01, backoff_max_s=0.1),
    )
    task = asyncio.create_task(follower.run())
    try:
        start_run(leader, ids)
        assert await replicator.wait_acked(replicator.head, 10.0)
        waits = []
        for n in range(1, ticks + 1):
            tick(leader, n, ids)
            t0 = time.perf_counter()
            assert await replicator.wait_acked(replicator.head, 10.0)
            waits.append(time.perf_counter() - t0)
        return {"slots": slots, "batches": ticks, "flush_to_ack": _ms(waits)}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        follower.close()
        await server.stop(None)
        leader.close()


def snapshot(workdir: Path, ticks: int) -> dict[str, Any]:
    ids = slot_ids(1000)
    path = workdir / "snapshot-leader.sqlite"
    with Ledger(path, term=1) as led:
        start_run(led, ids)
        for n in range(1, ticks + 1):
            tick(led, n, ids)
    rows = sum(len(r) for r in tables(path).values())
    t0 = time.perf_counter()
    at, image = snapshot_ledger(path)
    took = time.perf_counter() - t0
    target = workdir / "snapshot-follower.sqlite"
    Ledger(target).close()
    t0 = time.perf_counter()
    installed = install_snapshot(target, image, keep_as=None)
    install = time.perf_counter() - t0
    assert installed == at
    return {
        "slots": 1000,
        "ticks": ticks,
        "rows": rows,
        "image_bytes": len(image),
        "take_ms": round(took * 1000, 1),
        "install_ms": round(install * 1000, 1),
        "chunks_of_1MiB": -(-len(image) // (1024 * 1024)),
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.replication")
    p.add_argument("--ticks", type=int, default=200)
    p.add_argument("--snapshot-ticks", type=int, default=100)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        result = {
            "batches": [batches(workdir, s, args.ticks) for s in (16, 1000)],
            "acked": [asyncio.run(acked(workdir, s, args.ticks)) for s in (16, 1000)],
            "snapshot": snapshot(workdir, args.snapshot_ticks),
        }
    text = json.dumps(result, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
