"""The knobs the impolite scenarios need: a thinking model, goAway on every connection,
a rejected client message (issue 13)."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from urllib.parse import urlsplit

import aiohttp
import pytest

from tunnelproof.emulator import EmulatorPolicy, EmulatorServer
from tunnelproof.protocol.close_codes import REASON_DEADLINE_EXPIRED, REASON_INVALID_ARGUMENT
from tunnelproof.testing.emulator_fixtures import EmulatorFactory

from .emu_helpers import (
    ask,
    expect_close,
    key_url,
    recv,
    recv_until,
    send,
    start,
    text_of,
    turn_complete,
)


def _user(text: str) -> dict[str, object]:
    return {"clientContent": {"turns": [{"parts": [{"text": text}]}], "turnComplete": True}}


# -- think_delay ---------------------------------------------------------------------------


async def test_a_thinking_model_is_silent_but_answers_pings(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory(EmulatorPolicy(generation_speed=0, think_delay=1.2))
    ws, _ = await start(emu)
    loop = asyncio.get_running_loop()
    sent = loop.time()
    await send(ws, _user("take your time"))
    update = await recv(ws)  # the turn was read: not resumable while the model works
    assert update["sessionResumptionUpdate"] == {"resumable": False}
    # Thinking: no frame for a while, yet every ping is answered promptly.
    for _ in range(3):
        pong = await ws.ping()
        async with asyncio.timeout(0.5):
            await pong
        await asyncio.sleep(0.15)
    messages = await recv_until(ws, turn_complete)
    assert loop.time() - sent >= 1.2
    assert text_of(messages) == 'You said: "take your time".'
    assert emu.hub.events.count("thinking") == 1
    await ws.close()


async def test_a_barge_in_cuts_the_thinking_short(emulator_factory: EmulatorFactory) -> None:
    emu = await emulator_factory(EmulatorPolicy(generation_speed=0, think_delay=30.0))
    ws, _ = await start(emu)
    await send(ws, _user("slow question"))
    await recv(ws)  # resumable: false
    await send(ws, {"realtimeInput": {"text": "never mind"}})
    cut = await recv_until(ws, turn_complete, timeout=3.0)
    assert any(m.get("serverContent", {}).get("interrupted") for m in cut)
    await ws.close()


async def test_one_session_thinks_for_one_turn_only(emulator_factory: EmulatorFactory) -> None:
    # The soak makes one conversation's model slow while a hundred others answer at once.
    emu = await emulator_factory(EmulatorPolicy(generation_speed=0))
    slow, _ = await start(emu)
    fast, _ = await start(emu)
    await ask(slow, "hello")
    slow_session = emu.controls.connections()[0]["session"]
    assert emu.controls.think_next_turn(0.8, slow_session) == slow_session
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    text, _, _ = await ask(fast, "the other session")
    assert loop.time() - t0 < 0.6 and text == 'You said: "the other session".'
    t0 = loop.time()
    text, _, _ = await ask(slow, "a hard one")
    assert loop.time() - t0 >= 0.8 and text == 'You said: "a hard one".'
    t0 = loop.time()
    await ask(slow, "an easy one")
    assert loop.time() - t0 < 0.6  # one turn only
    await slow.close()
    await fast.close()


async def test_think_next_turn_over_http(emulator: EmulatorServer) -> None:
    ws, _ = await start(emulator)
    await ask(ws, "hello")
    base = emulator.control_url + "/sessions"
    async with aiohttp.ClientSession() as http:
        async with http.post(base + "/latest/think", json={"seconds": 0.5}) as response:
            assert response.status == 200
            assert (await response.json())["think_next_turn"] == 0.5
        async with http.post(base + "/latest/think", json={"seconds": -1}) as response:
            assert response.status == 400
        async with http.post(base + "/nope/think", json={"seconds": 1}) as response:
            assert response.status == 404
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await ask(ws, "slow")
    assert loop.time() - t0 >= 0.5
    await ws.close()


def test_think_delay_is_off_by_default() -> None:
    assert EmulatorPolicy().think_delay == 0.0


# -- go_away_on_connect --------------------------------------------------------------------


async def test_go_away_on_every_connection_right_after_setup_complete(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory(EmulatorPolicy(generation_speed=0, go_away_on_connect=0.5))
    for attempt in range(2):
        loop = asyncio.get_running_loop()
        ws, _ = await start(emu)  # setupComplete, then the first handle
        opened = loop.time()
        assert await recv(ws) == {"goAway": {"timeLeft": "0.500s"}}
        assert await expect_close(ws) == (1011, REASON_DEADLINE_EXPIRED)
        assert 0.4 <= loop.time() - opened < 2.0, attempt
    assert emu.hub.events.count("go_away") == 2


async def test_go_away_on_connect_still_serves_until_the_deadline(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory(EmulatorPolicy(generation_speed=0, go_away_on_connect=3.0))
    ws, _ = await start(emu)
    assert "goAway" in await recv(ws)
    text, _, _ = await ask(ws, "quick one")
    assert text == 'You said: "quick one".'
    await ws.close()


def test_go_away_on_connect_is_off_by_default() -> None:
    assert EmulatorPolicy().go_away_on_connect is None


# -- reject_next_client_message ------------------------------------------------------------


async def test_reject_next_client_message_closes_without_applying_it(
    emulator: EmulatorServer,
) -> None:
    ws, _ = await start(emulator)
    await ask(ws, "first")
    emulator.controls.reject_next_client_message()
    await send(ws, _user("second"))
    assert await expect_close(ws) == (1007, REASON_INVALID_ARGUMENT)
    said = [e["text"] for e in emulator.controls.history() if e["role"] == "user"]
    assert said == ["first"]  # the rejected message was never applied
    event = await emulator.controls.wait_for_event("client_message_rejected")
    assert (event["message"], event["code"]) == ("clientContent", 1007)
    # One shot: the next connection's messages are served.
    ws2, _ = await start(emulator)
    text, _, _ = await ask(ws2, "third")
    assert text == 'You said: "third".'
    await ws2.close()


async def test_reject_next_client_message_with_any_code_and_audio_too(
    emulator: EmulatorServer,
) -> None:
    ws, _ = await start(emulator)
    emulator.controls.reject_next_client_message(1011, "Internal error encountered.")
    chunk = {"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": "AAAA"}}}
    await send(ws, chunk)
    assert await expect_close(ws) == (1011, "Internal error encountered.")


async def test_reject_next_client_message_over_http(emulator: EmulatorServer) -> None:
    ws, _ = await start(emulator)
    url = emulator.control_url + "/client_messages/reject"
    body = {"code": 1008, "reason": "Operation is not implemented, or supported, or enabled."}
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as response:
        assert response.status == 200
    tool = {"toolResponse": {"functionResponses": [{"id": "x", "response": {}}]}}
    await send(ws, tool)
    assert await expect_close(ws) == (1008, body["reason"])


async def test_setup_is_not_a_client_message_for_the_rejection(emulator: EmulatorServer) -> None:
    emulator.controls.reject_next_client_message()
    ws, _ = await start(emulator)  # the setup goes through
    await send(ws, _user("now"))
    code, _ = await expect_close(ws)
    assert code == 1007


# -- a client gone during the handshake ----------------------------------------------------


async def test_a_client_gone_during_the_handshake_is_no_server_error(
    emulator: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A process stopping (or a tunnel) can reset the socket between the upgrade request and
    # the 101: the emulator has nobody to answer. aiohttp used to log that as "Error
    # handling request" with a traceback (seen when Ctrl-C stopped the demo mid-connect).
    target = urlsplit(key_url(emulator))
    request = (
        f"GET {target.path}?{target.query} HTTP/1.1\r\nHost: {target.netloc}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    caplog.set_level(logging.ERROR)
    for _ in range(20):  # the reset must land before the 101 is written; bounded retries
        _reader, writer = await asyncio.open_connection(target.hostname, target.port)
        writer.write(request)
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST, not FIN
        await asyncio.sleep(0.05)
        if emulator.hub.events.count("upgrade_abandoned"):
            break
    assert emulator.hub.events.count("upgrade_abandoned") >= 1
    assert not [r for r in caplog.records if "Error handling request" in r.getMessage()]
    ws, _ = await start(emulator)  # and it still serves
    await ws.close()
