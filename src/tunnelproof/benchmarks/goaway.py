"""Benchmark 4: goAway handover — the gap between connections, and user messages lost.

Question: when the server announces ``goAway``, how long is the conversation silent
between the old connection and the new one, and does any message the user sent meanwhile
get lost? (Client contract point 4: hand over at the next turn boundary or at
``timeLeft`` minus a margin, with the next token prefetched.)

Method: the emulator runs as a subprocess with unpaced generation (answers as fast as it
can). One ``LiveSession`` (``DEFAULT_POLICY``, the default AUDIO config) sends a user text
(``msg-00042``) every 100 ms for the whole run, each answered by the model. Every 12 s the
emulator's fault control sends ``goAway`` with ``timeLeft`` 10 s on the current connection;
the session hands over by itself. 12 s is beyond ``stable_after`` (10 s): the policy lets
only ``handover_budget`` (3) handovers in a row of connections younger than that go at the
next turn boundary (a server sending goAway on every connection must not drive a hot
loop), so goAways closer together would measure that brake, not a handover (Google sends
one per connection lifetime, minutes apart). The gap is measured on the client from the
last server frame received on the old socket to the first server frame on the new one. At
the end the emulator's server-side history of the session is read back and every text the app handed
to ``send_text`` (sent at once or queued during the handover) is looked up in it: a text
missing from it is lost. (The run first waits, bounded, for the session to be connected, so
a text queued at the very end is not counted lost.)

Comparisons: the gap against the floor (one token fetch + connect + setup, measured bare
and back to back like benchmark 1's quiet floor; the handover can beat it because the
token is prefetched), and the messages lost against the seed's behaviour: its ``send()``
returns ``false`` and drops every message while its socket is not open, so every message
our session had to queue during a handover is one the seed would have lost (counted from
our ``SendResult`` s).
"""

from __future__ import annotations

import asyncio
import time

from tunnelproof.benchmarks import charts
from tunnelproof.benchmarks.harness import (
    BenchContext,
    BenchResult,
    Comparison,
    method_text,
    summarize,
)
from tunnelproof.benchmarks.live import CONFIG, EmulatorTokens, Recorder, TimedSession
from tunnelproof.session import app_events as ev

NAME = "goaway"
TITLE = "goAway handover gap and lost messages"

SEND_INTERVAL_S = 0.1
PERIOD_S = 12.0  # between goAways: beyond DEFAULT_POLICY.stable_after (see the docstring)
TIME_LEFT_S = 10.0


async def run(ctx: BenchContext) -> BenchResult:
    """Run the handovers (see the module docstring)."""
    from tunnelproof.benchmarks.recovery import _floor_quiet as _floor
    from tunnelproof.emulator import EmulatorPolicy, EmulatorProcess
    from tunnelproof.testing.tunnel import TunnelProxy

    result = BenchResult(name=NAME, title=TITLE, method=method_text(__doc__), quick=ctx.quick)
    handovers = 3 if ctx.quick else 20
    result.params = {
        "handovers": handovers,
        "send_interval_s": SEND_INTERVAL_S,
        "go_away_time_left_s": TIME_LEFT_S,
        "go_away_period_s": PERIOD_S,
    }
    policy = EmulatorPolicy(generation_speed=0.0)
    sent: list[tuple[str, str]] = []  # (text, SendResult.status)
    gaps: list[float] = []
    queued_per_handover: list[int] = []
    async with EmulatorProcess(policy) as emu:
        floor = await _floor(emu, 5 if ctx.quick else 30)
        # Through a loopback proxy, like the floor, so the two compare like for like.
        proxy = await TunnelProxy("127.0.0.1", emu.port).start()
        tokens = EmulatorTokens(emu.http_base, proxy.url("ws"), emu.api_key)
        session = TimedSession(CONFIG, tokens)
        await session.start()
        rec = Recorder(session)
        stop = asyncio.Event()

        async def sender() -> None:
            i = 0
            while not stop.is_set() and i < 100_000:
                text = f"msg-{i:05d}"
                res = await session.send_text(text)
                sent.append((text, res.status))
                i += 1
                await asyncio.sleep(SEND_INTERVAL_S)

        try:
            if not await rec.wait(lambda: session.resumption_handle is not None, 20.0):
                raise RuntimeError("the session never got a handle")
            task = asyncio.create_task(sender())
            for _ in range(handovers):
                await asyncio.sleep(PERIOD_S)
                open_conns = await emu.controls.connections(open_only=True)
                if not open_conns:
                    continue
                conn = open_conns[-1]["id"]
                old_attempt = session._machine.attempt
                queued_before = sum(1 for _, s in sent if s == "queued")
                issued = time.monotonic()
                await emu.controls.send_go_away(conn, time_left=TIME_LEFT_S)
                back = await rec.wait_for(ev.Resumed, after=issued, timeout=TIME_LEFT_S + 10)
                if back is None:
                    result.notes.append("a handover did not complete in time")
                    continue
                frames = list(session.frames)
                last_old = max((t for t, a in frames if a == old_attempt), default=None)
                first_new = min((t for t, a in frames if a > old_attempt), default=None)
                if last_old is not None and first_new is not None:
                    gaps.append(first_new - last_old)
                queued_per_handover.append(sum(1 for _, s in sent if s == "queued") - queued_before)
            stop.set()
            await task
            # Let the last handover finish (bounded), then the answers arrive
            # (the queue is replayed at setupComplete, so connected means it was flushed).
            await rec.wait(lambda: session.state == "connected", 20.0)
            await asyncio.sleep(1.5)  # let the last answers and handles arrive
            conns = await emu.controls.connections()
            session_id = conns[-1]["session"] if conns else None
            history = await emu.controls.history(session_id)
        finally:
            stop.set()
            await session.close()
            await rec.stop()
            await proxy.stop()
    user_texts = [e["text"] for e in history if e.get("role") == "user"]
    seen = set(user_texts)
    handed = [t for t, s in sent if s in ("sent", "queued")]
    lost = [t for t in handed if t not in seen]
    dropped = [t for t, s in sent if s == "dropped"]
    duplicates = len(user_texts) - len(seen)
    queued = sum(1 for _, s in sent if s == "queued")
    result.data.update(
        {
            "gaps_s": gaps,
            "gap": summarize(gaps),
            "floor": summarize(floor),
            "messages_handed_to_send": len(handed),
            "messages_lost": len(lost),
            "lost_examples": lost[:10],
            "messages_dropped_by_send": len(dropped),
            "duplicates_in_server_history": duplicates,
            "queued_during_handovers": queued,
            "queued_per_handover": queued_per_handover,
            "rewound": rec.count(ev.Rewound),
        }
    )
    gap = result.data["gap"]
    fl = result.data["floor"]
    result.comparisons += [
        Comparison(
            f"handover gap p50 (n={gap['n']})",
            "s",
            gap["p50"],
            f"floor: token + connect + setup (n={fl['n']})",
            fl["p50"],
            better="floor",
        ),
        Comparison("handover gap p95", "s", gap["p95"], "floor p95", fl["p95"], better="floor"),
        Comparison(
            f"user messages lost (of {len(handed)} sent across {gap['n']} handovers)",
            "count",
            float(len(lost)),
            "seed (send() drops while disconnected)",
            float(queued),
            ours_text=str(len(lost)),
            theirs_text=f"{queued} would be dropped",
            ratio_text="∞" if queued and not lost else None,
            note=f"duplicates in the server's history: {duplicates}",
        ),
    ]
    if lost:
        result.notes.append(f"{len(lost)} user messages lost (must be 0): {lost[:5]}")
    charts.safe_chart(
        result.notes,
        result.charts,
        charts.grouped_bars,
        ctx.chart_path(NAME),
        "goAway handover gap vs the floor (ms)",
        ["p50", "p95", "max"],
        {
            "tunnelproof handover gap": [
                (gap[k] or 0) * 1000 if gap[k] is not None else None for k in ("p50", "p95", "max")
            ],
            "floor (token + connect + setup)": [
                (fl[k] or 0) * 1000 if fl[k] is not None else None for k in ("p50", "p95", "max")
            ],
        },
        ylabel="ms",
    )
    return result
