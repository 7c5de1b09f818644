"""An instance's send queue: its bound counts evaluations, whatever the batching."""

from __future__ import annotations

import asyncio

import pytest

from baton.gateway.connection import Connection, SendResult, weight
from baton.v1 import gateway_pb2 as gw


def batch(n: int) -> gw.AttachResponse:
    msg = gw.AttachResponse()
    for seq in range(n):
        msg.evaluate_batch.requests.add(seq=seq)
    return msg


SETTLEMENT = gw.AttachResponse(settlement=gw.Settlement(bet_id="b1"))


def test_a_batch_weighs_its_requests_anything_else_one() -> None:
    assert [weight(batch(100)), weight(batch(0)), weight(SETTLEMENT)] == [100, 1, 1]


def test_a_batch_that_does_not_fit_is_refused_and_leaves_the_queue_as_it_was() -> None:
    conn = Connection("i1", limit=100)
    assert conn.send(batch(60), droppable=True) is SendResult.QUEUED
    assert conn.send(batch(60), droppable=True) is SendResult.FULL
    assert conn.send(batch(40), droppable=True) is SendResult.QUEUED
    assert not conn.closed


def test_an_empty_queue_takes_a_batch_bigger_than_the_limit() -> None:
    # The bound is on the backlog: one tick of more slots than the limit is still delivered.
    conn = Connection("i1", limit=100)
    assert conn.send(batch(500), droppable=True) is SendResult.QUEUED
    assert conn.send(batch(1), droppable=True) is SendResult.FULL


def test_what_cannot_be_dropped_closes_a_full_connection() -> None:
    conn = Connection("i1", limit=10)
    assert conn.send(batch(10), droppable=True) is SendResult.QUEUED
    assert conn.send(SETTLEMENT, droppable=False) is SendResult.CLOSED
    assert conn.closed
    assert "overflow" in conn.close_reason


async def test_written_messages_free_their_weight() -> None:
    conn = Connection("i1", limit=100)
    assert conn.send(batch(100), droppable=True) is SendResult.QUEUED
    assert conn.send(batch(1), droppable=True) is SendResult.FULL
    out = conn.outgoing()
    async with asyncio.timeout(5):
        assert len((await anext(out)).evaluate_batch.requests) == 100
    assert conn.send(batch(100), droppable=True) is SendResult.QUEUED


def test_the_journal_keeps_what_was_queued_in_order() -> None:
    conn = Connection("i1", limit=100)
    conn.send(batch(1), droppable=True)
    conn.start_journal()
    conn.send(batch(2), droppable=True)
    conn.send(batch(200), droppable=True)  # refused: not journaled either
    conn.send(SETTLEMENT, droppable=False)
    assert [weight(m) for m in conn.stop_journal()] == [2, 1]


BODIES = [f.name for f in gw.AttachResponse.DESCRIPTOR.oneofs_by_name["body"].fields]


@pytest.mark.parametrize("body", BODIES)
def test_every_message_for_a_host_leaves_with_the_gateways_current_term(body: str) -> None:
    # Every kind of AttachResponse body has a term (a new kind without one fails here), and the
    # connection stamps it from the one provider, read at the moment the message is queued.
    term = [7]
    conn = Connection("i1", limit=100, term=lambda: term[0])
    msg = gw.AttachResponse()
    getattr(msg, body).SetInParent()
    assert conn.send(msg, droppable=False) is SendResult.QUEUED
    assert getattr(msg, body).term == 7
    term[0] = 8
    replay = gw.AttachResponse()
    replay.CopyFrom(msg)  # a journaled message sent again later carries the term of the replay
    conn.send(replay, droppable=False)
    assert getattr(replay, body).term == 8
    assert conn.stamp(gw.AttachResponse(welcome=gw.Welcome())).welcome.term == 8


def test_a_gateway_without_election_sends_term_0() -> None:
    msg = gw.AttachResponse(fill=gw.Fill(bet_id="b1", term=5))
    Connection("i1", limit=100).send(msg, droppable=False)
    assert msg.fill.term == 0
