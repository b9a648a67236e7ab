"""Connection lifetime with goAway, session length limits, live policy changes."""

from __future__ import annotations

import asyncio

from tunnelproof.emulator import EmulatorPolicy, EmulatorServer
from tunnelproof.protocol.close_codes import REASON_DEADLINE_EXPIRED
from tunnelproof.testing.emulator_fixtures import EmulatorFactory

from .emu_helpers import (
    ask,
    expect_close,
    key_url,
    recv,
    recv_until,
    refused_with,
    send,
    setup,
    start,
)


async def test_go_away_then_deadline_close(emulator_factory: EmulatorFactory) -> None:
    emu = await emulator_factory(EmulatorPolicy(connection_lifetime=1.2, go_away_lead=0.6))
    loop = asyncio.get_running_loop()
    ws, _ = await start(emu)
    opened = loop.time()
    go_away = await recv(ws)
    assert go_away == {"goAway": {"timeLeft": "0.600s"}}
    assert loop.time() - opened >= 0.45
    code, reason = await expect_close(ws)
    assert (code, reason) == (1011, REASON_DEADLINE_EXPIRED)
    assert loop.time() - opened >= 1.0


async def test_go_away_says_50s_by_default(emulator_factory: EmulatorFactory) -> None:
    # A "10-minute" connection shortened to 50.3 s: goAway comes 0.3 s in, as "50s".
    emu = await emulator_factory(EmulatorPolicy(connection_lifetime=50.3))
    ws, _ = await start(emu)
    assert await recv(ws) == {"goAway": {"timeLeft": "50s"}}
    await ws.close()


async def test_default_policy_is_ten_minutes_and_50s_lead() -> None:
    policy = EmulatorPolicy()
    assert (policy.connection_lifetime, policy.go_away_lead) == (600.0, 50.0)
    assert (policy.session_limit_audio, policy.session_limit_video) == (900.0, 120.0)
    assert policy.handle_validity == 7200.0


async def test_resumed_connection_gets_a_fresh_lifetime(emulator_factory: EmulatorFactory) -> None:
    emu = await emulator_factory(EmulatorPolicy(connection_lifetime=0.8, go_away_lead=0.3))
    ws, handle = await start(emu)
    messages = await recv_until(ws, lambda m: "goAway" in m)
    assert messages[-1]["goAway"]["timeLeft"] == "0.300s"
    await ws.close()  # the client hands over at once
    await emu.controls.wait_for_open(0)
    ws, _ = await start(emu, handle=handle)
    assert (await recv(ws))["goAway"]["timeLeft"] == "0.300s"
    assert await expect_close(ws) == (1011, REASON_DEADLINE_EXPIRED)
    assert emu.controls.connections()[1]["resumed"] is True


async def test_session_limit_without_compression(emulator_factory: EmulatorFactory) -> None:
    emu = await emulator_factory(EmulatorPolicy(session_limit_audio=1.0))
    ws, handle = await start(emu)
    await ws.close()
    await emu.controls.wait_for_open(0)
    # The limit counts from the session's start, across a resume.
    ws, _ = await start(emu, handle=handle)
    assert await expect_close(ws) == (1011, REASON_DEADLINE_EXPIRED)
    await emu.controls.wait_for_event("session_limit")
    assert emu.controls.sessions()[0]["ended"] is True
    # The session is over: its handles no longer resume.
    ws2, _ = await start(emu, resumption=False)
    await ws2.close()
    code, _ = await refused_with(key_url(emu), setup(handle=handle))
    assert code == 1007


async def test_video_shortens_the_session_limit(emulator_factory: EmulatorFactory) -> None:
    emu = await emulator_factory(EmulatorPolicy(session_limit_audio=100.0, session_limit_video=0.5))
    ws, _ = await start(emu)
    await send(ws, {"realtimeInput": {"video": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}}})
    assert await expect_close(ws) == (1011, REASON_DEADLINE_EXPIRED)
    assert emu.controls.sessions()[0]["video_seen"] is True


async def test_no_session_limit_with_compression(emulator_factory: EmulatorFactory) -> None:
    emu = await emulator_factory(EmulatorPolicy(session_limit_audio=0.3, seconds_per_word=0.1))
    ws, _ = await start(emu, contextWindowCompression={"slidingWindow": {}})
    # The answer takes about 1 s, well past the 0.3 s limit; the session survives it.
    answer, _, _ = await ask(ws, "count to 10")
    assert answer == "1, 2, 3, 4, 5, 6, 7, 8, 9, 10."
    assert emu.controls.connections(open_only=True)
    await ws.close()


async def test_policy_change_applies_to_open_connections(emulator: EmulatorServer) -> None:
    ws, _ = await start(emulator)
    emulator.controls.update_policy(connection_lifetime=0.4, go_away_lead=0.2)
    assert await recv(ws) == {"goAway": {"timeLeft": "0.200s"}}
    assert await expect_close(ws) == (1011, REASON_DEADLINE_EXPIRED)
