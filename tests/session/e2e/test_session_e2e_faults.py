"""End-to-end: LiveSession through the emulator's faults. Each test ends by asking the
assistant what was said first: the proof that the context survived."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest

from tunnelproof.emulator import EmulatorPolicy, EmulatorServer
from tunnelproof.protocol.client_messages import FunctionResponse
from tunnelproof.protocol.config import FunctionDeclaration, LiveConfig
from tunnelproof.session import LiveSession
from tunnelproof.session import app_events as ev
from tunnelproof.session.credentials import Credential, TokenOffline
from tunnelproof.session.policy import Watchdogs

from .session_e2e_helpers import (
    ASK_FIRST,
    CONFIG,
    FAST_WATCHDOGS,
    FIRST,
    EmulatorMint,
    Recorder,
    check_first,
    fast_policy,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


@asynccontextmanager
async def running(
    policy: EmulatorPolicy | None = None,
    config: LiveConfig = CONFIG,
    watchdogs: Watchdogs = FAST_WATCHDOGS,
    **kwargs: object,
) -> AsyncIterator[tuple[EmulatorServer, LiveSession, Recorder]]:
    async with EmulatorServer(policy=policy or fast_policy()) as emu:
        source = kwargs.pop("token_source", None) or EmulatorMint(emu)
        async with LiveSession(
            config,
            source,  # type: ignore[arg-type]
            watchdogs=watchdogs,
            rng=random.Random(7),
            **kwargs,  # type: ignore[arg-type]
        ) as session:
            rec = Recorder(session)
            await rec.wait(ev.Connected)
            answer = await rec.ask(FIRST)
            assert "teal" in answer
            # wait for the handle that includes the first turn
            for _ in range(100):
                if session.last_turn_held:
                    break
                await asyncio.sleep(0.02)
            yield emu, session, rec


async def test_drop_during_generation_reports_the_cut_off_turn() -> None:
    async with running() as (emu, session, rec):
        emu.controls.set_generation_speed(0.2)
        mark = rec.mark()
        await session.send_text("Please count to 200.")
        await rec.wait(ev.OutputTranscript, since=mark)
        emu.controls.abort_connection()
        emu.controls.set_generation_speed(0)
        rewound = await rec.wait(ev.Rewound, since=mark)
        assert isinstance(rewound, ev.Rewound)
        # replayed (not in the resumed state), so the answer comes: not lost
        assert not rewound.reply_lost and rewound.partial_text.startswith("1")
        resumed = await rec.wait(ev.Resumed, since=mark)
        assert isinstance(resumed, ev.Resumed) and resumed.replayed == 1
        # the question was not in the resumed state: it was replayed and is answered anew
        await rec.wait(ev.TurnComplete)
        history = [e["text"] for e in emu.controls.history() if e["role"] == "user"]
        assert history.count("Please count to 200.") == 1
        await check_first(rec)


async def test_drop_during_a_pending_tool_call_cancels_it() -> None:
    config = LiveConfig(
        tools=(FunctionDeclaration("turn_on_the_lights", "Turns on the lights."),),
    )
    async with running(config=config) as (emu, session, rec):
        mark = rec.mark()
        await session.send_text("Please turn on the lights.")
        call = await rec.wait(ev.ToolCallRequested, since=mark)
        assert isinstance(call, ev.ToolCallRequested)
        first_id = call.calls[0].id
        emu.controls.abort_connection()
        rewound = await rec.wait(ev.Rewound, since=mark)
        assert isinstance(rewound, ev.Rewound)
        assert first_id in rewound.cancelled_tool_call_ids
        late = await session.send_tool_response(
            [FunctionResponse(first_id, "turn_on_the_lights", {"result": "on"})]
        )
        assert late.dropped, "never answered into a session that never saw the call"
        await rec.wait(ev.Resumed, since=mark)
        # the question was replayed, so the resumed session asks again with a new id
        again = await rec.wait(ev.ToolCallRequested)
        assert isinstance(again, ev.ToolCallRequested)
        assert again.calls[0].id != first_id
        answered = rec.mark()
        result = await session.send_tool_response(
            [FunctionResponse(again.calls[0].id, "turn_on_the_lights", {"result": "on"})]
        )
        assert result.sent
        await rec.wait(ev.TurnComplete, since=answered)
        assert "turn_on_the_lights tool says" in rec.answer_since(answered)
        await check_first(rec)


async def test_go_away_at_a_turn_boundary_hands_over_without_overlap() -> None:
    async with running() as (emu, session, rec):
        mark = rec.mark()
        await emu.controls.send_go_away(time_left=20.0)
        go_away = await rec.wait(ev.GoAwayReceived, since=mark)
        assert isinstance(go_away, ev.GoAwayReceived)
        await rec.wait(ev.Resumed, since=mark, timeout=10)
        first_conn = emu.controls.connections()[0]
        assert first_conn["closed_by"] == "client" and first_conn["close_code"] == 1000
        assert session.metrics.planned_handovers == 1
        assert session.metrics.server_failures == 0, "no refused resume: never two sockets"
        disconnected = rec.of(ev.Disconnected)[-1]
        assert disconnected.planned
        await check_first(rec)
        assert not rec.of(ev.Rewound)


async def test_go_away_deadline_during_a_long_answer() -> None:
    async with running() as (emu, session, rec):
        emu.controls.set_generation_speed(0.2)
        mark = rec.mark()
        await session.send_text("Please count to 300.")
        await rec.wait(ev.OutputTranscript, since=mark)
        await emu.controls.send_go_away(time_left=2.5)  # margin 1 s: handover at ~1.5 s
        await rec.wait(ev.GoAwayReceived, since=mark)
        rewound = await rec.wait(ev.Rewound, since=mark, timeout=10)
        # the question is not in the resumed state: it is replayed, so its answer comes
        assert isinstance(rewound, ev.Rewound) and not rewound.reply_lost
        emu.controls.set_generation_speed(0)
        await rec.wait(ev.Resumed, since=mark, timeout=10)
        assert emu.controls.connections()[0]["closed_by"] == "client", "before the server's close"
        await rec.wait(ev.TurnComplete)  # the replayed question's new answer
        await check_first(rec)


async def test_1011_is_retried_and_resumed() -> None:
    async with running() as (emu, _session, rec):
        mark = rec.mark()
        await emu.controls.close_connection(code=1011, reason="Internal error occurred.")
        reconnecting = await rec.wait(ev.Reconnecting, since=mark)
        assert isinstance(reconnecting, ev.Reconnecting) and reconnecting.kind == "server"
        await rec.wait(ev.Resumed, since=mark)
        await check_first(rec)


async def test_refused_resumes_fall_back_to_a_fresh_session_reseeded() -> None:
    # A stale socket is waited out for stale_socket_wait; 2 s here keeps the test short.
    async with running(watchdogs=replace(FAST_WATCHDOGS, stale_socket_wait=2.0)) as (
        emu,
        session,
        rec,
    ):
        mark = rec.mark()
        # 1011 each time, for longer than a stale socket lasts: then a fresh session
        emu.controls.refuse_resumes(100)
        emu.controls.abort_connection()
        reset = await rec.wait(ev.ContextReset, since=mark, timeout=30)
        assert isinstance(reset, ev.ContextReset) and reset.seeded_turns >= 2
        await rec.wait(ev.Connected, since=mark)
        assert session.metrics.fresh_session_fallbacks == 1
        await check_first(rec)


async def test_a_resume_that_restored_nothing_is_repaired_by_reseed() -> None:
    """Google has accepted resumes that restored nothing ("greets afresh", reference §10).
    The session cannot see it; the app can, and ``reseed()`` brings the context back."""
    async with running() as (emu, session, rec):
        mark = rec.mark()
        emu.controls.forget_resumes(1)
        emu.controls.abort_connection()
        await rec.wait(ev.Resumed, since=mark)
        forgot = await rec.ask(ASK_FIRST)
        assert "teal" not in forgot  # the fault: accepted, nothing restored, no event says so
        mark = rec.mark()
        await session.reseed()
        reset = await rec.wait(ev.ContextReset, since=mark, timeout=30)
        assert isinstance(reset, ev.ContextReset) and reset.seeded_turns >= 2
        assert "asked" in reset.reason
        await check_first(rec)


async def test_resume_refused_with_1007_starts_fresh_at_once() -> None:
    async with running() as (emu, _session, rec):
        mark = rec.mark()
        emu.controls.refuse_resumes(1, code=1007, reason="Request contains an invalid argument.")
        emu.controls.abort_connection()
        await rec.wait(ev.ContextReset, since=mark)
        await check_first(rec)


async def test_expired_handle_starts_a_fresh_session_from_the_transcript() -> None:
    policy = fast_policy(handle_validity=0.5)
    gate = asyncio.Event()
    gate.set()

    class GatedMint:
        def __init__(self, inner: EmulatorMint) -> None:
            self.inner = inner

        async def __call__(self) -> Credential:
            if not gate.is_set():
                raise TokenOffline("tunnel")
            return await self.inner()

    async with (
        EmulatorServer(policy=policy) as emu,
        LiveSession(CONFIG, GatedMint(EmulatorMint(emu)), watchdogs=FAST_WATCHDOGS) as session,
    ):
        rec = Recorder(session)
        await rec.wait(ev.Connected)
        await rec.ask(FIRST)
        for _ in range(100):
            if session.last_turn_held:
                break
            await asyncio.sleep(0.02)
        mark = rec.mark()
        gate.clear()  # a tunnel longer than the handle's validity
        emu.controls.abort_connection()
        await rec.wait(ev.Disconnected, since=mark)
        await asyncio.sleep(1.0)
        gate.set()
        reset = await rec.wait(ev.ContextReset, since=mark, timeout=20)
        assert isinstance(reset, ev.ContextReset)
        await check_first(rec)


async def test_slow_or_missing_pongs_raise_no_false_alarm() -> None:
    async with running() as (emu, session, rec):
        emu.controls.set_pongs(withhold=True)
        await asyncio.sleep(2.5)
        assert session.state == "connected"
        assert not rec.of(ev.Disconnected)
        assert emu.controls.events(kind="ping") == [], "the client sends no WebSocket pings"
        await check_first(rec)


async def test_connection_lifetime_goaways_hand_over_again_and_again() -> None:
    # A "10-minute" connection in 2.5 s: the server sends goAway 1.5 s before its cap.
    policy = fast_policy(connection_lifetime=2.5, go_away_lead=1.5)
    async with running(policy=policy) as (emu, session, rec):
        for n in range(6):
            await rec.ask(f"Note number {n}.")
            await asyncio.sleep(0.4)
        await check_first(rec)
        metrics = session.metrics
        assert metrics.planned_handovers >= 2, metrics
        assert metrics.server_failures == 0, metrics
        assert metrics.fresh_session_fallbacks == 0
        assert not rec.of(ev.ContextReset)
        closes = [c["close_code"] for c in emu.controls.connections() if c["close_code"]]
        assert 1011 not in closes, "we always left before the server's deadline close"
