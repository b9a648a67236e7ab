"""Fault controls over HTTP (and the Python twins where HTTP cannot reach)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request

from tunnelproof.emulator import EmulatorPolicy, EmulatorServer
from tunnelproof.emulator.control import is_loopback, loopback_only
from tunnelproof.testing.emulator_fixtures import EmulatorFactory

from .emu_helpers import (
    ask,
    expect_close,
    key_url,
    mint_token,
    recv,
    refused_with,
    send,
    setup,
    start,
    token_url,
)


async def _call(emu: EmulatorServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, emu.control_url + path, json=body) as response,
    ):
        return response.status, await response.json()


async def test_list_connections_and_sessions_with_token_and_handle(
    emulator: EmulatorServer,
) -> None:
    token = await mint_token(emulator)
    ws, handle = await start(emulator, token_url(emulator, token))
    status, conns = await _call(emulator, "GET", "/connections")
    assert status == 200
    (conn,) = conns
    assert (conn["token"], conn["handle"], conn["state"]) == (token, handle, "open")
    _, sessions = await _call(emulator, "GET", "/sessions")
    assert sessions[0]["token"] == token and sessions[0]["latest_handle"] == handle
    _, ledger = await _call(emulator, "GET", "/tokens")
    assert ledger[0]["connections"][0]["connection"] == conn["id"]
    await ws.close()


async def test_close_with_any_code_and_reason(emulator: EmulatorServer) -> None:
    ws, _ = await start(emulator)
    conn = emulator.controls.connections()[0]["id"]
    status, _ = await _call(
        emulator, "POST", f"/connections/{conn}/close", {"code": 1013, "reason": "try again later"}
    )
    assert status == 200
    assert await expect_close(ws) == (1013, "try again later")
    final = await emulator.controls.wait_for_closed(conn)
    assert (final["close_code"], final["closed_by"]) == (1013, "control")


async def test_abort_sends_no_close_frame(emulator: EmulatorServer) -> None:
    ws, _ = await start(emulator)
    status, _ = await _call(emulator, "POST", "/connections/latest/abort")
    assert status == 200
    code, _ = await expect_close(ws)
    assert code is None  # the client saw no close frame: 1006 for it
    assert ws.close_code == 1006


async def test_go_away_now_then_close_after_time_left(emulator: EmulatorServer) -> None:
    ws, _ = await start(emulator)
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, _ = await _call(emulator, "POST", "/connections/latest/go_away", {"timeLeft": 0.5})
    assert status == 200
    assert await recv(ws) == {"goAway": {"timeLeft": "0.500s"}}
    assert (await expect_close(ws))[0] == 1011
    assert loop.time() - started >= 0.4


async def test_refuse_resumes_over_http(emulator: EmulatorServer) -> None:
    ws, handle = await start(emulator)
    await ws.close()
    await emulator.controls.wait_for_open(0)
    status, _ = await _call(emulator, "POST", "/resumes/refuse", {"count": 1, "code": 1011})
    assert status == 200
    code, _ = await refused_with(key_url(emulator), setup(handle=handle))
    assert code == 1011
    ws, _ = await start(emulator, handle=handle)
    await ws.close()


async def test_policy_read_and_change_over_http(emulator: EmulatorServer) -> None:
    status, policy = await _call(emulator, "GET", "/policy")
    assert status == 200 and policy["connection_lifetime"] == 600.0
    status, policy = await _call(emulator, "PATCH", "/policy", {"connection_lifetime": "5"})
    assert status == 200 and policy["connection_lifetime"] == 5.0
    assert emulator.policy.connection_lifetime == 5.0
    status, body = await _call(emulator, "PATCH", "/policy", {"no_such_field": 1})
    assert status == 400 and "no_such_field" in body["error"]["message"]


@pytest.mark.parametrize("value", [-1, "nan", "inf", "soon"])
async def test_policy_refuses_a_duration_it_cannot_run_with(
    emulator: EmulatorServer, value: object
) -> None:
    # A negative or non-finite duration made timers fire at once or never; refused now.
    # (The fixture's generation_speed=0 is an int: -1 used to pass as "an integer".)
    before = emulator.policy.generation_speed
    status, body = await _call(emulator, "PATCH", "/policy", {"generation_speed": value})
    assert status == 400 and "generation_speed must be" in body["error"]["message"]
    assert emulator.policy.generation_speed == before
    status, policy = await _call(emulator, "PATCH", "/policy", {"generation_speed": "0.5"})
    assert status == 200 and policy["generation_speed"] == 0.5


async def test_history_and_event_wait_over_http(emulator: EmulatorServer) -> None:
    ws, _ = await start(emulator)
    await ask(ws, "hello history")
    status, history = await _call(emulator, "GET", "/sessions/latest/history")
    assert status == 200
    assert [(e["role"], e["text"]) for e in history] == [
        ("user", "hello history"),
        ("model", 'You said: "hello history".'),
    ]
    status, event = await _call(emulator, "GET", "/wait?kind=turn_complete&count=1&timeout=5")
    assert status == 200 and event["kind"] == "turn_complete"
    status, _ = await _call(emulator, "GET", "/wait?kind=turn_complete&count=2&timeout=0.2")
    assert status == 408
    status, events = await _call(emulator, "GET", "/events?kind=setup_complete")
    assert len(events) == 1
    await ws.close()


async def test_unknown_connection_is_404(emulator: EmulatorServer) -> None:
    status, _ = await _call(emulator, "POST", "/connections/conn-nope/abort")
    assert status == 404


async def test_pongs_can_be_withheld_and_delayed(emulator: EmulatorServer) -> None:
    ws, _ = await start(emulator)
    status, _ = await _call(emulator, "POST", "/pongs", {"withhold": True})
    assert status == 200
    waiter = await ws.ping(b"1")
    await emulator.controls.wait_for_event("ping", withheld=True)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(waiter), 0.5)
    await _call(emulator, "POST", "/pongs", {"withhold": False, "delay": 1.5})
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(await ws.ping(b"2"), 10)
    assert loop.time() - started >= 1.4
    emulator.controls.set_pongs(delay=0.0)
    started = loop.time()
    await asyncio.wait_for(await ws.ping(b"3"), 10)
    assert loop.time() - started < 1.4  # no delay now (generous for a loaded machine)
    await ws.close()


async def test_per_connection_pong_fault(emulator: EmulatorServer) -> None:
    a, _ = await start(emulator, resumption=False)
    b, _ = await start(emulator, resumption=False)
    first = emulator.controls.connections()[0]["id"]
    emulator.controls.set_pongs(withhold=True, connection=first)
    await asyncio.wait_for(await b.ping(), 10)
    waiter = await a.ping()
    await emulator.controls.wait_for_event("ping", connection=first)
    assert not waiter.done()
    await a.close()
    await b.close()


async def test_generation_speed_lets_a_test_drop_mid_answer(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory(EmulatorPolicy(seconds_per_word=0.02, audio_chunk_duration=0.02))
    emu.controls.set_generation_speed(0.2)  # 0.1 s per word of speech
    ws, _ = await start(emu)
    await send(ws, {"realtimeInput": {"text": "count to 100"}})
    await emu.controls.wait_for_event("generation_chunk", count=2)
    assert emu.controls.connections()[0]["generating"] is True
    await emu.controls.close_connection(code=1011, reason="Internal error occurred.")
    assert await expect_close(ws) == (1011, "Internal error occurred.")
    assert emu.hub.events.count("turn_complete") == 0


def test_loopback_check() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("127.9.9.9")
    assert is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("10.0.0.1") and not is_loopback(None) and not is_loopback("bogus")


async def test_control_api_refuses_non_loopback_peers() -> None:
    request = make_mocked_request("GET", "/_emulator/connections")
    request = request.clone(remote="192.0.2.7")

    async def handler(_: Any) -> aiohttp.web.StreamResponse:
        raise AssertionError("must not be reached")

    response = await loopback_only(request, handler)
    assert response.status == 403


async def test_wait_for_connections_counts_reconnects_and_wait_for_open_counts_open(
    emulator: EmulatorServer,
) -> None:
    waiter = asyncio.ensure_future(emulator.controls.wait_for_connections(2))
    ws, handle = await start(emulator)
    assert not waiter.done()
    await emulator.controls.wait_for_open(1)
    emulator.controls.abort_connection()
    await emulator.controls.wait_for_open(0)
    ws2, _ = await start(emulator, handle=handle)
    conns = await asyncio.wait_for(waiter, 10)
    assert [c["resumed"] for c in conns] == [False, True]
    assert [c["id"] for c in await emulator.controls.wait_for_open(1)] == [conns[1]["id"]]
    with pytest.raises(TimeoutError):
        await emulator.controls.wait_for_open(2, timeout=0.2)
    await ws2.close()
    await ws.close()


async def test_shutdown_does_not_wait_forever_for_a_silent_peer(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory()
    reader, writer = await asyncio.open_connection("127.0.0.1", emu.port)
    path = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    writer.write(
        (
            f"GET {path}?key={emu.api_key} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 10)
    assert status.startswith(b"HTTP/1.1 101")
    await emu.controls.wait_for_event("connection_opened")
    # The peer never answers the close frame: shutdown gives up on it and aborts.
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(emu.stop(), 15)
    assert loop.time() - started < 10
    writer.close()
