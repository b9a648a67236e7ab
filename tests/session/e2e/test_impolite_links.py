"""Impolite links, end to end (issue 13): slow backends, slow models, speech into dead links.

Real loopback processes only: the emulator, TCP tunnel proxies (one in front of the
emulator, one in front of the token service, as a phone in a tunnel loses both), and a
real HTTP token service used through ``TokenServiceSource``.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import replace

import pytest

from tunnelproof.emulator import EmulatorPolicy, EmulatorServer, encode_speech, silence
from tunnelproof.protocol.config import FunctionDeclaration
from tunnelproof.session import LiveSession
from tunnelproof.session import app_events as ev
from tunnelproof.session.policy import Watchdogs
from tunnelproof.testing.tunnel import TunnelProxy
from tunnelproof.tokens.client import TokenServiceSource

from .impolite_helpers import (
    AUDIO_CONFIG,
    CHUNK,
    CHUNK_MS,
    LiveRecorder,
    SlowTokenService,
    ask,
    new_handle,
)
from .session_e2e_helpers import ASK_FIRST, FAST_WATCHDOGS, FIRST, EmulatorMint, through

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


SLOW_BACKEND_WATCHDOGS = Watchdogs(
    token_timeout=4.0, connect_timeout=4.0, probe_connect_timeout=2.0, reply_timeout=4.0
)


async def test_slow_token_service_after_a_tunnel_brings_the_session_back() -> None:
    """Symptom 2: the backend takes 2.5 s per token (scaled: the probe timeout here is 2 s,
    the default 3 s). While offline every fetch was cancelled after the probe timeout,
    forever. The session must come back, and the backend must not mint tokens nobody uses."""
    async with (
        EmulatorServer(policy=EmulatorPolicy(generation_speed=0)) as emu,
        TunnelProxy("127.0.0.1", emu.port) as ws_tunnel,
        SlowTokenService(emu, ws_base=ws_tunnel.url("ws")) as service,
        TunnelProxy("127.0.0.1", service.port) as http_tunnel,
    ):
        source = TokenServiceSource(
            f"http://127.0.0.1:{http_tunnel.port}/api/live/token", timeout=10.0
        )
        async with LiveSession(
            AUDIO_CONFIG, source, watchdogs=SLOW_BACKEND_WATCHDOGS, rng=random.Random(1)
        ) as session:
            rec = LiveRecorder(session)
            await rec.wait(ev.Connected, timeout=20)
            assert "teal" in await ask(rec, FIRST)
            await new_handle(session, None)
            service.delay = 2.5  # a loaded backend
            mark = rec.mark()
            ws_tunnel.offline()
            http_tunnel.blackhole()  # the phone is in the tunnel: no backend either
            await rec.wait(ev.Disconnected, since=mark, timeout=10)
            await asyncio.sleep(6.0)
            ws_tunnel.restore()
            http_tunnel.restore()
            await rec.wait(ev.Resumed, since=mark, timeout=30)
            metrics = session.metrics
            # A fetch cancelled inside the tunnel may still be minted when the link
            # returns; a few such, but never a stream of tokens nobody uses.
            wasted = service.minted - metrics.tokens_fetched
            assert wasted <= 3, f"{service.minted} minted, {metrics.tokens_fetched} used"
            minted = service.minted
            await asyncio.sleep(2.0)
            assert service.minted == minted, "no fetches once the session is back"
            assert "teal" in await ask(rec, ASK_FIRST)


LOOKUP = FunctionDeclaration(name="look_up_the_time", description="Slow lookup.")


async def test_model_silent_for_longer_than_the_reply_watchdog_is_not_a_dead_link() -> None:
    """Symptom 3: the model is silent for 7 s (a slow tool call; reply_timeout is 4 s) on a
    healthy link. No false dead-link alarm, no reconnect, the question is sent once."""
    config = replace(AUDIO_CONFIG, tools=(LOOKUP,))
    async with (
        EmulatorServer(policy=EmulatorPolicy(generation_speed=4.0)) as emu,
        LiveSession(
            config, EmulatorMint(emu), watchdogs=FAST_WATCHDOGS, rng=random.Random(2)
        ) as session,
    ):
        rec = LiveRecorder(session)
        await rec.wait(ev.Connected)
        assert "teal" in await ask(rec, FIRST)
        emu.controls.update_policy(tool_call_delay=28.0)  # 7 s at generation_speed 4
        mark = rec.mark()
        assert (await session.send_text("Please look up the time.")).sent
        call = await rec.wait(ev.ToolCallRequested, since=mark, timeout=20)
        assert isinstance(call, ev.ToolCallRequested)
        lifecycle = [e for e in rec.log[mark:] if isinstance(e, ev.Disconnected | ev.Reconnecting)]
        assert not lifecycle, f"false dead-link alarm on a healthy link: {lifecycle}"
        asked = [e for e in emu.controls.events(kind="user_text")]
        assert sum(1 for e in asked if "look up" in str(e)) == 1, asked
        assert session.metrics.dead_links_detected == 0


async def _stream(session: LiveSession, pcm: bytes, seqs: list[int], stop: asyncio.Event) -> None:
    """Send ``pcm`` in 20 ms chunks at real time (a microphone), recording every seq."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for index in range(0, len(pcm), CHUNK):
        if stop.is_set():
            return
        result = await session.send_audio(pcm[index : index + CHUNK])
        seqs.append(result.seq)
        due = start + (index // CHUNK + 1) * CHUNK_MS / 1000
        await asyncio.sleep(max(0.0, due - loop.time()))


async def test_every_audio_millisecond_sent_into_a_dead_link_is_accounted_for() -> None:
    """Symptom 4: speech streamed through a 7 s tunnel. Every chunk ends delivered (a
    ``Delivered`` event) or reported dropped, and the outage is reported once, not once per
    20 ms chunk."""
    async with (
        EmulatorServer(policy=EmulatorPolicy(generation_speed=0)) as emu,
        TunnelProxy("127.0.0.1", emu.port) as tunnel,
    ):
        source = through(tunnel.url("ws"), EmulatorMint(emu))
        session = LiveSession(AUDIO_CONFIG, source, watchdogs=FAST_WATCHDOGS, rng=random.Random(3))
        async with session:
            rec = LiveRecorder(session)
            await rec.wait(ev.Connected)
            seqs: list[int] = []
            stop = asyncio.Event()
            speech = b"".join(
                encode_speech(f"sentence number {n} about teal") + silence(0.8) for n in range(8)
            )
            streamer = asyncio.create_task(_stream(session, speech, seqs, stop))
            try:
                await asyncio.sleep(2.5)
                mark = rec.mark()
                tunnel.blackhole()
                await asyncio.sleep(7.0)
                tunnel.restore()
                await rec.wait(
                    lambda e: isinstance(e, ev.Resumed | ev.Connected), since=mark, timeout=20
                )
                await asyncio.wait_for(streamer, 30)
            finally:
                stop.set()
                streamer.cancel()
            outage_drops = [
                e for e in rec.log[mark:] if isinstance(e, ev.SendDropped) and e.kind == "audio"
            ]
            assert len(outage_drops) <= 2, f"{len(outage_drops)} SendDropped for one outage"
            mark_end = rec.mark()
            await session.send_text("How many turns have I taken?")
            await rec.wait(ev.TurnComplete, since=mark_end, timeout=20)
        # closed: every chunk has its verdict
        delivered = {s for e in rec.log if isinstance(e, ev.Delivered) for s in e.seqs}
        dropped = {s for e in rec.log if isinstance(e, ev.SendDropped) for s in e.seqs}
        missing = [s for s in seqs if s not in delivered and s not in dropped]
        assert not missing, f"{len(missing)} of {len(seqs)} audio chunks unaccounted"
        assert not (delivered & dropped), "a chunk both delivered and dropped"
        reported = [e for e in rec.log if isinstance(e, ev.SendDropped) and e.kind == "audio"]
        assert all(e.audio_ms > 0 for e in reported)


async def test_resume_refused_while_the_old_socket_is_open_is_waited_out() -> None:
    """Symptom 8: the server refuses the resume twice with 1011 (it still holds the old
    half-open socket). The client waits it out and resumes; it does not give up the
    handle within a fraction of a second and reset the context."""
    async with (
        EmulatorServer(policy=EmulatorPolicy(generation_speed=0)) as emu,
        LiveSession(
            AUDIO_CONFIG, EmulatorMint(emu), watchdogs=FAST_WATCHDOGS, rng=random.Random(5)
        ) as session,
    ):
        rec = LiveRecorder(session)
        await rec.wait(ev.Connected)
        assert "teal" in await ask(rec, FIRST)
        await new_handle(session, None)
        mark = rec.mark()
        emu.controls.refuse_resumes(3)  # 1011 Internal error, as for a stale socket
        emu.controls.abort_connection()
        await rec.wait(ev.Resumed, since=mark, timeout=30)
        assert not rec.of(ev.ContextReset), "the handle was given up"
        assert "teal" in await ask(rec, ASK_FIRST)


async def test_drop_storm_ends_with_the_session_back_at_once() -> None:
    """Symptom 8 (storm) and issue 15: 20 resets in 10 s. After the storm the session is
    back within a second or so; the abrupt drops never escalate the backoff to seconds."""
    async with (
        EmulatorServer(policy=EmulatorPolicy(generation_speed=0)) as emu,
        TunnelProxy("127.0.0.1", emu.port) as tunnel,
    ):
        source = through(tunnel.url("ws"), EmulatorMint(emu))
        async with LiveSession(
            AUDIO_CONFIG, source, watchdogs=FAST_WATCHDOGS, rng=random.Random(6)
        ) as session:
            rec = LiveRecorder(session)
            await rec.wait(ev.Connected)
            assert "teal" in await ask(rec, FIRST)
            await new_handle(session, None)
            for _ in range(20):
                tunnel.reset()
                await asyncio.sleep(0.5)
            mark = rec.mark()
            tunnel.reset()
            ended = time.monotonic()
            await rec.wait(
                lambda e: isinstance(e, ev.Resumed | ev.Connected), since=mark, timeout=20
            )
            recovery = time.monotonic() - ended
            assert recovery < 1.5, recovery
            assert not rec.of(ev.Failed)
            waits = [e.delay for e in rec.of(ev.Reconnecting) if e.kind == "server"]
            assert max(waits, default=0.0) < 1.0, [
                (e.delay, e.kind, e.reason) for e in rec.of(ev.Reconnecting)
            ]
            assert "teal" in await ask(rec, ASK_FIRST)
