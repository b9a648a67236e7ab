"""Audio in the page: a spoken question from Chromium's fake microphone, answered in audio.

The question is a WAV made by espeak-ng (padded with silence so the emulator's voice
activity detection ends the turn), played by ``--use-file-for-fake-audio-capture``. The page
captures it with the client's AudioWorklet at 16 kHz and streams it with ``sendAudio``; the
answer's 24 kHz audio goes into the jitter-buffered player.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from .chromium_stack import CHROMIUM_ARGS, Stack, chromium_path, events, running_stack, wait_event

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


def spoken_question(folder: Path) -> Path:
    """``What is my name?`` by espeak-ng, then 2 s of silence (the end of the turn)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed (make system-deps installs it as root)")
    raw = folder / "raw.wav"
    subprocess.run([espeak, "-w", str(raw), "What is my name?"], check=True, timeout=30)
    out = folder / "question.wav"
    with wave.open(str(raw)) as src, wave.open(str(out), "wb") as dst:
        dst.setparams(src.getparams())
        frames = src.readframes(src.getnframes())
        silence = b"\0\0" * src.getframerate() * 2
        dst.writeframes(silence[: len(silence) // 4] + frames + silence)
    return out


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def audio_browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    executable = chromium_path()
    wav = spoken_question(tmp_path_factory.mktemp("fake-mic"))
    from playwright.async_api import async_playwright

    args = [
        *CHROMIUM_ARGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        "--autoplay-policy=no-user-gesture-required",
    ]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=args)
        try:
            yield browser
        finally:
            await browser.close()


@pytest_asyncio.fixture(loop_scope="module")
async def stack() -> AsyncIterator[Stack]:
    async with running_stack() as s:
        yield s


async def test_a_spoken_question_is_answered_in_audio_and_played(
    audio_browser: Any, stack: Stack
) -> None:
    context = await audio_browser.new_context()
    try:
        page = await stack.open_page(context, audio=True, config={"inputAudioTranscription": True})
        await page.wait_for_function(
            "() => (window.audio && window.audio.mic) || window.audioError", timeout=10_000
        )
        assert await page.evaluate("() => window.audioError || null") is None
        await wait_event(page, "turnComplete", timeout=20)
        heard = await events(page, "inputTranscript")
        assert heard and any(e["text"].strip() for e in heard)  # the server heard speech
        assert await events(page, "outputTranscript")
        chunks = await events(page, "audio")
        assert chunks and sum(e["pcm"] for e in chunks) > 24_000  # over 0.5 s of answer
        stats = await page.evaluate(
            """() => ({ mic: window.audio.mic.chunks, rate: window.audio.mic.ctx.sampleRate,
                       queued: window.audio.player.queuedSamples,
                       sent: window.live.metrics.messagesDropped })"""
        )
        assert stats["rate"] == 16000
        assert stats["mic"] >= 25  # 40 ms chunks: at least a second of microphone audio
        assert stats["sent"] == 0
        assert stats["queued"] == sum(e["pcm"] for e in chunks) // 2
        await page.wait_for_function("() => window.audio.player.playedSamples > 0", timeout=10_000)

        # Barge-in: a long answer queued, then the `interrupted` event stops it at once.
        flushed = await page.evaluate(
            """async () => {
              const p = window.audio.player;
              p.push(new Uint8Array(24000 * 2 * 3));  // 3 s
              await new Promise((r) => setTimeout(r, 300));
              window.live.dispatch({ type: "interrupted" });  // as the machine emits it
              await new Promise((r) => setTimeout(r, 300));
              return { flushed: p.flushedSamples };
            }"""
        )
        assert 24000 <= flushed["flushed"] <= 24000 * 3
        assert page.errors == []
    finally:
        await context.close()
