"""Client process of benchmark 5: a ramp of streaming sessions, past saturation.

``python -m tunnelproof.benchmarks.stream_worker CONFIG_JSON``. Config: ``client``
(``"tunnelproof"``, ``"genai"`` or ``"raw"``: bare ``websockets`` + orjson, the floor),
``steps`` (increasing session counts), ``settle`` and ``window`` (seconds per step),
``cpu`` (the core to pin this process to, or null), ``server_pid`` (the emulator, whose
CPU time is sampled too), ``http_base``/``ws_base``/``api_key``/``ca_file`` of the
emulator (wss with its test CA), and optionally ``profile`` (a path: cProfile the last
step's window into it) and ``histogram`` (true: each step also lists the most numerous
GC-tracked types). Every step reports the garbage collector's pauses in its window.

Each session sends one 20 ms chunk of 16 kHz PCM (640 bytes, silence) on an absolute 20 ms
schedule and asks for a story whenever the previous answer is complete, so 24 kHz audio
keeps coming back at real-time pace. For each step the process opens sessions until
``steps[i]`` run, lets them settle, then samples over ``window`` seconds: its own CPU time
(``resource.getrusage``: user + system), the emulator's, every send's lag behind its
schedule, and the audio received. A step *holds* when the p99 send lag is under one chunk
period (20 ms) and the audio received is at least 80% of real time (the pause between one
answer and the next costs 5-10%); the ramp stops at the first step that does not hold (past
saturation), though never before ``measure_at`` sessions, so the clients share the counts
up to it. Prints one JSON line with every step.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
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
OUT_BYTES_PER_S = 24_000 * 2
HOLD_LAG_S = CHUNK_S  # p99 send lag must stay under one chunk period
HOLD_AUDIO = 0.8  # and the audio received at >= 80% of real time (turn gaps cost ~5-10%)


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
        self.lags: list[float] | None = None  # collected only inside a window


async def _pace(send: Any, stop: asyncio.Event, counters: Counters) -> None:
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while not stop.is_set():
        lags = counters.lags
        if lags is not None:
            lags.append(loop.time() - next_at)
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
        # orjson's UTF-8 bytes sent as text frames (text=True): no decode + re-encode.
        await ws.send(orjson.dumps(setup), text=True)
        prompt = orjson.dumps(realtime_text(PROMPT))

        async def receive() -> None:
            async for raw in ws:
                message = orjson.loads(raw)
                if "setupComplete" in message:
                    counters.ready += 1
                    await ws.send(prompt, text=True)
                content = message.get("serverContent")
                if not content:
                    continue
                for part in (content.get("modelTurn") or {}).get("parts", []):
                    data = (part.get("inlineData") or {}).get("data")
                    if data:
                        counters.received_chunks += 1
                        counters.received_bytes += len(base64.b64decode(data))
                if content.get("turnComplete"):
                    await ws.send(prompt, text=True)

        receiver = asyncio.create_task(receive())
        try:
            await _pace(
                lambda: ws.send(orjson.dumps(realtime_audio(PCM_CHUNK)), text=True), stop, counters
            )
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receiver


def _proc_cpu(pid: int | None) -> float | None:
    """User + system CPU seconds of another process (``/proc/PID/stat``), or None."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class GcPauses:
    """Collections of the cyclic garbage collector during a window (``gc.callbacks``).

    Diagnostics only, the same for every client: each collection stops the event loop, and
    one longer than a chunk period delays every session's next send at once.
    """

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []  # (generation, seconds)
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._started))

    def summary(self, histogram: bool = False) -> dict[str, Any]:
        """Count, total and longest pause, the full (generation 2) collections, and with
        ``histogram`` the 12 most numerous types of GC-tracked objects."""
        full = [s for g, s in self.pauses if g == 2]
        top: dict[str, int] = {}
        if histogram:
            counts: dict[str, int] = {}
            for obj in gc.get_objects():
                name = type(obj).__qualname__
                counts[name] = counts.get(name, 0) + 1
            top = dict(sorted(counts.items(), key=lambda kv: -kv[1])[:12])
        return {
            "gc_collections": len(self.pauses),
            "gc_full_collections": len(full),
            "gc_total_ms": 1000 * sum(s for _, s in self.pauses),
            "gc_max_pause_ms": 1000 * max((s for _, s in self.pauses), default=0.0),
            "gc_tracked_objects": len(gc.get_objects()),
            **({"gc_top_types": top} if histogram else {}),
        }


def _p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def _step(
    n: int, config: dict[str, Any], counters: Counters, server_pid: int | None
) -> dict[str, Any]:
    settle, window = float(config["settle"]), float(config["window"])
    await asyncio.sleep(settle)
    cpu0, wall0, srv0 = _cpu(), time.monotonic(), _proc_cpu(server_pid)
    sent0, recv0, bytes0 = counters.sent, counters.received_chunks, counters.received_bytes
    counters.lags = []
    pauses = GcPauses()
    gc.callbacks.append(pauses)
    profiler = None
    if config.get("profile") and config.get("_last"):
        import cProfile

        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
    await asyncio.sleep(window)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(config["profile"])
    lags, counters.lags = counters.lags, None
    cpu1, wall1, srv1 = _cpu(), time.monotonic(), _proc_cpu(server_pid)
    gc.callbacks.remove(pauses)
    wall = wall1 - wall0
    sent = counters.sent - sent0
    nbytes = counters.received_bytes - bytes0
    cpu = cpu1 - cpu0
    p99 = _p99(lags)
    audio = nbytes / wall / max(1, n) / OUT_BYTES_PER_S
    server = None if srv0 is None or srv1 is None else (srv1 - srv0) / wall
    return {
        "sessions": n,
        "ready": counters.ready,
        "cpu_s": cpu,
        "wall_s": wall,
        "cores_used": cpu / wall,
        "server_cores_used": server,
        "chunks_sent": sent,
        "chunks_received": counters.received_chunks - recv0,
        "bytes_received": nbytes,
        "us_per_chunk_pair": cpu / max(1, sent) * 1e6,
        # Per frame handled (sent + received): not flattered when audio comes back slower.
        "us_per_frame": cpu / max(1, sent + counters.received_chunks - recv0) * 1e6,
        "send_lag_p99_s": p99,
        "send_lag_max_s": max(lags) if lags else None,
        "send_rate_vs_realtime": sent * CHUNK_S / wall / max(1, n),
        "audio_back_vs_realtime": audio,
        "holds": p99 is not None and p99 < HOLD_LAG_S and audio >= HOLD_AUDIO,
        **pauses.summary(bool(config.get("histogram"))),
    }


async def _main(config: dict[str, Any]) -> dict[str, Any]:
    counters = Counters()
    stop = asyncio.Event()
    runner = {"tunnelproof": _tunnelproof, "genai": _genai, "raw": _raw}[config["client"]]
    server_pid = config.get("server_pid")

    async def one() -> None:
        try:
            await runner(config, stop, counters)
        except Exception as exc:
            counters.errors.append(f"{type(exc).__name__}: {exc}")

    tasks: list[asyncio.Task[None]] = []
    steps: list[dict[str, Any]] = []
    counts = [int(n) for n in config["steps"]]
    for i, n in enumerate(counts):
        while len(tasks) < n:
            tasks.append(asyncio.create_task(one()))
        for _ in range(1200):  # bounded: 60 s for every session to start
            if counters.ready + len(counters.errors) >= n:
                break
            await asyncio.sleep(0.05)
        config["_last"] = i == len(counts) - 1
        step = await _step(n, config, counters, server_pid)
        step["errors"] = len(counters.errors)
        steps.append(step)
        # Past saturation: stop at the first step that does not hold, but not before
        # ``measure_at``, so every client is measured at the same counts up to it.
        if counters.errors or (not step["holds"] and n >= int(config.get("measure_at", 0))):
            break
    stop.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
    return {
        "client": config["client"],
        "cpu": config.get("cpu"),
        "steps": steps,
        "errors": counters.errors[:5],
    }


def main() -> None:
    """Entry point: one JSON argument in, one JSON line out."""
    config = json.loads(sys.argv[1])
    cpu = config.get("cpu")
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        # One core, so "sessions per core" is what this process holds, not two cores' worth.
        os.sched_setaffinity(0, {int(cpu)})
    result = asyncio.run(_main(config))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
