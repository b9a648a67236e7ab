"""Typed outgoing messages: what ``send_*`` builds equals what the server would read."""

from __future__ import annotations

import pytest

from tunnelproof.protocol import client_messages as cm
from tunnelproof.protocol.client_messages import FunctionResponse, Turn
from tunnelproof.session.outgoing import ClientMessage, MessageKind, Outgoing

PCM_100MS = b"\x01\x00" * 1600


@pytest.mark.parametrize(
    ("typed", "raw"),
    [
        (ClientMessage.text("hello"), cm.realtime_text("hello")),
        (ClientMessage.audio(PCM_100MS), cm.realtime_audio(PCM_100MS)),
        (ClientMessage.audio(PCM_100MS, rate=24_000), cm.realtime_audio(PCM_100MS, rate=24_000)),
        (
            ClientMessage.content([Turn("user", "a"), Turn("model", "b")], turn_complete=True),
            cm.client_content([Turn("user", "a"), Turn("model", "b")]),
        ),
        (
            ClientMessage.content([Turn("user", "a")], turn_complete=False),
            cm.client_content([Turn("user", "a")], turn_complete=False),
        ),
        (
            ClientMessage.tool_response([FunctionResponse("c1", "f"), FunctionResponse("c2", "g")]),
            cm.tool_response([FunctionResponse("c1", "f"), FunctionResponse("c2", "g")]),
        ),
    ],
)
def test_typed_messages_agree_with_reading_their_wire_form(
    typed: ClientMessage, raw: dict[str, object]
) -> None:
    assert typed.body == raw
    assert ClientMessage.from_dict(raw) == typed


def test_what_each_kind_means_for_the_session() -> None:
    text = ClientMessage.text("hi")
    assert (text.kind, text.expects_reply, text.turns) == (
        MessageKind.TEXT,
        True,
        (Turn("user", "hi"),),
    )
    audio = ClientMessage.audio(PCM_100MS)
    assert audio.kind is MessageKind.AUDIO and audio.audio_ms == pytest.approx(100.0)
    assert not audio.expects_reply
    tool = ClientMessage.tool_response([FunctionResponse("c1", "f")])
    assert tool.tool_ids == ("c1",) and tool.expects_reply
    end = ClientMessage.from_dict(cm.audio_stream_end())
    assert end.kind is MessageKind.REALTIME and end.expects_reply


def test_snake_case_and_unknown_kinds_are_read_and_setup_is_refused() -> None:
    assert ClientMessage.from_dict({"realtime_input": {"text": "x"}}).kind is MessageKind.TEXT
    assert ClientMessage.from_dict({"somethingNew": {}}).kind is MessageKind.RAW
    with pytest.raises(ValueError, match="setup is sent by the session"):
        ClientMessage.from_dict({"setup": {}})
    with pytest.raises(ValueError, match="exactly one kind"):
        ClientMessage.from_dict({"realtimeInput": {}, "toolResponse": {}})
    with pytest.raises(ValueError, match="must be an object"):
        ClientMessage.from_dict({"realtimeInput": "text"})
    with pytest.raises(ValueError, match="rate must be a positive integer"):
        ClientMessage.audio(PCM_100MS, rate=0)


def test_an_outgoing_item_is_encoded_once_and_trimmed_by_tool_id() -> None:
    msg = ClientMessage.tool_response([FunctionResponse("a", "f"), FunctionResponse("b", "f")])
    item = Outgoing.of(7, msg, 1.0)
    assert item.wire == cm.encode_client_message(msg.body) and item.size == len(item.wire)
    assert item.without_tool_ids({"zzz"}) is item
    trimmed = item.without_tool_ids({"a"})
    assert trimmed is not None and trimmed.tool_ids == ("b",) and trimmed.seq == 7
    assert '"a"' not in trimmed.wire
    assert item.without_tool_ids({"a", "b"}) is None


@pytest.mark.parametrize("rate", [float("nan"), float("inf"), 16000.5, 16000.0, True, "16000", 0])
def test_an_audio_rate_that_is_not_a_positive_integer_is_refused(rate: object) -> None:
    # nan went out as "audio/pcm;rate=nan" (the server closes 1007, fatal) with a nan
    # duration the outbox's audio bound could not compare.
    with pytest.raises(ValueError, match="audio rate must be a positive integer"):
        ClientMessage.audio(b"\0\0" * 320, rate=rate)  # type: ignore[arg-type]


def test_an_integral_audio_rate_of_any_integer_type_is_taken() -> None:
    numpy = pytest.importorskip("numpy")  # an app's rate often comes from numpy
    message = ClientMessage.audio(b"\0\0" * 320, rate=numpy.int64(8000))
    assert message.audio_ms == pytest.approx(40.0)
    assert message.body["realtimeInput"]["audio"]["mimeType"] == "audio/pcm;rate=8000"


@pytest.mark.parametrize("body", [{}, {"text": "a", "audioStreamEnd": True}])
def test_a_raw_realtime_input_with_not_exactly_one_field_is_refused(
    body: dict[str, object],
) -> None:
    # Sent as is, the server closed 1007 and the whole session failed.
    with pytest.raises(ValueError, match="realtimeInput holds exactly one field"):
        ClientMessage.from_dict({"realtimeInput": body})


@pytest.mark.parametrize("text", [None, b"hi", 5])
def test_text_that_is_not_a_str_is_refused(text: object) -> None:
    with pytest.raises(TypeError, match="text must be a str"):
        ClientMessage.text(text)  # type: ignore[arg-type]


def test_a_raw_audio_message_with_rate_zero_is_a_value_error() -> None:
    # It was a ZeroDivisionError out of send_raw (the duration divides by the rate).
    audio = {"mimeType": "audio/pcm;rate=0", "data": "AAAA"}
    with pytest.raises(ValueError, match="rate must be a positive integer"):
        ClientMessage.from_dict({"realtimeInput": {"audio": audio}})
