"""``realtimeInput.audio`` with a MIME type that is not audio or a ``rate`` that is no rate.

The emulator took ``audio/pcm;rate=nan``, ``rate=abc`` and ``text/plain`` as 16 kHz
speech, so a client sending them passed locally. Now 1007 (assumption 20 in
docs/emulator.md); every well-formed rate, and a MIME type without one, still works.
"""

from __future__ import annotations

import base64

import pytest

from tunnelproof.emulator import EmulatorServer, encode_speech, silence
from tunnelproof.protocol.close_codes import REASON_INVALID_ARGUMENT

from .emu_helpers import expect_close, recv_until, send, start, turn_complete


def _audio(mime: str, pcm: bytes = b"\0\0" * 320) -> dict[str, object]:
    return {"realtimeInput": {"audio": {"mimeType": mime, "data": base64.b64encode(pcm).decode()}}}


@pytest.mark.parametrize(
    "mime",
    [
        "audio/pcm;rate=nan",
        "audio/pcm;rate=abc",
        "audio/pcm;rate=0",
        "audio/pcm;rate=-8000",
        "text/plain",
        "image/jpeg;rate=16000",
    ],
)
async def test_a_malformed_audio_mime_type_is_1007(emulator: EmulatorServer, mime: str) -> None:
    ws, _ = await start(emulator)
    await send(ws, _audio(mime))
    assert await expect_close(ws) == (1007, REASON_INVALID_ARGUMENT)


@pytest.mark.parametrize(
    "mime", ["audio/pcm;rate=16000", "audio/pcm", "audio/pcm; rate=16000", "AUDIO/PCM;RATE=16000"]
)
async def test_well_formed_audio_is_heard(emulator: EmulatorServer, mime: str) -> None:
    ws, _ = await start(emulator, inputAudioTranscription={})
    pcm = encode_speech("hello there") + silence(0.8)
    step = 1280
    for offset in range(0, len(pcm), step):
        await send(ws, _audio(mime, pcm[offset : offset + step]))
    messages = await recv_until(ws, turn_complete)
    heard = [
        m["serverContent"]["inputTranscription"]["text"]
        for m in messages
        if "inputTranscription" in m.get("serverContent", {})
    ]
    assert heard == ["hello there"]
    await ws.close()
