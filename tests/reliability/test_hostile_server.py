"""A hostile server, end to end against ``LiveSession``: garbage, wrong types, a frame too
big, a flood, and a server that never stops. The client must report clear errors, recover
or fail cleanly, never hang, never crash, and keep its memory bounded."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tunnelproof.emulator import EmulatorPolicy, EmulatorServer
from tunnelproof.emulator.hostile import HostileKind, HostileMode, HostilePlan, frames_for
from tunnelproof.protocol.config import LiveConfig
from tunnelproof.session import LiveSession, RetryPolicy, Watchdogs
from tunnelproof.session import app_events as ev
from tunnelproof.session.credentials import Credential

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CONFIG = LiveConfig()  # spoken answers; the text is their transcript
FIRST = "My favourite colour is teal."
WATCHDOGS = Watchdogs(
    token_timeout=5.0,
    connect_timeout=5.0,
    probe_connect_timeout=2.0,
    setup_timeout=5.0,
    reply_timeout=3.0,
    close_timeout=1.0,
)


class Mint:
    """One fresh single-use token per call, straight from the emulator."""

    def __init__(self, emu: EmulatorServer) -> None:
        self.emu = emu

    async def __call__(self) -> Credential:
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.post(
                f"{self.emu.http_base}/v1alpha/auth_tokens",
                headers={"x-goog-api-key": self.emu.api_key},
                json={"uses": 1},
            )
        response.raise_for_status()
        import time

        now = time.time()
        return Credential(
            kind="ephemeral_token",
            secret=response.json()["name"],
            ws_base=self.emu.ws_base,
            expires_at=now + 1800,
            new_session_expires_at=now + 60,
        )


class App:
    """Consumes every event (as an app must) and answers questions."""

    def __init__(self, session: LiveSession) -> None:
        self.session = session
        self.log: list[ev.AppEvent] = []
        self.turns: list[str] = []
        self._partial: list[str] = []
        self._changed = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in self.session:
            self.log.append(event)
            if isinstance(event, ev.OutputTranscript):
                self._partial.append(event.text)
            elif isinstance(event, ev.TurnComplete):
                self.turns.append("".join(self._partial).strip())
                self._partial.clear()
            elif isinstance(event, ev.Rewound):
                self._partial.clear()
            self._changed.set()

    async def until(self, predicate: Any, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.log if isinstance(e, kind)]

    async def ask(self, text: str, timeout: float = 20.0) -> str:
        mark = len(self.turns)
        result = await self.session.send_text(text)
        assert not result.dropped, result
        await self.until(lambda: len(self.turns) > mark, timeout)
        # The handle holding this turn comes tens of ms after turnComplete (as Google's):
        # an attack before it would replay the question and answer it twice.
        for _ in range(200):
            if self.session.last_turn_held:
                break
            await asyncio.sleep(0.01)
        return self.turns[mark]


@asynccontextmanager
async def talking(
    policy: RetryPolicy | None = None,
    watchdogs: Watchdogs = WATCHDOGS,
    **session_kwargs: Any,
) -> AsyncIterator[tuple[EmulatorServer, LiveSession, App]]:
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    try:
        async with EmulatorServer(
            EmulatorPolicy(seconds_per_word=0.02, audio_chunk_duration=0.02)
        ) as emu:
            session = LiveSession(
                CONFIG,
                Mint(emu),
                watchdogs=watchdogs,
                policy=policy,
                rng=random.Random(3),
                **session_kwargs,
            )
            async with session:
                app = App(session)
                await app.until(lambda: bool(app.of(ev.Connected)))
                assert await app.ask(FIRST) == f'You said: "{FIRST}".'
                await app.until(lambda: session.resumption_handle is not None, 5.0)
                yield emu, session, app
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(app.task, 5.0)
        assert app.task.done(), "the event stream did not end after close()"
    finally:
        loop.set_exception_handler(None)
    assert not unhandled, unhandled


async def test_garbage_and_wrong_types_are_reported_and_the_session_carries_on() -> None:
    plan = HostilePlan(kinds=(HostileKind.GARBAGE, HostileKind.WRONG_TYPES), frames=30)
    async with talking() as (emu, session, app):
        report = await HostileMode(emu).attack(plan=plan)
        assert report.completed and report.socket_open_after
        sent = sum(report.sent.values())
        assert sent == 60
        await app.until(lambda: len(app.of(ev.ProtocolViolation)) >= sent, 10.0)
        violations = app.of(ev.ProtocolViolation)
        assert len(violations) == sent  # one clear event per bad frame, no more
        assert all(v.message and v.size for v in violations)
        assert session.metrics.protocol_errors == sent
        # Nothing was dropped, no reconnect was needed, and the conversation goes on.
        assert not app.of(ev.Disconnected)
        assert await app.ask("What did I say first?") == f'You first said: "{FIRST}".'


async def test_a_frame_too_big_is_refused_and_the_session_resumes() -> None:
    plan = HostilePlan(kinds=(HostileKind.HUGE,), huge_bytes=3 * 1024 * 1024)
    async with talking(max_frame_bytes=1024 * 1024) as (emu, _session, app):
        await HostileMode(emu).attack(plan=plan)
        await app.until(lambda: bool(app.of(ev.Resumed)), 15.0)
        assert len(app.of(ev.Disconnected)) == 1
        # The client refused the frame with 1009 (message too big) instead of buffering it.
        closed = [c for c in emu.controls.connections() if c["close_code"] is not None]
        assert closed and closed[0]["close_code"] == 1009, closed
        assert await app.ask("What did I say first?") == f'You first said: "{FIRST}".'


async def test_a_frame_too_big_is_reported_clearly() -> None:
    """Found here: the client's own 1009 close used to surface as Disconnected(None, "")."""
    plan = HostilePlan(kinds=(HostileKind.HUGE,), huge_bytes=3 * 1024 * 1024)
    async with talking(max_frame_bytes=1024 * 1024) as (emu, _session, app):
        await HostileMode(emu).attack(plan=plan)
        await app.until(lambda: bool(app.of(ev.Resumed)), 15.0)
        (gone,) = app.of(ev.Disconnected)
        assert gone.code == 1009 or "1009" in gone.reason or "too big" in gone.reason, gone


async def test_a_flood_is_absorbed_with_bounded_memory_and_no_hang() -> None:
    frames = 20_000
    async with talking() as (emu, _session, app):
        import resource

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        report = await HostileMode(emu).attack(
            plan=HostilePlan(kinds=(HostileKind.FLOOD,), flood_frames=frames)
        )
        assert report.sent["flood"] == frames
        await app.until(lambda: len(app.of(ev.UnknownServerMessage)) >= frames, 60.0)
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        assert grown_mb < 200, grown_mb
        # Still responsive right after, on the same connection.
        assert await app.ask("What did I say first?", timeout=20) == f'You first said: "{FIRST}".'
        assert not app.of(ev.Disconnected)


async def test_a_server_that_only_sends_garbage_ends_in_a_clean_failure() -> None:
    # Every connection, after its setupComplete, gets garbage and never an answer: the
    # reply watchdog finds it (garbage is neither a reply nor a sign of a healthy server),
    # the client reconnects, meets the same server, and gives up after its cap with a
    # Failed event. No hang, no loop.
    policy = RetryPolicy(base_delay=0.1, max_delay=0.3, max_attempts_per_outage=3, stable_after=60)
    plan = HostilePlan(kinds=(HostileKind.GARBAGE,), frames=2_000, pause=0.005)
    # Each garbage-only connection costs one reply timeout (no answer ever comes), so a
    # short one keeps the four of them quick; the link check it starts is the same.
    fast = dataclasses.replace(WATCHDOGS, reply_timeout=0.8)
    async with talking(policy=policy, watchdogs=fast) as (emu, session, app):
        emu.controls.set_generation_speed(0.0001)  # answers never really come
        async with HostileMode(emu, plan, every_connection=True):
            await session.send_text("Please count to 50.")
            # Silence alone never ends a healthy link (a model may think for minutes):
            # drop the quiet one, so every later connection is a garbage-only one.
            emu.controls.abort_connection()
            await app.until(lambda: bool(app.of(ev.Failed)), 45.0)
        (failed,) = app.of(ev.Failed)
        assert "gave up" in failed.verdict.reason and failed.advice
        assert session.state.value == "failed"
        assert session.metrics.protocol_errors > 0
        assert session.metrics.dead_links_detected >= 3


def test_plans_are_deterministic_and_sized_as_asked() -> None:
    plan = HostilePlan(kinds=tuple(HostileKind), frames=5, huge_bytes=10_000, flood_frames=7)
    first = list(frames_for(plan))
    assert first == list(frames_for(plan))
    kinds = [k for k, _ in first]
    assert kinds.count(HostileKind.GARBAGE) == 5 and kinds.count(HostileKind.FLOOD) == 7
    (huge,) = [f for k, f in first if k is HostileKind.HUGE]
    assert len(huge) == 10_000
