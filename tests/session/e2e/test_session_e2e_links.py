"""End-to-end: token-service failures, a half-open link, wss, and a process restart."""

from __future__ import annotations

import asyncio
import os
import random
import ssl
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tunnelproof.emulator import EmulatorServer
from tunnelproof.session import LiveSession
from tunnelproof.session import app_events as ev
from tunnelproof.session.stores import SqliteHandleStore
from tunnelproof.testing.tunnel import TunnelProxy
from tunnelproof.tokens.client import TokenServiceSource

from .session_e2e_helpers import (
    ASK_FIRST,
    CONFIG,
    EXPECTED_FIRST,
    FAST_WATCHDOGS,
    FIRST,
    EmulatorMint,
    Recorder,
    StubTokenService,
    check_first,
    fast_policy,
    through,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


async def wait_for_handle(session: LiveSession) -> None:
    for _ in range(200):
        if session.last_turn_held:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("no resumable handle arrived")


async def test_wss_drop_while_idle_resumes() -> None:
    async with EmulatorServer(policy=fast_policy(), tls=True) as emu:
        assert emu.ca_file is not None
        context = ssl.create_default_context(cafile=emu.ca_file)
        mint = EmulatorMint(emu, verify=context)
        async with LiveSession(
            CONFIG, mint, ssl=context, watchdogs=FAST_WATCHDOGS, rng=random.Random(3)
        ) as session:
            rec = Recorder(session)
            await rec.wait(ev.Connected)
            await rec.ask(FIRST)
            await wait_for_handle(session)
            mark = rec.mark()
            emu.controls.abort_connection()
            await rec.wait(ev.Resumed, since=mark)
            await check_first(rec)


async def test_token_service_503_and_429_are_retried_with_retry_after() -> None:
    async with (
        EmulatorServer(policy=fast_policy()) as emu,
        StubTokenService(emu, retry_after=1) as service,
    ):
        source = TokenServiceSource(service.url, timeout=5.0)
        async with LiveSession(CONFIG, source, watchdogs=FAST_WATCHDOGS) as session:
            rec = Recorder(session)
            await rec.wait(ev.Connected)
            await rec.ask(FIRST)
            await wait_for_handle(session)
            mark = rec.mark()
            service.script = [503, 429]
            emu.controls.abort_connection()
            await rec.wait(ev.Resumed, since=mark, timeout=30)
            assert service.answers == [200, 503, 429, 200]
            waits = [e.delay for e in rec.of(ev.Reconnecting)[1:]]
            assert len(waits) >= 2 and all(w >= 1.0 for w in waits[-2:]), waits
            await check_first(rec)


async def test_token_service_401_is_fatal_until_the_app_resumes() -> None:
    async with (
        EmulatorServer(policy=fast_policy()) as emu,
        StubTokenService(emu) as service,
    ):
        source = TokenServiceSource(service.url, timeout=5.0)
        async with LiveSession(CONFIG, source, watchdogs=FAST_WATCHDOGS) as session:
            rec = Recorder(session)
            await rec.wait(ev.Connected)
            await rec.ask(FIRST)
            await wait_for_handle(session)
            mark = rec.mark()
            service.script = [401]
            emu.controls.abort_connection()
            failed = await rec.wait(ev.Failed, since=mark)
            assert isinstance(failed, ev.Failed)
            assert failed.verdict.kind == "fatal_auth" and "sign in" in failed.advice
            await asyncio.sleep(1.5)
            assert service.answers == [200, 401], "no retry loop on a fatal error"
            assert session.state == "failed"
            await session.resume()  # the user signed in again
            await rec.wait(ev.Resumed, since=mark)
            await check_first(rec)


async def test_half_open_link_is_detected_and_recovered() -> None:
    async with (
        EmulatorServer(policy=fast_policy()) as emu,
        TunnelProxy("127.0.0.1", emu.port) as tunnel,
    ):
        through_tunnel = through(tunnel.url("ws"), EmulatorMint(emu))

        # found in reply_timeout + link_check_timeout (scaled down from 20 + 30 s)
        quick = replace(FAST_WATCHDOGS, reply_timeout=2.0, link_check_timeout=1.5)
        async with LiveSession(
            CONFIG, through_tunnel, watchdogs=quick, rng=random.Random(5)
        ) as session:
            rec = Recorder(session)
            await rec.wait(ev.Connected)
            await rec.ask(FIRST)
            await wait_for_handle(session)
            mark = rec.mark()
            tunnel.blackhole()  # half-open: nothing gets through, nothing closes
            started = time.monotonic()
            result = await session.send_text("Are you still there?")
            assert result.sent
            await rec.wait(ev.Disconnected, since=mark, timeout=15)
            detected = time.monotonic() - started
            assert detected < quick.reply_timeout + 4.0, detected
            await asyncio.sleep(2.0)  # the tunnel goes on; probes fail meanwhile
            tunnel.restore()
            restored = time.monotonic()
            await rec.wait(
                lambda e: isinstance(e, ev.Resumed | ev.Connected), since=mark, timeout=20
            )
            recovery = time.monotonic() - restored
            # within a probe timeout plus a probe interval of the tunnel's end
            assert recovery < FAST_WATCHDOGS.probe_connect_timeout + 5.0, recovery
            await rec.wait(ev.TurnComplete)  # the replayed question is answered
            await check_first(rec)


async def test_long_offline_tunnel_recovers_within_about_a_second_of_its_end() -> None:
    async with (
        EmulatorServer(policy=fast_policy()) as emu,
        TunnelProxy("127.0.0.1", emu.port) as tunnel,
    ):
        through_tunnel = through(tunnel.url("ws"), EmulatorMint(emu))

        async with LiveSession(
            CONFIG, through_tunnel, watchdogs=FAST_WATCHDOGS, rng=random.Random(9)
        ) as session:
            rec = Recorder(session)
            await rec.wait(ev.Connected)
            await rec.ask(FIRST)
            await wait_for_handle(session)
            mark = rec.mark()
            tunnel.offline()  # the phone knows it has no network: resets, refusals
            await asyncio.sleep(5.5)  # a probe every 0.75 s: about 7 of them
            await rec.wait(ev.Disconnected, since=mark)
            tunnel.restore()
            restored = time.monotonic()
            await rec.wait(ev.Resumed, since=mark, timeout=20)
            recovery = time.monotonic() - restored
            assert recovery < 3.0, recovery  # ~1 s: one probe interval + connect + setup
            assert session.metrics.offline_failures >= 5, "steady probing through the tunnel"
            assert all(p.delay < 1.0 for p in rec.of(ev.Reconnecting)), "no growing backoff"
            await check_first(rec)


_CHILD = """
import asyncio, os, sys
from tests.session.e2e.session_e2e_helpers import FIRST, CONFIG, FAST_WATCHDOGS, Recorder
from tunnelproof.session import LiveSession, app_events as ev
from tunnelproof.session.credentials import Credential
from tunnelproof.session.stores import SqliteHandleStore

class Emu:
    http_base, ws_base, api_key = sys.argv[1], sys.argv[2], sys.argv[3]

async def main():
    from tests.session.e2e.session_e2e_helpers import EmulatorMint
    store = SqliteHandleStore(sys.argv[4])
    session = LiveSession(CONFIG, EmulatorMint(Emu), conversation_id="conv-1",
                          handle_store=store, watchdogs=FAST_WATCHDOGS)
    await session.start()
    rec = Recorder(session)
    await rec.wait(ev.Connected)
    await rec.ask(FIRST)
    probe = SqliteHandleStore(sys.argv[4])
    for _ in range(500):
        stored = await probe.load("conv-1", now_wall=__import__("time").time())
        if stored is not None and stored.handle == session.resumption_handle:
            print("saved", flush=True)
            os._exit(0)  # a crash: no close frame, no cleanup
        await asyncio.sleep(0.02)
    os._exit(3)

asyncio.run(main())
"""


async def test_process_restart_resumes_from_the_sqlite_store(tmp_path: Path) -> None:
    db = tmp_path / "handles.db"
    async with EmulatorServer(policy=fast_policy()) as emu:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(__file__).parents[3]), env.get("PYTHONPATH", "")]
        )
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD,
            emu.http_base,
            emu.ws_base,
            emu.api_key,
            str(db),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(child.communicate(), 60)
        finally:
            if child.returncode is None:
                child.kill()
        assert child.returncode == 0, err.decode()[-2000:]
        assert b"saved" in out
        # the restarted app: same conversation id, same store file
        store = SqliteHandleStore(db)
        async with LiveSession(
            CONFIG,
            EmulatorMint(emu),
            conversation_id="conv-1",
            handle_store=store,
            watchdogs=FAST_WATCHDOGS,
        ) as session:
            rec = Recorder(session)
            first = await rec.wait(lambda e: isinstance(e, ev.Resumed | ev.Connected))
            assert isinstance(first, ev.Resumed), first
            answer = await rec.ask(ASK_FIRST)
            assert answer == EXPECTED_FIRST
            assert not rec.of(ev.ContextReset)
        await store.close()
