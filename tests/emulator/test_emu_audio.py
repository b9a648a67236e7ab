"""AUDIO modality, audio input with automatic and manual activity detection, barge-in."""

from __future__ import annotations

import asyncio
import base64

from tunnelproof.emulator import EmulatorPolicy, encode_speech, silence
from tunnelproof.testing.emulator_fixtures import EmulatorFactory

from .emu_helpers import recv_until, send, start, turn_complete

FAST = EmulatorPolicy(generation_speed=0, seconds_per_word=0.1)


def _audio(pcm: bytes) -> dict[str, object]:
    data = base64.b64encode(pcm).decode()
    return {"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": data}}}


async def _say(ws: object, text: str, *, chunk: float = 0.04) -> None:
    pcm = encode_speech(text) + silence(0.8)
    step = int(16_000 * chunk) * 2
    for offset in range(0, len(pcm), step):
        await send(ws, _audio(pcm[offset : offset + step]))  # type: ignore[arg-type]


def _server_content(messages: list[dict[str, object]]) -> list[dict[str, object]]:
    return [m["serverContent"] for m in messages if "serverContent" in m]  # type: ignore[misc]


async def test_audio_answer_is_24khz_pcm_with_output_transcription(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory(FAST)
    ws, _ = await start(emu, modality="AUDIO", outputAudioTranscription={})
    await send(ws, {"realtimeInput": {"text": "hello audio"}})
    messages = _server_content(await recv_until(ws, turn_complete))
    chunks = [p["inlineData"] for m in messages for p in m.get("modelTurn", {}).get("parts", [])]
    assert chunks and all(c["mimeType"] == "audio/pcm;rate=24000" for c in chunks)
    pcm = b"".join(base64.b64decode(c["data"]) for c in chunks)
    words = ["You", "said:", '"hello', 'audio".']
    assert len(pcm) == 2 * round(0.1 * 24_000) * len(words)
    said = "".join(m["outputTranscription"]["text"] for m in messages if "outputTranscription" in m)
    assert said.split() == words
    assert "generationComplete" in messages[-2]
    assert messages[-1] == {"turnComplete": True, "interactionStatus": "IDLE"}
    await ws.close()


async def test_audio_is_paced_in_real_time_times_speed(emulator_factory: EmulatorFactory) -> None:
    emu = await emulator_factory(EmulatorPolicy(seconds_per_word=0.2, generation_speed=1.0))
    ws, _ = await start(emu, modality="AUDIO")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await send(ws, {"realtimeInput": {"text": "count to 4"}})  # "1, 2, 3, 4." = 4 words
    await recv_until(ws, turn_complete)
    assert loop.time() - started >= 0.7  # 0.8 s of audio at real time
    await ws.close()


async def test_speech_gets_a_transcript_and_an_answer(emulator_factory: EmulatorFactory) -> None:
    emu = await emulator_factory(FAST)
    ws, _ = await start(
        emu, modality="AUDIO", inputAudioTranscription={}, outputAudioTranscription={}
    )
    await _say(ws, "my name is Noor")
    messages = _server_content(await recv_until(ws, turn_complete))
    assert messages[0] == {"inputTranscription": {"text": "my name is Noor", "finished": True}}
    await _say(ws, "what did I say first")
    messages = _server_content(await recv_until(ws, turn_complete))
    said = "".join(m["outputTranscription"]["text"] for m in messages if "outputTranscription" in m)
    assert said.split() == ["You", "first", "said:", '"my', "name", "is", 'Noor".']
    history = emu.controls.history()
    assert [e["source"] for e in history if e["role"] == "user"] == ["audio", "audio"]
    await ws.close()


async def test_audio_stream_end_flushes_the_utterance(emulator_factory: EmulatorFactory) -> None:
    emu = await emulator_factory(FAST)
    ws, _ = await start(emu, inputAudioTranscription={})
    await send(ws, _audio(encode_speech("no trailing silence")))
    await send(ws, {"realtimeInput": {"audioStreamEnd": True}})
    messages = _server_content(await recv_until(ws, turn_complete))
    assert messages[0]["inputTranscription"]["text"] == "no trailing silence"
    await ws.close()


async def test_unrecognisable_audio_gets_a_stable_pseudo_transcript(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory(FAST)
    noise = bytes((i * 7919) % 256 for i in range(16_000))  # loud, not encoded speech
    transcripts = []
    for _ in range(2):
        ws, _ = await start(emu, inputAudioTranscription={}, resumption=False)
        await send(ws, _audio(noise + silence(0.8)))
        messages = _server_content(await recv_until(ws, turn_complete))
        transcripts.append(messages[0]["inputTranscription"]["text"])
        await ws.close()
    assert transcripts[0] == transcripts[1]
    assert transcripts[0].startswith("(speech ")


async def test_manual_activity_detection(emulator_factory: EmulatorFactory) -> None:
    emu = await emulator_factory(FAST)
    aad = {"automaticActivityDetection": {"disabled": True}}
    ws, _ = await start(emu, realtimeInputConfig=aad, inputAudioTranscription={})
    await send(ws, _audio(encode_speech("ignored outside activity")))
    await send(ws, {"realtimeInput": {"activityStart": {}}})
    await send(ws, _audio(encode_speech("inside the activity")))
    await send(ws, {"realtimeInput": {"activityEnd": {}}})
    messages = _server_content(await recv_until(ws, turn_complete))
    assert messages[0]["inputTranscription"]["text"] == "inside the activity"
    await ws.close()


async def test_barge_in_interrupts_then_turn_complete(emulator_factory: EmulatorFactory) -> None:
    emu = await emulator_factory(EmulatorPolicy(seconds_per_word=0.05, generation_speed=1.0))
    ws, _ = await start(emu, modality="AUDIO")
    await send(ws, {"realtimeInput": {"text": "count to 200"}})
    await emu.controls.wait_for_event("generation_chunk", count=3)
    await _say(ws, "stop please")
    messages = _server_content(
        await recv_until(ws, lambda m: m.get("serverContent", {}).get("interrupted", False))
    )
    assert not any(m.get("generationComplete") for m in messages)
    after = _server_content(await recv_until(ws, turn_complete))
    assert after[0] == {"turnComplete": True, "interactionStatus": "IDLE"}
    # Then the new utterance is answered normally.
    final = _server_content(await recv_until(ws, turn_complete))
    assert any(m.get("generationComplete") for m in final)
    history = emu.controls.history()
    cut = [e for e in history if e["data"].get("interrupted")]
    assert len(cut) == 1 and cut[0]["text"].startswith("1, 2")
    assert history[-2]["text"] == "stop please"
    await ws.close()


async def test_no_interruption_mode_lets_the_answer_finish(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory(EmulatorPolicy(seconds_per_word=0.02, generation_speed=1.0))
    config = {"activityHandling": "NO_INTERRUPTION"}
    ws, _ = await start(emu, modality="AUDIO", realtimeInputConfig=config)
    await send(ws, {"realtimeInput": {"text": "count to 40"}})
    await emu.controls.wait_for_event("generation_chunk", count=2)
    await send(ws, _audio(encode_speech("hello")))
    messages = _server_content(await recv_until(ws, turn_complete))
    assert any(m.get("generationComplete") for m in messages)
    assert not any(m.get("interrupted") for m in messages)
    await ws.close()


async def _speak_over_a_text_answer(ws: object, emu: object) -> None:
    """Speech starts, a text question starts an answer, then the speech ends (an utterance
    completes while that answer is being generated)."""
    step = int(16_000 * 0.04) * 2
    speech = encode_speech("stop please")
    for offset in range(0, len(speech), step):
        await send(ws, _audio(speech[offset : offset + step]))  # type: ignore[arg-type]
    await emu.controls.wait_for_event("speech_started")  # type: ignore[attr-defined]
    await send(ws, {"realtimeInput": {"text": "count to 40"}})  # type: ignore[arg-type]
    await emu.controls.wait_for_event("generation_chunk", count=2)  # type: ignore[attr-defined]
    pause = silence(0.8)
    for offset in range(0, len(pause), step):
        await send(ws, _audio(pause[offset : offset + step]))  # type: ignore[arg-type]


async def test_an_utterance_ending_during_an_answer_cuts_it_never_runs_beside_it(
    emulator_factory: EmulatorFactory,
) -> None:
    """One answer at a time (issue 13, ten tasks through drops): the utterance's answer
    used to be generated alongside the text's, their words interleaved on one socket."""
    emu = await emulator_factory(EmulatorPolicy(seconds_per_word=0.05, generation_speed=1.0))
    ws, _ = await start(emu, modality="AUDIO", outputAudioTranscription={})
    await _speak_over_a_text_answer(ws, emu)
    await recv_until(ws, lambda m: m.get("serverContent", {}).get("interrupted", False))
    cut = _server_content(await recv_until(ws, turn_complete))
    assert cut == [{"turnComplete": True, "interactionStatus": "IDLE"}], cut
    final = _server_content(await recv_until(ws, turn_complete))
    said = "".join(m["outputTranscription"]["text"] for m in final if "outputTranscription" in m)
    assert said.split() == ["You", "said:", '"stop', 'please".']
    await asyncio.sleep(0.3)  # a count still running beside it would complete by now
    completed = [e["text"] for e in emu.controls.events(kind="turn_complete")]
    assert completed == ['You said: "stop please".'], completed
    await ws.close()


async def test_no_interruption_answers_an_utterance_after_the_answer_in_progress(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory(EmulatorPolicy(seconds_per_word=0.02, generation_speed=1.0))
    config = {"activityHandling": "NO_INTERRUPTION"}
    ws, _ = await start(
        emu, modality="AUDIO", realtimeInputConfig=config, outputAudioTranscription={}
    )
    await _speak_over_a_text_answer(ws, emu)
    first = _server_content(await recv_until(ws, turn_complete))
    second = _server_content(await recv_until(ws, turn_complete))
    assert not any(m.get("interrupted") for m in first + second)

    def said(messages: list[dict[str, object]]) -> str:
        return "".join(
            m["outputTranscription"]["text"]  # type: ignore[index]
            for m in messages
            if "outputTranscription" in m
        )

    assert said(first).split()[-1] == "40."
    assert said(second).split() == ["You", "said:", '"stop', 'please".']
    await ws.close()
