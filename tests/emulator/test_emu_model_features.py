"""Per-model features Google refuses (reference section 6, from the model pages).

gemini-3.8-live: proactive audio is always on ("``proactive_audio: false`` returns an
error") and affective dialog was removed; gemini-3.1-flash-live-preview has neither. The
emulator accepted all of these, so a client asking for them passed every local test and
failed against Google. The close is 1008 with Google's recorded "Operation is not
implemented, or supported, or enabled." (assumption 19 in docs/emulator.md).
"""

from __future__ import annotations

from typing import Any

import pytest
from google.genai import errors, types

from tunnelproof.emulator import EmulatorPolicy, EmulatorServer
from tunnelproof.protocol.close_codes import REASON_NOT_IMPLEMENTED
from tunnelproof.testing.emulator_fixtures import EmulatorFactory

from .emu_helpers import ask, genai_client, key_url, refused_with, setup, start

PROACTIVE_OFF: dict[str, Any] = {"proactivity": {"proactiveAudio": False}}
PROACTIVE_ON: dict[str, Any] = {"proactivity": {"proactiveAudio": True}}


def _affective(model: str) -> dict[str, Any]:
    body = setup(model=model)["setup"]
    body["generationConfig"]["enableAffectiveDialog"] = True
    return {"setup": body}


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        ("gemini-3.8-live", PROACTIVE_OFF),
        ("gemini-3.8-live-extended-thinking", PROACTIVE_OFF),
        ("gemini-3.1-flash-live-preview", PROACTIVE_ON),
    ],
)
async def test_proactive_audio_the_model_cannot_honour_is_refused(
    emulator: EmulatorServer, model: str, extra: dict[str, Any]
) -> None:
    code, reason = await refused_with(key_url(emulator), setup(model=model, **extra))
    assert (code, reason) == (1008, REASON_NOT_IMPLEMENTED)
    assert emulator.controls.sessions() == []  # no setupComplete, no session


@pytest.mark.parametrize("model", ["gemini-3.8-live", "gemini-3.1-flash-live-preview"])
async def test_affective_dialog_is_refused_where_the_model_has_none(
    emulator: EmulatorServer, model: str
) -> None:
    code, reason = await refused_with(key_url(emulator), _affective(model))
    assert (code, reason) == (1008, REASON_NOT_IMPLEMENTED)


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        ("gemini-3.8-live", PROACTIVE_ON),  # on is what it does anyway
        ("gemini-3.8-live", {"proactivity": {}}),
        ("gemini-2.5-flash-native-audio-preview-12-2025", PROACTIVE_OFF),
        ("gemini-2.5-flash-native-audio-preview-12-2025", PROACTIVE_ON),
    ],
)
async def test_what_the_model_has_is_accepted(
    emulator: EmulatorServer, model: str, extra: dict[str, Any]
) -> None:
    ws, _ = await start(emulator, model=model, **extra)
    text, _, _ = await ask(ws, "hello")
    assert text == 'You said: "hello".'
    await ws.close()


def test_the_close_code_is_a_policy_knob() -> None:
    assert EmulatorPolicy().feature_close_code == 1008
    assert EmulatorPolicy().update({"feature_close_code": "1007"}).feature_close_code == 1007


@pytest.mark.e2e
async def test_genai_proactive_audio_off_on_3_8_raises_api_error_1008(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory(EmulatorPolicy(generation_speed=0), tls=True)
    client = genai_client(emu, emu.api_key)
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        proactivity=types.ProactivityConfig(proactive_audio=False),
    )

    async def listen() -> None:
        async with client.aio.live.connect(model="gemini-3.8-live", config=config) as session:
            async for _ in session.receive():
                pass

    with pytest.raises(errors.APIError) as info:
        await listen()
    assert info.value.code == 1008
    assert REASON_NOT_IMPLEMENTED in str(info.value)


@pytest.mark.e2e
async def test_live_session_fails_once_with_advice_instead_of_retrying(
    emulator: EmulatorServer,
) -> None:
    from tunnelproof import ApiKeyMintingSource, Failed, LiveConfig, LiveSession
    from tunnelproof.protocol.close_codes import CloseClass

    config = LiveConfig(proactive_audio=False)  # gemini-3.8-live by default
    async with (
        ApiKeyMintingSource(emulator.api_key, config, http_base=emulator.http_base) as tokens,
        LiveSession(config, tokens) as session,
    ):
        events = [event async for event in session]  # ends after Failed
    failed = events[-1]
    assert isinstance(failed, Failed), events
    assert failed.verdict.kind is CloseClass.FATAL_CONFIG
    assert "proactivity" in failed.verdict.advice
    assert session.metrics.connect_attempts == 1


# -- generationConfig names are checked like the setup's ----------------------------------


@pytest.mark.parametrize("name", ["responseModality", "response_modality", "temprature"])
async def test_an_unknown_generation_config_name_is_1007(
    emulator: EmulatorServer, name: str
) -> None:
    # A typo passed the emulator (only the setup's top level was checked) and Google's
    # proto-JSON parser refuses it.
    body = setup()["setup"]
    body["generationConfig"][name] = ["AUDIO"]
    code, reason = await refused_with(key_url(emulator), {"setup": body})
    assert code == 1007
    assert reason == f"Unknown name \"{name}\" at 'setup.generation_config': Cannot find field."


async def test_every_generation_config_name_google_genai_sends_is_accepted(
    emulator: EmulatorServer,
) -> None:
    body = setup()["setup"]
    body["generationConfig"].update(
        {
            "temperature": 0.5,
            "top_p": 0.9,  # snake_case is accepted at every level
            "topK": 3,
            "maxOutputTokens": 50,
            "seed": 4,
            "mediaResolution": "MEDIA_RESOLUTION_LOW",
            "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Kore"}}},
            "thinkingConfig": {"thinkingBudget": 100},
        }
    )
    ws, _ = await start(emulator, **{k: v for k, v in body.items() if k != "model"})
    text, _, _ = await ask(ws, "hello")
    assert text == 'You said: "hello".'
    await ws.close()


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (
            {"sessionResumption": {"transparent": True}},  # Vertex only
            "Unknown name \"transparent\" at 'setup.session_resumption': Cannot find field.",
        ),
        (
            {"realtimeInputConfig": {"automaticActivityDetection": {"disabeld": True}}},
            'Unknown name "disabeld" at '
            "'setup.realtime_input_config.automatic_activity_detection': Cannot find field.",
        ),
        (
            {"contextWindowCompression": {"slidingWindow": {"targetTokens": "abc"}}},
            "Invalid value at 'setup.context_window_compression.sliding_window.target_tokens'"
            " (TYPE_INT64), 'abc'",
        ),
    ],
)
async def test_nested_setup_names_and_int64_values_are_checked(
    emulator: EmulatorServer, extra: dict[str, Any], reason: str
) -> None:
    # All three were accepted (setupComplete) and are refused by Google's proto parser.
    body = setup()["setup"]
    body.update(extra)
    assert await refused_with(key_url(emulator), {"setup": body}) == (1007, reason)


async def test_the_setup_google_genai_sends_for_resumption_and_compression_is_accepted(
    emulator: EmulatorServer,
) -> None:
    # Reference section 3.1: snake_case inside realtimeInputConfig/contextWindowCompression.
    ws, _ = await start(
        emulator,
        realtimeInputConfig={"automatic_activity_detection": {"disabled": False}},
        contextWindowCompression={
            "trigger_tokens": 25600,
            "sliding_window": {"target_tokens": 12800},
        },
    )
    text, _, _ = await ask(ws, "hello")
    assert text == 'You said: "hello".'
    await ws.close()
