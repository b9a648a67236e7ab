"""Benchmark 1: recovery after an abrupt drop — drop → ``setupComplete`` on the resumed session.

Question: when a live connection dies abruptly (a TCP reset, or the server's close 1011),
how long until the conversation is back, compared with the seed's policy run through the
same client, and with the physical floor?

Method: the emulator runs as a subprocess (``EmulatorProcess``), so its work does not share
an event loop with the clients. Sessions (``LiveSession``, the default AUDIO config) run in this
process, half with ``DEFAULT_POLICY`` and half with ``SEED_POLICY``, each through its own
``TunnelProxy`` and with a token source that mints a fresh single-use token from the
emulator for every attempt. Each session is dropped repeatedly, alternating a **reset**
(the proxy aborts the connection with RST both ways) and a **1011** (the emulator's fault
control closes that connection with code 1011, internal error). Drops of one session are
12 s apart, more than the policy's ``stable_after`` (10 s), so every drop meets a client
whose failure counter has reset — the first-failure case a user meets; sessions are
staggered so drops rarely coincide. Measured per drop: from the ``Disconnected`` event (the
client learns of the drop) to the ``Resumed`` event (``setupComplete`` of the resumed
session).

The **floor** is what no client can beat: one token fetch + one WebSocket connect + one
resumed ``setup`` → ``setupComplete``, measured bare with raw ``websockets`` through the
same kind of proxy, back to back, with no policy delay at all.

Reported: p50/p95 for each policy and for the floor, per drop kind and overall (each kind
also against the floor: a reset is an abrupt drop, a 1011 a server error); ratios
seed/ours (how much sooner we are back) and ours/floor (what our backoff jitter costs).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

from tunnelproof.benchmarks import charts
from tunnelproof.benchmarks.harness import (
    BenchContext,
    BenchResult,
    Comparison,
    method_text,
    summarize,
)
from tunnelproof.benchmarks.live import CONFIG, EmulatorTokens, Recorder
from tunnelproof.session import app_events as ev
from tunnelproof.session.live_session import LiveSession
from tunnelproof.session.policy import DEFAULT_POLICY, SEED_POLICY, RetryPolicy

NAME = "recovery"
TITLE = "Recovery after an abrupt drop"

POLICIES: dict[str, RetryPolicy] = {"tunnelproof": DEFAULT_POLICY, "seed": SEED_POLICY}
PERIOD_S = 12.0


async def _floor(emu: Any, trials: int) -> list[float]:
    """Token + connect + resumed setup → setupComplete, bare, ``trials`` times in a row."""
    from websockets.asyncio.client import connect

    from tunnelproof.protocol.client_messages import encode_client_message
    from tunnelproof.testing.tunnel import TunnelProxy

    samples: list[float] = []
    async with TunnelProxy("127.0.0.1", emu.port) as proxy:
        tokens = EmulatorTokens(emu.http_base, proxy.url("ws"), emu.api_key)
        handle: str | None = None
        for i in range(trials + 1):  # the first connection only obtains a handle
            started = time.monotonic()
            cred = await tokens()
            endpoint = cred.endpoint()
            async with connect(
                endpoint.url,
                additional_headers=endpoint.headers,
                ping_interval=None,
                compression=None,
                open_timeout=10,
            ) as ws:
                await ws.send(encode_client_message(CONFIG.to_setup(handle)))
                got_complete = None
                async with asyncio.timeout(10):
                    async for raw in ws:
                        message = json.loads(raw)
                        if "setupComplete" in message and got_complete is None:
                            got_complete = time.monotonic()
                        update = message.get("sessionResumptionUpdate")
                        if update and update.get("resumable") and update.get("newHandle"):
                            handle = update["newHandle"]
                            break
                if got_complete is not None and i > 0:
                    samples.append(got_complete - started)
            # The emulator (like Google) refuses a resume while the old socket is open.
            await asyncio.sleep(0.05)
    return samples


async def _connection_for(controls: Any, handle: str | None) -> str | None:
    if handle is None:
        return None
    for conn in await controls.connections(open_only=True):
        if conn.get("handle") == handle and conn.get("state") == "open":
            return str(conn["id"])
    return None


async def _drive(
    pname: str,
    policy: RetryPolicy,
    emu: Any,
    offset: float,
    drops: int,
    t0: float,
    rng: random.Random,
) -> list[dict[str, Any]]:
    """One session: connect, then drop it ``drops`` times on its schedule."""
    from tunnelproof.testing.tunnel import TunnelProxy

    records: list[dict[str, Any]] = []
    async with TunnelProxy("127.0.0.1", emu.port) as proxy:
        tokens = EmulatorTokens(emu.http_base, proxy.url("ws"), emu.api_key)
        session = LiveSession(CONFIG, tokens, policy=policy, rng=rng)
        await session.start()
        rec = Recorder(session)
        try:
            if not await rec.wait(lambda: session.resumption_handle is not None, 20.0):
                raise RuntimeError(f"{pname} session never got a handle")
            for k in range(drops):
                at = t0 + offset + k * PERIOD_S
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                kind = "reset" if k % 2 == 0 else "1011"
                issued = time.monotonic()
                if kind == "1011":
                    conn = await _connection_for(emu.controls, session.resumption_handle)
                    if conn is None:
                        kind = "reset"  # could not tell which connection is ours
                    else:
                        await emu.controls.close_connection(conn, code=1011, reason="")
                if kind == "reset":
                    proxy.reset()
                lost = await rec.wait_for(ev.Disconnected, after=issued - 1e-6, timeout=10.0)
                back = await rec.wait_for(ev.Resumed, after=issued, timeout=PERIOD_S - 1.0)
                # The waits the policy chose on the way back (Reconnecting.delay): what is
                # left after subtracting them is the client's own mechanics.
                waits = [
                    e.delay
                    for t, e in rec.log
                    if isinstance(e, ev.Reconnecting)
                    and lost is not None
                    and back is not None
                    and lost <= t <= back
                ]
                records.append(
                    {
                        "policy": pname,
                        "kind": kind,
                        "policy_wait_s": sum(waits),
                        "recovery_s": (back - lost) if back and lost else None,
                        "from_issue_s": (back - issued) if back else None,
                        "fresh_session": rec.count(ev.ContextReset) > 0,
                    }
                )
                if back is None:
                    # Give a slow reconnect time to finish before the next drop.
                    await rec.wait_for(ev.Resumed, after=issued, timeout=20.0)
        finally:
            await session.close()
            await rec.stop()
    return records


async def run(ctx: BenchContext) -> BenchResult:
    """Measure the floor, then both policies side by side (see the module docstring)."""
    from tunnelproof.emulator import EmulatorProcess

    result = BenchResult(name=NAME, title=TITLE, method=method_text(__doc__), quick=ctx.quick)
    sessions, drops, floor_trials = (2, 2, 8) if ctx.quick else (10, 10, 60)
    result.params = {
        "sessions_per_policy": sessions,
        "drops_per_session": drops,
        "drop_period_s": PERIOD_S,
        "floor_trials": floor_trials,
        "drop_kinds": ["reset", "1011"],
    }
    rng = random.Random(ctx.seed)
    async with EmulatorProcess() as emu:
        ctx.log(f"  floor: {floor_trials} bare token+connect+setup")
        floor = await _floor(emu, floor_trials)
        ctx.log(f"  {sessions} sessions per policy × {drops} drops, {PERIOD_S:g} s apart")
        t0 = time.monotonic() + 3.0
        tasks = []
        for pname, policy in POLICIES.items():
            for _ in range(sessions):
                offset = rng.uniform(0, PERIOD_S - 3.0)
                tasks.append(
                    _drive(pname, policy, emu, offset, drops, t0, random.Random(rng.random()))
                )
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    records: list[dict[str, Any]] = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            result.notes.append(f"a session failed: {type(outcome).__name__}: {outcome}")
            continue
        records.extend(outcome)
    result.data["floor_s"] = floor
    result.data["drops"] = records
    stats: dict[str, Any] = {"floor": summarize(floor)}
    samples: dict[str, list[float]] = {"floor": floor}
    for pname in POLICIES:
        mine = [r for r in records if r["policy"] == pname]
        values = [r["recovery_s"] for r in mine if r["recovery_s"] is not None]
        samples[pname] = values
        stats[pname] = {
            "all": summarize(values),
            "not_recovered": sum(1 for r in mine if r["recovery_s"] is None),
            **{
                kind: summarize(
                    r["recovery_s"] for r in mine if r["kind"] == kind and r["recovery_s"]
                )
                for kind in ("reset", "1011")
            },
        }
    result.data["stats"] = stats
    ours, seed, fl = stats["tunnelproof"]["all"], stats["seed"]["all"], stats["floor"]
    n = ours["n"]
    for q in ("p50", "p95"):
        result.comparisons.append(
            Comparison(
                f"drop → resumed {q} (n={n} drops, reset + 1011)",
                "s",
                ours[q],
                "seed policy, same client",
                seed[q],
            )
        )
    for q in ("p50", "p95"):
        result.comparisons.append(
            Comparison(
                f"drop → resumed {q} vs the floor",
                "s",
                ours[q],
                f"floor: token + connect + setup (n={fl['n']})",
                fl[q],
                better="floor",
            )
        )
    # Per kind: a reset is an abrupt drop (the first attempt may go at once); a 1011 is the
    # server answering with an error (backoff with full jitter is the policy's choice).
    for kind, what in (("reset", "TCP reset (abrupt drop)"), ("1011", "close 1011 (server error)")):
        mine_kind = stats["tunnelproof"][kind]
        if not mine_kind["n"]:
            continue
        for q in ("p50", "p95"):
            result.comparisons.append(
                Comparison(
                    f"{what} → resumed {q} vs the floor (n={mine_kind['n']})",
                    "s",
                    mine_kind[q],
                    f"floor: token + connect + setup (n={fl['n']})",
                    fl[q],
                    better="floor",
                )
            )
    mechanics = [
        r["recovery_s"] - r["policy_wait_s"]
        for r in records
        if r["policy"] == "tunnelproof" and r["recovery_s"] is not None
    ]
    stats["tunnelproof_minus_policy_wait"] = summarize(mechanics)
    result.comparisons.append(
        Comparison(
            "drop → resumed minus the policy's chosen wait, p50",
            "s",
            stats["tunnelproof_minus_policy_wait"]["p50"],
            "floor: token + connect + setup",
            fl["p50"],
            better="floor",
            note="the client's own mechanics; the rest of the gap is the deliberate jitter",
        )
    )
    if n < 50 and not ctx.quick:
        result.notes.append(f"only {n} drops recovered, below the issue's 50")
    charts.safe_chart(
        result.notes,
        result.charts,
        charts.cdf,
        ctx.chart_path(NAME),
        "Drop → resumed (reset and 1011), CDF",
        {
            "tunnelproof": samples["tunnelproof"],
            "seed policy": samples["seed"],
            "floor (bare)": samples["floor"],
        },
        xlabel="seconds (log)",
        log=True,
    )
    return result
