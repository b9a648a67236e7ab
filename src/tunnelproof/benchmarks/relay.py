"""Benchmark 8: the relay — model output lost in a device tunnel, return to audio, overhead.

Question: when a device goes through a tunnel mid-answer, how much of the model's answer
does it lose, connected straight to the Live API versus through ``tunnelproof relay``? How
soon after it is back does audio flow again, and what does the relay cost per audio chunk?

Method: the emulator runs as a subprocess (AUDIO answers with output transcription, paced
at 4x real time, one word per 0.25 s chunk) and the relay as another (``tunnelproof relay``,
upstream = the emulator). A TCP tunnel proxy sits in front of whichever the device talks
to. The device is the seed's browser client's protocol behaviour in Python (newest
resumable handle in ``setup``, no replay, no watchdog) with a 0.2 s reconnect delay instead
of the seed's 1 s backoff. It asks "count to N"; after 40 numbers the tunnel blackholes
every byte for T s (2, 10, 30) and then resets the dropped connections, as a real TCP
would; the device reconnects. Output lost = numbers of the answer never received;
duplicates = numbers received twice. Return to audio = from the end of the tunnel to the
first audio frame on the new connection (``never`` when the answer is gone).

Overhead: time to first audio (text question → first audio frame) through the relay and
directly, 2 trials interleaved per round; relay CPU (``/proc/<pid>/stat`` utime+stime) per
device audio chunk sent up (40 ms, 16 kHz) plus per model audio chunk sent down (40 ms,
24 kHz): one chunk pair.

Scale-out cost: the same pairs paced at real time (250 microphone chunks of 40 ms, then a
count-to-40 answer spoken at 1x in 40 ms chunks), through one relay process without Redis
and one with ``--redis-url`` (a private ``redis-server``): relay CPU per chunk, and the
Redis commands and bytes received (``INFO stats``: ``total_commands_processed``,
``total_net_input_bytes``) per chunk, each direction.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tunnelproof.benchmarks import charts
from tunnelproof.benchmarks.harness import (
    BenchContext,
    BenchResult,
    Comparison,
    method_text,
    summarize,
)
from tunnelproof.benchmarks.procs import json_process
from tunnelproof.protocol.config import LiveConfig
from tunnelproof.protocol.endpoints import Method, live_url

NAME = "relay"
TITLE = "Relay: output lost in a device tunnel, return to audio, overhead"

BENCH_KEY = "bench-device-key"
CONFIG = LiveConfig(
    model="gemini-3.8-live", response_modalities=("AUDIO",), output_audio_transcription=True
)
_NUMBER = re.compile(r"\d+")
SILENT_CHUNK = orjson.dumps(
    {
        "realtimeInput": {
            "audio": {
                "mimeType": "audio/pcm;rate=16000",
                "data": base64.b64encode(bytes(1280)).decode(),  # 40 ms of 16 kHz PCM
            }
        }
    }
).decode()
"""One device audio chunk (40 ms of silence), as both CPU measurements stream it."""


@dataclass
class _Target:
    url: str
    headers: dict[str, str]


@dataclass
class _Device:
    """The seed's protocol behaviour; records transcript and audio-frame times."""

    target: _Target
    handle: str | None = None
    transcript: list[str] = field(default_factory=list)
    audio_at: list[float] = field(default_factory=list)
    connects: list[float] = field(default_factory=list)
    turn_complete: bool = False

    def numbers(self) -> list[int]:
        return [int(n) for n in _NUMBER.findall("".join(self.transcript))]

    async def ask(self, question: str, *, deadline: float, quiet: float) -> None:
        """Ask, then keep (re)connecting until turnComplete, ``deadline``, or ``quiet`` s
        without output after a reconnect (the answer is gone)."""
        asked = False
        loop = asyncio.get_running_loop()
        while loop.time() < deadline and not self.turn_complete:
            try:
                async with asyncio.timeout(max(0.1, deadline - loop.time())):
                    await self._connection(question, asked, quiet)
                asked = True
            except (ConnectionClosed, OSError, TimeoutError):
                asked = asked or bool(self.connects)
            if not self.turn_complete:
                await asyncio.sleep(0.2)

    async def _connection(self, question: str, asked: bool, quiet: float) -> None:
        setup = dict(CONFIG.setup_body())
        setup["sessionResumption"] = {"handle": self.handle} if self.handle else {}
        async with connect(
            self.target.url,
            additional_headers=self.target.headers,
            ping_interval=None,
            max_size=None,
            open_timeout=3,
        ) as ws:
            self.connects.append(time.monotonic())
            await ws.send(orjson.dumps({"setup": setup}).decode())
            while True:
                timeout = quiet if asked else 30.0
                raw = await asyncio.wait_for(ws.recv(), timeout)
                msg = orjson.loads(raw)
                if "setupComplete" in msg and not asked:
                    await ws.send(orjson.dumps({"realtimeInput": {"text": question}}).decode())
                    asked = True
                self._take(msg)
                if self.turn_complete:
                    return

    def _take(self, msg: dict[str, Any]) -> None:
        update = msg.get("sessionResumptionUpdate")
        if update and update.get("resumable") and update.get("newHandle"):
            self.handle = update["newHandle"]
        content = msg.get("serverContent") or {}
        out = content.get("outputTranscription")
        if out and out.get("text"):
            self.transcript.append(out["text"])
        if "inlineData" in orjson.dumps(content.get("modelTurn") or {}).decode():
            self.audio_at.append(time.monotonic())
        if content.get("turnComplete"):
            self.turn_complete = True


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _tunnel_trial(target: _Target, tunnel: Any, seconds: float, count: int) -> dict[str, Any]:
    device = _Device(target)
    loop = asyncio.get_running_loop()
    restored_at: list[float] = []

    async def cut() -> None:
        for _ in range(6000):
            if len(device.numbers()) >= 40:
                break
            await asyncio.sleep(0.005)
        tunnel.blackhole(drop=True)
        await asyncio.sleep(seconds)
        tunnel.restore()
        restored_at.append(time.monotonic())

    cutter = asyncio.create_task(cut())
    answer_s = count * 0.25 / 4.0
    await device.ask(
        f"Please count to {count}.", deadline=loop.time() + answer_s + seconds + 20, quiet=4.0
    )
    await cutter
    got = device.numbers()
    unique_in_order = sorted(set(got))
    back = restored_at[0] if restored_at else None
    after = [t for t in device.audio_at if back is not None and t > back]
    return {
        "tunnel_s": seconds,
        "received": len(got),
        "lost": count - len(unique_in_order),
        "duplicates": len(got) - len(set(got)),
        "in_order": got == sorted(got),
        "connects": len(device.connects),
        "return_to_audio_s": (after[0] - back) if after and back is not None else None,
        "turn_complete": device.turn_complete,
    }


@contextlib.asynccontextmanager
async def _set_up(target: _Target) -> AsyncIterator[ClientConnection]:
    """A fresh Live session through ``target``: connected, set up, ``setupComplete`` read."""
    async with connect(
        target.url, additional_headers=target.headers, ping_interval=None, max_size=None
    ) as ws:
        setup = dict(CONFIG.setup_body(), sessionResumption={})
        await ws.send(orjson.dumps({"setup": setup}).decode())
        await ws.recv()
        yield ws


async def _ttfa(target: _Target) -> float:
    async with _set_up(target) as ws:
        started = time.perf_counter()
        await ws.send(orjson.dumps({"realtimeInput": {"text": "Hello."}}).decode())
        first: float | None = None
        async with asyncio.timeout(20):
            async for raw in ws:
                msg = orjson.loads(raw)
                content = msg.get("serverContent") or {}
                if first is None and content.get("modelTurn"):
                    first = time.perf_counter() - started
                if content.get("turnComplete"):
                    break
        assert first is not None
        return first


async def _cpu_per_pair(relay_pid: int, target: _Target, chunks: int) -> dict[str, float]:
    async with _set_up(target) as ws:
        up_start = _cpu_seconds(relay_pid)
        for _ in range(chunks):
            await ws.send(SILENT_CHUNK)
        # A question after the audio: its answer proves every chunk went through.
        down = _Device(target)
        await ws.send(orjson.dumps({"realtimeInput": {"text": "Please count to 300."}}).decode())
        down_start = 0.0
        frames = 0
        async with asyncio.timeout(60):
            async for raw in ws:
                msg = orjson.loads(raw)
                if not down_start:
                    down_start = _cpu_seconds(relay_pid)
                down._take(msg)
                frames += 1
                if down.turn_complete:
                    break
        end = _cpu_seconds(relay_pid)
    audio_down = len(down.audio_at)
    up_us = (down_start - up_start) / chunks * 1e6
    down_us = (end - down_start) / max(1, audio_down) * 1e6
    return {
        "chunks_up": chunks,
        "audio_chunks_down": audio_down,
        "cpu_us_per_chunk_up": up_us,
        "cpu_us_per_chunk_down": down_us,
        "cpu_us_per_pair": up_us + down_us,
    }


async def _redis_counters(redis: Any) -> dict[str, int]:
    info = await redis.info("stats")
    return {
        "commands": int(info["total_commands_processed"]),
        "bytes_in": int(info["total_net_input_bytes"]),
    }


async def _paced_pairs(
    relay_pid: int, target: _Target, redis: Any | None, chunks: int, count_to: int
) -> dict[str, Any]:
    """Stream ``chunks`` device audio chunks at real time (40 ms each), then hear a
    ``count_to`` answer spoken at real time: relay CPU (and Redis traffic) per chunk."""
    loop = asyncio.get_running_loop()

    async def counters() -> dict[str, int]:
        # INFO itself is one command; the counters are read before and after each phase.
        return await _redis_counters(redis) if redis is not None else {}

    async with _set_up(target) as ws:
        await asyncio.sleep(0.3)  # let the conversation's first flushes settle
        r0, c0 = await counters(), _cpu_seconds(relay_pid)
        start = loop.time()
        for index in range(chunks):
            await ws.send(SILENT_CHUNK)
            await asyncio.sleep(max(0.0, start + (index + 1) * 0.04 - loop.time()))
        r1, c1 = await counters(), _cpu_seconds(relay_pid)
        down = _Device(target)
        down_bytes = 0
        question = {"realtimeInput": {"text": f"Please count to {count_to}."}}
        await ws.send(orjson.dumps(question).decode())
        async with asyncio.timeout(120):
            async for raw in ws:
                down._take(orjson.loads(raw))
                down_bytes += len(raw)
                if down.turn_complete:
                    break
        r2, c2 = await counters(), _cpu_seconds(relay_pid)
    audio_down = max(1, len(down.audio_at))
    out: dict[str, Any] = {
        "chunks_up": chunks,
        "audio_chunks_down": len(down.audio_at),
        "cpu_us_per_chunk_up": (c1 - c0) / chunks * 1e6,
        "cpu_us_per_chunk_down": (c2 - c1) / audio_down * 1e6,
        # what the pair itself weighs on the wire (every frame of the answer counted)
        "payload_bytes_per_pair": len(SILENT_CHUNK) + down_bytes / audio_down,
    }
    out["cpu_us_per_pair"] = out["cpu_us_per_chunk_up"] + out["cpu_us_per_chunk_down"]
    if redis is not None:
        up_cmds = r1["commands"] - r0["commands"] - 1
        down_cmds = r2["commands"] - r1["commands"] - 1
        out.update(
            redis_commands_per_chunk_up=up_cmds / chunks,
            redis_commands_per_chunk_down=down_cmds / audio_down,
            redis_bytes_per_chunk_up=(r1["bytes_in"] - r0["bytes_in"]) / chunks,
            redis_bytes_per_chunk_down=(r2["bytes_in"] - r1["bytes_in"]) / audio_down,
        )
        out["redis_commands_per_pair"] = (
            out["redis_commands_per_chunk_up"] + out["redis_commands_per_chunk_down"]
        )
        out["redis_bytes_per_pair"] = (
            out["redis_bytes_per_chunk_up"] + out["redis_bytes_per_chunk_down"]
        )
    return out


async def redis_cost(ctx: BenchContext) -> dict[str, Any]:
    """The scale-out's cost while audio streams, paced at real time: one relay process
    without Redis, one with ``--redis-url`` (a private ``redis-server``), same emulator."""
    import redis.asyncio as aioredis

    from tunnelproof.emulator import EmulatorPolicy, EmulatorProcess
    from tunnelproof.testing.redis_server import RedisServer

    chunks = 75 if ctx.quick else 250  # 3 s / 10 s of microphone audio
    count_to = 12 if ctx.quick else 40  # ~3 s / ~10 s of model audio, 40 ms chunks
    policy = EmulatorPolicy(audio_chunk_duration=0.04, seconds_per_word=0.25, generation_speed=1)
    results: dict[str, Any] = {"chunks_up": chunks, "count_to": count_to}
    async with EmulatorProcess(policy=policy) as emu:
        env = {
            "GEMINI_API_KEY": emu.api_key,
            "TUNNELPROOF_RELAY_STATIC_KEYS": f"b:{BENCH_KEY}",
            "TUNNELPROOF_RELAY_SECRET": "bench-relay-secret-0123456789abcdef",
        }
        headers = {"Authorization": f"Bearer {BENCH_KEY}"}
        base = [sys.executable, "-m", "tunnelproof", "relay", "--upstream", emu.ws_base]
        with RedisServer() as server:
            client: Any = aioredis.Redis.from_url(server.url)
            try:
                for label, argv, redis in (
                    ("memory", base, None),
                    ("redis", [*base, "--redis-url", server.url], client),
                ):
                    ctx.log(f"[bench] relay: audio chunk pairs at real time, {label}")
                    async with json_process(argv, env=env) as relay:
                        target = _Target(
                            live_url(
                                f"ws://127.0.0.1:{relay.ready['port']}",
                                version="v1beta",
                                method=Method.BIDI,
                            ),
                            headers,
                        )
                        results[label] = await _paced_pairs(
                            relay.pid, target, redis, chunks, count_to
                        )
            finally:
                await client.aclose()
    return results


async def run(ctx: BenchContext) -> BenchResult:
    """Run the trials (see the module docstring)."""
    from tunnelproof.emulator import EmulatorPolicy, EmulatorProcess
    from tunnelproof.testing.tunnel import TunnelProxy

    result = BenchResult(name=NAME, title=TITLE, method=method_text(__doc__), quick=ctx.quick)
    tunnels = [2.0] if ctx.quick else [2.0, 10.0, 30.0]
    count = 100 if ctx.quick else 300
    ttfa_rounds = 3 if ctx.quick else 15
    pair_chunks = 200 if ctx.quick else 2000
    result.params = {
        "tunnels_s": tunnels,
        "count_to": count,
        "ttfa_rounds": ttfa_rounds,
        "cpu_chunks_up": pair_chunks,
        "reconnect_delay_s": 0.2,
    }
    policy = EmulatorPolicy(audio_chunk_duration=0.25, seconds_per_word=0.25, generation_speed=4)
    async with EmulatorProcess(policy=policy) as emu:
        env = {"GEMINI_API_KEY": emu.api_key, "TUNNELPROOF_RELAY_STATIC_KEYS": f"b:{BENCH_KEY}"}
        argv = [sys.executable, "-m", "tunnelproof", "relay", "--upstream", emu.ws_base]
        async with json_process(argv, env=env) as relay:
            relay_port = int(relay.ready["port"])
            emu_port = int(emu.ws_base.rsplit(":", 1)[1])
            trials: list[dict[str, Any]] = []
            for seconds in tunnels:
                for label, port, headers in (
                    ("relay", relay_port, {"Authorization": f"Bearer {BENCH_KEY}"}),
                    ("direct", emu_port, {"x-goog-api-key": emu.api_key}),
                ):
                    async with TunnelProxy("127.0.0.1", port) as tunnel:
                        url = live_url(
                            f"ws://127.0.0.1:{tunnel.port}", version="v1beta", method=Method.BIDI
                        )
                        ctx.log(f"[bench] relay: {label} through a {seconds:g} s tunnel")
                        trial = await _tunnel_trial(_Target(url, headers), tunnel, seconds, count)
                        trials.append({"path": label, **trial})
            await emu.controls.update_policy(generation_speed=20.0, audio_chunk_duration=0.04)
            relay_target = _Target(
                live_url(f"ws://127.0.0.1:{relay_port}", version="v1beta", method=Method.BIDI),
                {"Authorization": f"Bearer {BENCH_KEY}"},
            )
            direct_target = _Target(
                live_url(emu.ws_base, version="v1beta", method=Method.BIDI),
                {"x-goog-api-key": emu.api_key},
            )
            ttfa: dict[str, list[float]] = {"relay": [], "direct": []}
            for _ in range(ttfa_rounds):
                ttfa["relay"].append(await _ttfa(relay_target))
                ttfa["direct"].append(await _ttfa(direct_target))
            cpu = await _cpu_per_pair(relay.pid, relay_target, pair_chunks)

    result.data.update({"trials": trials, "ttfa_s": ttfa, "cpu": cpu})
    relay_t = {t["tunnel_s"]: t for t in trials if t["path"] == "relay"}
    direct_t = {t["tunnel_s"]: t for t in trials if t["path"] == "direct"}
    for seconds in tunnels:
        r, d = relay_t[seconds], direct_t[seconds]
        result.comparisons.append(
            Comparison(
                f"numbers of a count-to-{count} lost, {seconds:g} s device tunnel",
                "count",
                float(r["lost"]),
                "direct to the Live API (seed-style client)",
                float(d["lost"]),
                ratio_text="∞" if r["lost"] == 0 and d["lost"] else None,
                note=f"relay duplicates {r['duplicates']}, in order {r['in_order']}",
            )
        )
        back = r["return_to_audio_s"]
        result.comparisons.append(
            Comparison(
                f"tunnel end → audio flowing again, {seconds:g} s tunnel",
                "s",
                back,
                "direct (the cut answer never resumes)",
                None,
                theirs_text="never",
                ratio_text="∞" if back is not None else None,
            )
        )
        if r["lost"] or r["duplicates"]:
            result.notes.append(
                f"relay lost {r['lost']} / duplicated {r['duplicates']} at {seconds:g} s"
            )
    rs, ds = summarize(ttfa["relay"]), summarize(ttfa["direct"])
    result.comparisons.append(
        Comparison(
            f"time to first audio p50 (n={rs['n']})",
            "s",
            rs["p50"],
            "direct to the emulator",
            ds["p50"],
            note="the difference is the relay's added latency",
        )
    )
    result.comparisons.append(
        Comparison(
            "relay CPU per audio chunk pair (40 ms up + 40 ms down)",
            "us",
            cpu["cpu_us_per_pair"],
            "real-time budget of one core for a 40 ms pair",
            40_000.0,
        )
    )
    result.data["ttfa_relay"] = rs
    result.data["ttfa_direct"] = ds
    charts.safe_chart(
        result.notes,
        result.charts,
        charts.grouped_bars,
        ctx.chart_path(NAME),
        f"Numbers of a count-to-{count} lost in a device tunnel",
        [f"{s:g} s" for s in tunnels],
        {
            "through tunnelproof relay": [float(relay_t[s]["lost"]) for s in tunnels],
            "direct (seed-style client)": [float(direct_t[s]["lost"]) for s in tunnels],
        },
        ylabel="numbers lost",
    )
    from tunnelproof.testing.redis_server import RedisServerUnavailable

    try:
        cost = await redis_cost(ctx)
    except RedisServerUnavailable as exc:  # the machine has no redis-server
        result.notes.append(f"scale-out cost not measured: {exc}")
        return result
    result.params["redis_cost"] = {k: cost[k] for k in ("chunks_up", "count_to")}
    add_redis_cost(result, cost, ctx)
    return result


def add_redis_cost(result: BenchResult, cost: dict[str, Any], ctx: BenchContext) -> None:
    """The scale-out's cost per audio chunk pair: comparisons, data and a chart."""
    result.data["redis_cost"] = cost
    mem, red = cost["memory"], cost["redis"]
    result.comparisons.append(
        Comparison(
            "relay CPU per audio chunk pair at real time, scale-out on Redis",
            "us",
            red["cpu_us_per_pair"],
            "the same relay without Redis",
            mem["cpu_us_per_pair"],
            note="/proc utime+stime, 10 ms ticks",
        )
    )
    result.comparisons.append(
        Comparison(
            "Redis bytes written per audio chunk pair",
            "B",
            red["redis_bytes_per_pair"],
            "the pair's own frames (the floor: input and output are both kept)",
            red["payload_bytes_per_pair"],
        )
    )
    result.comparisons.append(
        Comparison(
            "Redis commands per audio chunk pair",
            "count",
            red["redis_commands_per_pair"],
            "no baseline (the record's own cost)",
            None,
            theirs_text="-",
            note="one pipeline per 50 ms flush, only what changed",
        )
    )
    charts.safe_chart(
        result.notes,
        result.charts,
        charts.grouped_bars,
        ctx.chart_path(NAME, "_redis"),
        "Relay CPU per 40 ms audio chunk at real time",
        ["up (microphone)", "down (model)"],
        {
            "relay (memory)": [mem["cpu_us_per_chunk_up"], mem["cpu_us_per_chunk_down"]],
            "relay + Redis scale-out": [red["cpu_us_per_chunk_up"], red["cpu_us_per_chunk_down"]],
        },
        ylabel="CPU µs per chunk",
    )
