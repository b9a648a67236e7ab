"""Ten tasks of one app sending through drops (issue 13, symptom 1's "ten tasks" variant).

Nine asyncio tasks send text questions without waiting for answers, a tenth streams
speech, all at once, over a 100-300 ms link, while the link is reset three times and
blackholed once, overlapping with answers. Nothing may be lost silently: every text is
delivered (``Delivered``; the server read it), refused at once (``SendResult.dropped``),
reported (``SendDropped``) or handed back to ask again (``Rewound.unanswered``); every
audio chunk is delivered or reported; no question is answered twice without a
``Rewound(reasked=True)`` announcing it; and the model keeps the conversation's context
(no ``ContextReset``, what was said first is still known).

The emulator answers ``You said: "<text>".``, so each answer names its question. Questions
that pile up interrupt each other's answers (a new turn cuts the answer in progress, as
Google's does), so a delivered question is not always answered: delivered is the verdict.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time

import pytest

from tunnelproof.emulator import encode_speech, silence
from tunnelproof.session import LiveSession
from tunnelproof.session import app_events as ev
from tunnelproof.session.outbox import SendResult
from tunnelproof.session.policy import Watchdogs

from .impolite_helpers import CHUNK, CHUNK_MS
from .session_e2e_helpers import (
    LiveRecorder,
    check_context,
    fast_policy,
    live_stack,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

TEXT_TASKS = 9
MESSAGES_PER_TASK = 3
# A blackhole behind the proxy is found by the reply watchdog and a link check: short
# here so the test takes seconds; generous enough for a 600 ms round trip.
WATCHDOGS = Watchdogs(
    token_timeout=5.0,
    connect_timeout=5.0,
    probe_connect_timeout=2.0,
    setup_timeout=5.0,
    reply_timeout=2.0,
    link_check_timeout=1.5,
    stale_socket_wait=6.0,
    close_timeout=1.0,
    go_away_margin=1.0,
)
DROPS = [(0.8, "reset"), (2.2, "reset"), (4.0, "blackhole"), (9.0, "restore"), (10.0, "reset")]


def question(task: int, n: int) -> str:
    return f"Task {task} message {n}."


def answer_to(text: str) -> str:
    return f'You said: "{text}".'


async def text_task(
    session: LiveSession, task: int, rng: random.Random, sent: dict[str, SendResult]
) -> None:
    """Send MESSAGES_PER_TASK questions, 0.4-2.6 s apart, never waiting for answers."""
    for n in range(MESSAGES_PER_TASK):
        await asyncio.sleep(rng.uniform(0.4, 2.6))
        text = question(task, n)
        sent[text] = await session.send_text(text)


async def audio_task(session: LiveSession, seqs: list[int]) -> None:
    """Speak three sentences in 20 ms chunks at real time (a microphone)."""
    pcm = b"".join(encode_speech(f"the tenth task says {w}") + silence(0.8) for w in "abc")
    loop = asyncio.get_running_loop()
    start = loop.time()
    for index in range(0, len(pcm), CHUNK):
        seqs.append((await session.send_audio(pcm[index : index + CHUNK])).seq)
        due = start + (index // CHUNK + 1) * CHUNK_MS / 1000
        await asyncio.sleep(max(0.0, due - loop.time()))


def answers_by_stretch(log: list[ev.AppEvent]) -> tuple[list[ev.Rewound], list[str]]:
    """The Rewound events, and the model's transcript between them (one more stretch)."""
    rewinds: list[ev.Rewound] = []
    stretches = [""]
    for event in log:
        if isinstance(event, ev.Rewound):
            rewinds.append(event)
            stretches.append("")
        elif isinstance(event, ev.OutputTranscript):
            stretches[-1] += event.text
    return rewinds, stretches


def verdicts(rec: LiveRecorder) -> tuple[set[int], set[int], set[str]]:
    """(delivered seqs, dropped seqs, texts handed back by ``Rewound.unanswered``)."""
    delivered = {q for e in rec.of(ev.Delivered) for q in e.seqs}
    dropped = {q for e in rec.of(ev.SendDropped) for q in e.seqs}
    unanswered = {t for e in rec.of(ev.Rewound) for t in e.unanswered}
    return delivered, dropped, unanswered


async def test_ten_tasks_sending_through_drops_lose_nothing_silently() -> None:
    async with live_stack(fast_policy(), tunnel=True, watchdogs=WATCHDOGS, seed=10) as s:
        rec = s.rec
        s.tunnel.latency(200, jitter_ms=100)  # 100-300 ms each way
        mark = rec.mark()
        rng = random.Random(10)
        sent: dict[str, SendResult] = {}
        audio_seqs: list[int] = []
        chaos = s.tunnel.schedule(DROPS)
        tasks = [
            asyncio.create_task(text_task(s.session, t, random.Random(rng.random()), sent))
            for t in range(TEXT_TASKS)
        ]
        tasks.append(asyncio.create_task(audio_task(s.session, audio_seqs)))
        async with asyncio.timeout(30):
            await asyncio.gather(*tasks, chaos)
        assert len(sent) == TEXT_TASKS * MESSAGES_PER_TASK

        # Every send gets its verdict (bounded wait: answers and handles still coming).
        def unaccounted() -> list[str | int]:
            delivered, dropped, unanswered = verdicts(rec)
            texts: list[str | int] = [
                text
                for text, result in sent.items()
                if not result.dropped
                and result.seq not in delivered | dropped
                and text not in unanswered
            ]
            return texts + [q for q in audio_seqs if q not in delivered | dropped]

        def verdict(e: ev.AppEvent) -> bool:
            return isinstance(e, ev.Delivered | ev.SendDropped | ev.Rewound)

        deadline = time.monotonic() + 30
        while unaccounted() and time.monotonic() < deadline:
            try:
                await rec.wait(verdict, since=rec.mark(), timeout=deadline - time.monotonic())
            except TimeoutError:
                break
        events = [type(e).__name__ for e in rec.log[mark:] if not isinstance(e, ev.AudioChunk)]
        assert not unaccounted(), (unaccounted(), events)  # texts, then audio chunk seqs

        delivered, dropped, _ = verdicts(rec)
        assert not delivered & dropped, "a send both delivered and dropped"
        heard = {e.get("text") for e in s.emu.controls.events(kind="user_text")}
        for text, result in sent.items():
            if result.seq in delivered:
                assert text in heard, f"{text!r} confirmed but the server never read it"
        # An answer given again must be announced: a Rewound with reasked=True between the
        # two (the session asked a question again whose answer a drop cut off or whose
        # handle never came). Within one stretch without a Rewound, never twice.
        rewinds, stretches = answers_by_stretch(rec.log[mark:])
        for text in sent:
            answered = [i for i, part in enumerate(stretches) if answer_to(text) in part]
            for i in answered:
                assert stretches[i].count(answer_to(text)) == 1, (text, stretches[i])
            for before, after in itertools.pairwise(answered):
                announced = any(r.reasked for r in rewinds[before:after])
                assert announced, f"{text!r} answered again without a Rewound: {events}"

        # The blackhole was found by the watchdogs, questions arriving all along.
        found = [e.reason for e in rec.of(ev.Disconnected) if "sign of life" in e.reason]
        assert found, f"the blackhole went unnoticed until it lifted: {events}"

        # The conversation's context is kept.
        assert rec.of(ev.Resumed), "the drops were survived by resuming"
        assert not rec.of(ev.ContextReset) and not rec.of(ev.Failed), events
        s.tunnel.latency(0)
        await check_context(rec)
