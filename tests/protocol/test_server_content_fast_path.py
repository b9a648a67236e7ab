"""The audio-chunk fast path of the server-frame parser gives what the general path gives."""

from __future__ import annotations

import orjson
import pytest

from tunnelproof.protocol.errors import ProtocolError
from tunnelproof.protocol.server_messages import ServerContent, parse_server_frame

AUDIO = {"mimeType": "audio/pcm;rate=24000", "data": "AAAA"}


def _content(frame: dict[str, object]) -> ServerContent:
    (message,) = parse_server_frame(orjson.dumps(frame)).messages
    assert isinstance(message, ServerContent)
    return message


def test_fast_and_general_paths_agree() -> None:
    fast = _content({"serverContent": {"modelTurn": {"parts": [{"inlineData": AUDIO}]}}})
    # snake_case keys and an extra flag force the general path
    general = _content(
        {
            "serverContent": {
                "model_turn": {"parts": [{"inline_data": dict(AUDIO)}]},
                "turnComplete": False,
            }
        }
    )
    assert fast.parts[0].inline_data == general.parts[0].inline_data
    assert fast.parts[0].text is None and not fast.parts[0].thought
    for name in (
        "input_transcription",
        "output_transcription",
        "interrupted",
        "generation_complete",
        "turn_complete",
        "waiting_for_input",
        "turn_complete_reason",
    ):
        assert getattr(fast, name) == getattr(general, name), name
    assert fast.parts[0].inline_data is not None
    assert fast.parts[0].inline_data.decode() == b"\x00\x00\x00"


@pytest.mark.parametrize("bad", [{"mimeType": 5, "data": "AAAA"}, {"mimeType": "a", "data": 1}])
def test_a_mistyped_inline_part_is_still_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        parse_server_frame(
            orjson.dumps({"serverContent": {"modelTurn": {"parts": [{"inlineData": bad}]}}})
        )
