"""The device-facing Live API wire protocol, as data. No I/O.

Devices speak the Live API itself to the relay (the relay is "Google" to them), so this
module turns device frames into client messages, a device ``setup`` into the upstream
:class:`~tunnelproof.protocol.config.LiveConfig`, and the upstream session's typed events
back into server messages in Google's wire shapes (camelCase, one message per frame).

Upstream lifecycle (reconnects, goAway handovers, 1007 context resets) is handled by the
upstream :class:`~tunnelproof.session.LiveSession` and is invisible on this wire, with one
exception: a model turn that an upstream drop cut off (``Rewound``) is ended for the device
with ``interrupted`` (the resumed upstream session never continues it, and a device waiting
for the rest would wait forever); tool calls it cancelled become ``toolCallCancellation``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import orjson

from tunnelproof.protocol.casing import camelize_keys, get_field
from tunnelproof.protocol.client_frames import decode_client_frame, requested_modality
from tunnelproof.protocol.close_codes import REASON_INVALID_ARGUMENT
from tunnelproof.protocol.config import LiveConfig
from tunnelproof.protocol.errors import CloseRefusal
from tunnelproof.protocol.models import bare_model_id
from tunnelproof.protocol.types import JsonDict as JsonDict  # relay modules use wire.JsonDict
from tunnelproof.session import app_events as ev

# Setup fields the relay consumes itself instead of passing upstream.
_RELAY_SETUP_FIELDS = frozenset({"model", "generationConfig", "sessionResumption"})


class WireError(Exception):
    """A device frame the relay refuses; the device socket is closed with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


def invalid(reason: str = REASON_INVALID_ARGUMENT) -> WireError:
    """1007, Google's answer to a malformed client message."""
    return WireError(1007, reason)


def parse_device_frame(data: bytes | str) -> tuple[str, JsonDict]:
    """``(kind, body)`` of one device frame; :class:`WireError` (1007) if it is not one.

    Decoded by the protocol's client-frame decoder (the emulator's too), which answers
    malformed frames as Google does.
    """
    try:
        kind, body = decode_client_frame(data)
    except CloseRefusal as exc:
        raise WireError(exc.code, exc.reason) from None
    if kind == "realtimeInput" and len(body) != 1:
        # Google's rule (one field per realtimeInput); the upstream session refuses it too
        # (ValueError from send_raw), so answer the device as Google would.
        raise invalid()
    return kind, body


def setup_handle(setup: Mapping[str, Any]) -> str | None:
    """The handle a device's ``setup`` resumes from (``None``: a new conversation)."""
    resumption = get_field(setup, "sessionResumption")
    if not isinstance(resumption, Mapping):
        return None
    handle = get_field(resumption, "handle")
    return handle if isinstance(handle, str) and handle else None


def wants_handles(setup: Mapping[str, Any]) -> bool:
    """True when the device asked for ``sessionResumptionUpdate`` messages."""
    return isinstance(get_field(setup, "sessionResumption"), Mapping)


def config_from_setup(setup: Mapping[str, Any], default_model: str) -> LiveConfig:
    """The upstream :class:`LiveConfig` for a device's ``setup``.

    Everything the device asked for is passed upstream unchanged (camelCase), except
    ``sessionResumption``: the relay always resumes upstream, whatever the device wants.
    """
    camel: JsonDict = camelize_keys(dict(setup))
    model = camel.get("model") or default_model
    if not isinstance(model, str) or not model.strip():
        raise invalid()
    try:
        modality = requested_modality(camel)  # the emulator's check: Google's refusals
    except CloseRefusal as exc:
        raise WireError(exc.code, exc.reason) from None
    generation = camel.get("generationConfig") or {}
    return LiveConfig(
        model=bare_model_id(model),
        response_modalities=(modality,),
        # LiveConfig() turns both transcriptions on; the device's setup decides here.
        input_audio_transcription="inputAudioTranscription" in camel,
        output_audio_transcription="outputAudioTranscription" in camel,
        generation_extra={k: v for k, v in generation.items() if k != "responseModalities"},
        setup_extra={k: v for k, v in camel.items() if k not in _RELAY_SETUP_FIELDS},
    )


def client_message(kind: str, body: JsonDict) -> JsonDict:
    """The message to send upstream for a device's ``clientContent``/``realtimeInput``/
    ``toolResponse`` (top-level name in camelCase; the body as the device sent it)."""
    return {kind: body}


def resumption_update(handle: str) -> JsonDict:
    """A resumable ``sessionResumptionUpdate`` carrying a relay handle."""
    return {"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}}


_MEDIA_KEYS = frozenset({"audio", "video", "mediaChunks"})


def media_only(message: Mapping[str, Any]) -> bool:
    """A client message that is a ``realtimeInput`` carrying only audio/video chunks (the
    relay records those by the periodic flush, and keeps contiguous ones as one record)."""
    body = message.get("realtimeInput")
    return (
        len(message) == 1
        and isinstance(body, Mapping)
        and bool(body)
        and body.keys() <= _MEDIA_KEYS
    )


def encode(message: Mapping[str, Any]) -> bytes:
    """One server frame's bytes."""
    return orjson.dumps(message)


def server_messages(event: ev.AppEvent) -> list[JsonDict]:
    """The server messages a device should see for one upstream event (often none)."""
    match event:
        case ev.TextDelta(text=text):
            return [{"serverContent": {"modelTurn": {"parts": [{"text": text}]}}}]
        case ev.AudioChunk(pcm=pcm, mime_type=mime):
            data = base64.b64encode(pcm).decode("ascii")
            part = {"inlineData": {"mimeType": mime, "data": data}}
            return [{"serverContent": {"modelTurn": {"parts": [part]}}}]
        case ev.OutputTranscript(text=text, finished=finished):
            return [{"serverContent": {"outputTranscription": _transcript(text, finished)}}]
        case ev.InputTranscript(text=text, finished=finished):
            return [{"serverContent": {"inputTranscription": _transcript(text, finished)}}]
        case ev.ToolCallRequested(calls=calls):
            wire = [{"id": c.id, "name": c.name, "args": c.args} for c in calls]
            return [{"toolCall": {"functionCalls": wire}}]
        case ev.ToolCallCancelled(ids=ids):
            return [{"toolCallCancellation": {"ids": list(ids)}}]
        case ev.GenerationComplete():
            return [{"serverContent": {"generationComplete": True}}]
        case ev.TurnComplete(reason=reason):
            content: JsonDict = {"turnComplete": True}
            if reason:
                content["turnCompleteReason"] = reason
            return [{"serverContent": content}]
        case ev.Interrupted():
            return [{"serverContent": {"interrupted": True}}]
        case ev.Usage(prompt_tokens=p, response_tokens=r, total_tokens=t):
            usage = {
                k: v
                for k, v in (
                    ("promptTokenCount", p),
                    ("responseTokenCount", r),
                    ("totalTokenCount", t),
                )
                if v is not None
            }
            return [{"usageMetadata": usage}]
        case ev.UnknownServerMessage(kind=kind, raw=raw):
            return [{kind: raw}]
        case ev.Rewound(
            partial_text=partial, reply_lost=lost, cancelled_tool_call_ids=ids, reasked=reasked
        ):
            out: list[JsonDict] = []
            if ids:
                out.append({"toolCallCancellation": {"ids": list(ids)}})
            if partial or lost or reasked:
                # Stop the device playing the cut answer. When the upstream session asks
                # the question again a fresh answer follows (its turnComplete ends the
                # turn); otherwise end the turn here.
                out.append({"serverContent": {"interrupted": True}})
                if not reasked:
                    out.append({"serverContent": {"turnComplete": True}})
            return out
        case _:
            return []


def _transcript(text: str, finished: bool) -> JsonDict:
    out: JsonDict = {"text": text}
    if finished:
        out["finished"] = True
    return out
