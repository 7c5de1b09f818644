"""The simulator's WebSocket endpoints over real sockets: streams, control messages, limits,
keepalive, lifetime and injected faults."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from baton.gateway.core.binance import KlineEvent, Malformed, parse_frame
from tests.integration._sim import START_MS, SilentClient, http_get, running_sim

pytestmark = pytest.mark.timeout(20)
MIN = 60_000
KLINE_KEYS = list("tTsifLochlvnxqVQB")


async def recv_json(ws: ClientConnection, timeout_s: float = 3.0) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout_s))


async def frames(ws: ClientConnection, timeout_s: float = 3.0) -> AsyncIterator[Any]:
    while True:
        yield await recv_json(ws, timeout_s)


async def read_until_closed(
    ws: ClientConnection, timeout_s: float = 5.0
) -> tuple[list[Any], ConnectionClosed]:
    """Every message until the connection closes (bounded), and how it closed."""
    received: list[Any] = []
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                received.append(json.loads(await ws.recv()))
    except ConnectionClosed as exc:
        return received, exc


async def reply(ws: ClientConnection, request: dict[str, Any]) -> Any:
    """Send a control message; skip kline frames until its reply."""
    await ws.send(json.dumps(request))
    async for msg in frames(ws):
        if "result" in msg or "error" in msg:
            return msg
    raise AssertionError("unreachable")


async def test_combined_stream_frames_are_binance_klines() -> None:
    async with running_sim() as sim:
        url = f"{sim.ws_url}/stream?streams=btcusdt@kline_1m/ethusdt@kline_5m"
        async with connect(url) as ws:
            seen: dict[str, list[dict[str, Any]]] = {"btcusdt@kline_1m": [], "ethusdt@kline_5m": []}
            async for msg in frames(ws):
                assert set(msg) == {"stream", "data"}
                data = msg["data"]
                assert list(data) == ["e", "E", "s", "k"]
                assert data["e"] == "kline"
                k = data["k"]
                assert list(k) == KLINE_KEYS
                assert msg["stream"] == f"{k['s'].lower()}@kline_{k['i']}"
                assert all(isinstance(k[f], str) for f in "ochlvqVQB")
                assert all(isinstance(k[f], int) for f in "tTfLn")
                assert isinstance(k["x"], bool)
                size = MIN if k["i"] == "1m" else 5 * MIN
                assert k["T"] == k["t"] + size - 1
                assert k["t"] % size == 0
                seen[msg["stream"]].append(k)
                if (
                    sum(1 for k in seen["btcusdt@kline_1m"] if k["x"]) >= 3
                    and seen["ethusdt@kline_5m"]
                ):
                    break
        closing = [k for k in seen["btcusdt@kline_1m"] if k["x"]]
        for k in closing:
            truth = sim.kline("BTCUSDT", "1m", k["t"])
            assert truth is not None
            assert truth.closed
            assert k["c"] == _price(truth.bar.close, truth.price_decimals)
        # Each candle closes once, and the next candle's frames follow its close.
        assert [k["t"] for k in closing] == list(
            range(closing[0]["t"], closing[0]["t"] + 3 * MIN, MIN)
        )


def _price(ticks: int, decimals: int) -> str:
    from baton.exchange_sim.core.protocol import format_decimal

    return format_decimal(ticks, decimals)


async def test_raw_stream_frames_are_not_wrapped() -> None:
    async with running_sim() as sim, connect(f"{sim.ws_url}/ws/solusdt@kline_1m") as ws:
        msg = await recv_json(ws)
        assert msg["e"] == "kline"
        assert msg["s"] == "SOLUSDT"
        assert "stream" not in msg


async def test_every_candle_closes_exactly_once_per_subscription() -> None:
    async with running_sim() as sim:
        url = f"{sim.ws_url}/stream?streams=btcusdt@kline_1m"
        async with connect(url) as a, connect(url) as b:
            closes: dict[str, list[int]] = {"a": [], "b": []}
            for name, ws in (("a", a), ("b", b)):
                async for msg in frames(ws):
                    k = msg["data"]["k"]
                    if k["x"]:
                        closes[name].append(k["t"])
                    if len(closes[name]) == 5:
                        break
            for got in closes.values():
                assert got == list(range(got[0], got[0] + 5 * MIN, MIN))


async def test_subscribe_unsubscribe_and_list() -> None:
    async with running_sim() as sim, connect(f"{sim.ws_url}/ws") as ws:
        assert await reply(
            ws, {"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m", "ethusdt@kline_1m"], "id": 1}
        ) == {
            "result": None,
            "id": 1,
        }
        streams: set[str] = set()
        async for msg in frames(ws):
            streams.add(msg["s"])
            if streams == {"BTCUSDT", "ETHUSDT"}:
                break
        assert await reply(ws, {"method": "LIST_SUBSCRIPTIONS", "id": "q1"}) == {
            "result": ["btcusdt@kline_1m", "ethusdt@kline_1m"],
            "id": "q1",
        }
        assert await reply(
            ws, {"method": "UNSUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": 2}
        ) == {
            "result": None,
            "id": 2,
        }
        eth_closes = 0
        async for msg in frames(ws):
            assert msg["s"] == "ETHUSDT", "no frames after UNSUBSCRIBE's reply"
            eth_closes += msg["k"]["x"]
            if eth_closes == 2:
                break
        assert await reply(ws, {"method": "LIST_SUBSCRIPTIONS", "id": None}) == {
            "result": ["ethusdt@kline_1m"],
            "id": None,
        }


async def test_the_combined_property_switches_the_wrapper() -> None:
    async with running_sim() as sim, connect(f"{sim.ws_url}/ws") as ws:
        assert await reply(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 1}) == {
            "result": False,
            "id": 1,
        }
        await reply(ws, {"method": "SET_PROPERTY", "params": ["combined", True], "id": 2})
        await reply(ws, {"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": 3})
        msg = await recv_json(ws)
        assert msg["stream"] == "btcusdt@kline_1m"
        assert msg["data"]["e"] == "kline"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("{not json", {"code": 3, "id": None}),
        ('{"method":"PING","id":4}', {"code": 2, "id": None}),
        ('{"method":"LIST_SUBSCRIPTIONS","id":1.5}', {"code": 2, "id": None}),
        ('{"method":"SET_PROPERTY","params":["speed",true],"id":6}', {"code": 0, "id": 6}),
        ('{"method":"SET_PROPERTY","params":["combined",1],"id":7}', {"code": 1, "id": 7}),
    ],
    ids=["invalid JSON", "unknown method", "invalid id", "unknown property", "non-boolean value"],
)
async def test_error_replies(message: str, expected: dict[str, Any]) -> None:
    async with running_sim() as sim, connect(f"{sim.ws_url}/ws") as ws:
        await ws.send(message)
        got = await recv_json(ws)
        assert (got["error"]["code"], got["id"]) == (expected["code"], expected["id"])
        assert got["error"]["msg"]
        # The connection stays usable.
        assert (await reply(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1}))["result"] == []


async def test_a_malformed_stream_in_subscribe_is_refused_and_closes() -> None:
    async with running_sim() as sim, connect(f"{sim.ws_url}/ws") as ws:
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["@@@bad###"], "id": 9}))
        assert await recv_json(ws) == {
            "error": {"code": 2, "msg": "Invalid request: invalid stream"},
            "id": 9,
        }
        with pytest.raises(ConnectionClosed) as info:
            await recv_json(ws)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1008


async def test_an_unknown_symbol_is_accepted_and_silent_like_binance() -> None:
    async with (
        running_sim() as sim,
        connect(f"{sim.ws_url}/stream?streams=maticusdt@kline_1m") as ws,
    ):
        assert await reply(
            ws, {"method": "SUBSCRIBE", "params": ["polusdt@kline_1m"], "id": 1}
        ) == {
            "result": None,
            "id": 1,
        }
        closes = 0
        async for msg in frames(ws):
            assert msg["stream"] == "polusdt@kline_1m", "MATIC never sends data"
            closes += msg["data"]["k"]["x"]
            if closes == 2:
                break


async def test_strict_mode_refuses_unknown_symbols() -> None:
    async with running_sim(strict_symbols=True) as sim:
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{sim.ws_url}/stream?streams=maticusdt@kline_5m"):
                pass
        assert info.value.response.status_code == 400
        async with connect(f"{sim.ws_url}/ws") as ws:
            await ws.send(
                json.dumps({"method": "SUBSCRIBE", "params": ["maticusdt@kline_5m"], "id": 1})
            )
            assert (await recv_json(ws))["error"]["code"] == 2


@pytest.mark.parametrize(
    "path",
    ["/stream?streams=btcusdt@kline_5m.b10", "/ws/btc%20usdt@kline_1m", "/not-a-stream-path"],
    ids=["malformed combined stream", "malformed raw stream", "unknown path"],
)
async def test_bad_connection_urls_get_http_400(path: str) -> None:
    async with running_sim() as sim:
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{sim.ws_url}{path}"):
                pass
        assert info.value.response.status_code == 400


async def test_too_many_subscriptions() -> None:
    async with running_sim(max_streams_per_connection=2) as sim:
        async with connect(f"{sim.ws_url}/ws/btcusdt@kline_1m") as ws:
            ok = await reply(ws, {"method": "SUBSCRIBE", "params": ["ethusdt@kline_1m"], "id": 1})
            assert ok == {"result": None, "id": 1}
            refused = await reply(
                ws, {"method": "SUBSCRIBE", "params": ["solusdt@kline_1m"], "id": 2}
            )
            assert refused["error"]["code"] == 4
            assert refused["id"] == 2
        with pytest.raises(InvalidStatus):
            async with connect(f"{sim.ws_url}/stream?streams=a@kline_1m/b@kline_1m/c@kline_1m"):
                pass


async def test_more_than_five_messages_a_second_closes_with_1008() -> None:
    async with running_sim() as sim, connect(f"{sim.ws_url}/ws") as ws:
        for i in range(6):
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
        replies, closed = await read_until_closed(ws)
        assert len(replies) <= 5
        assert closed.rcvd is not None
        assert closed.rcvd.code == 1008


async def test_a_client_that_never_answers_pings_is_closed() -> None:
    async with running_sim(ping_interval_s=0.2, pong_timeout_s=0.3) as sim:
        client = await SilentClient.connect(sim.port, "/ws")
        try:
            got = [f async for f in client.frames()]
        finally:
            await client.close()
        assert got[0].opcode == 0x9, "the server pings first"
        assert got[-1].opcode == 0x8
        assert got[-1].close_code == 1011


async def test_a_client_that_answers_pings_stays_connected() -> None:
    async with (
        running_sim(ping_interval_s=0.2, pong_timeout_s=0.3) as sim,
        connect(f"{sim.ws_url}/ws/btcusdt@kline_1m", ping_interval=None) as ws,
    ):
        closes = 0
        async for msg in frames(ws):
            closes += msg["k"]["x"]
            if closes == 6:  # > 1 s of real time: several ping rounds answered
                break


async def test_the_lifetime_ends_with_server_shutdown_then_close() -> None:
    async with (
        running_sim(max_lifetime_s=0.6, shutdown_notice_s=0.2) as sim,
        connect(f"{sim.ws_url}/stream?streams=btcusdt@kline_1m") as ws,
    ):
        received, closed = await read_until_closed(ws)
        notices = [m["data"] for m in received if m["stream"] == "!serverShutdown"]
        assert closed.rcvd is not None
        assert closed.rcvd.code == 1001
        assert len(notices) == 1
        assert notices[0]["e"] == "serverShutdown"
        assert notices[0]["E"] > START_MS


async def test_drop_fault_resets_every_connection() -> None:
    async with (
        running_sim() as sim,
        connect(f"{sim.ws_url}/ws/btcusdt@kline_1m") as a,
        connect(f"{sim.ws_url}/ws") as b,
    ):
        await recv_json(a)
        await reply(b, {"method": "LIST_SUBSCRIPTIONS", "id": 1})  # both are being served
        status, ack, _ = await http_get(f"{sim.rest_url}/_sim/faults/drop")
        assert status == 200
        assert ack == {"ok": True, "fault": "drop", "connections": 2}
        for ws in (a, b):
            _, closed = await read_until_closed(ws)
            assert closed.rcvd is None, "an abrupt close: no close frame"


async def test_a_stall_sends_nothing_and_skips_the_candles_that_closed_meanwhile() -> None:
    async with running_sim() as sim, connect(f"{sim.ws_url}/ws/btcusdt@kline_1m") as ws:
        first = await recv_json(ws)
        status, ack, _ = await http_get(f"{sim.rest_url}/_sim/faults/stall?seconds=1.0")
        stalled_at = sim.now_ms()
        assert status == 200
        assert ack["fault"] == "stall"
        closes_after: list[int] = []
        async for msg in frames(ws):
            if msg["E"] < stalled_at:
                continue  # in flight before the stall
            assert msg["E"] >= stalled_at + 300_000 - 60_000, "nothing during the stall"
            if msg["k"]["x"]:
                closes_after.append(msg["k"]["t"])
            if len(closes_after) == 2:
                break
        # ~5 one-minute candles closed during the 1 s stall at 300x and were not sent.
        assert closes_after[0] >= first["k"]["t"] + 4 * MIN
        assert closes_after[1] == closes_after[0] + MIN


async def test_malformed_fault_breaks_the_next_frames() -> None:
    async with running_sim() as sim, connect(f"{sim.ws_url}/stream?streams=btcusdt@kline_1m") as ws:
        await recv_json(ws)
        status, ack, _ = await http_get(f"{sim.rest_url}/_sim/faults/malformed?count=10")
        assert (status, ack["count"]) == (200, 10)
        kinds: list[object] = []
        while len(kinds) < 12:
            kinds.append(parse_frame(await asyncio.wait_for(ws.recv(), 3)))
        bad = [k for k in kinds if isinstance(k, Malformed)]
        assert len(bad) == 10
        assert all(isinstance(k, KlineEvent) for k in kinds[-2:])


async def test_server_shutdown_fault() -> None:
    async with running_sim() as sim, connect(f"{sim.ws_url}/ws/btcusdt@kline_1m") as ws:
        await recv_json(ws)
        status, ack, _ = await http_get(f"{sim.rest_url}/_sim/faults/server_shutdown?grace_s=0.1")
        assert (status, ack["connections"]) == (200, 1)
        received, closed = await read_until_closed(ws)
        assert [m["e"] for m in received].count("serverShutdown") == 1
        assert closed.rcvd is not None
        assert closed.rcvd.code == 1001


async def test_status_reports_connections_and_time() -> None:
    async with (
        running_sim() as sim,
        connect(f"{sim.ws_url}/stream?streams=btcusdt@kline_1m/ethusdt@kline_1m") as ws,
    ):
        await recv_json(ws)
        status, body, _ = await http_get(f"{sim.rest_url}/_sim/status")
        assert status == 200
        assert (body["connections"], body["subscriptions"]) == (1, 2)
        assert body["frames_sent"] >= 1
        assert body["sim_now_ms"] > START_MS
        assert body["seed"] == 7


@pytest.mark.parametrize(
    "path",
    [
        "/_sim/faults/stall?seconds=-1",
        "/_sim/faults/malformed?count=x",
        "/_sim/faults/rest_error?status=404",
        "/_sim/nope",
    ],
    ids=[
        "negative stall",
        "non-numeric count",
        "a REST fault that is not an error",
        "unknown control",
    ],
)
async def test_bad_fault_requests_are_refused(path: str) -> None:
    async with running_sim() as sim:
        status, body, _ = await http_get(f"{sim.rest_url}{path}")
        assert status in (400, 404)
        assert body["ok"] is False
