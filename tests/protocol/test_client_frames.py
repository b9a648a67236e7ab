"""The client-frame reading the emulator and the relay share: what it accepts, and that any
other frame, however hostile, is one 1007 close with a reason that fits a close frame; and
the one response modality a setup asks for.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunnelproof.protocol.client_frames import decode_client_frame, requested_modality
from tunnelproof.protocol.client_messages import CLIENT_MESSAGE_KINDS
from tunnelproof.protocol.close_codes import MAX_CLOSE_REASON_BYTES, REASON_INVALID_ARGUMENT
from tunnelproof.protocol.errors import CloseRefusal, invalid


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        ('{"setup": {"model": "m"}}', "setup"),
        ('{"clientContent": {}}', "clientContent"),
        ('{"client_content": {}}', "clientContent"),
        ('{"realtime_input": {"text": "hi"}}', "realtimeInput"),
        ('{"toolResponse": {"functionResponses": []}}', "toolResponse"),
        ('{"tool_response": {}}', "toolResponse"),
    ],
)
def test_each_kind_in_either_spelling(frame: str, kind: str) -> None:
    for data in (frame, frame.encode()):  # text and binary frames alike
        got_kind, body = decode_client_frame(data)
        assert got_kind == kind
        assert isinstance(body, dict)


def test_the_body_is_returned_as_sent_and_null_reads_as_empty() -> None:
    assert decode_client_frame(b'{"realtime_input": {"text": "hi"}}') == (
        "realtimeInput",
        {"text": "hi"},  # inner names are left as sent: the reader of each body decides
    )
    assert decode_client_frame(b'{"setup": null}') == ("setup", {})


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"not json",
        b'{"setup": {}',  # cut short
        b"\xff\xfe{}",  # not UTF-8
        b"[]",
        b'"setup"',
        b"5",
        b"null",
        b"{}",
        b'{"setup": {}, "clientContent": {}}',
        b'{"setup": 5}',
        b'{"setup": "x"}',
        b'{"setup": []}',
        b'{"clientContent": true}',
        b'{"setup": {"a": ' * 2000 + b"1" + b"}" * 4000,  # deeper than any parser's limit
    ],
)
def test_a_malformed_frame_is_the_generic_1007(frame: bytes) -> None:
    with pytest.raises(CloseRefusal) as refused:
        decode_client_frame(frame)
    assert (refused.value.code, refused.value.reason) == (1007, REASON_INVALID_ARGUMENT)


def test_an_unknown_top_level_name_is_named_in_the_reason() -> None:
    with pytest.raises(CloseRefusal) as refused:
        decode_client_frame(b'{"bidiGenerateContentSetup": {}}')
    assert refused.value.code == 1007
    assert refused.value.reason == (
        'Invalid JSON payload received. Unknown name "bidiGenerateContentSetup": Cannot find field.'
    )


@pytest.mark.parametrize("name", ["x" * 10_000, "é" * 500, "😀" * 100])
def test_a_long_unknown_name_is_cut_to_the_123_byte_close_limit(name: str) -> None:
    with pytest.raises(CloseRefusal) as refused:
        decode_client_frame(f'{{"{name}": {{}}}}')
    reason = refused.value.reason
    encoded = reason.encode("utf-8")  # a split character would not encode back whole
    assert len(encoded) <= MAX_CLOSE_REASON_BYTES
    assert len(encoded) > MAX_CLOSE_REASON_BYTES - 4  # cut at the limit, not far before it
    assert reason.startswith('Invalid JSON payload received. Unknown name "')


def test_close_refusal_cuts_any_reason_once_at_construction() -> None:
    assert invalid().code == 1007 and invalid().reason == REASON_INVALID_ARGUMENT
    long = CloseRefusal(1008, "m" * 300)
    assert (long.code, long.reason) == (1008, "m" * MAX_CLOSE_REASON_BYTES)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200),
        st.dictionaries(
            st.one_of(st.sampled_from(["setup", "client_content", "realtimeInput"]), st.text()),
            st.one_of(st.none(), st.integers(), st.text(), st.lists(st.integers()), st.just({})),
            max_size=3,
        ).map(json.dumps),
    )
)
def test_any_frame_is_a_message_or_one_1007_close(data: bytes | str) -> None:
    try:
        kind, body = decode_client_frame(data)
    except CloseRefusal as refused:
        assert refused.code == 1007
        assert len(refused.reason.encode("utf-8")) <= MAX_CLOSE_REASON_BYTES
    else:
        assert kind in CLIENT_MESSAGE_KINDS
        assert isinstance(body, dict)


@pytest.mark.parametrize(
    ("setup", "modality"),
    [
        ({}, "AUDIO"),  # the Live API's default
        ({"generationConfig": None}, "AUDIO"),
        ({"generationConfig": {"temperature": 0.2}}, "AUDIO"),
        ({"generationConfig": {"responseModalities": []}}, "AUDIO"),
        ({"generationConfig": {"responseModalities": ["TEXT"]}}, "TEXT"),
        ({"generationConfig": {"responseModalities": ["audio"]}}, "AUDIO"),
    ],
)
def test_the_requested_modality(setup: dict[str, object], modality: str) -> None:
    assert requested_modality(setup) == modality


@pytest.mark.parametrize(
    "generation",
    [
        ["TEXT"],
        "TEXT",
        {"responseModalities": "TEXT"},
        {"responseModalities": ["TEXT", "AUDIO"]},
        {"responseModalities": ["IMAGE"]},
        {"responseModalities": [None]},
    ],
)
def test_a_modality_google_refuses_is_the_generic_1007(generation: object) -> None:
    with pytest.raises(CloseRefusal) as refused:
        requested_modality({"generationConfig": generation})
    assert (refused.value.code, refused.value.reason) == (1007, REASON_INVALID_ARGUMENT)
