"""Setup validation and message-body decoding, with Google's close codes. No I/O.

The frame around a message is decoded by
:func:`tunnelproof.protocol.client_frames.decode_client_frame`; this module reads what is
inside it.

* ``setup`` fields are checked the way a proto-JSON parser does: an unknown name is 1007
  ``Unknown name "x" at 'setup': Cannot find field.`` (``responseModalities`` at the setup
  root is the classic case).
* A response modality the model cannot answer in (TEXT on every current Live model: they
  are audio-only) is 1007 with a reason naming the model and its modality.
* An unknown or retired model is 1008 with the "not found for API version" text, cut to
  the 123-byte close-reason limit.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tunnelproof.emulator.policy import EmulatorPolicy
from tunnelproof.protocol.casing import camelize_keys, get_field, to_camel
from tunnelproof.protocol.client_frames import requested_modality
from tunnelproof.protocol.close_codes import (
    REASON_NOT_IMPLEMENTED,
    model_not_found_reason,
    truncate_reason,
)
from tunnelproof.protocol.errors import CloseRefusal, invalid
from tunnelproof.protocol.models import (
    EMULATOR_TEXT_MODEL,
    LIVE_MODELS,
    bare_model_id,
    response_modalities,
)
from tunnelproof.protocol.types import JsonDict

_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")

SETUP_FIELDS = frozenset(
    {
        "model",
        "generationConfig",
        "systemInstruction",
        "tools",
        "realtimeInputConfig",
        "sessionResumption",
        "contextWindowCompression",
        "inputAudioTranscription",
        "outputAudioTranscription",
        "proactivity",
        "historyConfig",
        "avatarConfig",
        "safetySettings",
    }
)
REALTIME_FIELDS = frozenset(
    {"audio", "video", "text", "audioStreamEnd", "activityStart", "activityEnd", "mediaChunks"}
)


@dataclass(frozen=True, slots=True)
class SetupInfo:
    """A validated setup in camelCase, with the facts the session needs."""

    setup: JsonDict
    model: str  # bare id
    modality: str  # "TEXT" or "AUDIO"
    input_transcription: bool
    output_transcription: bool
    manual_activity: bool
    silence_ms: int | None


# GenerationConfig's fields (the v1beta/v1alpha proto plus what google-genai 3.6 sends in a
# Live setup). A proto-JSON parser refuses any other name at any level; the emulator checks
# this level too, where a typo (``responseModality``) would otherwise pass locally and be
# refused by Google.
GENERATION_FIELDS = frozenset(
    {
        "candidateCount",
        "stopSequences",
        "maxOutputTokens",
        "temperature",
        "topP",
        "topK",
        "seed",
        "presencePenalty",
        "frequencyPenalty",
        "responseLogprobs",
        "logprobs",
        "enableEnhancedCivicAnswers",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "responseModalities",
        "speechConfig",
        "thinkingConfig",
        "imageConfig",
        "mediaResolution",
        "enableAffectiveDialog",
        "audioTimestamp",
        "routingConfig",
        "modelSelectionConfig",
        "translationConfig",
    }
)


def check_setup_fields(raw: Mapping[str, Any]) -> JsonDict:
    """camelCase copy of a setup whose top-level and ``generationConfig`` names are known.

    Otherwise 1007 with the proto parser's ``Unknown name "x" at 'setup...'`` text.
    """
    for key in raw:
        if to_camel(key) not in SETUP_FIELDS:
            raise invalid(f"Unknown name \"{key}\" at 'setup': Cannot find field.")
    for path, allowed in _NESTED_FIELDS:
        _check_names(raw, path, allowed)
    _check_int64(raw, ("contextWindowCompression", "triggerTokens"))
    _check_int64(raw, ("contextWindowCompression", "slidingWindow", "targetTokens"))
    setup: JsonDict = camelize_keys(dict(raw))
    return setup


# Nested messages whose names are checked like the setup's (proto v1beta; ``transparent``
# exists only on Vertex, and both SDKs refuse it in Gemini API mode).
_NESTED_FIELDS: tuple[tuple[tuple[str, ...], frozenset[str]], ...] = (
    (("generationConfig",), GENERATION_FIELDS),
    (("sessionResumption",), frozenset({"handle"})),
    (
        ("realtimeInputConfig",),
        frozenset(
            {
                "automaticActivityDetection",
                "activityHandling",
                "turnCoverage",
                "interimTranscriptTimestampEnabled",
            }
        ),
    ),
    (
        ("realtimeInputConfig", "automaticActivityDetection"),
        frozenset(
            {
                "disabled",
                "startOfSpeechSensitivity",
                "endOfSpeechSensitivity",
                "prefixPaddingMs",
                "silenceDurationMs",
            }
        ),
    ),
    (("contextWindowCompression",), frozenset({"triggerTokens", "slidingWindow"})),
    (("contextWindowCompression", "slidingWindow"), frozenset({"targetTokens"})),
)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _at(raw: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = raw
    for name in path:
        if not isinstance(node, Mapping):
            return None
        node = get_field(node, name)
    return node


def _check_names(raw: Mapping[str, Any], path: tuple[str, ...], allowed: frozenset[str]) -> None:
    node = _at(raw, path)
    if not isinstance(node, Mapping):
        return
    where = ".".join(["setup", *(_snake(p) for p in path)])
    for key in node:
        if to_camel(key) not in allowed:
            raise invalid(
                truncate_reason(f"Unknown name \"{key}\" at '{where}': Cannot find field.")
            )


def _check_int64(raw: Mapping[str, Any], path: tuple[str, ...]) -> None:
    # proto-JSON int64: a JSON integer or a string of digits (reference section 3).
    value = _at(raw, path)
    if value is None:
        return
    ok = (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, str) and value.strip().isdigit()
    )
    if not ok:
        where = ".".join(["setup", *(_snake(p) for p in path)])
        raise invalid(truncate_reason(f"Invalid value at '{where}' (TYPE_INT64), {value!r}"))


def validate_setup(setup: Mapping[str, Any], version: str, policy: EmulatorPolicy) -> SetupInfo:
    """Check an (already token-merged) camelCase setup; 1007/1008 when Google would refuse."""
    model_raw = setup.get("model")
    if not isinstance(model_raw, str) or not model_raw.strip():
        raise invalid()
    model = bare_model_id(model_raw)
    known = model in LIVE_MODELS or model == EMULATOR_TEXT_MODEL
    if not known and model not in policy.extra_models:
        raise CloseRefusal(1008, model_not_found_reason(model, version))
    modality = requested_modality(setup)
    supported = response_modalities(model)
    if modality not in supported:
        raise CloseRefusal(policy.modality_close_code, modality_reason(model, modality, supported))
    if unsupported_feature(model, setup):
        raise CloseRefusal(policy.feature_close_code, REASON_NOT_IMPLEMENTED)
    realtime = setup.get("realtimeInputConfig") or {}
    if not isinstance(realtime, Mapping):
        raise invalid()
    aad = realtime.get("automaticActivityDetection") or {}
    if not isinstance(aad, Mapping):
        raise invalid()
    silence = aad.get("silenceDurationMs")
    silence_ms: int | None = None
    if silence is not None:
        try:
            silence_ms = int(silence)
        except (TypeError, ValueError):
            raise invalid() from None
    return SetupInfo(
        setup=dict(setup),
        model=model,
        modality=modality,
        input_transcription="inputAudioTranscription" in setup,
        output_transcription="outputAudioTranscription" in setup,
        manual_activity=bool(aad.get("disabled", False)),
        silence_ms=silence_ms,
    )


# Reference section 6, from the model pages: gemini-3.8-live has proactive audio always on
# ("proactive_audio: false returns an error") and no affective dialog; 3.1 has neither.
_PROACTIVE_ALWAYS = frozenset({"gemini-3.8-live", "gemini-3.8-live-extended-thinking"})
_NO_PROACTIVE = frozenset({"gemini-3.1-flash-live-preview"})
_NO_AFFECTIVE = _PROACTIVE_ALWAYS | _NO_PROACTIVE


def unsupported_feature(model: str, setup: Mapping[str, Any]) -> bool:
    """Does the camelCase ``setup`` ask ``model`` for a feature it does not have?

    Only an explicit value counts: leaving a field out is always fine.
    """
    proactivity = setup.get("proactivity")
    proactive = proactivity.get("proactiveAudio") if isinstance(proactivity, Mapping) else None
    generation = setup.get("generationConfig")
    affective = generation.get("enableAffectiveDialog") if isinstance(generation, Mapping) else None
    if model in _PROACTIVE_ALWAYS and proactive is False:
        return True
    if model in _NO_PROACTIVE and proactive is True:
        return True
    return model in _NO_AFFECTIVE and affective is True


def modality_reason(model: str, asked: str, supported: frozenset[str]) -> str:
    """The close reason for a response modality ``model`` does not answer in.

    INVALID_ARGUMENT-style and short enough for the 123-byte limit with the longest ids.
    """
    allowed = " or ".join(sorted(supported))
    return (
        f"Invalid argument: models/{model} supports response modality {allowed} only, not {asked}."
    )


def content_text(content: Mapping[str, Any]) -> str:
    """All text parts of a ``Content`` joined by spaces."""
    parts = get_field(content, "parts") or []
    if not isinstance(parts, list):
        raise invalid()
    texts = [get_field(p, "text") for p in parts if isinstance(p, Mapping)]
    return " ".join(t for t in texts if isinstance(t, str))


def realtime_field(body: Mapping[str, Any]) -> tuple[str, Any]:
    """The one field of a ``realtimeInput`` (1007 when there is not exactly one)."""
    if len(body) != 1:
        raise invalid()
    ((key, value),) = body.items()
    name = to_camel(key)
    if name not in REALTIME_FIELDS:
        raise invalid(f"Unknown name \"{key}\" at 'realtime_input': Cannot find field.")
    return name, value


def decode_blob(blob: Any) -> tuple[str, bytes]:
    """``(mimeType, bytes)`` of a ``Blob`` (1007 on bad base64)."""
    if not isinstance(blob, Mapping):
        raise invalid()
    mime = get_field(blob, "mimeType") or ""
    data = get_field(blob, "data") or ""
    if not isinstance(mime, str) or not isinstance(data, str):
        raise invalid()
    return mime, decode_bytes(data)


def decode_bytes(data: str) -> bytes:
    """A proto-JSON ``bytes`` value: standard or URL-safe base64, padded or not.

    google-genai sends URL-safe base64 (``-`` and ``_``); the proto3 JSON mapping accepts
    both alphabets. Anything else is 1007.
    """
    text = data.strip()
    mixed_alphabets = any(c in text for c in "-_") and any(c in text for c in "+/")
    if not _BASE64.fullmatch(text) or mixed_alphabets:
        raise invalid()
    text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise invalid() from None


def audio_rate(mime: str, default: int = 16_000) -> int:
    """The sample rate of ``realtimeInput.audio``'s MIME type; 1007 when it is not audio.

    ``audio/pcm;rate=N``: ``N`` must be a positive integer (Google resamples by it); a
    ``rate`` of ``nan``, ``abc`` or ``0``, or a type that is not ``audio/...``, is a
    malformed argument (assumption 20). No ``rate``: ``default``.
    """
    kind, *params = mime.split(";")
    if mime and not kind.strip().lower().startswith("audio/"):
        raise invalid()
    for part in params:
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "rate":
            value = value.strip()
            if not value.isdigit() or int(value) <= 0:
                raise invalid()
            return int(value)
    return default


def pcm_rate(mime: str, default: int = 16_000) -> int:
    """The ``rate=`` of an ``audio/pcm;rate=N`` MIME type."""
    for part in mime.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name == "rate" and value.isdigit():
            return int(value)
    return default
