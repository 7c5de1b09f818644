"""A standby's ledger follower alone, as a process of its own, for the replication tests:

    python -m tests.integration.follower_proc --ledger PATH --leader HOST:PORT --replica gw-b

It prints one JSON line on stdout at start (``{"event": "started", "position": N}``) and one
whenever its ledger's position or its caught-up state changes (``{"event": "position",
"position": N, "caught_up": true, "snapshots": 0}``), so the parent waits on lines, not time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from baton.gateway.core.replication import FollowerSettings
from baton.gateway.follower import Follower

SETTINGS = FollowerSettings(connect_timeout_s=1.0, backoff_initial_s=0.05, backoff_max_s=0.5)


def emit(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def main(ledger: str, leader: str, replica: str) -> None:
    follower = Follower(ledger, leader, replica, settings=SETTINGS)
    emit(event="started", position=follower.position)
    task = asyncio.create_task(follower.run())
    seen = (follower.position, follower.caught_up)
    try:
        while True:
            # Woken by every commit; the bound only makes it notice a change of caught_up.
            await follower.wait_position(seen[0] + 1, within_s=0.2)
            now = (follower.position, follower.caught_up)
            if now != seen:
                seen = now
                emit(
                    event="position",
                    position=now[0],
                    caught_up=now[1],
                    snapshots=follower.snapshots_installed,
                )
    finally:
        task.cancel()
        follower.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--leader", required=True)
    parser.add_argument("--replica", required=True)
    args = parser.parse_args()
    asyncio.run(main(args.ledger, args.leader, args.replica))
