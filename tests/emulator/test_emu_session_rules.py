"""Session protocol rules: setup first and once, models, malformed frames, casing, frames."""

from __future__ import annotations

import json

import pytest

from tunnelproof.emulator import EmulatorPolicy, EmulatorServer
from tunnelproof.protocol.close_codes import (
    MAX_CLOSE_REASON_BYTES,
    REASON_INVALID_ARGUMENT,
    model_not_found_reason,
)
from tunnelproof.testing.emulator_fixtures import EmulatorFactory

from .emu_helpers import (
    MODEL,
    ask,
    expect_close,
    key_url,
    open_ws,
    recv,
    recv_until,
    refused_with,
    send,
    setup,
    start,
    text_of,
    turn_complete,
)

USER_TURN = {
    "clientContent": {"turns": [{"role": "user", "parts": [{"text": "hi"}]}], "turnComplete": True}
}


async def test_setup_must_come_first(emulator: EmulatorServer) -> None:
    code, reason = await refused_with(key_url(emulator), USER_TURN)
    assert (code, reason) == (1007, REASON_INVALID_ARGUMENT)


async def test_second_setup_closes_1007(emulator: EmulatorServer) -> None:
    ws, _ = await start(emulator)
    await send(ws, setup())
    assert await expect_close(ws) == (1007, REASON_INVALID_ARGUMENT)


@pytest.mark.parametrize("model", ["gemini-live-2.5-flash-preview", "gemini-9-imaginary"])
@pytest.mark.parametrize("version", ["v1alpha", "v1beta"])
async def test_unknown_or_retired_model_closes_1008_not_found(
    emulator: EmulatorServer, model: str, version: str
) -> None:
    code, reason = await refused_with(key_url(emulator, version=version), setup(model=model))
    assert code == 1008
    assert reason == model_not_found_reason(model, version)
    assert reason.startswith(f"models/{model} is not found for API version {version}")
    assert len(reason.encode()) <= MAX_CLOSE_REASON_BYTES


async def test_extra_models_can_be_allowed(emulator_factory: EmulatorFactory) -> None:
    emu = await emulator_factory(EmulatorPolicy(extra_models=frozenset({"my-model"})))
    ws, _ = await start(emu, model="my-model")
    await ws.close()


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2]",
        json.dumps({"setup": {"model": f"models/{MODEL}"}, "clientContent": {}}),
        json.dumps({"bogus": {}}),
        json.dumps({"setup": {"model": f"models/{MODEL}", "responseModalities": ["TEXT"]}}),
        json.dumps({"setup": {"model": f"models/{MODEL}", "generationConfig": "TEXT"}}),
        json.dumps({"setup": {"generationConfig": {}}}),
        json.dumps(
            {
                "setup": {
                    "model": f"models/{MODEL}",
                    "generationConfig": {"responseModalities": ["TEXT", "AUDIO"]},
                }
            }
        ),
    ],
)
async def test_malformed_first_frames_close_1007(emulator: EmulatorServer, frame: str) -> None:
    ws = await open_ws(key_url(emulator))
    await ws.send(frame)
    code, _ = await expect_close(ws)
    assert code == 1007


async def test_setup_root_modalities_get_the_parser_text(emulator: EmulatorServer) -> None:
    message = {"setup": {"model": f"models/{MODEL}", "responseModalities": ["TEXT"]}}
    code, reason = await refused_with(key_url(emulator), message)
    assert (code, reason) == (
        1007,
        "Unknown name \"responseModalities\" at 'setup': Cannot find field.",
    )


@pytest.mark.parametrize(
    "message",
    [
        {"realtimeInput": {"text": "a", "audioStreamEnd": True}},
        {"realtimeInput": {"mediaChunks": [{"mimeType": "audio/pcm;rate=16000", "data": "AAA="}]}},
        {"realtimeInput": {"activityStart": {}}},
        {"realtimeInput": {"audio": {"mimeType": "audio/pcm", "data": "!!notbase64"}}},
        {
            "toolResponse": {
                "functionResponses": [{"id": "never-issued", "name": "x", "response": {}}]
            }
        },
        {"clientContent": {"turns": [{"role": "robot", "parts": [{"text": "x"}]}]}},
    ],
)
async def test_malformed_messages_after_setup_close_1007(
    emulator: EmulatorServer, message: dict[str, object]
) -> None:
    ws, _ = await start(emulator)
    await send(ws, message)
    code, _ = await expect_close(ws)
    assert code == 1007


async def test_snake_case_at_every_level(emulator: EmulatorServer) -> None:
    ws = await open_ws(key_url(emulator))
    await send(
        ws,
        {
            "setup": {
                "model": f"models/{MODEL}",
                "generation_config": {"response_modalities": ["AUDIO"]},
                "output_audio_transcription": {},
                "session_resumption": {},
                "realtime_input_config": {"automatic_activity_detection": {"disabled": True}},
            }
        },
    )
    assert await recv(ws) == {"setupComplete": {}}
    assert (await recv(ws))["sessionResumptionUpdate"]["resumable"] is True
    await send(
        ws,
        {
            "client_content": {
                "turns": [{"role": "user", "parts": [{"text": "snake"}]}],
                "turn_complete": True,
            }
        },
    )
    messages = await recv_until(ws, turn_complete)
    assert any(m.get("serverContent", {}).get("generationComplete") for m in messages)
    await send(ws, {"realtime_input": {"activity_start": {}}})  # allowed: detection disabled
    await send(ws, {"realtime_input": {"activity_end": {}}})
    messages = await recv_until(ws, turn_complete)
    assert any("modelTurn" in m.get("serverContent", {}) for m in messages)
    await ws.close()


async def test_server_frames_are_binary_by_default_and_setup_complete_first(
    emulator: EmulatorServer,
) -> None:
    ws = await open_ws(key_url(emulator))
    await send(ws, setup())
    raw = await ws.recv()
    assert isinstance(raw, bytes) and json.loads(raw) == {"setupComplete": {}}
    await ws.close()


async def test_text_frame_mode(emulator_factory: EmulatorFactory) -> None:
    emu = await emulator_factory(EmulatorPolicy(text_frames=True))
    ws = await open_ws(key_url(emu))
    await send(ws, setup())
    raw = await ws.recv()
    assert isinstance(raw, str) and json.loads(raw) == {"setupComplete": {}}
    await ws.close()


async def test_no_resumption_updates_unless_asked(emulator: EmulatorServer) -> None:
    ws, handle = await start(emulator, resumption=False)
    assert handle is None
    for text in ("one", "two"):
        await send(ws, {"realtimeInput": {"text": text}})
        messages = await recv_until(ws, lambda m: "usageMetadata" in m)
        assert not any("sessionResumptionUpdate" in m for m in messages)
        assert any(m.get("serverContent", {}).get("turnComplete") for m in messages)
    await ws.close()


async def test_turn_ends_with_generation_complete_then_turn_complete(
    emulator: EmulatorServer,
) -> None:
    ws, _ = await start(emulator)
    _, handle, messages = await ask(ws, "hello")
    kinds = [next(iter(m.get("serverContent", {"other": 1}))) for m in messages]
    assert kinds.index("generationComplete") + 1 == kinds.index("turnComplete")
    assert handle is not None
    await ws.close()


async def test_client_content_without_turn_complete_only_appends(emulator: EmulatorServer) -> None:
    ws, _ = await start(emulator)
    await send(
        ws,
        {
            "clientContent": {
                "turns": [
                    {"role": "user", "parts": [{"text": "seeded first"}]},
                    {"role": "model", "parts": [{"text": "ok"}]},
                ],
                "turnComplete": False,
            }
        },
    )
    update = await recv(ws)  # a settled point: a new handle, no answer
    assert update["sessionResumptionUpdate"]["resumable"] is True
    answer, _, _ = await ask(ws, "what did I say first")
    assert answer == 'You first said: "seeded first".'
    await ws.close()


async def test_client_content_interrupts_generation_in_order(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory(EmulatorPolicy(seconds_per_word=0.05))
    ws, _ = await start(emu)
    await send(ws, {"realtimeInput": {"text": "count to 100"}})
    await emu.controls.wait_for_event("generation_chunk", count=2)
    await send(
        ws,
        USER_TURN
        | {
            "clientContent": {
                **USER_TURN["clientContent"],
                "turns": [{"role": "user", "parts": [{"text": "stop"}]}],
            }
        },
    )
    cut = await recv_until(ws, turn_complete)
    contents = [next(iter(m)) + "." + next(iter(m[next(iter(m))])) for m in cut]
    assert contents[-2:] == ["serverContent.interrupted", "serverContent.turnComplete"]
    assert "serverContent.generationComplete" not in contents
    answer = await recv_until(ws, turn_complete)
    assert text_of(answer) == 'You said: "stop".'
    history = emu.controls.history()
    assert [e["text"] for e in history if e["role"] == "user"] == ["count to 100", "stop"]
    assert history[1]["data"] == {"interrupted": True}
    await ws.close()


async def test_refused_credential_closes_even_without_a_message(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory(EmulatorPolicy(auth_close_timeout=0.2))
    ws = await open_ws(key_url(emu).replace("emulator-key", "wrong"))
    code, _ = await expect_close(ws)
    assert code == 1007
