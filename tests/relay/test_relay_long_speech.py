"""Long speech with no upstream handle survives a killed owner whole.

Two ``tunnelproof relay`` processes, a real redis-server and the emulator. While the user
speaks, no upstream handle holds the speech (Google issues none mid-utterance), so the
relay keeps every chunk in its unheld record (mirrored to Redis) for a takeover. The
record's bound counts contiguous audio as one record, bounded in bytes (~47 s of 16 kHz
speech), not one per chunk: 10 s of 20 ms chunks (500 messages) are all kept; the old
bound of 256 messages kept only the last 5 s, and the start of the utterance was lost.
The new owner's upstream session queues the carried speech while it resumes: its outbox
keeps as much audio as the record (``RelaySettings.upstream_outbox``), not a device
client's 5 s.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from tunnelproof.emulator.audio import encode_speech, silence

from .test_relay_scaleout import Device, max_open_upstreams, two_relays

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

SENTENCE = "my favourite colour is teal and my cat is called Ada the Brave"
CHUNK = 640  # 20 ms of 16 kHz s16le


def _chunks(pcm: bytes) -> list[str]:
    out = []
    for start in range(0, len(pcm), CHUNK):
        data = base64.b64encode(pcm[start : start + CHUNK]).decode("ascii")
        audio = {"mimeType": "audio/pcm;rate=16000", "data": data}
        out.append(orjson.dumps({"realtimeInput": {"audio": audio}}).decode())
    return out


async def test_ten_seconds_of_speech_no_handle_holds_survive_a_killed_owner_whole() -> None:
    async with two_relays() as (emu, a, b):
        device = Device()
        await device.connect(a)
        assert "Hello" in await device.ask("Hello there.")
        await asyncio.sleep(0.4)  # the handle that holds that turn (its position) arrives
        speech = _chunks(encode_speech(SENTENCE, seconds_per_word=10 / 13))
        assert len(speech) >= 500  # 10 s: twice the old 256-message bound
        for frame in speech:  # the user is still speaking: no utterance end, no handle
            await device.ws.send(frame)
        await asyncio.sleep(0.5)  # A mirrors its record to Redis (every 50 ms)
        os.kill(a.pid, signal.SIGKILL)  # this process, by its pid
        device.ws.transport.abort()  # the device's link dies with it
        with pytest.raises((ConnectionClosed, TimeoutError)):
            await device.read(timeout=2)
        await device.connect(b)  # B takes over, resumes Gemini, sends the speech again
        for frame in _chunks(silence(1.0)):  # the user stops speaking
            await device.ws.send(frame)
        await device.read()  # the answer to the whole utterance
        utterances = [e["text"] for e in emu.controls.events(kind="utterance")]
        assert utterances[-1] == SENTENCE, utterances  # recognised from its very start
        await device.ws.close()
        async with httpx.AsyncClient() as http:
            stats = (await http.get(b.ready["stats"])).json()
        assert stats["unheld_forgotten"] == 0 and stats["process_takeovers"] == 1, stats
        assert stats["input_lost_to_owner_death"] == 0, stats
        assert max_open_upstreams(emu) == 1
