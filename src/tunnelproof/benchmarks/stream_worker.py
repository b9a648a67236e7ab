"""Client process of benchmark 5: N streaming sessions, and the CPU time they cost.

``python -m tunnelproof.benchmarks.stream_worker CONFIG_JSON``. Config: ``client``
(``"tunnelproof"``, ``"genai"`` or ``"raw"``: bare ``websockets`` + orjson, the floor),
``sessions``, ``warmup`` and ``duration`` (seconds),
``http_base``/``ws_base``/``api_key``/``ca_file`` of the emulator (wss with its test CA).

Each session sends one 20 ms chunk of 16 kHz PCM (640 bytes, silence) on an absolute 20 ms
schedule and asks for a story whenever the previous answer is complete, so 24 kHz audio
keeps coming back at real-time pace. After ``warmup`` the process's CPU time
(``resource.getrusage``: user + system) is sampled over ``duration`` seconds. Prints one
JSON line with the CPU seconds, chunks sent and received, and how late the send schedule
ran (a process that cannot keep up falls behind real time).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import ssl
import sys
import time
from typing import Any

CHUNK_S = 0.02
PCM_CHUNK = b"\x00\x00" * 320  # 20 ms of 16 kHz mono s16le silence
MODEL = "gemini-3.8-live"


def _same_as_genai() -> Any:
    """Our config for this comparison: what the google-genai client asks for (AUDIO, no
    transcription), so both clients get the same frames and the CPU figures compare."""
    from tunnelproof.protocol.config import LiveConfig

    return LiveConfig(
        model=MODEL,
        response_modalities=("AUDIO",),
        input_audio_transcription=False,
        output_audio_transcription=False,
    )


PROMPT = "Please tell me a story."


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Counters:
    """Shared by the sessions of one process."""

    def __init__(self) -> None:
        self.sent = 0
        self.received_chunks = 0
        self.received_bytes = 0
        self.late = 0
        self.ready = 0
        self.errors: list[str] = []


async def _pace(send: Any, stop: asyncio.Event, counters: Counters) -> None:
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while not stop.is_set():
        await send()
        counters.sent += 1
        next_at += CHUNK_S
        delay = next_at - loop.time()
        if delay < -CHUNK_S:
            counters.late += 1
        await asyncio.sleep(max(0.0, delay))


async def _tunnelproof(config: dict[str, Any], stop: asyncio.Event, counters: Counters) -> None:
    from tunnelproof.session import app_events as ev
    from tunnelproof.session.live_session import LiveSession
    from tunnelproof.tokens.direct import ApiKeySource

    context = ssl.create_default_context(cafile=config["ca_file"])
    source = ApiKeySource(config["api_key"], ws_base=config["ws_base"])
    session = LiveSession(_same_as_genai(), source, ssl=context)
    await session.start()
    connected = asyncio.Event()

    async def receive() -> None:
        async for event in session.events():
            if isinstance(event, ev.AudioChunk):
                counters.received_chunks += 1
                counters.received_bytes += len(event.pcm)
            elif isinstance(event, ev.TurnComplete):
                await session.send_text(PROMPT)
            elif isinstance(event, ev.Connected):
                connected.set()

    receiver = asyncio.create_task(receive())
    try:
        await asyncio.wait_for(connected.wait(), 30)
        counters.ready += 1
        await session.send_text(PROMPT)
        await _pace(lambda: session.send_audio(PCM_CHUNK), stop, counters)
    finally:
        await session.close()
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver


async def _genai(config: dict[str, Any], stop: asyncio.Event, counters: Counters) -> None:
    from google import genai
    from google.genai import types

    context = ssl.create_default_context(cafile=config["ca_file"])
    client = genai.Client(
        api_key=config["api_key"],
        http_options={
            "base_url": config["http_base"],
            "api_version": "v1beta",
            "async_client_args": {"ssl": context},
        },
    )
    live_config = types.LiveConnectConfig(response_modalities=[types.Modality.AUDIO])
    async with client.aio.live.connect(model=MODEL, config=live_config) as session:
        counters.ready += 1

        async def receive() -> None:
            while not stop.is_set():
                async for message in session.receive():
                    content = message.server_content
                    if content is None:
                        continue
                    if content.model_turn is not None:
                        for part in content.model_turn.parts or []:
                            if part.inline_data is not None and part.inline_data.data:
                                counters.received_chunks += 1
                                counters.received_bytes += len(part.inline_data.data)
                    if content.turn_complete:
                        await session.send_realtime_input(text=PROMPT)

        receiver = asyncio.create_task(receive())
        await session.send_realtime_input(text=PROMPT)
        blob = types.Blob(data=PCM_CHUNK, mime_type="audio/pcm;rate=16000")
        try:
            await _pace(lambda: session.send_realtime_input(audio=blob), stop, counters)
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receiver


async def _raw(config: dict[str, Any], stop: asyncio.Event, counters: Counters) -> None:
    """The floor: raw ``websockets`` + orjson, no session logic at all."""
    import base64

    import orjson
    from websockets.asyncio.client import connect

    from tunnelproof.protocol.client_messages import realtime_audio, realtime_text
    from tunnelproof.protocol.endpoints import api_key_endpoint

    context = ssl.create_default_context(cafile=config["ca_file"])
    endpoint = api_key_endpoint(config["ws_base"], config["api_key"], version="v1beta")
    setup = _same_as_genai().to_setup(None)
    async with connect(
        endpoint.url,
        additional_headers=endpoint.headers,
        ssl=context,
        ping_interval=None,
        compression=None,
        max_size=None,
    ) as ws:
        await ws.send(orjson.dumps(setup).decode())
        prompt = orjson.dumps(realtime_text(PROMPT)).decode()

        async def receive() -> None:
            async for raw in ws:
                message = orjson.loads(raw)
                if "setupComplete" in message:
                    counters.ready += 1
                    await ws.send(prompt)
                content = message.get("serverContent")
                if not content:
                    continue
                for part in (content.get("modelTurn") or {}).get("parts", []):
                    data = (part.get("inlineData") or {}).get("data")
                    if data:
                        counters.received_chunks += 1
                        counters.received_bytes += len(base64.b64decode(data))
                if content.get("turnComplete"):
                    await ws.send(prompt)

        receiver = asyncio.create_task(receive())
        try:
            await _pace(
                lambda: ws.send(orjson.dumps(realtime_audio(PCM_CHUNK)).decode()), stop, counters
            )
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receiver


async def _main(config: dict[str, Any]) -> dict[str, Any]:
    n = int(config["sessions"])
    counters = Counters()
    stop = asyncio.Event()
    runner = {"tunnelproof": _tunnelproof, "genai": _genai, "raw": _raw}[config["client"]]

    async def one() -> None:
        try:
            await runner(config, stop, counters)
        except Exception as exc:
            counters.errors.append(f"{type(exc).__name__}: {exc}")

    tasks = [asyncio.create_task(one()) for _ in range(n)]
    for _ in range(1200):  # bounded: 60 s for every session to start
        if counters.ready + len(counters.errors) >= n:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(float(config["warmup"]))
    cpu0, wall0 = _cpu(), time.monotonic()
    sent0, recv0, bytes0, late0 = (
        counters.sent,
        counters.received_chunks,
        counters.received_bytes,
        counters.late,
    )
    await asyncio.sleep(float(config["duration"]))
    cpu1, wall1 = _cpu(), time.monotonic()
    sent, recv, nbytes, late = (
        counters.sent - sent0,
        counters.received_chunks - recv0,
        counters.received_bytes - bytes0,
        counters.late - late0,
    )
    stop.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
    return {
        "client": config["client"],
        "sessions": n,
        "ready": counters.ready,
        "errors": counters.errors[:5],
        "cpu_s": cpu1 - cpu0,
        "wall_s": wall1 - wall0,
        "chunks_sent": sent,
        "chunks_received": recv,
        "bytes_received": nbytes,
        "late_sends": late,
    }


def main() -> None:
    """Entry point: one JSON argument in, one JSON line out."""
    config = json.loads(sys.argv[1])
    result = asyncio.run(_main(config))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
