"""``session.ask``: the answer as text from a real session, through drops, failures, close."""

from __future__ import annotations

import asyncio
import random

import pytest

from tunnelproof.emulator import EmulatorServer
from tunnelproof.session import (
    AnswerClosed,
    AnswerFailed,
    LiveSession,
    OutputTranscript,
    Rewound,
    collect_answer,
)

from .session_e2e_helpers import (
    ASK_FIRST,
    CONFIG,
    EXPECTED_FIRST,
    FAST_WATCHDOGS,
    FIRST,
    TEXT_CONFIG,
    EmulatorMint,
    fast_policy,
    text_policy,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


async def _wait_for_handle(session: LiveSession) -> None:
    for _ in range(200):
        if session.last_turn_held:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("no resumable handle arrived")


async def test_ask_returns_the_spoken_answer_as_text_and_audio() -> None:
    async with (
        EmulatorServer(policy=fast_policy()) as emu,
        LiveSession(CONFIG, EmulatorMint(emu), watchdogs=FAST_WATCHDOGS) as session,
    ):
        first = await session.ask(FIRST, timeout=20)
        assert first.text == f'You said: "{FIRST}".'
        assert session.last_turn_held, "ask() returns once the turn's handle arrived"
        assert len(first.audio) > 0 and len(first.audio) % 2 == 0
        again = await session.ask(ASK_FIRST, timeout=20)
        assert again.text == EXPECTED_FIRST


async def test_ask_in_text_mode_reads_the_model_text() -> None:
    # Text mode exists only on the emulator's own text model; ask() reads TextDelta there.
    async with (
        EmulatorServer(policy=text_policy()) as emu,
        LiveSession(TEXT_CONFIG, EmulatorMint(emu), watchdogs=FAST_WATCHDOGS) as session,
    ):
        answer = await session.ask(FIRST, timeout=20)
        assert answer.text == f'You said: "{FIRST}".' and answer.audio == b""


async def test_an_answer_cut_by_a_drop_is_given_anew_after_the_resume() -> None:
    async with (
        EmulatorServer(policy=fast_policy()) as emu,
        LiveSession(
            CONFIG, EmulatorMint(emu), watchdogs=FAST_WATCHDOGS, rng=random.Random(4)
        ) as session,
    ):
        await session.ask(FIRST, timeout=20)
        await _wait_for_handle(session)
        emu.controls.set_generation_speed(0.2)  # 100 ms a word: time to cut it
        await session.send_text("Please count to 40.")
        async with asyncio.timeout(20):
            async for event in session:
                if isinstance(event, OutputTranscript):
                    break  # the first spoken words: now the link dies
        emu.controls.abort_connection()
        emu.controls.set_generation_speed(0)
        answer = await collect_answer(session, timeout=30)
        assert answer.text == ", ".join(str(n) for n in range(1, 41)) + "."
        assert answer.restarts == 1
        # the question was replayed (reasked): the answer came, so it was not lost
        assert any(isinstance(e, Rewound) and e.reasked and not e.reply_lost for e in answer.events)
        assert session.metrics.reconnects == 1


async def test_a_failed_session_ends_the_wait_with_the_advice() -> None:
    async with (
        EmulatorServer(policy=fast_policy()) as emu,
        LiveSession(CONFIG, EmulatorMint(emu), watchdogs=FAST_WATCHDOGS) as session,
    ):
        await session.ask(FIRST, timeout=20)
        emu.controls.set_generation_speed(0.05)
        asked = asyncio.create_task(session.ask("Please count to 100.", timeout=30))
        await asyncio.sleep(0.3)
        reason = "models/gemini-3.8-live is not found for API version v1alpha"
        await emu.controls.close_connection(code=1008, reason=reason)
        with pytest.raises(AnswerFailed) as raised:
            await asked
        assert "gemini" in raised.value.advice


async def test_closing_the_session_ends_a_pending_collect() -> None:
    async with EmulatorServer(policy=fast_policy()) as emu:
        session = LiveSession(CONFIG, EmulatorMint(emu), watchdogs=FAST_WATCHDOGS)
        await session.start()
        collecting = asyncio.create_task(collect_answer(session))  # no question: waits
        await asyncio.sleep(0.3)
        await session.close()
        with pytest.raises(AnswerClosed):
            await asyncio.wait_for(collecting, 10)
