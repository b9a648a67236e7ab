"""Benchmark 3: half-open link detection with a kernel-level blackhole (netns + nftables).

Question: when a tunnel silently swallows every packet (nothing is closed, nothing
answers), how long until the client *knows* the link is dead — while streaming audio and
while idle — and does the detector raise false alarms on a healthy link whose pongs are
slow (Gemini's can take 8-30 s)?

Method: the clients live in a fresh network namespace (``NetnsTunnel``) joined to the host
by a veth pair; the emulator listens on the host end. ``NetnsTunnel.blackhole()`` installs
an nftables table that drops every packet on the namespace's veth, so the real kernel TCP
stacks retransmit into the void. Three client configurations, each both streaming (a
20 ms chunk of 16 kHz audio every 20 ms) and idle:

* **tunnelproof**: ``LiveSession`` itself, handed the namespace socket; it sets
  ``TCP_USER_TIMEOUT`` (5 s) and TCP keepalive (2 s idle, 1 s interval, 3 probes) exactly as
  in production and uses no WebSocket pings. "Knows" = its ``Disconnected`` event.
* **websockets default**: ``websockets.connect`` with its default keepalive (ping every
  20 s, 20 s timeout, then its 10 s close timeout). "Knows" = the receive loop ends.
* **none** (the seed, like a browser WebSocket): no keepalive at all. Capped, reported as
  "> cap".

Clients start at random moments over ~20 s before the blackhole so the ping phase is
random, all trials of a round share one namespace and one blackhole, and each detection
time is measured from the blackhole to that client's own verdict. The false-alarm round
restores the link, tells the emulator to delay every pong by 25 s, and counts the
clients that declare the healthy link dead within a bounded window.
Needs root and nftables; skipped with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tunnelproof.benchmarks import charts
from tunnelproof.benchmarks.harness import (
    BenchContext,
    BenchResult,
    Comparison,
    method_text,
    summarize,
)

NAME = "half_open"
TITLE = "Half-open link detection (kernel blackhole)"

CONFIGS = ("tunnelproof", "websockets default", "none")
MODES = ("streaming", "idle")
PCM_CHUNK = b"\x00\x00" * 320  # 20 ms at 16 kHz


@dataclass(slots=True)
class Round:
    """Shared clock of one round: when the blackhole went in, when to give up."""

    blackhole_at: float | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True)
class Trial:
    """One client of one round."""

    config: str
    mode: str
    start_delay: float
    ready: bool = False
    dead_at: float | None = None  # monotonic time the client declared the link dead
    error: str | None = None


async def _raw_client(trial: Trial, rnd: Round, ns: Any, emu: Any, ping: float | None) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from tunnelproof.benchmarks.live import CONFIG
    from tunnelproof.protocol.client_messages import encode_client_message, realtime_audio
    from tunnelproof.protocol.endpoints import api_key_endpoint
    from tunnelproof.session.sockets import DEFAULT_MAX_FRAME_BYTES

    endpoint = api_key_endpoint(f"ws://{ns.host_address}:{emu.port}", emu.api_key, version="v1beta")
    sock = await ns.connect(ns.host_address, emu.port)
    ws = await connect(
        endpoint.url,
        sock=sock,
        additional_headers=endpoint.headers,
        ping_interval=ping,
        ping_timeout=ping,
        compression=None,
        max_size=DEFAULT_MAX_FRAME_BYTES,
        open_timeout=10,
    )
    try:
        await ws.send(encode_client_message(CONFIG.to_setup(None)))
        async with asyncio.timeout(10):
            async for raw in ws:
                if "setupComplete" in (raw if isinstance(raw, str) else raw.decode()):
                    break
        trial.ready = True

        async def reader() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for _ in ws:
                    pass

        async def sender() -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await ws.send(encode_client_message(realtime_audio(PCM_CHUNK)))
                    await asyncio.sleep(0.02)

        tasks = [asyncio.create_task(reader())]
        if trial.mode == "streaming":
            tasks.append(asyncio.create_task(sender()))
        stopper = asyncio.create_task(rnd.stop.wait())
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        if stopper not in done:
            trial.dead_at = time.monotonic()
        for task in (*tasks, stopper):
            task.cancel()
        await asyncio.gather(*tasks, stopper, return_exceptions=True)
    finally:
        ws.transport.abort()


async def _tunnelproof_client(trial: Trial, rnd: Round, ns: Any, emu: Any) -> None:
    from tunnelproof.benchmarks.live import CONFIG, Recorder
    from tunnelproof.session import app_events as ev
    from tunnelproof.session.live_session import LiveSession
    from tunnelproof.tokens.direct import ApiKeySource

    sock = await ns.connect(ns.host_address, emu.port)
    source = ApiKeySource(emu.api_key, ws_base=f"ws://{ns.host_address}:{emu.port}")
    session = LiveSession(CONFIG, source, connect_kwargs={"sock": sock})
    await session.start()
    rec = Recorder(session)
    try:
        if not await rec.wait(lambda: rec.count(ev.Connected) > 0, 10.0):
            raise RuntimeError("LiveSession did not connect in the namespace")
        trial.ready = True

        async def sender() -> None:
            while True:
                await session.send_audio(PCM_CHUNK)
                await asyncio.sleep(0.02)

        streamer = asyncio.create_task(sender()) if trial.mode == "streaming" else None
        while not rnd.stop.is_set():
            if rec.count(ev.Disconnected) > 0:
                trial.dead_at = rec.times(ev.Disconnected)[0]
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rnd.stop.wait(), 0.05)
        if streamer is not None:
            streamer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await streamer
    finally:
        await session.close()
        await rec.stop()


async def _run_trial(trial: Trial, rnd: Round, ns: Any, emu: Any) -> None:
    await asyncio.sleep(trial.start_delay)
    try:
        if trial.config == "tunnelproof":
            await _tunnelproof_client(trial, rnd, ns, emu)
        else:
            ping = 20.0 if trial.config == "websockets default" else None
            await _raw_client(trial, rnd, ns, emu, ping)
    except Exception as exc:
        trial.error = f"{type(exc).__name__}: {exc}"


async def _round(
    ns: Any,
    emu: Any,
    trials: list[Trial],
    *,
    settle: float,
    window: float,
    blackhole: bool,
    until: Callable[[list[Trial]], bool],
    before: Callable[[], Awaitable[None]] | None = None,
) -> float | None:
    """Start ``trials``, optionally blackhole after ``settle`` s, watch for ``window`` s."""
    rnd = Round()
    tasks = [asyncio.create_task(_run_trial(t, rnd, ns, emu)) for t in trials]
    await asyncio.sleep(settle)
    if before is not None:
        await before()
    started = time.monotonic()
    if blackhole:
        await asyncio.to_thread(ns.blackhole)
        started = time.monotonic()
        rnd.blackhole_at = started
    for _ in range(int(window / 0.1) + 1):  # bounded by the window
        if until(trials):
            break
        await asyncio.sleep(0.1)
    rnd.stop.set()
    await asyncio.wait(tasks, timeout=30)
    for task in tasks:
        task.cancel()
    if blackhole:
        await asyncio.to_thread(ns.restore)
    return started


def _trials(rng: random.Random, per: int, stagger: float) -> list[Trial]:
    return [
        Trial(config, mode, rng.uniform(0.0, stagger))
        for config in CONFIGS
        for mode in MODES
        for _ in range(per)
    ]


async def run(ctx: BenchContext) -> BenchResult:
    """Detection round, then false-alarm round (see the module docstring)."""
    result = BenchResult(name=NAME, title=TITLE, method=method_text(__doc__), quick=ctx.quick)
    from tunnelproof.testing.netns import NetnsTunnel, netns_available

    ok, why = await asyncio.to_thread(netns_available)
    if not ok:
        result.skipped = why
        return result
    from tunnelproof.emulator import EmulatorServer

    per, stagger, cap, cap_none, fa_window = (
        (1, 1.5, 15.0, 8.0, 8.0) if ctx.quick else (3, 20.0, 70.0, 60.0, 60.0)
    )
    result.params = {
        "trials_per_config_and_mode": per,
        "start_stagger_s": stagger,
        "cap_s": cap,
        "cap_none_s": cap_none,
        "false_alarm_window_s": fa_window,
        "pong_delay_s": 25.0,
    }
    rng = random.Random(ctx.seed)
    async with NetnsTunnel() as ns, EmulatorServer(host=ns.host_address) as emu:
        ctx.log(f"  detection: {per} trial(s) × 3 configs × 2 modes, one blackhole")
        detect = _trials(rng, per, stagger)

        watch_started: list[float] = []

        def all_detected(ts: list[Trial]) -> bool:
            # "none" is watched for its whole cap, so "> cap" is an observation, not a guess.
            if not watch_started:
                watch_started.append(time.monotonic())
            if time.monotonic() - watch_started[0] < cap_none:
                return False
            return all(t.dead_at is not None or t.error for t in ts if t.config != "none")

        blackhole_at = await _round(
            ns,
            emu,
            detect,
            settle=stagger + 2.0,
            window=cap,
            blackhole=True,
            until=all_detected,
        )
        ctx.log(f"  false alarms: pongs delayed 25 s, {fa_window:g} s window")
        alarms = _trials(rng, per, min(stagger, 5.0))

        async def slow_pongs() -> None:
            emu.controls.set_pongs(delay=25.0)

        await _round(
            ns,
            emu,
            alarms,
            settle=min(stagger, 5.0) + 2.0,
            window=fa_window,
            blackhole=False,
            until=lambda _ts: False,
            before=slow_pongs,
        )
    if blackhole_at is None:
        raise RuntimeError("the blackhole was never installed")
    detection: dict[str, Any] = {}
    samples: dict[str, list[float]] = {}
    for config in CONFIGS:
        for mode in MODES:
            mine = [t for t in detect if t.config == config and t.mode == mode]
            limit = cap_none if config == "none" else cap
            times = [
                t.dead_at - blackhole_at
                for t in mine
                if t.dead_at is not None and t.dead_at - blackhole_at <= limit
            ]
            undetected = sum(1 for t in mine if t.ready and t.dead_at is None)
            detection[f"{config}/{mode}"] = {
                "seconds": times,
                "summary": summarize(times),
                "undetected_within_cap": undetected,
                "cap_s": limit,
                "errors": [t.error for t in mine if t.error],
                "ready": sum(1 for t in mine if t.ready),
            }
            samples[f"{config}/{mode}"] = times
    false_alarms: dict[str, dict[str, Any]] = {
        f"{config}/{mode}": {
            "alarms": sum(
                1 for t in alarms if t.config == config and t.mode == mode and t.dead_at is not None
            ),
            "clients": sum(1 for t in alarms if t.config == config and t.mode == mode and t.ready),
            "errors": [
                t.error for t in alarms if t.config == config and t.mode == mode and t.error
            ],
        }
        for config in CONFIGS
        for mode in MODES
    }
    result.data = {"detection": detection, "false_alarms": false_alarms}
    for trial in detect + alarms:
        if trial.error:
            result.notes.append(f"{trial.config}/{trial.mode}: {trial.error}")

    def median_text(key: str) -> tuple[float | None, str | None]:
        # Clients still undetected at the cap count as "> cap", so the median is honest.
        d = detection[key]
        values = sorted(d["seconds"] + [float("inf")] * d["undetected_within_cap"])
        if not values:
            return None, "no client"
        mid = values[(len(values) - 1) // 2]
        if mid == float("inf"):
            return None, f"> {d['cap_s']:g} s (not within the cap)"
        return mid, None

    for mode in MODES:
        ours, _ = median_text(f"tunnelproof/{mode}")
        for other in ("websockets default", "none"):
            theirs, text = median_text(f"{other}/{mode}")
            cap_value = detection[f"{other}/{mode}"]["cap_s"]
            ratio_text = None
            if text is not None and ours:
                ratio_text = f"> {cap_value / ours:.1f}×"
            result.comparisons.append(
                Comparison(
                    f"{mode}: blackhole → link known dead, median (n={per})",
                    "s",
                    ours,
                    other if other != "none" else "no keepalive (seed)",
                    theirs,
                    theirs_text=text,
                    ratio_text=ratio_text,
                )
            )
    for config in ("websockets default",):
        fa_ours = sum(false_alarms[f"tunnelproof/{m}"]["alarms"] for m in MODES)
        fa_n = sum(false_alarms[f"tunnelproof/{m}"]["clients"] for m in MODES)
        fa_them = sum(false_alarms[f"{config}/{m}"]["alarms"] for m in MODES)
        fa_them_n = sum(false_alarms[f"{config}/{m}"]["clients"] for m in MODES)
        result.comparisons.append(
            Comparison(
                f"false alarms, pongs delayed 25 s, {fa_window:g} s window",
                "count",
                float(fa_ours),
                config,
                float(fa_them),
                ours_text=f"{fa_ours} of {fa_n}",
                theirs_text=f"{fa_them} of {fa_them_n}",
                ratio_text="n/a",
            )
        )
    if ctx.quick:
        result.notes.append("quick run: caps and windows are too short for the 20 s pings")
    groups = [f"{c}\n{m}" for c in CONFIGS for m in MODES]
    values: list[float | None] = []
    texts: list[str | None] = []
    for c in CONFIGS:
        for m in MODES:
            d = detection[f"{c}/{m}"]
            if d["summary"]["n"]:
                values.append(d["summary"]["p50"])
                texts.append(None)
            else:
                values.append(None)
                texts.append(f"> {d['cap_s']:g} s")
    charts.safe_chart(
        result.notes,
        result.charts,
        charts.grouped_bars,
        ctx.chart_path(NAME),
        "Blackhole → client knows the link is dead (median, seconds)",
        groups,
        {"median detection time": values},
        ylabel="seconds",
        annotations={"median detection time": texts},
    )
    return result
