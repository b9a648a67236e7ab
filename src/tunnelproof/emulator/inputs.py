"""Which client inputs are valid, and what each one means. No I/O.

The connection shell decodes a frame's kind, then asks here what the body says:

* :func:`client_turns`: ``clientContent`` → history entries and whether the turn is complete;
* :func:`realtime_action`: ``realtimeInput`` → one typed action. Refused (1007): more or less
  than one field, bad base64, ``activityStart``/``activityEnd`` with automatic activity
  detection on, ``audioStreamEnd`` with it off, ``mediaChunks`` on ``gemini-3*`` models;
* :func:`tool_results`: ``toolResponse`` → the results, each for a call the session issued
  (an unknown call id is 1007: Google has no call to attach it to);
* :func:`barge_in_allowed`: whether speech interrupts an answer (``NO_INTERRUPTION`` says no).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tunnelproof.emulator.messages import (
    SetupInfo,
    audio_rate,
    content_text,
    decode_blob,
    pcm_rate,
    realtime_field,
)
from tunnelproof.emulator.sessions import Entry
from tunnelproof.protocol.casing import get_field
from tunnelproof.protocol.errors import invalid


@dataclass(frozen=True, slots=True)
class UserTurns:
    """A ``clientContent``: entries to append, and whether the model should answer now."""

    entries: tuple[Entry, ...]
    turn_complete: bool


def client_turns(body: Mapping[str, Any]) -> UserTurns:
    """The entries of a ``clientContent`` (1007 when malformed)."""
    turns = get_field(body, "turns") or []
    if not isinstance(turns, list):
        raise invalid()
    entries: list[Entry] = []
    for turn in turns:
        if not isinstance(turn, Mapping):
            raise invalid()
        role = get_field(turn, "role") or "user"
        if role not in ("user", "model"):
            raise invalid()
        text = content_text(turn)
        if role == "user":
            entries.append(Entry("user", text, "clientContent"))
        else:
            entries.append(Entry("model", text, "model"))
    return UserTurns(tuple(entries), bool(get_field(body, "turnComplete", False)))


@dataclass(frozen=True, slots=True)
class TextIn:
    """``realtimeInput.text``: a user utterance, answered at once."""

    text: str


@dataclass(frozen=True, slots=True)
class AudioIn:
    """PCM audio at ``rate`` Hz (``audio``, or an audio ``mediaChunks`` entry)."""

    pcm: bytes
    rate: int


@dataclass(frozen=True, slots=True)
class VideoIn:
    """A video frame (only its arrival matters: it shortens the session limit)."""


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """``audioStreamEnd``: end the utterance in progress."""


@dataclass(frozen=True, slots=True)
class ActivityStart:
    """``activityStart`` (manual activity detection)."""


@dataclass(frozen=True, slots=True)
class ActivityEnd:
    """``activityEnd`` (manual activity detection)."""


RealtimeAction = TextIn | AudioIn | VideoIn | StreamEnd | ActivityStart | ActivityEnd


def realtime_action(body: Mapping[str, Any], info: SetupInfo) -> RealtimeAction:
    """What a ``realtimeInput`` asks for, under the session's setup (1007 when invalid)."""
    name, value = realtime_field(body)
    if name == "text":
        if not isinstance(value, str):
            raise invalid()
        return TextIn(value)
    if name == "audio":
        mime, pcm = decode_blob(value)
        return AudioIn(pcm, audio_rate(mime))
    if name == "mediaChunks":
        # Deprecated; newer models close with 1007 for it (sip-to-ai#5).
        if info.model.startswith("gemini-3") or not isinstance(value, list) or not value:
            raise invalid()
        mime, pcm = decode_blob(value[0])
        return AudioIn(pcm, pcm_rate(mime)) if mime.startswith("audio/") else VideoIn()
    if name == "video":
        decode_blob(value)
        return VideoIn()
    if name == "audioStreamEnd":
        if info.manual_activity:
            raise invalid()  # only meaningful with automatic detection
        return StreamEnd()
    if not info.manual_activity:
        raise invalid()  # activityStart/End are only valid with automatic detection disabled
    return ActivityStart() if name == "activityStart" else ActivityEnd()


@dataclass(frozen=True, slots=True)
class ToolResult:
    """One function response, for a call the session issued."""

    call_id: str
    name: str
    response: Mapping[str, Any] = field(default_factory=dict)

    def entry(self) -> Entry:
        """The history entry the result becomes."""
        data = {"id": self.call_id, "name": self.name, "response": self.response}
        return Entry("user", "", "toolResponse", data)


def tool_results(body: Mapping[str, Any], pending: Mapping[str, str]) -> list[ToolResult]:
    """The results of a ``toolResponse``; every id must be a pending call (else 1007)."""
    responses = get_field(body, "functionResponses") or []
    if not isinstance(responses, list) or not responses:
        raise invalid()
    results: list[ToolResult] = []
    seen: set[str] = set()
    for item in responses:
        if not isinstance(item, Mapping):
            raise invalid()
        call_id = get_field(item, "id")
        if not isinstance(call_id, str) or call_id not in pending or call_id in seen:
            # The session never issued this call (e.g. resumed from a handle taken
            # before it): Google has no call to attach it to.
            raise invalid()
        seen.add(call_id)
        response = get_field(item, "response") or {}
        results.append(ToolResult(call_id, pending[call_id], response))
    return results


def barge_in_allowed(setup: Mapping[str, Any]) -> bool:
    """False when setup says ``activityHandling: NO_INTERRUPTION``."""
    realtime = setup.get("realtimeInputConfig") or {}
    return not (
        isinstance(realtime, Mapping) and realtime.get("activityHandling") == "NO_INTERRUPTION"
    )
