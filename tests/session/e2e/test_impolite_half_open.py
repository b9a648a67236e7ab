"""Symptom 8 with a real half-open socket (issue 13): a kernel blackhole, the client in a
network namespace.

The tunnel proxy cannot show this: its reset reaches the emulator, which then frees the
session at once. Here the client's sockets live in a network namespace joined to the host
by a veth pair, and nftables drops every packet on it in both directions
(:class:`~tunnelproof.testing.netns.NetnsTunnel`). Nothing is closed and nothing answers,
so when the client's watchdogs declare the link dead and it gives up its socket, the
emulator (on the host end) still holds the session's old socket, open and silent. The
resume after the blackhole is refused with 1011 while that socket looks alive, exactly as
Google refuses it (sip-to-ai#14), until the emulator's takeover rule finds it dead
(``resume_takeover_idle`` + a probe ping; docs/emulator.md, assumption 27). The client must
wait that out (``Watchdogs.stale_socket_wait``) and resume the same context instead of
giving the handle up for a fresh, re-seeded session.

Needs root, ``ip`` and ``nft``; skipped with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tunnelproof.emulator import EmulatorPolicy
from tunnelproof.session import app_events as ev
from tunnelproof.session import sockets as session_sockets
from tunnelproof.session.policy import Watchdogs
from tunnelproof.testing.netns import NetnsTunnel, netns_available

from .session_e2e_helpers import check_context, live_stack, transcript_since

pytestmark = [pytest.mark.e2e, pytest.mark.netns, pytest.mark.timeout(90)]

# Dead links found in about 2-3 s (the defaults take 5-30 s; the rules are the same).
QUICK_DEATH = Watchdogs(
    token_timeout=5.0,
    connect_timeout=5.0,
    probe_connect_timeout=1.5,
    setup_timeout=5.0,
    reply_timeout=1.5,
    link_check_timeout=1.0,
    unacked_dead_after=1.5,
    tcp_user_timeout=2.5,
    stale_socket_wait=8.0,
    close_timeout=1.0,
    go_away_margin=1.0,
)
BLACKHOLE_S = 5.0
# Google's takeover of a silent socket, scaled down: the old socket has been silent for
# about BLACKHOLE_S when the first resume arrives, so it is still "alive" then and the
# resume is refused; it counts as dead only TAKEOVER_IDLE after its last frame.
TAKEOVER = EmulatorPolicy(generation_speed=0, resume_takeover_idle=7.0, resume_probe_timeout=0.5)
TURNS = "How many turns have I taken?"


@pytest.fixture
def inside(monkeypatch: pytest.MonkeyPatch) -> Iterator[NetnsTunnel]:
    """A network namespace that every socket the session opens is created in.

    The session opens each socket with ``websockets.asyncio.client.connect``; here that is
    handed a TCP socket connected from inside the namespace (a socket belongs to the
    namespace it was created in), so every reconnect goes through the veth too. The rest
    of the client is untouched.
    """
    available, reason = netns_available()
    if not available:
        pytest.skip(reason)
    ns = NetnsTunnel().start()
    real_connect = session_sockets.connect

    async def connect_inside(url: str, *, open_timeout: float, **kwargs: Any) -> Any:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + open_timeout
        sock = await ns.connect(parts.hostname, parts.port, timeout=open_timeout)
        try:
            left = max(0.1, deadline - loop.time())
            return await real_connect(url, sock=sock, open_timeout=left, **kwargs)
        except BaseException:
            sock.close()
            raise

    monkeypatch.setattr(session_sockets, "connect", connect_inside)
    try:
        yield ns
    finally:
        ns.stop()


def turns_answered(text: str) -> list[int]:
    """The counts in every "You have taken N turns so far." of ``text``."""
    return [int(n) for n in re.findall(r"You have taken (\d+) turns so far", text)]


async def test_blackhole_with_a_lingering_half_open_socket_resumes_the_same_context(
    inside: NetnsTunnel,
) -> None:
    """The link dies in a kernel blackhole while a question is on its way. The client finds
    the dead link, the blackhole lifts, the emulator refuses the resume (1011: the old
    socket is still open), the client waits it out: ``Resumed``, not ``ContextReset``, and
    the question asked in the blackhole is answered exactly once (the model counts it
    once)."""
    async with live_stack(TAKEOVER, host=inside.host_address, watchdogs=QUICK_DEATH, seed=8) as s:
        assert s.emu.controls.connections(), "the session connected through the namespace"
        mark = s.rec.mark()
        inside.blackhole()
        blackholed_at = time.monotonic()
        asked = await s.session.send_text(TURNS)  # on its way when the link dies
        assert asked.sent
        gone = await s.rec.wait(ev.Disconnected, since=mark, timeout=BLACKHOLE_S)
        assert isinstance(gone, ev.Disconnected) and not gone.planned
        await asyncio.sleep(max(0.0, BLACKHOLE_S - (time.monotonic() - blackholed_at)))
        inside.restore()
        resumed = await s.rec.wait(
            lambda e: isinstance(e, ev.Resumed | ev.ContextReset | ev.Failed),
            since=mark,
            timeout=25,
        )
        refused = s.emu.controls.events(kind="resume_refused")
        assert any(e.get("problem") == "still_open" for e in refused), (
            "the emulator never refused a resume: no half-open socket lingered",
            refused,
        )
        assert isinstance(resumed, ev.Resumed), (
            f"the handle was given up: {resumed}",
            [type(e).__name__ for e in s.rec.log[mark:]],
        )
        # the question asked into the blackhole: answered once, and the model saw it once
        deadline = time.monotonic() + 15
        while not turns_answered(transcript_since(s.rec, mark)):
            assert time.monotonic() < deadline, transcript_since(s.rec, mark)
            await s.rec.wait(ev.TurnComplete, since=s.rec.mark(), timeout=15)
        await asyncio.sleep(0.5)  # a second answer would follow at once
        assert turns_answered(transcript_since(s.rec, mark)) == [2], transcript_since(s.rec, mark)
        assert not s.rec.of(ev.ContextReset) and not s.rec.of(ev.Failed)
        assert not [e for e in s.rec.of(ev.SendDropped) if asked.seq in e.seqs]
        heard = [e for e in s.emu.controls.events(kind="user_text") if e.get("text") == TURNS]
        assert len(heard) == 1, heard
        await check_context(s.rec)
