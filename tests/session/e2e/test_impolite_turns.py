"""Impolite users, end to end (issue 13): overlapping turns, cut-off answers, re-issued tools.

Each test drives ``LiveSession`` only through its public API against the emulator on
loopback, through a real TCP tunnel proxy where the link matters. Audio-first: the model
answers in AUDIO and the tests read its words from ``OutputTranscript``.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from tunnelproof.emulator import EmulatorPolicy
from tunnelproof.protocol.client_messages import FunctionResponse
from tunnelproof.protocol.config import FunctionDeclaration
from tunnelproof.session import app_events as ev

from .impolite_helpers import wait_transcript
from .session_e2e_helpers import (
    AUDIO_CONFIG,
    check_context,
    live_stack,
    new_handle,
    transcript_since,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

STORY_START = "Once upon a time"
TALKATIVE = EmulatorPolicy(generation_speed=4.0)


async def test_follow_up_asked_while_the_answer_arrives_survives_a_drop() -> None:
    """Symptom 1: question 2 is sent while answer 1 is still arriving on a 300 ms link.

    The server finishes answer 1, issues a resumable handle and only then reads question 2,
    so that handle does not hold it. The client must not take answer 1's output and that
    handle as confirming question 2: after a drop it must replay it (and it gets answered).
    """
    async with live_stack(TALKATIVE, tunnel=True, seed=1) as s:
        s.tunnel.latency(300)
        mark = s.rec.mark()
        first = await s.session.send_text("Count to 3.")
        assert first.sent
        await s.rec.wait(ev.OutputTranscript, since=mark, timeout=15)
        # answer 1 is arriving: the impatient user asks the next question now
        second = await s.session.send_text("Tell me a story.")
        assert second.sent
        await s.rec.wait(ev.TurnComplete, since=mark, timeout=15)
        await new_handle(s.session, s.handle)  # issued after answer 1, before question 2
        s.tunnel.reset()
        resumed_at = s.rec.mark()
        await s.rec.wait(ev.Resumed, since=mark, timeout=20)
        dropped = [e for e in s.rec.of(ev.SendDropped) if second.seq in e.seqs]
        assert not dropped, f"question 2 should be replayed, not dropped: {dropped}"
        await wait_transcript(s.rec, STORY_START, since=resumed_at, timeout=25)


async def test_answer_cut_off_by_a_resume_comes_again_and_reply_lost_says_so() -> None:
    """Symptom 7 (resume): a drop mid-answer rewinds the partial answer; the question is
    replayed, so the full answer comes, and ``Rewound.reply_lost`` is False (it means "the
    answer will not come unless you ask again")."""
    async with live_stack(TALKATIVE, seed=2) as s:
        mark = s.rec.mark()
        assert (await s.session.send_text("Tell me a story.")).sent
        for _ in range(3):
            await s.rec.wait(ev.OutputTranscript, since=s.rec.mark(), timeout=15)
        s.emu.controls.abort_connection()
        rewound = await s.rec.wait(ev.Rewound, since=mark, timeout=15)
        assert isinstance(rewound, ev.Rewound)
        assert rewound.partial_text.strip(), "the cut-off words are reported"
        await s.rec.wait(ev.Resumed, since=mark, timeout=20)
        after = s.rec.mark()
        await wait_transcript(s.rec, "slept soundly", since=after, timeout=40)
        assert STORY_START in transcript_since(s.rec, after), "the answer starts over"
        assert rewound.reply_lost is False, "the answer came, so it was not lost"


async def test_question_cut_off_by_a_context_reset_is_answered_in_the_fresh_session() -> None:
    """Symptom 7 (reset): the server refuses the resume (1007), a fresh session is
    re-seeded; the question whose answer was cut off is asked again there and answered."""
    async with live_stack(TALKATIVE, seed=3) as s:
        mark = s.rec.mark()
        assert (await s.session.send_text("Tell me a story.")).sent
        await s.rec.wait(ev.OutputTranscript, since=mark, timeout=15)
        s.emu.controls.refuse_resumes(1, code=1007, reason="Request contains an invalid argument.")
        s.emu.controls.abort_connection()
        await s.rec.wait(ev.ContextReset, since=mark, timeout=20)
        after = s.rec.mark()
        await wait_transcript(s.rec, "slept soundly", since=after, timeout=40)
        await s.rec.wait(ev.TurnComplete, since=after, timeout=10)
        assert not s.rec.of(ev.Failed)
        await check_context(s.rec)  # and the fresh session still knows the history


LIGHTS = FunctionDeclaration(name="turn_on_the_lights", description="Turns on the lights.")


async def test_tool_call_reissued_after_a_reconnect_is_marked_with_its_id() -> None:
    """Symptom 10: a tool call lost with its turn is issued again by the resumed session;
    the app can tell (the call's id, and ``reissued`` naming the call it replaces)."""
    config = replace(AUDIO_CONFIG, tools=(LIGHTS,))
    async with live_stack(TALKATIVE, config=config, seed=4) as s:
        mark = s.rec.mark()
        assert (await s.session.send_text("Please turn on the lights.")).sent
        first = await s.rec.wait(ev.ToolCallRequested, since=mark, timeout=15)
        assert isinstance(first, ev.ToolCallRequested)
        first_id = first.calls[0].id
        assert first.reissued == (), "a first call is not a re-issue"
        s.emu.controls.abort_connection()  # the app is still running the tool
        rewound = await s.rec.wait(ev.Rewound, since=mark, timeout=15)
        assert isinstance(rewound, ev.Rewound)
        assert rewound.cancelled_tool_call_ids == (first_id,)
        again = await s.rec.wait(ev.ToolCallRequested, since=s.rec.mark(), timeout=20)
        assert isinstance(again, ev.ToolCallRequested)
        assert again.calls[0].id != first_id
        assert again.reissued == (first_id,), again
        response = FunctionResponse(id=again.calls[0].id, name=LIGHTS.name, response={"ok": 1})
        result = await s.session.send_tool_response([response])
        assert result.sent
        await wait_transcript(s.rec, "tool says", since=mark, timeout=20)
