"""End-to-end over loopback: answers to no open tool call are refused at the call.

Found by a hostile tester: after ``ask("hi")``, ``send_tool_response`` with an id the
session never saw returned ``sent``; the emulator (as Google) closed 1007 and the session
was ``failed`` within 0.3 s. Now it is refused locally and the session lives on; so is a
second answer to a call already answered (the server has no open call for it either).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from tunnelproof.protocol.client_messages import FunctionResponse
from tunnelproof.protocol.config import FunctionDeclaration
from tunnelproof.session import SessionState
from tunnelproof.session import app_events as ev

from .session_e2e_helpers import AUDIO_CONFIG, ask_spoken, check_context, live_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

LIGHTS = FunctionDeclaration("turn_on_the_lights", "Turns on the lights.")


async def test_an_unknown_tool_call_id_is_refused_and_the_session_lives_on() -> None:
    async with live_stack() as stack:
        session, rec = stack.session, stack.rec
        assert await ask_spoken(rec, "hi")
        mark = rec.mark()
        result = await session.send_tool_response([FunctionResponse("nope", "f", {})])
        assert result.dropped
        assert result.reason == "no open tool call 'nope': the model never made it"
        await asyncio.sleep(0.5)  # the old failure came within 0.3 s
        assert session.state is SessionState.CONNECTED
        assert not [e for e in rec.log[mark:] if isinstance(e, ev.Disconnected | ev.Failed)]
        assert not [m for m in stack.emu.controls.history() if m.get("source") == "toolResponse"]
        await check_context(rec)
        assert not rec.of(ev.Failed) and session.state is SessionState.CONNECTED


async def test_a_second_answer_to_the_same_call_is_refused_the_first_is_used() -> None:
    async with live_stack(config=replace(AUDIO_CONFIG, tools=(LIGHTS,))) as stack:
        session, rec = stack.session, stack.rec
        mark = rec.mark()
        assert (await session.send_text("Please turn on the lights.")).sent
        call = await rec.wait(ev.ToolCallRequested, since=mark)
        assert isinstance(call, ev.ToolCallRequested)
        call_id = call.calls[0].id
        answer = [FunctionResponse(call_id, "turn_on_the_lights", {"result": "on"})]
        assert (await session.send_tool_response(answer)).sent
        again = await session.send_tool_response(answer)
        assert again.dropped and again.reason is not None
        assert f"no open tool call {call_id!r}" in again.reason
        await rec.wait(ev.TurnComplete, since=mark)
        assert "turn_on_the_lights tool says" in "".join(
            e.text for e in rec.log[mark:] if isinstance(e, ev.OutputTranscript)
        )
        await asyncio.sleep(0.3)
        assert session.state is SessionState.CONNECTED
        assert not [e for e in rec.log[mark:] if isinstance(e, ev.Disconnected | ev.Failed)]
        await check_context(rec)
