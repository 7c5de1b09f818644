"""``baton handoff``, ``baton instances``, ``baton retire`` and ``baton gateway handover``: drive
the gateway's control service by hand."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid

from baton import wire
from baton.control.client import (
    TERMINAL_PHASES,
    ControlClient,
    ControlError,
    ledger_line,
    role_name,
    step_line,
    summary_line,
)
from baton.model import HandoffPolicy
from baton.v1 import control_pb2 as ctl


def _handoff_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="baton handoff",
        description="Promote an attached instance: move the ACTIVE instance's state into it "
        "and flip between two ticks. Exit 0 when the handoff completed, 1 otherwise.",
    )
    p.add_argument("--gateway", required=True, help="gateway HOST:PORT")
    p.add_argument("--to", required=True, help="instance id to promote (see `baton instances`)")
    # Unset flags are left out of the request: the gateway applies its defaults (the model's).
    d = HandoffPolicy()
    p.add_argument(
        "--shadow-ticks",
        type=int,
        help="whole live ticks green shadows, its decisions compared, before the flip "
        f"(default {d.shadow_ticks})",
    )
    p.add_argument(
        "--bake-s", type=float, help=f"bake window after the flip (default {d.bake_ms / 1000:g})"
    )
    p.add_argument(
        "--max-divergence", type=int, help="abort past this many differing decisions (no limit)"
    )
    p.add_argument(
        "--max-bake-faults",
        type=int,
        help=f"green faults tolerated inside the bake window (default {d.max_bake_faults})",
    )
    p.add_argument("--no-auto-rollback", action="store_true")
    p.add_argument(
        "--step-timeout-s",
        type=float,
        help=f"each step before the flip must end in this (default {d.step_timeout_ms / 1000:g})",
    )
    p.add_argument("--timeout-s", type=float, default=600.0, help="give up watching after this")
    p.add_argument(
        "--json",
        action="store_true",
        help="print the final status as one JSON object on stdout (the steps go to stderr)",
    )
    return p


def status_to_json(status: ctl.HandoffStatus) -> dict[str, object]:
    h = wire.handoff_status_from_proto(status)
    return {
        "handoff_id": h.handoff_id,
        "from_version": h.from_version,
        "to_version": h.to_version,
        "result": h.phase.value,
        "message": h.message,
        "pause_ms": h.pause_ms,
        "missed": h.missed,
        "state_bytes": h.state_bytes,
        "transfer_ms": h.transfer_ms,
        "compared": h.compared,
        "divergences": h.divergences,
        "epoch": h.epoch,
    }


async def _handoff(args: argparse.Namespace) -> int:
    policy = ctl.HandoffPolicy()
    # Only the flags given: presence on the wire says "this value", absence "your default".
    for flag in ("shadow_ticks", "bake_s", "max_divergence", "max_bake_faults", "step_timeout_s"):
        value = getattr(args, flag)
        if value is not None:
            setattr(policy, flag, value)
    if args.no_auto_rollback:
        policy.no_auto_rollback = True
    async with ControlClient(args.gateway) as client:
        status = await client.promote(args.to, policy, request_id=uuid.uuid4().hex)
        print(step_line(status), file=sys.stderr)

        async def follow() -> ctl.HandoffStatus:
            last = status
            async for update in client.watch(status.handoff_id):
                if len(update.steps) != len(last.steps) or update.phase != last.phase:
                    print(step_line(update), file=sys.stderr)
                last = update
                if update.phase in TERMINAL_PHASES:
                    break
            return last

        async with asyncio.timeout(args.timeout_s):
            final = await follow()
    if args.json:
        print(json.dumps(status_to_json(final), indent=2))
    else:
        print(summary_line(final))
    return 0 if final.phase == ctl.HANDOFF_PHASE_COMPLETED else 1


def instances_to_json(response: ctl.ListInstancesResponse) -> dict[str, object]:
    ledger: dict[str, object] | None = None
    if response.HasField("ledger"):
        h = response.ledger
        ledger = {
            "ok": h.ok,
            "pending_rows": h.pending_rows,
            "discarded_rows": h.discarded_rows,
            "failed_flushes": h.failed_flushes,
            "last_error": h.last_error,
            "last_ok_flush_ms": h.last_ok_flush_ms or None,
        }
    return {
        "epoch": response.epoch,
        "active_instance_id": response.active_instance_id or None,
        "ledger": ledger,
        "strategies": [
            {
                "name": s.name,
                "epoch": s.epoch,
                "active_instance_id": s.active_instance_id or None,
                "slots": list(s.slot_ids),
                "stake": s.stake,
                "handoff": s.current_handoff.handoff_id if s.HasField("current_handoff") else None,
                "standby": {
                    "mode": s.standby.mode or None,
                    "standby_instance_id": s.standby.standby_instance_id or None,
                    "standby_phase": s.standby.standby_phase or None,
                    "last_checkpoint_ms": s.standby.last_checkpoint_ms or None,
                    "last_checkpoint_bytes": s.standby.last_checkpoint_bytes,
                    "divergences": s.standby.divergences,
                    "recovering_into": s.standby.recovering_into or None,
                    "failovers": s.standby.failovers,
                },
            }
            for s in response.strategies
        ],
        "instances": [
            {
                "instance_id": i.instance_id,
                "role": role_name(i.role),
                "strategy": i.strategy,
                "version": i.version,
                "state_schema": i.state_schema,
                "pod_name": i.pod_name,
            }
            for i in response.instances
        ],
    }


async def _instances(address: str, *, as_json: bool) -> int:
    async with ControlClient(address) as client:
        response = await client.list_instances()
    if as_json:
        print(json.dumps(instances_to_json(response), indent=2))
        return 0
    for s in response.strategies:  # the book: one line per strategy
        print(
            f"strategy {s.name}: epoch {s.epoch}, active {s.active_instance_id or '-'}, "
            f"{len(s.slot_ids)} slots, stake {s.stake:g}"
            + (f", handoff {s.current_handoff.handoff_id}" if s.HasField("current_handoff") else "")
            + _standby_words(s.standby)
        )
    if not response.strategies:  # a gateway older than the book
        print(f"epoch {response.epoch}, active {response.active_instance_id or '-'}")
    print(ledger_line(response, now_ms=time.time_ns() // 1_000_000))
    for i in response.instances:
        print(
            f"{i.instance_id:<28} {role_name(i.role):<9} {i.strategy}/{i.version} "
            f"schema {i.state_schema}  pod {i.pod_name}"
        )
    return 0


def _standby_words(s: ctl.StandbyStatus) -> str:
    """``, standby hot: i3-pod following, checkpoint 2.1 KB`` (nothing from an older gateway)."""
    if not s.mode:
        return ""
    words = [f"standby {s.mode}"]
    if s.standby_instance_id:
        words.append(f"{s.standby_instance_id} {s.standby_phase}")
    elif s.mode == "hot":
        words.append("no standby yet")
    if s.recovering_into:
        words.append(f"recovering into {s.recovering_into}")
    if s.last_checkpoint_id:
        words.append(f"checkpoint {s.last_checkpoint_bytes / 1024:.1f} KB")
    if s.divergences:
        words.append(f"{s.divergences} divergence{'s' if s.divergences != 1 else ''}")
    if s.failovers:
        words.append(f"{s.failovers} failover{'s' if s.failovers != 1 else ''}")
    return ", " + ", ".join(words)


def handoff_main(argv: list[str]) -> int:
    args = _handoff_parser().parse_args(argv)
    try:
        return asyncio.run(_handoff(args))
    except ControlError as exc:
        print(f"baton handoff: {exc}", file=sys.stderr)
        return 2
    except TimeoutError:
        print(f"baton handoff: still running after {args.timeout_s}s", file=sys.stderr)
        return 1


def instances_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="baton instances", description="List attached instances.")
    p.add_argument("--gateway", required=True, help="gateway HOST:PORT")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = p.parse_args(argv)
    try:
        return asyncio.run(_instances(args.gateway, as_json=args.json))
    except ControlError as exc:
        print(f"baton instances: {exc}", file=sys.stderr)
        return 2


async def _retire(address: str, name: str) -> int:
    async with ControlClient(address) as client:
        retired = await client.retire(name)
    print(
        f"strategy {retired.name} retired from the book: its {len(retired.slot_ids)} slots are "
        f"no longer scheduled for it (epoch {retired.epoch}); its ledger rows stay"
    )
    return 0


def retire_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="baton retire",
        description="Take a strategy out of a gateway's book: its slots are no longer "
        "scheduled for it (refused while an instance of it is attached).",
    )
    p.add_argument("--gateway", required=True, help="gateway HOST:PORT")
    p.add_argument("name", help="the strategy's name")
    args = p.parse_args(argv)
    try:
        return asyncio.run(_retire(args.gateway, args.name))
    except ControlError as exc:
        print(f"baton retire: {exc}", file=sys.stderr)
        return 2


def handover_to_json(response: ctl.HandoverResponse) -> dict[str, object]:
    return {
        "from": response.from_replica,
        "term": response.term,
        "last_tick_ms": response.last_tick_ms,
        "asked_ms": response.asked_ms,
        "released_ms": response.released_ms,
        "stop_ms": response.released_ms - response.asked_ms,
        "to": response.to_replica or None,
        "new_term": response.new_term or None,
    }


def handover_line(response: ctl.HandoverResponse) -> str:
    """One line: who handed over, when, and to whom if it was seen."""
    line = (
        f"{response.from_replica} handed over term {response.term} after its tick of "
        f"{response.last_tick_ms} ms; lease released "
        f"{response.released_ms - response.asked_ms} ms after the request; "
    )
    if response.to_replica:
        return line + f"{response.to_replica} leads term {response.new_term}"
    return line + "the next leader was not seen yet (it takes the lease at its next read)"


async def _handover(address: str, reason: str, timeout_s: float, *, as_json: bool) -> int:
    async with ControlClient(address, timeout_s=timeout_s) as client:
        response = await client.handover(reason)
    print(json.dumps(handover_to_json(response), indent=2) if as_json else handover_line(response))
    return 0


def gateway_handover_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="baton gateway handover",
        description="Ask the leader gateway replica to hand over at its next tick boundary "
        "(0 missed evaluations): it writes its last tick, closes its port, releases the lease "
        "and exits 0; the other replica leads the next term. Exit 0 once the lease is "
        "released, 1 when refused (not a replica, not the leader, a handover already under "
        "way) or not done within --timeout.",
    )
    p.add_argument("--gateway", required=True, help="the leader's HOST:PORT")
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="give up after this many seconds (default: %(default)g; the handover waits for "
        "the next tick and its deadline: up to two cadences)",
    )
    p.add_argument("--reason", default="", help="logged by the gateway (e.g. preStop)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = p.parse_args(argv)
    try:
        return asyncio.run(_handover(args.gateway, args.reason, args.timeout, as_json=args.json))
    except ControlError as exc:
        print(f"baton gateway handover: {exc}", file=sys.stderr)
        return 1
