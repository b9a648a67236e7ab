"""End-to-end in the AUDIO modality: speech in, speech and transcripts out, across drops.

The emulator "recognises" speech made by ``encode_speech`` exactly, so an utterance cut by
a drop is only understood if the client replays the audio the resumed state lacks.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from tunnelproof.emulator import EmulatorPolicy, EmulatorServer, encode_speech, silence
from tunnelproof.session import LiveSession
from tunnelproof.session import app_events as ev

from .session_e2e_helpers import (
    ASK_FIRST,
    CONFIG,
    EXPECTED_FIRST,
    FAST_WATCHDOGS,
    FIRST,
    EmulatorMint,
    Recorder,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

CHUNK = 1280  # 40 ms at 16 kHz, 16-bit


def chunks(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + CHUNK] for i in range(0, len(pcm), CHUNK)]


async def say(session: LiveSession, text: str) -> None:
    for chunk in chunks(encode_speech(text) + silence(0.8)):
        result = await session.send_audio(chunk)
        assert not result.dropped, result


async def spoken_answer(rec: Recorder, mark: int) -> str:
    await rec.wait(ev.TurnComplete, since=mark, timeout=30)
    return "".join(e.text for e in rec.log[mark:] if isinstance(e, ev.OutputTranscript)).strip()


async def test_audio_conversation_survives_a_drop_in_the_middle_of_an_utterance() -> None:
    async with (
        EmulatorServer(policy=EmulatorPolicy(generation_speed=0)) as emu,
        LiveSession(
            CONFIG, EmulatorMint(emu), watchdogs=FAST_WATCHDOGS, rng=random.Random(2)
        ) as session,
    ):
        rec = Recorder(session)
        await rec.wait(ev.Connected)
        mark = rec.mark()
        await say(session, FIRST)
        answer = await spoken_answer(rec, mark)
        assert "teal" in answer
        assert rec.of(ev.AudioChunk), "speech came back as audio"
        for _ in range(100):
            if session.last_turn_held:
                break
            await asyncio.sleep(0.02)
        # the user starts asking; the link dies half way through the sentence
        mark = rec.mark()
        speech = chunks(encode_speech(ASK_FIRST) + silence(0.8))
        half = len(speech) // 2
        for chunk in speech[:half]:
            await session.send_audio(chunk)
        emu.controls.abort_connection()
        await rec.wait(ev.Disconnected, since=mark)
        for chunk in speech[half:]:
            result = await session.send_audio(chunk)
            assert result.queued
        resumed = await rec.wait(ev.Resumed, since=mark)
        assert isinstance(resumed, ev.Resumed) and resumed.replayed > 0
        answer = await spoken_answer(rec, mark)
        assert answer == EXPECTED_FIRST, answer
        assert session.metrics.audio_ms_replayed > 0
