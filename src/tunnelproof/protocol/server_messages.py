"""Parse server -> client frames into small typed values.

Google sends UTF-8 JSON in **binary** frames; text frames are accepted too. Field names
may be camelCase or snake_case. A frame may hold ``usageMetadata`` beside its one main
field, and newer models put several parts in one ``serverContent``, so a frame parses into
a :class:`ServerFrame` holding a tuple of messages.

Unknown fields and unknown message kinds are kept (``raw``, :class:`UnknownMessage`), never
errors: Google adds fields often. Malformed JSON or wrong types are a clear
:class:`~tunnelproof.protocol.errors.ProtocolError`, never another exception.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tunnelproof.protocol.casing import get_field, to_camel
from tunnelproof.protocol.durations import parse_duration
from tunnelproof.protocol.errors import ProtocolError
from tunnelproof.protocol.types import JsonDict


@dataclass(frozen=True, slots=True)
class InlineData:
    """Binary content (audio chunk) as the server sent it: base64 text plus MIME type."""

    mime_type: str
    data_b64: str

    def decode(self) -> bytes:
        """The raw bytes. Raises ``ProtocolError`` for invalid base64."""
        try:
            # b64decode(validate=True) minus its Python wrapper (per 20 ms audio frame).
            return binascii.a2b_base64(self.data_b64, strict_mode=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError(
                f"inlineData is not valid base64: {exc}", size=len(self.data_b64)
            ) from exc

    @property
    def is_audio(self) -> bool:
        """True for ``audio/pcm`` data."""
        return self.mime_type.startswith("audio/pcm")


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a model turn: text, inline data, or something newer (kept in ``raw``)."""

    text: str | None
    inline_data: InlineData | None
    thought: bool
    raw: JsonDict


@dataclass(frozen=True, slots=True)
class Transcription:
    """Input or output audio transcription text."""

    text: str
    finished: bool


@dataclass(frozen=True, slots=True)
class SetupComplete:
    """The server accepted ``setup``; other messages may be sent now."""

    session_id: str | None
    raw: JsonDict


@dataclass(frozen=True, slots=True)
class ServerContent:
    """Model output and turn signals."""

    parts: tuple[Part, ...]
    input_transcription: Transcription | None
    output_transcription: Transcription | None
    interrupted: bool
    generation_complete: bool
    turn_complete: bool
    waiting_for_input: bool
    turn_complete_reason: str | None
    raw: JsonDict
    # "IN_PROGRESS" / "IDLE", sent with turnComplete on late-2026 models (reference §10):
    # on background-reasoning models a completed turn is not yet idle.
    interaction_status: str | None = None

    @property
    def text(self) -> str:
        """All non-thought text parts joined."""
        return "".join(p.text for p in self.parts if p.text is not None and not p.thought)

    @property
    def audio_chunks(self) -> tuple[InlineData, ...]:
        """The audio parts (24 kHz s16le PCM, base64)."""
        return tuple(
            p.inline_data
            for p in self.parts
            if p.inline_data is not None and p.inline_data.is_audio
        )


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """One function the model wants the app to run."""

    id: str
    name: str
    args: JsonDict


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The model asks for one or more function calls."""

    function_calls: tuple[FunctionCall, ...]
    raw: JsonDict


@dataclass(frozen=True, slots=True)
class ToolCallCancellation:
    """Earlier tool calls are cancelled (the user interrupted the turn)."""

    ids: tuple[str, ...]
    raw: JsonDict


@dataclass(frozen=True, slots=True)
class GoAway:
    """The server will close this connection in ``time_left`` seconds."""

    time_left: float | None
    raw: JsonDict


@dataclass(frozen=True, slots=True)
class SessionResumptionUpdate:
    """A resumption handle. ``new_handle`` is ``None`` when ``resumable`` is false."""

    new_handle: str | None
    resumable: bool
    last_consumed_client_message_index: int | None
    raw: JsonDict


@dataclass(frozen=True, slots=True)
class UsageMetadata:
    """Token counts (sent periodically)."""

    prompt_token_count: int | None
    response_token_count: int | None
    total_token_count: int | None
    raw: JsonDict


@dataclass(frozen=True, slots=True)
class UnknownMessage:
    """A top-level field this version does not know; kept for the app to inspect."""

    kind: str
    raw: Any


ServerMessage = (
    SetupComplete
    | ServerContent
    | ToolCall
    | ToolCallCancellation
    | GoAway
    | SessionResumptionUpdate
    | UsageMetadata
    | UnknownMessage
)


@dataclass(frozen=True, slots=True)
class ServerFrame:
    """One parsed frame: its messages in the order their keys appeared, and the raw dict."""

    messages: tuple[ServerMessage, ...]
    raw: JsonDict
    size: int


def decode_json_frame(data: bytes | bytearray | memoryview | str) -> JsonDict:
    """Decode one frame's JSON object. ``ProtocolError`` (with the size) on anything else."""
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    size = len(payload)
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"frame is not valid JSON: {exc.msg}", size=size) from None
    if not isinstance(value, dict):
        raise ProtocolError(f"frame must be a JSON object, got {type(value).__name__}", size=size)
    return value


def parse_server_frame(data: bytes | bytearray | memoryview | str) -> ServerFrame:
    """Parse one server frame (binary or text)."""
    return parse_decoded_frame(decode_json_frame(data), frame_size(data))


def frame_size(data: bytes | bytearray | memoryview | str) -> int:
    """The frame's size in bytes (what a ``ProtocolError`` reports)."""
    return len(data) if not isinstance(data, str) else len(data.encode("utf-8"))


def audio_only_part(raw: JsonDict) -> InlineData | None:
    """The inline data of a decoded frame that holds exactly one camelCase ``inlineData``
    part and nothing else, else ``None``.

    That frame is nearly all of a voice session (50 a second per session): a client may
    handle it without building the :class:`ServerFrame` that :func:`parse_decoded_frame`
    would return for it (one ``ServerContent`` with that one part, every flag false).
    """
    if len(raw) != 1:
        return None
    content = raw.get("serverContent")
    if type(content) is not dict or len(content) != 1:
        return None
    turn = content.get("modelTurn")
    if type(turn) is not dict or len(turn) != 1:
        return None
    parts = turn.get("parts")
    if type(parts) is not list or len(parts) != 1:
        return None
    part = parts[0]
    return _plain_inline(part) if type(part) is dict else None


def read_server_frame(data: bytes | bytearray | memoryview | str) -> ServerFrame | InlineData:
    """:func:`parse_server_frame`, except that an audio-only frame (:func:`audio_only_part`)
    comes back as just its :class:`InlineData`. Same errors."""
    raw = decode_json_frame(data)
    inline = audio_only_part(raw)
    return inline if inline is not None else parse_decoded_frame(raw, frame_size(data))


def parse_decoded_frame(raw: JsonDict, size: int) -> ServerFrame:
    """Parse a frame already decoded by :func:`decode_json_frame` (``size``: its bytes)."""
    messages: list[ServerMessage] = []
    for key, value in raw.items():
        kind = to_camel(key)
        parser = _PARSERS.get(kind)
        if parser is None:
            messages.append(UnknownMessage(kind, value))
            continue
        try:
            messages.append(parser(_obj(value, kind)))
        except ProtocolError as exc:
            raise ProtocolError(str(exc), size=size) from None
    return ServerFrame(tuple(messages), raw, size)


# -- helpers ------------------------------------------------------------------------------


def _obj(value: Any, where: str) -> JsonDict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{where} must be an object, got {type(value).__name__}")
    return value


def _str(obj: Mapping[str, Any], name: str, where: str) -> str | None:
    value = get_field(obj, name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"{where}.{name} must be a string, got {type(value).__name__}")
    return value


def _bool(obj: Mapping[str, Any], name: str, where: str) -> bool:
    value = get_field(obj, name)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    # proto-JSON allows "true"/"false" strings; the SDK's own tests mock them.
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ProtocolError(f"{where}.{name} must be a boolean, got {type(value).__name__}")


# int64 fields arrive as JSON strings in proto-JSON: ASCII digits only ("²".isdigit() is
# True, and "--5".lstrip("-") is digits), bounded in length before int() sees them.
_INT_TEXT = re.compile(r"-?[0-9]{1,20}", re.ASCII)
_INT64_MAX = 2**63 - 1


def _int(obj: Mapping[str, Any], name: str, where: str) -> int | None:
    """A non-negative int64 (every integer the server sends is a count or an index)."""
    value = get_field(obj, name)
    if value is None:
        return None
    if isinstance(value, bool):
        raise ProtocolError(f"{where}.{name} must be an integer, got bool")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _INT_TEXT.fullmatch(value):
        number = int(value)
    elif isinstance(value, str):
        raise ProtocolError(f"{where}.{name} must be an integer, got {value[:40]!r}")
    else:
        raise ProtocolError(f"{where}.{name} must be an integer, got {type(value).__name__}")
    if not 0 <= number <= _INT64_MAX:
        raise ProtocolError(f"{where}.{name} out of range (0 to 2**63-1): {str(number)[:40]}")
    return number


def _list(obj: Mapping[str, Any], name: str, where: str) -> list[Any]:
    value = get_field(obj, name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProtocolError(f"{where}.{name} must be a list, got {type(value).__name__}")
    return value


def _parse_setup_complete(obj: JsonDict) -> SetupComplete:
    return SetupComplete(_str(obj, "sessionId", "setupComplete"), obj)


def _parse_transcription(obj: Mapping[str, Any], name: str) -> Transcription | None:
    value = get_field(obj, name)
    if value is None:
        return None
    inner = _obj(value, f"serverContent.{name}")
    return Transcription(_str(inner, "text", name) or "", _bool(inner, "finished", name))


_INLINE_KEYS = frozenset({"mimeType", "data"})


def _plain_inline(part: JsonDict) -> InlineData | None:
    """The part's inline data when the part is exactly one camelCase ``inlineData`` with
    string ``mimeType`` and ``data`` (what the general path reads the same way), else None."""
    if len(part) != 1:
        return None
    inline = part.get("inlineData")
    if (
        type(inline) is dict
        and inline.keys() == _INLINE_KEYS
        and type(mime := inline["mimeType"]) is str
        and type(data := inline["data"]) is str
    ):
        return InlineData(mime, data)
    return None


def _parse_part(value: Any) -> Part:
    part = _obj(value, "modelTurn.parts[]")
    # Fast path for the frame that is 95% of a voice session: one camelCase inlineData
    # part. Same result as the general path below, without a dozen absent-field lookups.
    if (plain := _plain_inline(part)) is not None:
        return Part(None, plain, False, part)
    inline: InlineData | None = None
    inline_raw = get_field(part, "inlineData")
    if inline_raw is not None:
        inline_obj = _obj(inline_raw, "inlineData")
        inline = InlineData(
            _str(inline_obj, "mimeType", "inlineData") or "",
            _str(inline_obj, "data", "inlineData") or "",
        )
    return Part(_str(part, "text", "part"), inline, _bool(part, "thought", "part"), part)


def _parse_server_content(obj: JsonDict) -> ServerContent:
    turn_raw = get_field(obj, "modelTurn")
    parts: tuple[Part, ...] = ()
    if turn_raw is not None:
        turn = _obj(turn_raw, "serverContent.modelTurn")
        parts = tuple(_parse_part(p) for p in _list(turn, "parts", "modelTurn"))
        if len(obj) == 1:  # only modelTurn (an audio/text chunk): every flag is absent
            return ServerContent(
                parts=parts,
                input_transcription=None,
                output_transcription=None,
                interrupted=False,
                generation_complete=False,
                turn_complete=False,
                waiting_for_input=False,
                turn_complete_reason=None,
                raw=obj,
            )
    w = "serverContent"
    return ServerContent(
        parts=parts,
        input_transcription=_parse_transcription(obj, "inputTranscription"),
        output_transcription=_parse_transcription(obj, "outputTranscription"),
        interrupted=_bool(obj, "interrupted", w),
        generation_complete=_bool(obj, "generationComplete", w),
        turn_complete=_bool(obj, "turnComplete", w),
        waiting_for_input=_bool(obj, "waitingForInput", w),
        turn_complete_reason=_str(obj, "turnCompleteReason", w),
        raw=obj,
        interaction_status=_str(obj, "interactionStatus", w),
    )


def _parse_function_call(value: Any) -> FunctionCall:
    call = _obj(value, "toolCall.functionCalls[]")
    args = get_field(call, "args")
    return FunctionCall(
        id=_str(call, "id", "functionCall") or "",
        name=_str(call, "name", "functionCall") or "",
        args=_obj(args, "functionCall.args"),
    )


def _parse_tool_call(obj: JsonDict) -> ToolCall:
    return ToolCall(
        tuple(_parse_function_call(c) for c in _list(obj, "functionCalls", "toolCall")), obj
    )


def _parse_tool_call_cancellation(obj: JsonDict) -> ToolCallCancellation:
    ids = _list(obj, "ids", "toolCallCancellation")
    if not all(isinstance(i, str) for i in ids):
        raise ProtocolError("toolCallCancellation.ids must be strings")
    return ToolCallCancellation(tuple(ids), obj)


def _parse_go_away(obj: JsonDict) -> GoAway:
    text = _str(obj, "timeLeft", "goAway")
    if text is None:
        return GoAway(None, obj)
    try:
        seconds = parse_duration(text)
    except ProtocolError as exc:
        raise ProtocolError(f"goAway.timeLeft: {exc}") from None
    if seconds < 0:
        raise ProtocolError(f"goAway.timeLeft must not be negative: {text[:40]!r}")
    return GoAway(seconds, obj)


def _parse_resumption_update(obj: JsonDict) -> SessionResumptionUpdate:
    w = "sessionResumptionUpdate"
    resumable = _bool(obj, "resumable", w)
    handle = _str(obj, "newHandle", w) or None
    return SessionResumptionUpdate(
        new_handle=handle if resumable else None,
        resumable=resumable and handle is not None,
        last_consumed_client_message_index=_int(obj, "lastConsumedClientMessageIndex", w),
        raw=obj,
    )


def _parse_usage(obj: JsonDict) -> UsageMetadata:
    w = "usageMetadata"
    return UsageMetadata(
        _int(obj, "promptTokenCount", w),
        _int(obj, "responseTokenCount", w),
        _int(obj, "totalTokenCount", w),
        obj,
    )


_PARSERS: dict[str, Any] = {
    "setupComplete": _parse_setup_complete,
    "serverContent": _parse_server_content,
    "toolCall": _parse_tool_call,
    "toolCallCancellation": _parse_tool_call_cancellation,
    "goAway": _parse_go_away,
    "sessionResumptionUpdate": _parse_resumption_update,
    "usageMetadata": _parse_usage,
}
