"""Impolite users, end to end (issue 13): overlapping turns, cut-off answers, re-issued tools.

Each test drives ``LiveSession`` only through its public API against the emulator on
loopback, through a real TCP tunnel proxy where the link matters. Audio-first: the model
answers in AUDIO and the tests read its words from ``OutputTranscript``.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from tunnelproof.emulator import EmulatorPolicy, EmulatorServer
from tunnelproof.protocol.client_messages import FunctionResponse
from tunnelproof.protocol.config import FunctionDeclaration
from tunnelproof.session import LiveSession
from tunnelproof.session import app_events as ev
from tunnelproof.testing.tunnel import TunnelProxy

from .impolite_helpers import (
    AUDIO_CONFIG,
    LiveRecorder,
    ask,
    new_handle,
    transcript_since,
    wait_transcript,
)
from .session_e2e_helpers import FAST_WATCHDOGS, FIRST, EmulatorMint, through

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

STORY_START = "Once upon a time"


async def test_follow_up_asked_while_the_answer_arrives_survives_a_drop() -> None:
    """Symptom 1: question 2 is sent while answer 1 is still arriving on a 300 ms link.

    The server finishes answer 1, issues a resumable handle and only then reads question 2,
    so that handle does not hold it. The client must not take answer 1's output and that
    handle as confirming question 2: after a drop it must replay it (and it gets answered).
    """
    async with (
        EmulatorServer(policy=EmulatorPolicy(generation_speed=4.0)) as emu,
        TunnelProxy("127.0.0.1", emu.port) as tunnel,
    ):
        source = through(tunnel.url("ws"), EmulatorMint(emu))
        async with LiveSession(
            AUDIO_CONFIG, source, watchdogs=FAST_WATCHDOGS, rng=random.Random(1)
        ) as session:
            rec = LiveRecorder(session)
            await rec.wait(ev.Connected)
            assert "teal" in await ask(rec, FIRST)
            handle = await new_handle(session, None)
            tunnel.latency(300)
            mark = rec.mark()
            first = await session.send_text("Count to 3.")
            assert first.sent
            await rec.wait(ev.OutputTranscript, since=mark, timeout=15)
            # answer 1 is arriving: the impatient user asks the next question now
            second = await session.send_text("Tell me a story.")
            assert second.sent
            await rec.wait(ev.TurnComplete, since=mark, timeout=15)
            await new_handle(session, handle)  # issued after answer 1, before question 2
            tunnel.reset()
            resumed_at = rec.mark()
            await rec.wait(ev.Resumed, since=mark, timeout=20)
            dropped = [e for e in rec.of(ev.SendDropped) if second.seq in e.seqs]
            assert not dropped, f"question 2 should be replayed, not dropped: {dropped}"
            await wait_transcript(rec, STORY_START, since=resumed_at, timeout=25)


async def test_answer_cut_off_by_a_resume_comes_again_and_reply_lost_says_so() -> None:
    """Symptom 7 (resume): a drop mid-answer rewinds the partial answer; the question is
    replayed, so the full answer comes, and ``Rewound.reply_lost`` is False (it means "the
    answer will not come unless you ask again")."""
    async with (
        EmulatorServer(policy=EmulatorPolicy(generation_speed=4.0)) as emu,
        LiveSession(
            AUDIO_CONFIG, EmulatorMint(emu), watchdogs=FAST_WATCHDOGS, rng=random.Random(2)
        ) as session,
    ):
        rec = LiveRecorder(session)
        await rec.wait(ev.Connected)
        assert "teal" in await ask(rec, FIRST)
        await new_handle(session, None)
        mark = rec.mark()
        assert (await session.send_text("Tell me a story.")).sent
        for _ in range(3):
            await rec.wait(ev.OutputTranscript, since=rec.mark(), timeout=15)
        emu.controls.abort_connection()
        rewound = await rec.wait(ev.Rewound, since=mark, timeout=15)
        assert isinstance(rewound, ev.Rewound)
        assert rewound.partial_text.strip(), "the cut-off words are reported"
        await rec.wait(ev.Resumed, since=mark, timeout=20)
        after = rec.mark()
        await wait_transcript(rec, "slept soundly", since=after, timeout=40)
        assert STORY_START in transcript_since(rec, after), "the answer starts over"
        assert rewound.reply_lost is False, "the answer came, so it was not lost"


async def test_question_cut_off_by_a_context_reset_is_answered_in_the_fresh_session() -> None:
    """Symptom 7 (reset): the server refuses the resume (1007), a fresh session is
    re-seeded; the question whose answer was cut off is asked again there and answered."""
    async with (
        EmulatorServer(policy=EmulatorPolicy(generation_speed=4.0)) as emu,
        LiveSession(
            AUDIO_CONFIG, EmulatorMint(emu), watchdogs=FAST_WATCHDOGS, rng=random.Random(3)
        ) as session,
    ):
        rec = LiveRecorder(session)
        await rec.wait(ev.Connected)
        assert "teal" in await ask(rec, FIRST)
        await new_handle(session, None)
        mark = rec.mark()
        assert (await session.send_text("Tell me a story.")).sent
        await rec.wait(ev.OutputTranscript, since=mark, timeout=15)
        emu.controls.refuse_resumes(1, code=1007, reason="Request contains an invalid argument.")
        emu.controls.abort_connection()
        await rec.wait(ev.ContextReset, since=mark, timeout=20)
        after = rec.mark()
        await wait_transcript(rec, "slept soundly", since=after, timeout=40)
        await rec.wait(ev.TurnComplete, since=after, timeout=10)
        assert not rec.of(ev.Failed)
        # and the fresh session still knows the history
        assert "teal" in await ask(rec, "What did I say first?")


LIGHTS = FunctionDeclaration(name="turn_on_the_lights", description="Turns on the lights.")


async def test_tool_call_reissued_after_a_reconnect_is_marked_with_its_id() -> None:
    """Symptom 10: a tool call lost with its turn is issued again by the resumed session;
    the app can tell (the call's id, and ``reissued`` naming the call it replaces)."""
    config = replace(AUDIO_CONFIG, tools=(LIGHTS,))
    async with (
        EmulatorServer(policy=EmulatorPolicy(generation_speed=4.0)) as emu,
        LiveSession(
            config, EmulatorMint(emu), watchdogs=FAST_WATCHDOGS, rng=random.Random(4)
        ) as session,
    ):
        rec = LiveRecorder(session)
        await rec.wait(ev.Connected)
        assert "teal" in await ask(rec, FIRST)
        await new_handle(session, None)
        mark = rec.mark()
        assert (await session.send_text("Please turn on the lights.")).sent
        first = await rec.wait(ev.ToolCallRequested, since=mark, timeout=15)
        assert isinstance(first, ev.ToolCallRequested)
        first_id = first.calls[0].id
        assert first.reissued == (), "a first call is not a re-issue"
        emu.controls.abort_connection()  # the app is still running the tool
        rewound = await rec.wait(ev.Rewound, since=mark, timeout=15)
        assert isinstance(rewound, ev.Rewound)
        assert rewound.cancelled_tool_call_ids == (first_id,)
        again = await rec.wait(ev.ToolCallRequested, since=rec.mark(), timeout=20)
        assert isinstance(again, ev.ToolCallRequested)
        assert again.calls[0].id != first_id
        assert again.reissued == (first_id,), again
        response = FunctionResponse(id=again.calls[0].id, name=LIGHTS.name, response={"ok": 1})
        result = await session.send_tool_response([response])
        assert result.sent
        await wait_transcript(rec, "tool says", since=mark, timeout=20)
