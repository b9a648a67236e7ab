"""End-to-end: LiveSession against the emulator on loopback — drops and resumes."""

from __future__ import annotations

import asyncio
import random

import pytest

from tunnelproof.emulator import EmulatorServer
from tunnelproof.session import LiveSession
from tunnelproof.session import app_events as ev

from .session_e2e_helpers import (
    CONFIG,
    FAST_WATCHDOGS,
    FIRST,
    EmulatorMint,
    Recorder,
    check_first,
    fast_policy,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


async def test_connect_converse_and_drop_while_idle() -> None:
    async with EmulatorServer(policy=fast_policy()) as emu:
        mint = EmulatorMint(emu)
        async with LiveSession(
            CONFIG, mint, watchdogs=FAST_WATCHDOGS, rng=random.Random(1)
        ) as session:
            rec = Recorder(session)
            await rec.wait(ev.Connected)
            answer = await rec.ask(FIRST)
            assert "teal" in answer
            emu.controls.abort_connection()  # no close frame: like a tunnel's RST
            await rec.wait(ev.Disconnected)
            resumed = await rec.wait(ev.Resumed)
            assert isinstance(resumed, ev.Resumed)
            await check_first(rec)
            metrics = session.metrics
            assert metrics.reconnects == 1
            assert metrics.resume_success_rate == 1.0
            assert mint.calls == 2, "a fresh token for the reconnect"
        assert session.state == "closed"


async def test_with_the_server_side_api_key_minting_source() -> None:
    from tunnelproof.tokens.direct import ApiKeyMintingSource

    async with EmulatorServer(policy=fast_policy()) as emu:
        source = ApiKeyMintingSource(
            emu.api_key, CONFIG, http_base=emu.http_base, ws_base=emu.ws_base
        )
        async with source, LiveSession(CONFIG, source, watchdogs=FAST_WATCHDOGS) as session:
            rec = Recorder(session)
            await rec.wait(ev.Connected)
            await rec.ask(FIRST)
            for _ in range(100):
                if session.last_turn_held:
                    break
                await asyncio.sleep(0.02)
            emu.controls.abort_connection()
            await rec.wait(ev.Resumed)
            await check_first(rec)
            tokens = {c["token"] for c in emu.controls.connections()}
            assert len(tokens) == 2, "one single-use token per connection"
