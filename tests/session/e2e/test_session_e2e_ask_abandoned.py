"""An ``ask`` that timed out or was cancelled must not shift every later answer by one.

Found by the hostile pass: after ``ask(..., timeout=0.5)`` expired mid-answer, the next
``ask`` returned the rest of that stale turn (cut short by its own question's barge-in,
often empty) and every later ``ask`` the answer to the question *before* its own, for
the rest of the session. Now an abandoned ask's turn is read and skipped by the next ask
(or continued by ``collect_answer``).
"""

from __future__ import annotations

import asyncio

import pytest

from tunnelproof.emulator import EmulatorPolicy, EmulatorServer
from tunnelproof.session import AnswerTimeout, LiveSession, collect_answer

from .session_e2e_helpers import CONFIG, FAST_WATCHDOGS, EmulatorMint

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

# Paced answers (20 ms of audio per word, real time) so that "count to 40" is still
# being spoken when the short timeout expires.
PACED = EmulatorPolicy(seconds_per_word=0.02, generation_speed=1.0)
LONG = "count to 40"
LONG_ANSWER = ", ".join(str(n) for n in range(1, 41)) + "."


async def test_the_ask_after_a_timed_out_ask_gets_its_own_answer() -> None:
    async with (
        EmulatorServer(policy=PACED) as emu,
        LiveSession(CONFIG, EmulatorMint(emu), watchdogs=FAST_WATCHDOGS) as session,
    ):
        await session.ask("My name is Ada.", timeout=20)
        with pytest.raises(AnswerTimeout) as timed_out:
            await session.ask(LONG, timeout=0.25)
        assert timed_out.value.partial  # it was cut mid-answer
        assert (await session.ask("What is my name?", timeout=20)).text == "Your name is Ada."
        turns = await session.ask("How many turns?", timeout=20)
        assert turns.text == "You have taken 4 turns so far."


async def test_the_ask_after_a_cancelled_ask_gets_its_own_answer() -> None:
    async with (
        EmulatorServer(policy=PACED) as emu,
        LiveSession(CONFIG, EmulatorMint(emu), watchdogs=FAST_WATCHDOGS) as session,
    ):
        task = asyncio.create_task(session.ask(LONG, timeout=20))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        answer = await session.ask("What did I say first?", timeout=20)
        assert answer.text == f'You first said: "{LONG}".'
        assert not answer.interrupted


async def test_collect_answer_after_a_timeout_returns_the_rest_of_that_answer() -> None:
    # AnswerTimeout says "the rest of the turn stays in the stream": collect it.
    async with (
        EmulatorServer(policy=PACED) as emu,
        LiveSession(CONFIG, EmulatorMint(emu), watchdogs=FAST_WATCHDOGS) as session,
    ):
        with pytest.raises(AnswerTimeout):
            await session.ask(LONG, timeout=0.25)
        rest = await collect_answer(session, timeout=20)
        assert rest.text == LONG_ANSWER  # from its start: the ask's part is kept
        assert (await session.ask("hello", timeout=20)).text == 'You said: "hello".'
