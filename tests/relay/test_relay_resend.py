"""Replays are dropped exactly; a message the user sends again on purpose is not a replay.

The relay drops a device's replay of what it already received (``relay.dedup``). A
tunnelproof client names each message it sends to a relay (``protocol.relay_setup``), so the
relay knows a replay by its name: the same bytes sent again on purpose ("yes" twice) reach
Gemini, and a replayed question the relay already had does not, wherever it falls. A client
that names nothing gets the rule by content, as before (documented in ``docs/relay.md``).
Real processes over loopback: emulator, relay, ticket route, tunnel proxy.
"""

from __future__ import annotations

import asyncio
import random

import orjson
import pytest
from websockets.asyncio.client import connect

from tunnelproof.emulator import EmulatorPolicy
from tunnelproof.session import LiveSession
from tunnelproof.session import app_events as ev
from tunnelproof.session.stores import MemoryHandleStore

from .relay_helpers import AUDIO_CONFIG, FAST_AUDIO, NUMBER, Stack, fetch_ticket, relay_stack
from .test_relay_clients import WATCHDOGS, _answer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

YES = [{"role": "user", "parts": [{"text": "yes"}]}]


def _said(stack: Stack, text: str) -> int:
    return [e["text"] for e in stack.emu.controls.history() if e["role"] == "user"].count(text)


async def _until_said(stack: Stack, text: str, times: int, timeout: float) -> int:
    """How often Gemini has ``text``, waiting (bounded) until it is ``times``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while _said(stack, text) < times and loop.time() < deadline:
        await asyncio.sleep(0.02)
    return _said(stack, text)


async def test_our_client_saying_yes_again_after_a_resume_reaches_gemini() -> None:
    # The app restarts after "yes" reached the relay but before any handle counted it (no
    # answer is due, so no frame follows). The new session resumes from the stored relay
    # handle with nothing to replay; the user says "yes" again, on purpose. By content it
    # is the message after the handle: the old rule dropped it.
    store = MemoryHandleStore()
    async with relay_stack() as stack:
        async with LiveSession(
            AUDIO_CONFIG,
            stack.tickets(),
            watchdogs=WATCHDOGS,
            rng=random.Random(21),
            conversation_id="yes-twice",
            handle_store=store,
        ) as first:
            events = first.events().__aiter__()
            await first.send_text("Hello there.")
            await _answer(events)
            assert (await first.send_client_content(YES, turn_complete=False)).sent
            assert await _until_said(stack, "yes", 1, timeout=10) == 1
        async with LiveSession(
            AUDIO_CONFIG,
            stack.tickets(),
            watchdogs=WATCHDOGS,
            rng=random.Random(22),
            conversation_id="yes-twice",
            handle_store=store,
        ) as second:
            again = await second.send_client_content(YES, turn_complete=False)
            assert not again.dropped, again  # queued while it resumes, then sent
            assert await _until_said(stack, "yes", 2, timeout=5) == 2
        stats = stack.relay.stats()
        assert stats["device_resumes"] == 1, stats
        assert stats["duplicates_dropped"] == 0, stats
        assert len(stack.emu.controls.connections()) == 1  # one Gemini session throughout


async def test_a_client_that_marks_nothing_keeps_the_content_rule() -> None:
    # A raw Live API client (no marks): "yes" reached the relay after its newest handle;
    # it resumes and sends "yes" again: taken for a replay and dropped (documented limit).
    async with relay_stack() as stack:
        method = "google.ai.generativelanguage.v1alpha.GenerativeService"
        url = f"{stack.device_ws_base}/ws/{method}.BidiGenerateContentConstrained"
        setup = dict(AUDIO_CONFIG.setup_body())
        handle: str | None = None
        async with connect(
            url + "?access_token=" + await fetch_ticket(stack.ticket_url), ping_interval=None
        ) as ws:
            await ws.send(orjson.dumps({"setup": {**setup, "sessionResumption": {}}}).decode())
            async with asyncio.timeout(10):
                while handle is None:
                    msg = orjson.loads(await ws.recv())
                    update = msg.get("sessionResumptionUpdate") or {}
                    handle = update.get("newHandle") or handle
            yes = {"clientContent": {"turns": YES, "turnComplete": False}}
            await ws.send(orjson.dumps(yes).decode())
            assert await _until_said(stack, "yes", 1, timeout=10) == 1
        async with connect(
            url + "?access_token=" + await fetch_ticket(stack.ticket_url), ping_interval=None
        ) as ws:
            resume = {**setup, "sessionResumption": {"handle": handle}}
            await ws.send(orjson.dumps({"setup": resume}).decode())
            assert "setupComplete" in orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            await ws.send(orjson.dumps(yes).decode())
            await asyncio.sleep(0.5)
        assert _said(stack, "yes") == 1
        stats = stack.relay.stats()
        assert stats["duplicates_dropped"] == 1, stats


async def test_a_question_awaiting_its_answer_replayed_after_a_drop_reaches_gemini_once() -> None:
    # A follow-up typed mid-count interrupts it; the model thinks 1 s before answering.
    # Frames (with handles counting the follow-up) reach the device meanwhile, but no
    # answer: the client still owes it one and replays it after a drop in that second.
    # The relay's handle counted it, so by content (a window armed from that count) the
    # replay reached Gemini again; by name it is known.
    policy = EmulatorPolicy(**FAST_AUDIO, think_delay=1.0)
    follow_up = "What is the capital of France?"
    async with relay_stack(policy) as stack:
        async with LiveSession(
            AUDIO_CONFIG, stack.tickets(), watchdogs=WATCHDOGS, rng=random.Random(23)
        ) as session:
            await session.send_text("Please count to 300.")
            heard: list[str] = []
            seen: list[ev.AppEvent] = []
            asked = False
            async with asyncio.timeout(30):
                async for event in session.events():
                    seen.append(event)
                    if isinstance(event, ev.OutputTranscript):
                        heard.append(event.text)
                        if not asked and len(NUMBER.findall("".join(heard))) >= 30:
                            asked = True
                            await session.send_text(follow_up)
                            await asyncio.sleep(0.4)  # the interruption reached us
                            stack.tunnel.blackhole(drop=True)
                            asyncio.get_running_loop().call_later(2.0, stack.tunnel.restore)
                    elif isinstance(event, ev.TurnComplete) and any(
                        isinstance(e, ev.Resumed) for e in seen
                    ):
                        break
        assert any(isinstance(e, ev.Resumed) for e in seen), "the device did reconnect"
        said = [e["text"] for e in stack.emu.controls.events(kind="user_text")]
        assert said.count(follow_up) == 1, said
        stats = stack.relay.stats()
        assert stats["duplicates_dropped"] >= 1 and stats["device_resumes"] == 1, stats
