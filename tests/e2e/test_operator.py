"""The operator end to end: kubectl apply StrategyVersions against a real kube-apiserver, pods
run by the local pod runner, a real gateway and simulator; the ledger proves presence.

The operator runs as a ServiceAccount user bound only to the generated Role, so these tests
also prove the RBAC rules are enough (and a missing rule fails them).
"""

from __future__ import annotations

from typing import Any

import pytest

from baton.control import ControlClient
from baton.v1 import control_pb2 as ctl
from tests.e2e.stack import V1, V2, Stack, StartStack, eventually, presence_kept, sv_yaml
from tests.procs import (
    CADENCE_S,
    SLOTS,
    count,
    evaluations,
    not_executed,
    query,
    run_ticks,
    wait_until,
)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def stack(start_stack: StartStack) -> Stack:
    return await start_stack()


async def _v1_active(s: Stack) -> dict[str, Any]:
    s.apply(sv_yaml("mom-v1", "v1", V1))
    v1 = await s.wait_phase("mom-v1", "Active")
    await run_ticks(s.ledger, 2)
    return v1


async def test_apply_v1_then_v2_hands_off_with_zero_missed(stack: Stack) -> None:
    s = stack
    v1 = await _v1_active(s)
    assert v1["status"]["active"] is True
    v1_pod = v1["status"]["pod"]

    s.apply(sv_yaml("mom-v2", "v2", V2))
    v2 = await s.wait_phase("mom-v2", "Active", "Failed")
    assert v2["status"]["phase"] == "Active", v2["status"]["message"]
    await s.wait_phase("mom-v1", "Retired")
    await s.pod_gone(v1_pod)
    # G1 across the handoff: every scheduled evaluation of every slot, executed, no hole.
    await presence_kept(s, 3)
    handoff = v2["status"]["handoff"]
    assert handoff["missed"] == 0
    assert handoff["fromVersion"] == "v1"
    assert handoff["exportDigest"] == handoff["importDigest"] != ""
    assert handoff["pauseMs"] >= 0
    # The CRD's default shadowTicks: one whole live tick of every slot compared before the flip.
    assert handoff["compared"] >= SLOTS
    assert 0 <= handoff["divergences"] <= handoff["compared"]

    rows = {line.split()[0]: line.split() for line in s.kubectl("get", "sv").splitlines()}
    assert rows["NAME"][:5] == ["NAME", "STRATEGY", "VERSION", "PHASE", "ACTIVE"]
    assert rows["mom-v1"][1:5] == ["momentum", "v1", "Retired", "false"]
    assert rows["mom-v2"][1:5] == ["momentum", "v2", "Active", "true"]

    v2_story = [reason for _, reason, _ in s.events("mom-v2")]
    assert v2_story[:3] == ["Starting", "HandoffStarted", "HandoffCompleted"], v2_story
    v1_story = [reason for _, reason, _ in s.events("mom-v1")]
    assert v1_story == ["Starting", "Activated", "Retired"], v1_story


async def test_crash_looping_green_fails_and_blue_stays_active(stack: Stack) -> None:
    s = stack
    await _v1_active(s)
    # A valid spec whose code does not import: the host exits 2 at every start.
    s.apply(
        sv_yaml("mom-v2", "v2", "baton.strategy.examples.missing:Nope", startup={"maxRestarts": 1})
    )
    v2 = await s.wait_phase("mom-v2", "Failed")
    assert "crash-looping" in v2["status"]["message"], v2["status"]["message"]
    assert "untouched" in v2["status"]["message"]
    await s.pod_gone(v2["status"]["pod"])
    v1 = await s.wait_phase("mom-v1", "Active")
    assert v1["status"]["active"] is True
    await presence_kept(s, 6)
    warnings = [(t, r) for t, r, _ in s.events("mom-v2") if t == "Warning"]
    assert warnings == [("Warning", "StartFailed")]


async def test_a_pod_the_api_server_refuses_fails_the_rollout_at_once(stack: Stack) -> None:
    """A spec the CRD accepts but the Pod's own validation refuses (requests over limits):
    the rollout fails on the first create, quoting the server, instead of retrying the create
    until startup.timeoutSeconds (60 s here) and failing without saying why."""
    s = stack
    await _v1_active(s)
    resources = {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}
    s.apply(sv_yaml("mom-v2", "v2", V2, extra={"resources": resources}))
    v2 = await s.wait_phase("mom-v2", "Failed", "Active", timeout_s=30)
    message = v2["status"]["message"]
    assert v2["status"]["phase"] == "Failed", message
    assert "the API server refused pod" in message
    assert "must be less than or equal to cpu limit" in message
    assert "the running version is untouched" in message
    assert [(t, r) for t, r, _ in s.events("mom-v2")] == [("Warning", "PodRefused")]
    v1 = await s.wait_phase("mom-v1", "Active")
    assert v1["status"]["active"] is True
    await presence_kept(s, 4)


@pytest.mark.parametrize("phase", ["Pending", "Starting", "HandingOff", "Active"])
async def test_operator_restart_in_every_phase_converges(stack: Stack, phase: str) -> None:
    s = stack
    await _v1_active(s)
    if phase == "Pending":
        # Killed before it ever saw v2: the new one must pick it up from scratch.
        await s.kill_operator()
        s.apply(sv_yaml("mom-v2", "v2", V2, handoff={"bakeSeconds": 3}))
    else:
        s.apply(sv_yaml("mom-v2", "v2", V2, handoff={"bakeSeconds": 3}))
        await s.wait_phase("mom-v2", phase, timeout_s=60)
        await s.kill_operator()
    await s.start_operator()

    v2 = await s.wait_phase("mom-v2", "Active", "Failed", timeout_s=90)
    assert v2["status"]["phase"] == "Active", v2["status"]["message"]
    v1 = await s.wait_phase("mom-v1", "Retired", timeout_s=60)
    await s.pod_gone(v1["status"]["pod"])
    await presence_kept(s, 4)
    assert v2["status"]["handoff"]["missed"] == 0


async def test_newer_version_mid_handoff_supersedes(stack: Stack) -> None:
    s = stack
    await _v1_active(s)
    # v2 shadows for many ticks before its flip: a wide window for v3 to arrive in.
    s.apply(sv_yaml("mom-v2", "v2", V2, handoff={"shadowTicks": 30}))
    await s.wait_phase("mom-v2", "HandingOff")
    s.apply(sv_yaml("mom-v3", "v2", V2))

    v2 = await s.wait_phase("mom-v2", "Superseded", "Failed", "Active", timeout_s=60)
    assert v2["status"]["phase"] == "Superseded", v2["status"]["message"]
    assert v2["status"]["supersededBy"] == "mom-v3"
    v3 = await s.wait_phase("mom-v3", "Active", "Failed", timeout_s=60)
    assert v3["status"]["phase"] == "Active", v3["status"]["message"]
    await s.wait_phase("mom-v1", "Retired")
    await s.pod_gone(v2["status"]["pod"])
    await presence_kept(s, 4)


async def test_deleting_the_active_version_is_refused_until_a_successor_takes_over(
    stack: Stack,
) -> None:
    s = stack
    v1 = await _v1_active(s)
    s.kubectl("delete", "sv", "mom-v1", "--wait=false")

    async def refused() -> bool:
        return any(r == "DeletionRefused" for _, r, _ in s.events("mom-v1"))

    await eventually(refused, timeout_s=30, what="a DeletionRefused event")
    obj = await s.sv("mom-v1")
    assert obj is not None
    assert obj["metadata"].get("deletionTimestamp")
    assert "deletion refused" in obj["status"]["message"]
    await run_ticks(s.ledger, evaluations(s.ledger) // SLOTS + 4)
    assert not_executed(s.ledger) == []  # still evaluating, nothing missed

    s.apply(sv_yaml("mom-v2", "v2", V2))
    await s.wait_phase("mom-v2", "Active")

    async def gone() -> bool:
        return await s.sv("mom-v1") is None

    await eventually(gone, timeout_s=60, what="mom-v1 deleted after v2 took over")
    await s.pod_gone(v1["status"]["pod"])
    await presence_kept(s, 6)


# -- a book of strategies on one gateway ------------------------------------------------------

REVERSION = "baton.strategy.examples.reversion_v1:ReversionV1"
REVERSION_SLOTS = ["BTC/5m", "ETH/5m", "SOL/15m"]  # a subset of the gateway's 16
REVERSION_STAKE = 2.0


def executed(s: Stack, strategy: str) -> int:
    sql = "SELECT count(*) FROM evaluations WHERE strategy = ? AND outcome = 'executed'"
    return count(s.ledger, sql, strategy)


async def ticks_of(s: Stack, strategy: str, slots: int, ticks: int) -> None:
    """``ticks`` more ticks of ``strategy``'s ``slots`` executed (bounded)."""
    target = executed(s, strategy) + ticks * slots
    await wait_until(
        lambda: executed(s, strategy) >= target,
        timeout_s=ticks * CADENCE_S + 20,
        what=f"{ticks} more executed ticks of {strategy}",
    )


async def book_presence_kept(s: Stack, slots: dict[str, int], ticks: int) -> None:
    """A few more ticks of every strategy, then stop the gateway (its last tick flushed) and
    read the record strategy by strategy: each evaluated its own slots, every scheduled
    evaluation is there (per slot, seqs contiguous from the strategy's first tick), and each
    was executed by that strategy's ACTIVE version."""
    for strategy, n in slots.items():
        await ticks_of(s, strategy, n, ticks)
    assert await s.gateway.stop() == 0
    for strategy, n in slots.items():
        seqs: dict[str, list[int]] = {}
        rows = query(
            s.ledger,
            "SELECT slot_id, seq FROM evaluations WHERE strategy = ? ORDER BY slot_id, seq",
            strategy,
        )
        for slot_id, seq in rows:
            seqs.setdefault(slot_id, []).append(seq)
        assert len(seqs) == n, (strategy, sorted(seqs))
        for slot_id, values in seqs.items():
            assert values == list(range(values[0], values[0] + len(values))), (strategy, slot_id)
    outcomes = query(s.ledger, "SELECT strategy, outcome, count(*) FROM evaluations GROUP BY 1, 2")
    assert {(strategy, outcome) for strategy, outcome, _ in outcomes} == {
        (strategy, "executed") for strategy in slots
    }, outcomes


async def book(s: Stack) -> dict[str, ctl.StrategyStatus]:
    """The gateway's strategies, by name, as its control API reports them."""
    async with ControlClient(s.gateway.ready["grpc_addr"], timeout_s=5) as control:
        listing = await control.list_instances()
    assert not listing.active_instance_id, "several strategies: the top level is unset"
    return {entry.name: entry for entry in listing.strategies}


async def test_two_strategies_roll_out_at_once_and_hand_off_independently(stack: Stack) -> None:
    """momentum and reversion applied together both go live on one gateway, each its own
    strategy's ACTIVE instance with its own slots and stake; then momentum v2 hands off from v1
    while reversion keeps its instance and epoch."""
    s = stack
    s.apply(sv_yaml("mom-v1", "v1", V1))
    s.apply(
        sv_yaml(
            "rev-v1",
            "v1",
            REVERSION,
            strategy="reversion",
            extra={"slots": REVERSION_SLOTS, "stake": REVERSION_STAKE},
        )
    )
    mom = await s.wait_phase("mom-v1", "Active", "Failed")
    rev = await s.wait_phase("rev-v1", "Active", "Failed")
    for sv in (mom, rev):
        assert sv["status"]["phase"] == "Active", sv["status"]["message"]
        assert sv["status"]["active"] is True
    strategies = await book(s)
    assert set(strategies) == {"momentum", "reversion"}
    momentum, reversion = strategies["momentum"], strategies["reversion"]
    assert momentum.active_instance_id == mom["status"]["instanceId"] != ""
    assert reversion.active_instance_id == rev["status"]["instanceId"] != ""
    assert sorted(reversion.slot_ids) == sorted(REVERSION_SLOTS)
    assert reversion.stake == REVERSION_STAKE
    assert len(momentum.slot_ids) == SLOTS  # none chosen: every slot of the gateway
    assert momentum.stake != REVERSION_STAKE  # the gateway's venue.stake
    # Each version's status carries its own strategy's epoch.
    assert (mom["status"]["epoch"], rev["status"]["epoch"]) == (momentum.epoch, reversion.epoch)
    await ticks_of(s, "momentum", SLOTS, 2)
    await ticks_of(s, "reversion", len(REVERSION_SLOTS), 2)

    s.apply(sv_yaml("mom-v2", "v2", V2))
    v2 = await s.wait_phase("mom-v2", "Active", "Failed")
    assert v2["status"]["phase"] == "Active", v2["status"]["message"]
    handoff = v2["status"]["handoff"]
    assert (handoff["fromVersion"], handoff["missed"]) == ("v1", 0)
    assert handoff["exportDigest"] == handoff["importDigest"] != ""
    await s.wait_phase("mom-v1", "Retired")
    await s.pod_gone(mom["status"]["pod"])

    # reversion never moved: the same instance, ACTIVE, at the same epoch.
    after = await book(s)
    assert after["reversion"].active_instance_id == reversion.active_instance_id
    assert after["reversion"].epoch == reversion.epoch
    assert not after["reversion"].HasField("current_handoff")
    assert after["momentum"].active_instance_id == v2["status"]["instanceId"]
    assert after["momentum"].epoch == momentum.epoch + 1
    rev_now = await s.wait_phase("rev-v1", "Active")
    assert rev_now["status"]["active"] is True
    assert rev_now["status"]["instanceId"] == rev["status"]["instanceId"]
    assert [r for _, r, _ in s.events("rev-v1")] == ["Starting", "Activated"]

    # A reversion version asking for other slots: refused before any pod, reversion untouched.
    s.apply(
        sv_yaml(
            "rev-narrow",
            "v1",
            REVERSION,
            strategy="reversion",
            extra={"slots": ["BTC/5m"], "stake": REVERSION_STAKE},
        )
    )
    narrow = await s.wait_phase("rev-narrow", "Failed", "Starting", "Active")
    assert narrow["status"]["phase"] == "Failed", narrow["status"]["message"]
    assert "another shape than rev-v1" in narrow["status"]["message"]
    assert not narrow["status"]["pod"]
    assert [(t, r) for t, r, _ in s.events("rev-narrow")] == [("Warning", "ShapeDiffers")]

    rows = {line.split()[0]: line.split() for line in s.kubectl("get", "sv").splitlines()}
    assert rows["mom-v1"][1:5] == ["momentum", "v1", "Retired", "false"]
    assert rows["mom-v2"][1:5] == ["momentum", "v2", "Active", "true"]
    assert rows["rev-v1"][1:5] == ["reversion", "v1", "Active", "true"]
    assert (await book(s))["reversion"].active_instance_id == reversion.active_instance_id
    await book_presence_kept(s, {"momentum": SLOTS, "reversion": len(REVERSION_SLOTS)}, 3)


async def test_handoffs_of_two_strategies_run_in_parallel(stack: Stack) -> None:
    """Nothing orders rollouts of different strategies: momentum v1 -> v2 and a retuned
    reversion (v1 -> v1 with another threshold) applied together both hand off, each moving its
    own strategy's epoch, and both predecessors retire."""
    s = stack
    rev_spec = {"slots": REVERSION_SLOTS, "stake": REVERSION_STAKE}
    s.apply(sv_yaml("mom-v1", "v1", V1))
    s.apply(sv_yaml("rev-v1", "v1", REVERSION, strategy="reversion", extra=rev_spec))
    for name in ("mom-v1", "rev-v1"):
        sv = await s.wait_phase(name, "Active", "Failed")
        assert sv["status"]["phase"] == "Active", sv["status"]["message"]
    before = await book(s)
    await ticks_of(s, "momentum", SLOTS, 2)
    await ticks_of(s, "reversion", len(REVERSION_SLOTS), 2)

    # Long enough a shadow that the two handoffs overlap, whichever starts first.
    s.apply(sv_yaml("mom-v2", "v2", V2, handoff={"shadowTicks": 3}))
    s.apply(
        sv_yaml(
            "rev-v1-tuned",
            "v1",
            REVERSION,
            strategy="reversion",
            handoff={"shadowTicks": 3},
            extra={**rev_spec, "config": {"threshold": 1.5}},
        )
    )

    async def both_handing_off() -> bool:
        return {await s.phase("mom-v2"), await s.phase("rev-v1-tuned")} == {"HandingOff"}

    await eventually(both_handing_off, timeout_s=60, what="both handoffs running at once")
    for name in ("mom-v2", "rev-v1-tuned"):
        sv = await s.wait_phase(name, "Active", "Failed")
        assert sv["status"]["phase"] == "Active", sv["status"]["message"]
        assert sv["status"]["handoff"]["missed"] == 0
    for name in ("mom-v1", "rev-v1"):
        await s.wait_phase(name, "Retired")
    after = await book(s)
    for strategy in ("momentum", "reversion"):
        assert after[strategy].epoch == before[strategy].epoch + 1, strategy
    assert sorted(after["reversion"].slot_ids) == sorted(REVERSION_SLOTS)
    await book_presence_kept(s, {"momentum": SLOTS, "reversion": len(REVERSION_SLOTS)}, 3)
