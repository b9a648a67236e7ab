"""Sends refused at the app's call instead of killing the session or vanishing later.

Found by a hostile tester: a ``toolResponse`` for an id the session never saw was ``sent``
and the server (Google, the emulator) closed 1007, failing the session; ``OutboxLimits``
accepted 0, negative and nan bounds; a single 20 MB text was ``sent`` while connected but
"outbox full" while queued.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import pytest

from tunnelproof.protocol.client_messages import FunctionResponse, realtime_text, tool_response
from tunnelproof.session.outbox import MAX_CLIENT_FRAME_BYTES, OutboxLimits
from tunnelproof.session.outgoing import MessageKind

from .session_harness import Harness

CALL = {"functionCalls": [{"id": "c1", "name": "f", "args": {}}]}


def answer(*ids: str) -> dict[str, Any]:
    return tool_response([FunctionResponse(i, "f", {"ok": True}) for i in ids])


def connected() -> Harness:
    h = Harness()
    h.start()
    h.connect()
    h.handle_update("h0")
    return h


def tool_frames(h: Harness) -> list[dict[str, Any]]:
    return [f for f in h.frames() if "toolResponse" in f]


def test_an_answer_to_an_unknown_id_is_refused_and_nothing_is_written() -> None:
    h = connected()
    h.send(realtime_text("hi"))
    result = h.send(answer("nope"))
    assert result.dropped
    assert result.reason == "no open tool call 'nope': the model never made it"
    assert tool_frames(h) == []
    assert h.m.metrics.messages_dropped == 1


def test_an_open_call_is_answered_once_a_second_answer_is_refused() -> None:
    h = connected()
    h.server(toolCall=CALL)
    assert h.send(answer("c1")).sent
    again = h.send(answer("c1"))
    assert again.dropped and again.reason is not None
    assert "'c1'" in again.reason and "answered already" in again.reason
    assert len(tool_frames(h)) == 1


def test_a_second_answer_while_the_first_is_queued_is_refused() -> None:
    h = connected()
    h.server(toolCall=CALL)
    h.handle_update("h1")  # holds the call: it stays open through the drop
    h.closed(1006)
    assert h.send(answer("c1")).queued
    again = h.send(answer("c1"))
    assert again.dropped and again.reason is not None and "queued" in again.reason


def test_an_answer_to_a_call_the_server_withdrew_is_refused() -> None:
    h = connected()
    h.server(toolCall=CALL)
    h.server(toolCallCancellation={"ids": ["c1"]})
    result = h.send(answer("c1"))
    assert result.dropped and result.reason is not None
    assert "toolCallCancellation" in result.reason


def test_a_call_from_the_previous_connection_held_by_the_handle_is_still_open() -> None:
    h = connected()
    h.server(toolCall=CALL)
    h.handle_update("h1")  # the handle's state holds the call
    h.closed(1006)
    h.advance(1)
    h.connect()
    assert h.setup_handle() == "h1"
    assert h.send(answer("c1")).sent
    assert len(tool_frames(h)) == 1


def test_one_unknown_id_refuses_the_whole_message_and_duplicates_are_refused() -> None:
    h = connected()
    h.server(toolCall=CALL)
    mixed = h.send(answer("c1", "nope"))
    assert mixed.dropped and mixed.reason is not None and "'nope'" in mixed.reason
    twice = h.send(answer("c1", "c1"))
    assert twice.dropped and twice.reason is not None and "twice" in twice.reason
    empty = h.send({"toolResponse": {"functionResponses": [{"name": "f", "response": {}}]}})
    assert empty.dropped
    assert tool_frames(h) == []
    assert h.send(answer("c1")).sent  # the call stayed open through the refusals


def test_answers_to_cancelled_calls_keep_their_rule() -> None:
    h = connected()
    h.server(toolCall=CALL)
    h.closed(1006)
    h.advance(1)
    h.connect()  # resumed from h0, which lacks c1: cancelled
    result = h.send(answer("c1"))
    assert result.dropped and result.reason is not None
    assert "cancelled by a reconnect" in result.reason


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_audio_ms", 0),
        ("max_audio_ms", -5.0),
        ("max_audio_ms", math.nan),
        ("audio_ttl", 0.0),
        ("audio_ttl", math.inf),
        ("max_messages", 0),
        ("max_messages", -1),
        ("max_bytes", 0),
        ("max_bytes", math.nan),
        ("max_bytes", MAX_CLIENT_FRAME_BYTES + 1),
        ("max_unconfirmed_messages", 0),
        ("max_unconfirmed_messages", 2.5),
    ],
)
def test_outbox_limits_refuse_bad_bounds(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"OutboxLimits.{field} must be"):
        OutboxLimits(**{field: value})


def test_a_message_larger_than_the_outbox_is_refused_in_every_phase() -> None:
    limits = OutboxLimits(max_bytes=10_000)
    big = realtime_text("x" * 20_000)
    live = Harness(limits=limits)
    live.start()
    live.connect()
    queued = Harness(limits=limits)
    queued.start()
    for h in (live, queued):
        result = h.send(big)
        assert result.dropped and result.reason is not None
        assert "larger than the outbox holds (max_bytes=10000)" in result.reason
        assert not h.m.outbox.pending and not h.m.outbox.unconfirmed
    assert [f for f in live.frames() if "realtimeInput" in f] == []


def test_an_audio_chunk_longer_than_the_outbox_is_refused_while_connected() -> None:
    h = Harness(limits=OutboxLimits(max_audio_ms=100))
    h.start()
    h.connect()
    pcm = bytes(2 * 16_000)  # one second at 16 kHz
    audio = {"audio": {"data": base64.b64encode(pcm).decode(), "mimeType": "audio/pcm;rate=16000"}}
    result = h.send({"realtimeInput": audio})
    assert result.dropped and result.reason is not None and "max_audio_ms=100" in result.reason
    assert h.m.metrics.audio_ms_dropped == pytest.approx(1000.0)
    assert not any(i.kind is MessageKind.AUDIO for i in h.m.outbox.unconfirmed)
