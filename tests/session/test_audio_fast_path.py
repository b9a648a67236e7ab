"""The machine's audio-only frame path gives exactly the actions of the general path.

``SessionMachine._on_frame`` hands a frame that holds one camelCase ``inlineData`` part and
nothing else to ``_on_audio`` without building a ``ServerFrame`` (50 such frames a second
per voice session). These tests run the same script twice, once with the general parser
forced (``parse_server_frame`` in place of ``read_server_frame``), and compare every
action and event.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.session.session_harness import Harness, frame
from tunnelproof.protocol import server_messages
from tunnelproof.protocol.server_messages import InlineData, read_server_frame
from tunnelproof.session import machine as machine_module
from tunnelproof.session.actions import Action, Emit, SendFrame
from tunnelproof.session.app_events import AudioChunk, ProtocolViolation
from tunnelproof.session.events import FrameReceived

PCM = bytes(range(256)) * 4
AUDIO = base64.b64encode(PCM).decode()


def _audio(mime: str = "audio/pcm;rate=24000", data: str = AUDIO) -> dict[str, Any]:
    return {
        "serverContent": {
            "modelTurn": {"parts": [{"inlineData": {"mimeType": mime, "data": data}}]}
        }
    }


FRAMES: list[dict[str, Any]] = [
    _audio(),
    _audio(),
    _audio(mime="image/png"),  # inline data that is not audio: no event, no output
    _audio(data="not base64!"),  # a ProtocolViolation, and still output
    _audio(data="QUJD\u00e9"),  # non-ASCII base64 text
    {"serverContent": {"turnComplete": True}},
    {"sessionResumptionUpdate": {"newHandle": "h1", "resumable": True}},
    _audio(),
    {"serverContent": {"modelTurn": {"parts": [{"text": "hi"}]}}},
    {
        "serverContent": {
            "model_turn": {"parts": [{"inline_data": {"mimeType": "audio/pcm", "data": AUDIO}}]}
        }
    },
    _audio(),
    {"serverContent": {"generationComplete": True}},
    {"serverContent": {"turnComplete": True}},
]


def _run(general: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Action], Harness]:
    with monkeypatch.context() as patch:
        if general:
            patch.setattr(machine_module, "read_server_frame", server_messages.parse_server_frame)
        h = Harness()
        h.start()
        h.connect()
        h.send({"realtimeInput": {"text": "tell me a story"}})
        for i, message in enumerate(FRAMES):
            h.send(
                {"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": "AAAA"}}}
            )
            h.feed(FrameReceived(h.attempt, frame(**message)))
            h.advance(0.02 * (i % 3))
        h.advance(40.0)  # the reply watchdog and what follows it
    return h.log, h


def test_audio_frames_take_the_fast_path() -> None:
    assert isinstance(read_server_frame(frame(**_audio())), InlineData)
    assert not isinstance(read_server_frame(frame(**FRAMES[5])), InlineData)


def test_the_fast_path_gives_the_general_paths_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_log, fast = _run(False, monkeypatch)
    general_log, general = _run(True, monkeypatch)
    assert fast_log == general_log
    assert fast.m.metrics == general.m.metrics
    chunks = [a.event for a in fast_log if isinstance(a, Emit) and isinstance(a.event, AudioChunk)]
    assert [c.pcm for c in chunks] == [PCM] * 5
    violations = [
        a.event for a in fast_log if isinstance(a, Emit) and isinstance(a.event, ProtocolViolation)
    ]
    assert len(violations) == 2 and fast.m.metrics.protocol_errors == 2
    assert any(isinstance(a, SendFrame) for a in fast_log)


def test_an_audio_frame_during_setup_is_handled_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    logs = []
    for general in (False, True):
        with monkeypatch.context() as patch:
            if general:
                patch.setattr(
                    machine_module, "read_server_frame", server_messages.parse_server_frame
                )
            h = Harness()
            h.start()
            h.give_token()
            h.opened()
            h.feed(FrameReceived(h.attempt, frame(**_audio())))
            h.setup_complete()
            logs.append(h.log)
    assert logs[0] == logs[1]
