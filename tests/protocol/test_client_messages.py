"""Client message builders and LiveConfig."""

from __future__ import annotations

import base64

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tunnelproof.protocol import (
    ContextWindowCompression,
    FunctionDeclaration,
    FunctionResponse,
    LiveConfig,
    Turn,
    VoiceActivityDetection,
    activity_end,
    activity_start,
    audio_stream_end,
    client_content,
    client_message_kind,
    encode_client_message,
    realtime_audio,
    realtime_text,
    realtime_video,
    tool_response,
    user_text,
)
from tunnelproof.protocol.config import field_mask_paths


def test_default_setup_is_audio_with_transcripts_and_asks_for_resumption_updates() -> None:
    # Audio-first, as Google is: AUDIO answers, their text through the transcriptions.
    setup = LiveConfig(model="gemini-3.8-live").to_setup()
    assert setup == {
        "setup": {
            "model": "models/gemini-3.8-live",
            "generationConfig": {"responseModalities": ["AUDIO"]},
            "inputAudioTranscription": {},
            "outputAudioTranscription": {},
            "sessionResumption": {},
        }
    }


def test_setup_with_handle_resumes() -> None:
    setup = LiveConfig(model="gemini-3.8-live").to_setup("H1")
    assert setup["setup"]["sessionResumption"] == {"handle": "H1"}


def test_setup_without_resumption() -> None:
    assert "sessionResumption" not in LiveConfig(session_resumption=False).to_setup()["setup"]


FULL = LiveConfig(
    model="gemini-2.5-flash-native-audio-preview-12-2025",
    response_modalities=("AUDIO",),
    system_instruction="You are a helpful assistant.",
    tools=(FunctionDeclaration("turn_on_the_lights", behavior="NON_BLOCKING"),),
    google_search=True,
    input_audio_transcription=True,
    output_audio_transcription=True,
    voice_name="Kore",
    temperature=0.7,
    thinking_budget=1024,
    include_thoughts=True,
    proactive_audio=True,
    vad=VoiceActivityDetection(
        disabled=False,
        start_sensitivity="LOW",
        end_sensitivity="LOW",
        prefix_padding_ms=20,
        silence_duration_ms=100,
    ),
    activity_handling="START_OF_ACTIVITY_INTERRUPTS",
    turn_coverage="TURN_INCLUDES_ONLY_ACTIVITY",
    compression=ContextWindowCompression(trigger_tokens=25600, target_tokens=12800),
)


def test_full_setup_matches_the_reference_example() -> None:
    """The reference section 3.1 example, field for field."""
    expected = {
        "model": "models/gemini-2.5-flash-native-audio-preview-12-2025",
        "generationConfig": {
            "responseModalities": ["AUDIO"],
            "temperature": 0.7,
            "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Kore"}}},
            "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True},
        },
        "systemInstruction": {"parts": [{"text": "You are a helpful assistant."}]},
        "tools": [
            {"functionDeclarations": [{"name": "turn_on_the_lights", "behavior": "NON_BLOCKING"}]},
            {"googleSearch": {}},
        ],
        "realtimeInputConfig": {
            "automaticActivityDetection": {
                "disabled": False,
                "startOfSpeechSensitivity": "START_SENSITIVITY_LOW",
                "endOfSpeechSensitivity": "END_SENSITIVITY_LOW",
                "prefixPaddingMs": 20,
                "silenceDurationMs": 100,
            },
            "activityHandling": "START_OF_ACTIVITY_INTERRUPTS",
            "turnCoverage": "TURN_INCLUDES_ONLY_ACTIVITY",
        },
        "sessionResumption": {"handle": "H"},
        "contextWindowCompression": {
            "triggerTokens": 25600,
            "slidingWindow": {"targetTokens": 12800},
        },
        "inputAudioTranscription": {},
        "outputAudioTranscription": {},
        "proactivity": {"proactiveAudio": True},
    }
    assert FULL.to_setup("H") == {"setup": expected}


def test_token_constraints_lock_everything_but_session_resumption() -> None:
    body, mask = FULL.token_constraints()
    assert "sessionResumption" not in body
    paths = mask.split(",")
    assert "sessionResumption" not in paths
    assert paths == field_mask_paths(body)
    assert "generationConfig.responseModalities" in paths and "model" in paths and "tools" in paths
    # The token's locked setup is exactly what the client sends, minus the handle.
    client = FULL.to_setup("H")["setup"]
    client.pop("sessionResumption")
    assert client == body


def test_extra_fields_pass_through() -> None:
    cfg = LiveConfig(
        generation_extra={"mediaResolution": "MEDIA_RESOLUTION_LOW"},
        setup_extra={"historyConfig": {}},
    )
    setup = cfg.to_setup()["setup"]
    assert setup["generationConfig"]["mediaResolution"] == "MEDIA_RESOLUTION_LOW"
    assert setup["historyConfig"] == {}


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        LiveConfig(response_modalities=("TEXT", "AUDIO"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown response modality"):
        LiveConfig(response_modalities=("VIDEO",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        LiveConfig(model=" ")


def test_model_comes_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNNELPROOF_MODEL", "gemini-3.1-flash-live-preview")
    assert LiveConfig().model == "gemini-3.1-flash-live-preview"


def test_client_content_and_user_text() -> None:
    msg = client_content(
        [Turn("user", "What is the capital of France?"), Turn("model", "Paris")],
        turn_complete=False,
    )
    assert msg == {
        "clientContent": {
            "turns": [
                {"role": "user", "parts": [{"text": "What is the capital of France?"}]},
                {"role": "model", "parts": [{"text": "Paris"}]},
            ],
            "turnComplete": False,
        }
    }
    assert user_text("hi")["clientContent"]["turnComplete"] is True


def test_realtime_input_one_field_forms() -> None:
    assert realtime_audio(b"\x00\x01") == {
        "realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": "AAE="}}
    }
    assert realtime_video(b"jpg")["realtimeInput"]["video"]["mimeType"] == "image/jpeg"
    assert realtime_text("Hello") == {"realtimeInput": {"text": "Hello"}}
    assert audio_stream_end() == {"realtimeInput": {"audioStreamEnd": True}}
    assert activity_start() == {"realtimeInput": {"activityStart": {}}}
    assert activity_end() == {"realtimeInput": {"activityEnd": {}}}
    for msg in (
        realtime_audio(b""),
        realtime_text("x"),
        audio_stream_end(),
        activity_start(),
        activity_end(),
    ):
        assert len(msg["realtimeInput"]) == 1


def test_tool_response_requires_id_and_carries_scheduling() -> None:
    msg = tool_response(
        [FunctionResponse("fc-1", "turn_on_the_lights", {"result": "ok"}, scheduling="INTERRUPT")]
    )
    assert msg == {
        "toolResponse": {
            "functionResponses": [
                {
                    "id": "fc-1",
                    "name": "turn_on_the_lights",
                    "response": {"result": "ok", "scheduling": "INTERRUPT"},
                }
            ]
        }
    }
    with pytest.raises(ValueError, match="id"):
        tool_response([FunctionResponse("", "f")])
    with pytest.raises(ValueError, match="at least one"):
        tool_response([])


def test_client_message_kind() -> None:
    assert client_message_kind(user_text("x")) == "clientContent"
    assert client_message_kind(LiveConfig().to_setup()) == "setup"
    with pytest.raises(ValueError, match="exactly one"):
        client_message_kind({"setup": {}, "clientContent": {}})
    with pytest.raises(ValueError, match="exactly one"):
        client_message_kind({"bogus": 1})


@given(st.binary(max_size=4096))
def test_audio_round_trips_through_the_wire(pcm: bytes) -> None:
    wire = orjson.loads(encode_client_message(realtime_audio(pcm, rate=24000)))
    assert wire["realtimeInput"]["audio"]["mimeType"] == "audio/pcm;rate=24000"
    assert base64.b64decode(wire["realtimeInput"]["audio"]["data"]) == pcm


@given(st.text(max_size=500))
def test_text_round_trips_through_the_wire(text: str) -> None:
    wire = orjson.loads(encode_client_message(user_text(text)))
    assert wire["clientContent"]["turns"][0]["parts"][0]["text"] == text
