"""Build every client -> server message as wire JSON (camelCase dicts).

Each function returns a plain ``dict`` ready for :func:`encode_client_message`. Each frame
holds exactly one of ``setup``, ``clientContent``, ``realtimeInput``, ``toolResponse``; each
``realtimeInput`` holds exactly one field (``mediaChunks`` is deprecated and newer models
close the socket with 1007 for it, so it is not offered here).

Setup messages come from :meth:`tunnelproof.protocol.config.LiveConfig.to_setup`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from tunnelproof.protocol.types import JsonDict

Role = Literal["user", "model"]
Scheduling = Literal["INTERRUPT", "WHEN_IDLE", "SILENT"]

INPUT_AUDIO_RATE = 16_000
OUTPUT_AUDIO_RATE = 24_000


@dataclass(frozen=True, slots=True)
class Turn:
    """One turn of conversation history: who spoke and what they said (text parts)."""

    role: Role
    text: str

    def to_wire(self) -> JsonDict:
        """``{"role": ..., "parts": [{"text": ...}]}``."""
        return {"role": self.role, "parts": [{"text": self.text}]}


@dataclass(frozen=True, slots=True)
class FunctionResponse:
    """The app's answer to one ``toolCall.functionCalls[i]``; ``id`` is mandatory."""

    id: str
    name: str
    response: Mapping[str, Any] = field(default_factory=dict)
    scheduling: Scheduling | None = None

    def to_wire(self) -> JsonDict:
        """Wire form, with ``scheduling`` inside ``response`` as the API expects."""
        if not self.id:
            raise ValueError("FunctionResponse needs the id of the toolCall it answers")
        response = dict(self.response)
        if self.scheduling is not None:
            response["scheduling"] = self.scheduling
        return {"id": self.id, "name": self.name, "response": response}


def client_content(
    turns: Iterable[Turn | Mapping[str, Any]], *, turn_complete: bool = True
) -> JsonDict:
    """``clientContent``: turns appended to history; ``turn_complete`` asks for an answer."""
    wire_turns = [t.to_wire() if isinstance(t, Turn) else dict(t) for t in turns]
    return {"clientContent": {"turns": wire_turns, "turnComplete": turn_complete}}


def user_text(text: str, *, turn_complete: bool = True) -> JsonDict:
    """A single user turn of text as ``clientContent``."""
    return client_content([Turn("user", text)], turn_complete=turn_complete)


def realtime_audio(pcm: bytes, *, rate: int = INPUT_AUDIO_RATE) -> JsonDict:
    """``realtimeInput.audio``: 16-bit little-endian mono PCM at ``rate`` Hz."""
    # b64encode minus its Python wrapper, and the MIME text built once per rate: this runs
    # for every 20 ms chunk.
    mime = _PCM_MIME.get(rate) or _pcm_mime(rate)
    data = binascii.b2a_base64(pcm, newline=False).decode("ascii")
    return {"realtimeInput": {"audio": {"mimeType": mime, "data": data}}}


_PCM_MIME: dict[int, str] = {}


def _pcm_mime(rate: int) -> str:
    mime = f"audio/pcm;rate={rate}"
    if len(_PCM_MIME) < 64:  # bounded: a handful of rates in practice
        _PCM_MIME[rate] = mime
    return mime


def realtime_video(jpeg: bytes, *, mime_type: str = "image/jpeg") -> JsonDict:
    """``realtimeInput.video``: one JPEG frame (at most about 1 per second)."""
    return {
        "realtimeInput": {
            "video": {"mimeType": mime_type, "data": base64.b64encode(jpeg).decode("ascii")}
        }
    }


def realtime_text(text: str) -> JsonDict:
    """``realtimeInput.text``: text as realtime input (the model answers at once)."""
    return {"realtimeInput": {"text": text}}


def audio_stream_end() -> JsonDict:
    """``realtimeInput.audioStreamEnd``: the mic was closed (automatic VAD only)."""
    return {"realtimeInput": {"audioStreamEnd": True}}


def activity_start() -> JsonDict:
    """``realtimeInput.activityStart`` (only with automatic activity detection disabled)."""
    return {"realtimeInput": {"activityStart": {}}}


def activity_end() -> JsonDict:
    """``realtimeInput.activityEnd`` (only with automatic activity detection disabled)."""
    return {"realtimeInput": {"activityEnd": {}}}


def tool_response(responses: Sequence[FunctionResponse]) -> JsonDict:
    """``toolResponse`` answering one or more function calls."""
    if not responses:
        raise ValueError("tool_response needs at least one FunctionResponse")
    return {"toolResponse": {"functionResponses": [r.to_wire() for r in responses]}}


CLIENT_MESSAGE_KINDS = ("setup", "clientContent", "realtimeInput", "toolResponse")


def client_message_kind(message: Mapping[str, Any]) -> str:
    """The one top-level kind of a client message, or ``ValueError`` if it has not exactly one."""
    kinds = [k for k in CLIENT_MESSAGE_KINDS if k in message]
    if len(kinds) != 1 or len(message) != 1:
        raise ValueError(
            f"a client message holds exactly one of {CLIENT_MESSAGE_KINDS}, got {list(message)}"
        )
    return kinds[0]


def encode_client_message(message: Mapping[str, Any]) -> str:
    """Serialise to the text frame both SDKs send."""
    return orjson.dumps(message).decode("utf-8")
