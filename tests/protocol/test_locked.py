"""What a token locks, as the token route says it, and how a client's config differs."""

from __future__ import annotations

import pytest

from tunnelproof.protocol.config import LiveConfig
from tunnelproof.protocol.locked import ConfigDifference, LockedConfig

TEXT_CLIENT = LiveConfig(model="tunnelproof-emulator-text", response_modalities=("TEXT",))


def test_the_lock_of_the_default_config_round_trips_through_json() -> None:
    locked = LockedConfig.of(LiveConfig(model="models/gemini-3.8-live"))
    body = locked.to_json()
    assert body == {
        "model": "gemini-3.8-live",
        "responseModalities": ["AUDIO"],
        "inputAudioTranscription": True,
        "outputAudioTranscription": True,
    }
    assert LockedConfig.from_json({**body, "token": "auth_tokens/x"}) == locked
    assert locked.differences(LiveConfig(model="gemini-3.8-live")) == []


def test_a_text_client_behind_an_audio_lock_differs_in_model_and_modality() -> None:
    locked = LockedConfig.of(LiveConfig(model="gemini-3.8-live"))
    assert locked.differences(TEXT_CLIENT) == [
        ConfigDifference("model", "tunnelproof-emulator-text", "gemini-3.8-live"),
        ConfigDifference("response_modalities", "TEXT", "AUDIO"),
    ]


def test_transcription_differs_only_when_locked_on_and_the_client_has_it_off() -> None:
    on = LockedConfig("gemini-3.8-live", ("AUDIO",), True, True)
    off = LockedConfig("gemini-3.8-live", ("AUDIO",), False, False)
    quiet = LiveConfig(input_audio_transcription=False, output_audio_transcription=False)
    assert [d.field for d in on.differences(quiet)] == [
        "input_audio_transcription",
        "output_audio_transcription",
    ]
    # Not in the token's mask: the client's own setting applies, nothing overrides it.
    assert off.differences(LiveConfig()) == []


def test_an_older_service_that_names_only_the_model_locks_nothing_we_compare() -> None:
    assert LockedConfig.from_json({"model": "gemini-3.8-live"}) is None


@pytest.mark.parametrize(
    "body",
    [
        {"model": "gemini-3.8-live", "responseModalities": "AUDIO"},
        {"model": "gemini-3.8-live", "responseModalities": [1]},
        {"responseModalities": ["AUDIO"]},
        {"model": "m", "responseModalities": ["AUDIO"], "outputAudioTranscription": "yes"},
    ],
)
def test_a_malformed_lock_is_an_error(body: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        LockedConfig.from_json(body)
