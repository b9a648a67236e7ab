"""Impolite scenarios that need the emulator knobs of issue 13 (helper ``emu``):

* ``EmulatorPolicy.think_delay``: model silence before the first output of a turn;
* ``EmulatorPolicy.go_away_on_connect``: goAway with that ``timeLeft`` right after
  ``setupComplete`` on every connection;
* ``EmulatorControls.reject_next_client_message(code, reason)``: the next client message
  is answered with a close (1007 by default), as Google does for a message it rejects.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from tunnelproof.emulator import EmulatorPolicy, EmulatorServer
from tunnelproof.session import LiveSession
from tunnelproof.session import app_events as ev

from .impolite_helpers import AUDIO_CONFIG, LiveRecorder, ask, new_handle, wait_transcript
from .session_e2e_helpers import ASK_FIRST, FAST_WATCHDOGS, FIRST, EmulatorMint

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def test_a_model_that_thinks_longer_than_the_reply_watchdog_is_not_a_dead_link() -> None:
    """Symptom 3: extended thinking. The model is silent 8 s before answering (reply_timeout
    is 4 s) on a healthy link: no reconnect, the question is sent once and answered."""
    async with (
        EmulatorServer(policy=EmulatorPolicy(generation_speed=0)) as emu,
        LiveSession(
            AUDIO_CONFIG, EmulatorMint(emu), watchdogs=FAST_WATCHDOGS, rng=random.Random(1)
        ) as session,
    ):
        rec = LiveRecorder(session)
        await rec.wait(ev.Connected)
        assert "teal" in await ask(rec, FIRST)
        emu.controls.update_policy(think_delay=8.0)
        mark = rec.mark()
        assert (await session.send_text("Tell me a story.")).sent
        await wait_transcript(rec, "Once upon a time", since=mark, timeout=30)
        lifecycle = [e for e in rec.log[mark:] if isinstance(e, ev.Disconnected | ev.Reconnecting)]
        assert not lifecycle, f"false dead-link alarm: {lifecycle}"
        asked = [e for e in emu.controls.events(kind="user_text") if "story" in str(e)]
        assert len(asked) == 1, asked


async def test_message_rejected_by_the_server_after_a_resume_is_reported_not_a_reset() -> None:
    """Symptom 5, with the emulator rejecting an ordinary message (1007) on a resumed
    connection: reported dropped with the reason, no context reset, resumed again."""
    async with (
        EmulatorServer(policy=EmulatorPolicy(generation_speed=0)) as emu,
        LiveSession(
            AUDIO_CONFIG, EmulatorMint(emu), watchdogs=FAST_WATCHDOGS, rng=random.Random(2)
        ) as session,
    ):
        rec = LiveRecorder(session)
        await rec.wait(ev.Connected)
        assert "teal" in await ask(rec, FIRST)
        await new_handle(session, None)
        mark = rec.mark()
        emu.controls.abort_connection()
        await rec.wait(ev.Resumed, since=mark, timeout=20)
        mark = rec.mark()
        emu.controls.reject_next_client_message(
            code=1007, reason="Request contains an invalid argument."
        )
        bad = await session.send_text("This one is rejected.")
        dropped = await rec.wait(
            lambda e: isinstance(e, ev.SendDropped) and bad.seq in e.seqs,
            since=mark,
            timeout=20,
        )
        assert isinstance(dropped, ev.SendDropped) and "invalid argument" in dropped.reason
        await rec.wait(ev.Resumed, since=mark, timeout=20)
        assert not [e for e in rec.log if isinstance(e, ev.ContextReset | ev.Failed)]
        assert "teal" in await ask(rec, ASK_FIRST)


async def test_go_away_right_after_every_setup_has_a_handover_budget() -> None:
    """Symptom 9 with ``go_away_on_connect``: goAway with 1 s left on every connection.
    No hot loop; the conversation is still answered."""
    policy = EmulatorPolicy(generation_speed=0, go_away_on_connect=1.0)
    async with EmulatorServer(policy=policy) as emu:
        mint = EmulatorMint(emu)
        async with LiveSession(
            AUDIO_CONFIG, mint, watchdogs=FAST_WATCHDOGS, rng=random.Random(3)
        ) as session:
            rec = LiveRecorder(session)
            await rec.wait(ev.Connected)
            await asyncio.sleep(5.0)
            connections = len(emu.controls.connections())
            assert connections <= 10, f"{connections} connections in 5 s"
            assert mint.calls <= 11
            assert not rec.of(ev.Failed)
