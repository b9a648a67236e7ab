"""Audio-only models and the late-2026 protocol facts (reference sections 6 and 10)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from google.genai import errors, types

from tunnelproof.emulator import EmulatorPolicy, EmulatorServer
from tunnelproof.protocol.close_codes import REASON_DEADLINE_EXPIRED, REASON_INVALID_ARGUMENT
from tunnelproof.protocol.models import EMULATOR_TEXT_MODEL, LIVE_MODELS
from tunnelproof.testing.emulator_fixtures import EmulatorFactory

from .emu_helpers import (
    Json,
    ask,
    expect_close,
    genai_client,
    is_update,
    key_url,
    recv_until,
    refused_with,
    send,
    setup,
    start,
    text_of,
    turn_complete,
)

CURRENT = sorted(LIVE_MODELS)


def _content(messages: list[Json]) -> list[Json]:
    return [m["serverContent"] for m in messages if "serverContent" in m]


# -- TEXT is refused on every current model ------------------------------------------------


@pytest.mark.parametrize("model", CURRENT)
async def test_text_setup_is_refused_1007_naming_the_model(
    emulator: EmulatorServer, model: str
) -> None:
    code, reason = await refused_with(key_url(emulator), setup(model=model, modality="TEXT"))
    assert code == 1007
    assert reason == (
        f"Invalid argument: models/{model} supports response modality AUDIO only, not TEXT."
    )
    assert emulator.controls.sessions() == []  # no setupComplete, no session


async def test_no_modality_means_audio_and_audio_is_accepted(emulator: EmulatorServer) -> None:
    ws, _ = await start(emulator, generationConfig={})
    text, _, messages = await ask(ws, "hello")
    assert text == 'You said: "hello".'
    parts = [p for c in _content(messages) for p in c.get("modelTurn", {}).get("parts", [])]
    assert parts and all("inlineData" in p and "text" not in p for p in parts)
    await ws.close()


async def test_only_the_emulator_text_model_answers_in_text(emulator: EmulatorServer) -> None:
    ws, _ = await start(emulator, model=EMULATOR_TEXT_MODEL, modality="TEXT", transcript=False)
    text, _, messages = await ask(ws, "plain text please")
    assert text == 'You said: "plain text please".'
    parts = [p for c in _content(messages) for p in c.get("modelTurn", {}).get("parts", [])]
    assert parts and all("text" in p for p in parts)
    await ws.close()


async def test_text_setup_on_a_resume_is_refused_too(emulator: EmulatorServer) -> None:
    ws, handle = await start(emulator)
    await ws.close()
    await emulator.controls.wait_for_open(0)
    code, _ = await refused_with(key_url(emulator), setup(handle=handle, modality="TEXT"))
    assert code == 1007


@pytest.mark.e2e
@pytest.mark.parametrize("model", ["gemini-3.8-live", "gemini-3.1-flash-live-preview"])
async def test_genai_text_setup_raises_api_error_1007(
    emulator_factory: EmulatorFactory, model: str
) -> None:
    emu = await emulator_factory(EmulatorPolicy(generation_speed=0), tls=True)
    client = genai_client(emu, emu.api_key, api_version="v1beta")
    config = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])

    async def listen() -> None:
        async with client.aio.live.connect(model=model, config=config) as session:
            async for _ in session.receive():
                pass

    with pytest.raises(errors.APIError) as info:
        await listen()
    assert info.value.code == 1007
    assert f"models/{model} supports response modality AUDIO only" in str(info.value)


# -- interactionStatus ---------------------------------------------------------------------


async def test_turn_complete_carries_interaction_status_idle(emulator: EmulatorServer) -> None:
    ws, _ = await start(emulator)
    _, _, messages = await ask(ws, "hi")
    ends = [c for c in _content(messages) if c.get("turnComplete")]
    assert ends == [{"turnComplete": True, "interactionStatus": "IDLE"}]
    await ws.close()


async def test_interaction_status_can_be_switched_off(emulator_factory: EmulatorFactory) -> None:
    emu = await emulator_factory(EmulatorPolicy(generation_speed=0, interaction_status=False))
    ws, _ = await start(emu)
    _, _, messages = await ask(ws, "hi")
    assert [c for c in _content(messages) if c.get("turnComplete")] == [{"turnComplete": True}]
    await ws.close()


async def test_background_reasoning_is_in_progress_then_idle_then_the_handle(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory(
        EmulatorPolicy(generation_speed=0, background_reasoning=0.4, handle_delay=0.0)
    )
    ws, _ = await start(emu)
    loop = asyncio.get_running_loop()
    await send(
        ws,
        {"clientContent": {"turns": [{"parts": [{"text": "think"}]}], "turnComplete": True}},
    )
    first = await recv_until(ws, turn_complete)
    done_at = loop.time()
    assert first[-1]["serverContent"] == {"turnComplete": True, "interactionStatus": "IN_PROGRESS"}
    rest = await recv_until(ws, is_update)
    idle = [m for m in rest if m.get("serverContent") == {"interactionStatus": "IDLE"}]
    assert len(idle) == 1
    assert rest.index(idle[0]) < len(rest) - 1  # IDLE before the handle
    assert rest[-1]["sessionResumptionUpdate"]["resumable"] is True
    assert loop.time() - done_at >= 0.35
    await ws.close()


async def test_new_input_during_background_reasoning_ends_it(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory(EmulatorPolicy(generation_speed=0, background_reasoning=5.0))
    ws, _ = await start(emu)
    await send(ws, {"realtimeInput": {"text": "one"}})
    await recv_until(ws, turn_complete)
    await send(ws, {"realtimeInput": {"text": "two"}})
    messages = await recv_until(ws, turn_complete, timeout=3.0)
    assert all(m.get("serverContent") != {"interactionStatus": "IDLE"} for m in messages)
    assert not any(c.get("interrupted") for c in _content(messages))  # turn one had ended
    await ws.close()


# -- the handle comes after turnComplete ---------------------------------------------------


async def test_the_handle_arrives_handle_delay_after_turn_complete(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory(EmulatorPolicy(generation_speed=0, handle_delay=0.3))
    ws, _ = await start(emu)
    loop = asyncio.get_running_loop()
    await send(ws, {"realtimeInput": {"text": "hi"}})
    await recv_until(ws, turn_complete)
    done_at = loop.time()
    after = await recv_until(ws, is_update)
    assert loop.time() - done_at >= 0.25
    assert after[-1]["sessionResumptionUpdate"]["resumable"] is True
    await ws.close()


def test_handle_delay_defaults_to_tens_of_milliseconds() -> None:
    assert 0.02 <= EmulatorPolicy().handle_delay <= 0.07


async def test_a_drop_before_the_delayed_handle_resumes_from_the_older_one(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory(EmulatorPolicy(generation_speed=0, handle_delay=0.6))
    ws, _ = await start(emu)
    _, first_handle, _ = await ask(ws, "my name is Ada")  # waits out the delay
    assert first_handle is not None
    await send(ws, {"realtimeInput": {"text": "my name is Bob"}})
    await recv_until(ws, turn_complete)
    await ws.close()  # before the handle that would contain "Bob"
    await emu.controls.wait_for_open(0)
    ws2, _ = await start(emu, handle=first_handle)
    text, _, _ = await ask(ws2, "what is my name")
    assert text == "Your name is Ada."
    await ws2.close()


# -- lifetime 1011, then the resume refused 1007 (fault) -----------------------------------


async def test_lifetime_close_then_resume_refused_1007_fault(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory(
        EmulatorPolicy(
            generation_speed=0,
            connection_lifetime=0.6,
            go_away_lead=0.0,
            refuse_resume_after_lifetime=True,
        )
    )
    ws, handle = await start(emu)
    assert await expect_close(ws) == (1011, REASON_DEADLINE_EXPIRED)
    await emu.controls.wait_for_open(0)
    code, reason = await refused_with(key_url(emu), setup(handle=handle))
    assert (code, reason) == (1007, REASON_INVALID_ARGUMENT)


async def test_without_the_fault_a_lifetime_close_resumes(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory(
        EmulatorPolicy(generation_speed=0, connection_lifetime=0.6, go_away_lead=0.0)
    )
    ws, handle = await start(emu)
    assert await expect_close(ws) == (1011, REASON_DEADLINE_EXPIRED)
    await emu.controls.wait_for_open(0)
    ws2, _ = await start(emu, handle=handle)
    await ws2.close()


# -- a resume that restores nothing (fault) ------------------------------------------------


async def _told_then_resumed(emu: EmulatorServer) -> str:
    ws, _ = await start(emu)
    _, handle, _ = await ask(ws, "my name is Ada")
    await ws.close()
    await emu.controls.wait_for_open(0)
    ws2, _ = await start(emu, handle=handle)
    text, _, _ = await ask(ws2, "what is my name")
    await ws2.close()
    await emu.controls.wait_for_open(0)
    return text


async def test_forget_resumes_accepts_the_resume_but_restores_nothing(
    emulator: EmulatorServer,
) -> None:
    emulator.controls.forget_resumes(1)
    assert await _told_then_resumed(emulator) == "I don't know your name yet."
    assert emulator.hub.events.count("resume_forgot") == 1
    assert emulator.controls.connections()[1]["resumed"] is True
    # Counted down: the next resume restores again.
    assert await _told_then_resumed(emulator) == "Your name is Ada."


async def test_resume_restores_nothing_policy_applies_to_every_resume(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory(EmulatorPolicy(generation_speed=0, resume_restores_nothing=True))
    assert await _told_then_resumed(emu) == "I don't know your name yet."
    assert await _told_then_resumed(emu) == "I don't know your name yet."


async def test_forget_resumes_over_http(emulator: EmulatorServer) -> None:
    url = emulator.control_url + "/resumes/forget"
    async with aiohttp.ClientSession() as http, http.post(url, json={"count": 1}) as r:
        assert r.status == 200 and await r.json() == {"forgetting": 1}
    assert await _told_then_resumed(emulator) == "I don't know your name yet."


async def test_new_knobs_reach_the_policy_over_http(emulator: EmulatorServer) -> None:
    knobs = {
        "think_delay": 2.5,
        "handle_delay": 0.05,
        "interaction_status": False,
        "background_reasoning": 1.5,
        "go_away_on_connect": 3.0,
        "refuse_resume_after_lifetime": True,
        "resume_restores_nothing": True,
        "resume_takeover_idle": 4.0,
        "resume_probe_timeout": 0.5,
        "modality_close_code": 1008,
    }
    async with aiohttp.ClientSession() as http:
        async with http.patch(emulator.control_url + "/policy", json=knobs) as r:
            assert r.status == 200
            policy = await r.json()
        async with http.patch(emulator.control_url + "/policy", json={"go_away_on_connect": None}):
            pass
    assert {k: policy[k] for k in knobs} == knobs
    assert emulator.hub.policy.go_away_on_connect is None


async def test_input_within_the_delay_flushes_the_turns_handle_first(
    emulator_factory: EmulatorFactory,
) -> None:
    """The handle is taken at the turn's end: a question read right after it is not in it
    (issue 13 item 1: answer 1's handle arrives, only then is question 2 read)."""
    emu = await emulator_factory(EmulatorPolicy(generation_speed=0, handle_delay=5.0))
    ws, _ = await start(emu)
    await send(ws, {"realtimeInput": {"text": "my name is Ada"}})
    await recv_until(ws, turn_complete)
    await send(ws, {"realtimeInput": {"text": "my name is Bob"}})  # within the 5 s delay
    second = await recv_until(ws, turn_complete)
    updates = [m["sessionResumptionUpdate"] for m in second if is_update(m)]
    assert updates[0]["resumable"] is True and updates[1] == {"resumable": False}
    handle = updates[0]["newHandle"]
    await ws.close()
    await emu.controls.wait_for_open(0)
    ws2, _ = await start(emu, handle=handle)
    # Only the answer matters here: ``ask`` would also wait the 5 s for its handle.
    turn = {"role": "user", "parts": [{"text": "what is my name"}]}
    await send(ws2, {"clientContent": {"turns": [turn], "turnComplete": True}})
    answer = await recv_until(ws2, turn_complete)
    assert text_of(answer) == "Your name is Ada."
    await ws2.close()
