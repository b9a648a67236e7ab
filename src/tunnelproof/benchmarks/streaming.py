"""Benchmark 5: client CPU cost of streaming audio, tunnelproof vs google-genai ``AsyncSession``.

Question: how much client CPU does a voice session cost, and how many real-time sessions
does one core hold?

Method: the emulator runs as a subprocess over **wss** (its test CA), with 24 kHz audio
answers paced at real time in 20 ms chunks. The clients run in another subprocess
(:mod:`tunnelproof.benchmarks.stream_worker`), so the CPU time measured
(``resource.getrusage`` of that process, user + system) is the client's alone. Each
session sends a 20 ms chunk of 16 kHz PCM (640 bytes) every 20 ms and keeps asking for a
story, so audio flows both ways all the time. After a warm-up the CPU time over a fixed
window is divided by the chunks sent: µs of CPU per chunk pair (one chunk sent, about one
received). Both clients authenticate with the API key over the same URL; tunnelproof runs
``LiveSession`` (which parses every frame through its state machine and emits typed
events), google-genai runs ``client.aio.live.connect`` (pydantic models), and a third
client, the floor, is bare ``websockets`` + orjson with no session logic at all.

Measured with 1 session and with N concurrent sessions in one process. "Max real-time
sessions on one core" = N / (CPU seconds per wall second at N sessions): the count at which
one core would be fully busy at this per-session cost (a process beyond it falls behind
real time; the late-send count shows when that happens). The emulator shares the machine's
other core; the received-audio rate is reported so a saturated server is visible.
"""

from __future__ import annotations

from typing import Any

from tunnelproof.benchmarks import charts
from tunnelproof.benchmarks.harness import BenchContext, BenchResult, Comparison, method_text
from tunnelproof.benchmarks.procs import run_json_worker

NAME = "streaming"
TITLE = "Streaming cost: client CPU per audio chunk"

CLIENTS = ("tunnelproof", "genai", "raw")
CHUNK_S = 0.02
OUT_BYTES_PER_S = 24_000 * 2


def _derive(raw: dict[str, Any]) -> dict[str, Any]:
    sent = max(1, raw["chunks_sent"])
    wall = max(1e-9, raw["wall_s"])
    n = max(1, raw["sessions"])
    cores = raw["cpu_s"] / wall
    return {
        **raw,
        "us_per_chunk_pair": raw["cpu_s"] / sent * 1e6,
        "cpu_s_per_audio_s": raw["cpu_s"] / (sent * CHUNK_S),
        "cores_used": cores,
        "max_realtime_sessions_one_core": n / cores if cores > 0 else None,
        "send_rate_vs_realtime": sent * CHUNK_S / wall / n,
        "audio_back_vs_realtime": raw["bytes_received"] / wall / n / OUT_BYTES_PER_S,
    }


async def run(ctx: BenchContext) -> BenchResult:
    """Run both clients at 1 and N sessions (see the module docstring)."""
    from tunnelproof.emulator import EmulatorPolicy, EmulatorProcess

    result = BenchResult(name=NAME, title=TITLE, method=method_text(__doc__), quick=ctx.quick)
    counts = (1, 3) if ctx.quick else (1, 20, 60)
    warmup, duration = (1.0, 2.0) if ctx.quick else (3.0, 10.0)
    result.params = {
        "sessions": list(counts),
        "warmup_s": warmup,
        "window_s": duration,
        "transport": "wss (test CA)",
        "auth": "API key header",
    }
    policy = EmulatorPolicy(audio_chunk_duration=CHUNK_S, generation_speed=1.0)
    runs: dict[str, dict[str, Any]] = {c: {} for c in CLIENTS}
    async with EmulatorProcess(policy, tls=True) as emu:
        for n in counts:
            for client in CLIENTS:
                ctx.log(f"  {client}: {n} session(s)")
                config = {
                    "client": client,
                    "sessions": n,
                    "warmup": warmup,
                    "duration": duration,
                    "http_base": emu.http_base,
                    "ws_base": emu.ws_base,
                    "api_key": emu.api_key,
                    "ca_file": emu.ca_file,
                }
                raw = await run_json_worker(
                    "tunnelproof.benchmarks.stream_worker", config, timeout=warmup + duration + 120
                )
                runs[client][str(n)] = _derive(raw)
                if raw["errors"]:
                    result.notes.append(f"{client} × {n}: errors {raw['errors']}")
                if raw["ready"] < n:
                    result.notes.append(f"{client} × {n}: only {raw['ready']} sessions started")
    result.data["runs"] = runs
    ours, theirs, raw = runs["tunnelproof"], runs["genai"], runs["raw"]
    for n in counts:
        key = str(n)
        result.comparisons.append(
            Comparison(
                f"µs CPU per 20 ms chunk pair, {n} session{'s' if n > 1 else ''}",
                "µs",
                ours[key]["us_per_chunk_pair"],
                "google-genai AsyncSession",
                theirs[key]["us_per_chunk_pair"],
                note=(
                    f"audio back vs real time: ours {ours[key]['audio_back_vs_realtime']:.2f}, "
                    f"genai {theirs[key]['audio_back_vs_realtime']:.2f}"
                ),
            )
        )
    top = str(counts[-1])
    result.comparisons.append(
        Comparison(
            f"µs CPU per chunk pair, {top} sessions, vs the floor",
            "µs",
            ours[top]["us_per_chunk_pair"],
            "floor: raw websockets + orjson, no session logic",
            raw[top]["us_per_chunk_pair"],
            better="floor",
        )
    )
    result.comparisons.append(
        Comparison(
            f"max real-time sessions on one core (from {top} sessions)",
            "sessions",
            ours[top]["max_realtime_sessions_one_core"],
            "google-genai AsyncSession",
            theirs[top]["max_realtime_sessions_one_core"],
            better="higher",
        )
    )
    charts.safe_chart(
        result.notes,
        result.charts,
        charts.grouped_bars,
        ctx.chart_path(NAME),
        "Client CPU per 20 ms chunk pair (16 kHz up, 24 kHz down, wss)",
        [f"{n} session{'s' if n > 1 else ''}" for n in counts],
        {
            "tunnelproof LiveSession": [ours[str(n)]["us_per_chunk_pair"] for n in counts],
            "google-genai AsyncSession": [theirs[str(n)]["us_per_chunk_pair"] for n in counts],
            "floor: raw websockets + orjson": [raw[str(n)]["us_per_chunk_pair"] for n in counts],
        },
        ylabel="µs CPU per chunk pair",
    )
    return result
