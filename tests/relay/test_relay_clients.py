"""Our LiveSession and google-genai through the relay, with a tunnel between device and relay."""

from __future__ import annotations

import asyncio
import random
import ssl
from typing import Any

import pytest
from google import genai
from google.genai import types

from tunnelproof.session import LiveSession
from tunnelproof.session import app_events as ev
from tunnelproof.session.policy import Watchdogs

from .relay_helpers import AUDIO_CONFIG, NUMBER, fetch_ticket, relay_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

WATCHDOGS = Watchdogs(
    token_timeout=5.0,
    connect_timeout=5.0,
    probe_connect_timeout=2.0,
    setup_timeout=5.0,
    reply_timeout=4.0,
    close_timeout=1.0,
    go_away_margin=1.0,
)


async def _answer(events: Any, *, timeout: float = 20.0) -> tuple[str, list[ev.AppEvent]]:
    """Transcript until the next TurnComplete, and every event seen."""
    text: list[str] = []
    seen: list[ev.AppEvent] = []
    async with asyncio.timeout(timeout):
        async for event in events:
            seen.append(event)
            if isinstance(event, ev.OutputTranscript):
                text.append(event.text)
            elif isinstance(event, ev.TurnComplete):
                return "".join(text), seen
    raise AssertionError("session ended")


async def test_live_session_through_a_device_tunnel_gets_the_whole_answer_and_keeps_context() -> (
    None
):
    async with relay_stack() as stack:
        async with LiveSession(
            AUDIO_CONFIG, stack.tickets(), watchdogs=WATCHDOGS, rng=random.Random(3)
        ) as session:
            events = session.events().__aiter__()
            await session.send_text("My favourite colour is teal.")
            first, _ = await _answer(events)
            assert "teal" in first

            await session.send_text("Please count to 300.")
            text: list[str] = []
            seen: list[ev.AppEvent] = []
            cut = False
            async with asyncio.timeout(40):
                async for event in events:
                    seen.append(event)
                    if isinstance(event, ev.OutputTranscript):
                        text.append(event.text)
                        if not cut and len(NUMBER.findall("".join(text))) >= 40:
                            cut = True
                            stack.tunnel.blackhole(drop=True)
                            asyncio.get_running_loop().call_later(3.0, stack.tunnel.restore)
                    elif isinstance(event, ev.TurnComplete):
                        break
            numbers = [int(n) for n in NUMBER.findall("".join(text))]
            assert numbers == list(range(1, 301))
            assert any(isinstance(e, ev.Resumed) for e in seen), "the device did reconnect"

            await session.send_text("What did I say first?")
            answer, _ = await _answer(events)
            assert "teal" in answer
        stats = stack.relay.stats()
        assert stats["device_resumes"] >= 1 and stats["lost_to_bounds"] == 0
        assert len(stack.emu.controls.connections()) == 1, "upstream never cut"


def _genai(base: str, ticket: str, ca_file: str) -> genai.Client:
    return genai.Client(
        api_key=ticket,
        http_options={
            "base_url": base,
            "api_version": "v1alpha",
            "async_client_args": {"ssl": ssl.create_default_context(cafile=ca_file)},
        },
    )


@pytest.mark.filterwarnings("ignore::google.genai.errors.ExperimentalWarning")
async def test_google_genai_through_the_relay_resumes_with_the_relay_handle() -> None:
    async with relay_stack(tls=True) as stack:
        assert stack.ca_file is not None
        base = "https://" + stack.device_ws_base.removeprefix("wss://")
        config = types.LiveConnectConfig(
            response_modalities=[types.Modality.AUDIO],
            output_audio_transcription=types.AudioTranscriptionConfig(),
            session_resumption=types.SessionResumptionConfig(handle=None),
        )
        handle: str | None = None
        heard: list[str] = []
        client = _genai(base, await fetch_ticket(stack.ticket_url), stack.ca_file)
        async with client.aio.live.connect(model="gemini-3.8-live", config=config) as session:
            await session.send_realtime_input(text="Please count to 60.")
            async with asyncio.timeout(20):
                async for message in session.receive():
                    update = message.session_resumption_update
                    if update is not None and update.resumable and update.new_handle:
                        handle = update.new_handle
                    content = message.server_content
                    if (
                        content
                        and content.output_transcription
                        and content.output_transcription.text
                    ):
                        heard.append(content.output_transcription.text)
                    if len(NUMBER.findall("".join(heard))) >= 20:
                        break  # the device goes away mid-answer
        assert handle is not None and handle.startswith("rh1.")
        await asyncio.sleep(0.5)  # the answer goes on upstream meanwhile
        client = _genai(base, await fetch_ticket(stack.ticket_url), stack.ca_file)
        config.session_resumption = types.SessionResumptionConfig(handle=handle)
        async with client.aio.live.connect(model="gemini-3.8-live", config=config) as session:
            async with asyncio.timeout(20):
                async for message in session.receive():
                    content = message.server_content
                    if (
                        content
                        and content.output_transcription
                        and content.output_transcription.text
                    ):
                        heard.append(content.output_transcription.text)
                    if content and content.turn_complete:
                        break
        assert [int(n) for n in NUMBER.findall("".join(heard))] == list(range(1, 61))


async def test_what_the_device_replays_after_a_drop_reaches_gemini_once() -> None:
    """The device re-sends what no handle confirmed; the relay already had it: dropped."""
    async with relay_stack() as stack:
        async with LiveSession(
            AUDIO_CONFIG, stack.tickets(), watchdogs=WATCHDOGS, rng=random.Random(5)
        ) as session:
            events = session.events().__aiter__()
            await session.send_text("My favourite colour is teal.")
            await _answer(events)
            note = "Remember that the door code is 4711."
            # No answer is due, so no frame (and no handle) confirms it to the device.
            sent = await session.send_client_content(
                [{"role": "user", "parts": [{"text": note}]}], turn_complete=False
            )
            assert sent.sent
            async with asyncio.timeout(10):
                while note not in [e["text"] for e in stack.emu.controls.history()]:
                    await asyncio.sleep(0.02)
            stack.tunnel.reset()  # the link drops; the device reconnects and replays
            async with asyncio.timeout(20):
                async for event in events:
                    if isinstance(event, ev.Resumed):
                        assert event.replayed >= 1
                        break
            await session.send_text("What did I say first?")
            answer, _ = await _answer(events)
            assert "teal" in answer
        history = [e["text"] for e in stack.emu.controls.history() if e["role"] == "user"]
        assert history.count(note) == 1
        assert stack.relay.stats()["duplicates_dropped"] == 1


async def test_a_tool_call_pending_across_a_device_drop_can_still_be_answered() -> None:
    """Directly, a drop cancels a pending tool call; through the relay Gemini still waits."""
    from tunnelproof.protocol.client_messages import FunctionResponse
    from tunnelproof.protocol.config import FunctionDeclaration, LiveConfig

    config = LiveConfig(
        model="gemini-3.8-live",
        response_modalities=("AUDIO",),
        output_audio_transcription=True,
        tools=(FunctionDeclaration("turn_on_the_lights", "Turns on the lights."),),
    )
    async with relay_stack() as stack:
        async with LiveSession(
            config, stack.tickets(), watchdogs=WATCHDOGS, rng=random.Random(9)
        ) as session:
            events = session.events().__aiter__()
            await session.send_text("Please turn on the lights.")
            call: ev.ToolCallRequested | None = None
            async with asyncio.timeout(10):
                async for event in events:
                    if isinstance(event, ev.ToolCallRequested):
                        call = event
                        break
            assert call is not None
            stack.tunnel.reset()  # the device's link drops while the call is pending
            seen: list[ev.AppEvent] = []
            async with asyncio.timeout(20):
                async for event in events:
                    seen.append(event)
                    if isinstance(event, ev.Resumed):
                        break
            assert not [e for e in seen if isinstance(e, ev.Rewound)], seen
            result = await session.send_tool_response(
                [FunctionResponse(call.calls[0].id, "turn_on_the_lights", {"result": "on"})]
            )
            assert result.sent
            answer, _ = await _answer(events)
            assert "turn_on_the_lights tool says: on" in answer
        assert len(stack.emu.controls.connections()) == 1  # Gemini's side never dropped
