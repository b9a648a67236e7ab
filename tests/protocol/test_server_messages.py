"""Parsing server frames: every message kind, both casings, unknowns kept, bad input refused."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunnelproof.protocol import (
    GoAway,
    ProtocolError,
    ServerContent,
    SessionResumptionUpdate,
    SetupComplete,
    ToolCall,
    ToolCallCancellation,
    UnknownMessage,
    UsageMetadata,
    parse_server_frame,
)
from tunnelproof.protocol.casing import camelize_keys, get_field, to_camel, to_snake


def one(frame: bytes | str) -> Any:
    parsed = parse_server_frame(frame)
    assert len(parsed.messages) == 1
    return parsed.messages[0]


def test_setup_complete_binary_and_text() -> None:
    for frame in (b'{"setupComplete": {}}', '{"setupComplete": {}}'):
        msg = one(frame)
        assert isinstance(msg, SetupComplete) and msg.session_id is None
    assert one(b'{"setupComplete": {"sessionId": "s-1"}}').session_id == "s-1"


def test_server_content_text_audio_and_flags() -> None:
    pcm = b"\x01\x00\x02\x00"
    frame = orjson.dumps(
        {
            "serverContent": {
                "modelTurn": {
                    "parts": [
                        {"text": "Hey its "},
                        {"text": "thinking", "thought": True},
                        {"text": "text"},
                        {
                            "inlineData": {
                                "mimeType": "audio/pcm;rate=24000",
                                "data": base64.b64encode(pcm).decode(),
                            }
                        },
                        {"executableCode": {"code": "x"}},
                    ]
                },
                "generationComplete": True,
                "turnComplete": True,
                "outputTranscription": {"text": "Based on the"},
                "inputTranscription": {"text": "what time is it", "finished": False},
                "turnCompleteReason": "NEED_MORE_INPUT",
                "waitingForInput": True,
                "groundingMetadata": {"x": 1},
            }
        }
    )
    msg = one(frame)
    assert isinstance(msg, ServerContent)
    assert msg.text == "Hey its text"
    assert [c.decode() for c in msg.audio_chunks] == [pcm]
    assert msg.generation_complete and msg.turn_complete and not msg.interrupted
    assert msg.output_transcription is not None and msg.output_transcription.text == "Based on the"
    assert msg.input_transcription is not None and not msg.input_transcription.finished
    assert msg.turn_complete_reason == "NEED_MORE_INPUT" and msg.waiting_for_input
    assert msg.parts[4].raw == {"executableCode": {"code": "x"}}  # unknown part kept
    assert msg.raw["groundingMetadata"] == {"x": 1}  # unknown field kept


def test_interrupted() -> None:
    msg = one(b'{"serverContent": {"interrupted": true}}')
    assert msg.interrupted and not msg.turn_complete


def test_snake_case_at_every_level() -> None:
    frame = orjson.dumps(
        {
            "server_content": {
                "model_turn": {
                    "parts": [
                        {"inline_data": {"mime_type": "audio/pcm;rate=24000", "data": "AAE="}}
                    ]
                },
                "turn_complete": True,
                "output_transcription": {"text": "hi", "finished": True},
            }
        }
    )
    msg = one(frame)
    assert isinstance(msg, ServerContent)
    assert msg.turn_complete and msg.audio_chunks[0].decode() == b"\x00\x01"
    assert msg.output_transcription is not None and msg.output_transcription.finished
    upd = one(b'{"session_resumption_update": {"new_handle": "h", "resumable": true}}')
    assert isinstance(upd, SessionResumptionUpdate) and upd.new_handle == "h"
    assert one(b'{"go_away": {"time_left": "50s"}}').time_left == 50.0


def test_tool_call_and_cancellation() -> None:
    msg = one(
        b'{"toolCall": {"functionCalls": [{"id": "function-call-123", "name": "turn_on_the_lights", "args": {}}]}}'
    )
    assert isinstance(msg, ToolCall)
    assert msg.function_calls[0].id == "function-call-123" and msg.function_calls[0].args == {}
    # Function arguments are user data: keys are not rewritten.
    msg2 = one(
        b'{"tool_call": {"function_calls": [{"id": "a", "name": "f", "args": {"some_key": 1}}]}}'
    )
    assert msg2.function_calls[0].args == {"some_key": 1}
    cancel = one(b'{"toolCallCancellation": {"ids": ["function-call-123"]}}')
    assert isinstance(cancel, ToolCallCancellation) and cancel.ids == ("function-call-123",)


def test_go_away_durations() -> None:
    assert one(b'{"goAway": {"timeLeft": "50s"}}') == GoAway(50.0, {"timeLeft": "50s"})
    assert one(b'{"goAway": {"timeLeft": "17.250s"}}').time_left == 17.25
    assert one(b'{"goAway": {}}').time_left is None


def test_resumption_update_semantics() -> None:
    good = one(b'{"sessionResumptionUpdate": {"newHandle": "H2", "resumable": true}}')
    assert good.resumable and good.new_handle == "H2"
    not_resumable = one(b'{"sessionResumptionUpdate": {"resumable": false}}')
    assert not not_resumable.resumable and not_resumable.new_handle is None
    # A handle that comes with resumable=false must never be used.
    stale = one(b'{"sessionResumptionUpdate": {"newHandle": "H3", "resumable": false}}')
    assert stale.new_handle is None and not stale.resumable
    # resumable=true with an empty handle is not usable either.
    empty = one(b'{"sessionResumptionUpdate": {"newHandle": "", "resumable": true}}')
    assert not empty.resumable and empty.new_handle is None
    # proto-JSON strings (the SDK's own tests mock these).
    s = one(
        b'{"sessionResumptionUpdate": {"newHandle": "H", "resumable": "true", "lastConsumedClientMessageIndex": "123456789"}}'
    )
    assert s.resumable and s.last_consumed_client_message_index == 123456789


def test_usage_metadata_beside_content() -> None:
    frame = parse_server_frame(
        b'{"serverContent": {"turnComplete": true}, "usageMetadata": {"promptTokenCount": 15, "responseTokenCount": 25, "totalTokenCount": 40}}'
    )
    kinds = [type(m) for m in frame.messages]
    assert kinds == [ServerContent, UsageMetadata]
    usage = frame.messages[1]
    assert isinstance(usage, UsageMetadata) and usage.total_token_count == 40


def test_unknown_messages_are_kept_not_errors() -> None:
    frame = parse_server_frame(
        b'{"voiceActivityDetectionSignal": {"vadSignalType": "VAD_SIGNAL_TYPE_SOS"}}'
    )
    msg = frame.messages[0]
    assert isinstance(msg, UnknownMessage)
    assert msg.kind == "voiceActivityDetectionSignal"
    assert msg.raw == {"vadSignalType": "VAD_SIGNAL_TYPE_SOS"}
    assert parse_server_frame(b"{}").messages == ()


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"setupComplete"', "must be a JSON object"),
        (b'{"goAway": {"timeLeft": 50}}', "must be a string"),
        (b'{"goAway": {"timeLeft": "soon"}}', "not a protobuf duration"),
        (b'{"serverContent": []}', "must be an object"),
        (b'{"serverContent": {"modelTurn": {"parts": {"text": 1}}}}', "must be a list"),
        (b'{"serverContent": {"turnComplete": "maybe"}}', "must be a boolean"),
        (b'{"sessionResumptionUpdate": {"newHandle": 5, "resumable": true}}', "must be a string"),
        (b'{"toolCallCancellation": {"ids": [1]}}', "must be strings"),
        (b'{"usageMetadata": {"totalTokenCount": true}}', "must be an integer"),
        (b'{"toolCall": {"functionCalls": [{"id": "a", "args": "x"}]}}', "must be an object"),
    ],
)
def test_malformed_frames_are_clear_protocol_errors_with_size(frame: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match) as info:
        parse_server_frame(frame)
    assert info.value.size == len(frame)
    assert f"({len(frame)} bytes)" in str(info.value)


def test_invalid_base64_audio_is_a_protocol_error_on_decode() -> None:
    msg = one(
        b'{"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm", "data": "!!"}}]}}}'
    )
    with pytest.raises(ProtocolError, match="base64"):
        msg.audio_chunks[0].decode()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
known_keys = st.sampled_from(
    [
        "setupComplete",
        "serverContent",
        "toolCall",
        "toolCallCancellation",
        "goAway",
        "sessionResumptionUpdate",
        "usageMetadata",
        "server_content",
        "go_away",
        "modelTurn",
        "parts",
        "text",
        "inlineData",
        "timeLeft",
        "newHandle",
        "resumable",
        "functionCalls",
        "ids",
        "turnComplete",
        "args",
    ]
)
frames = st.recursive(
    json_values,
    lambda children: st.dictionaries(known_keys | st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(frames)
def test_fuzz_any_json_parses_or_raises_protocol_error(value: Any) -> None:
    data = orjson.dumps(value)
    try:
        parsed = parse_server_frame(data)
    except ProtocolError as exc:
        assert exc.size == len(data)
    else:
        assert isinstance(parsed.raw, dict)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_fuzz_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        parse_server_frame(data)
    except ProtocolError:
        pass


def test_casing_helpers() -> None:
    assert to_snake("turnComplete") == "turn_complete"
    assert to_camel("turn_complete") == "turnComplete"
    assert to_camel("turnComplete") == "turnComplete"
    assert get_field({"turn_complete": True}, "turnComplete") is True
    assert get_field({"turnComplete": 1, "turn_complete": 2}, "turnComplete") == 1
    assert camelize_keys(
        {"tool_response": {"function_responses": [{"id": "a", "response": {"my_key": 1}}]}}
    ) == {"toolResponse": {"functionResponses": [{"id": "a", "response": {"my_key": 1}}]}}
