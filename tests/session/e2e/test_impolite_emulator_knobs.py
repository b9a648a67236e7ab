"""Impolite scenarios that need the emulator knobs of issue 13 (helper ``emu``):

* ``EmulatorPolicy.think_delay``: model silence before the first output of a turn;
* ``EmulatorPolicy.go_away_on_connect``: goAway with that ``timeLeft`` right after
  ``setupComplete`` on every connection;
* ``EmulatorControls.reject_next_client_message(code, reason)``: the next client message
  is answered with a close (1007 by default), as Google does for a message it rejects.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from tunnelproof.emulator import EmulatorPolicy
from tunnelproof.session import app_events as ev

from .impolite_helpers import wait_transcript
from .session_e2e_helpers import FAST_WATCHDOGS, FIRST, ask_spoken, check_context, live_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def test_a_model_that_thinks_longer_than_the_reply_watchdog_is_not_a_dead_link() -> None:
    """Symptom 3: extended thinking. The model is silent 2.5 s before answering (reply_timeout
    is 1.5 s, so the link is checked once) on a healthy link: no reconnect, the question is sent once and answered."""
    watchdogs = replace(FAST_WATCHDOGS, reply_timeout=1.5, link_check_timeout=1.0)
    async with live_stack(seed=1, watchdogs=watchdogs) as s:
        s.emu.controls.update_policy(think_delay=2.5)
        mark = s.rec.mark()
        assert (await s.session.send_text("Tell me a story.")).sent
        await wait_transcript(s.rec, "Once upon a time", since=mark, timeout=30)
        lifecycle = [
            e for e in s.rec.log[mark:] if isinstance(e, ev.Disconnected | ev.Reconnecting)
        ]
        assert not lifecycle, f"false dead-link alarm: {lifecycle}"
        asked = [e for e in s.emu.controls.events(kind="user_text") if "story" in str(e)]
        assert len(asked) == 1, asked


async def test_message_rejected_by_the_server_after_a_resume_is_reported_not_a_reset() -> None:
    """Symptom 5, with the emulator rejecting an ordinary message (1007) on a resumed
    connection: reported dropped with the reason, no context reset, resumed again."""
    async with live_stack(seed=2) as s:
        mark = s.rec.mark()
        s.emu.controls.abort_connection()
        await s.rec.wait(ev.Resumed, since=mark, timeout=20)
        mark = s.rec.mark()
        s.emu.controls.reject_next_client_message(
            code=1007, reason="Request contains an invalid argument."
        )
        bad = await s.session.send_text("This one is rejected.")
        dropped = await s.rec.wait(
            lambda e: isinstance(e, ev.SendDropped) and bad.seq in e.seqs,
            since=mark,
            timeout=20,
        )
        assert isinstance(dropped, ev.SendDropped) and "invalid argument" in dropped.reason
        await s.rec.wait(ev.Resumed, since=mark, timeout=20)
        assert not [e for e in s.rec.log if isinstance(e, ev.ContextReset | ev.Failed)]
        await check_context(s.rec)


async def test_go_away_right_after_every_setup_has_a_handover_budget() -> None:
    """Symptom 9 with ``go_away_on_connect``: goAway with 1 s left (not above
    ``go_away_margin``) on every connection. No hot loop of connections and token fetches,
    and the conversation is still answered: once the handover budget is spent the client
    stays on each connection until the server closes it, so an answer that fits in the
    second the server grants arrives (before, it left each connection at once, forever)."""
    policy = EmulatorPolicy(generation_speed=0, go_away_on_connect=1.0)
    async with live_stack(policy, seed=3, seeded=False) as s:
        await s.rec.wait(ev.Connected)
        await asyncio.sleep(3.0)  # 7 connections here; the hot loop made hundreds
        connections = len(s.emu.controls.connections())
        assert connections <= 10, f"{connections} connections in 3 s"
        assert s.mint.calls <= 11
        assert not s.rec.of(ev.Failed)
        assert "teal" in await ask_spoken(s.rec, FIRST, timeout=30)
        await check_context(s.rec)
        assert not s.rec.of(ev.Failed)
        # Past the budget the client waited for the server's deadline close (1011) instead
        # of leaving with a 1000 of its own the moment the goAway came.
        server_closes = [e for e in s.rec.of(ev.Disconnected) if e.code == 1011 and e.planned]
        assert server_closes, [(e.code, e.reason) for e in s.rec.of(ev.Disconnected)]
