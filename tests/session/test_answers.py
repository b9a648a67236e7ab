"""The answer collector: text from transcripts (or TEXT), restarts after a cut, clear ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tunnelproof.protocol.close_codes import classify_close
from tunnelproof.protocol.config import LiveConfig
from tunnelproof.protocol.server_messages import FunctionCall
from tunnelproof.session import app_events as ev
from tunnelproof.session.answers import (
    HANDLE_GRACE,
    Answer,
    AnswerClosed,
    AnswerCollector,
    AnswerError,
    AnswerFailed,
    AnswerLost,
    AnswerTimeout,
    ToolCallsPending,
    ask,
    collect_answer,
)
from tunnelproof.session.outbox import SendResult


def feed_all(collector: AnswerCollector, events: list[ev.AppEvent]) -> Answer | None:
    for event in events:
        answer = collector.feed(event)
        if answer is not None:
            return answer
    return None


def test_audio_answer_is_its_transcript_and_keeps_the_audio() -> None:
    events: list[ev.AppEvent] = [
        ev.InputTranscript("What did I say", False),
        ev.InputTranscript(" first?", True),
        ev.OutputTranscript("You first ", False),
        ev.AudioChunk(b"\x01\x00" * 4, "audio/pcm;rate=24000"),
        ev.OutputTranscript("said: teal. ", False),
        ev.AudioChunk(b"\x02\x00" * 4, "audio/pcm;rate=24000"),
        ev.GenerationComplete(),
        ev.TurnComplete(),
        ev.TextDelta("not part of this answer"),
    ]
    collector = AnswerCollector()
    answer = feed_all(collector, events)
    assert answer is not None
    assert answer.text == "You first said: teal."
    assert answer.audio == b"\x01\x00" * 4 + b"\x02\x00" * 4
    assert answer.heard == "What did I say first?"
    assert answer.events == tuple(events[:-1])
    assert not answer.interrupted and answer.restarts == 0


def test_text_mode_answer_is_its_text_deltas() -> None:
    collector = AnswerCollector()
    answer = feed_all(collector, [ev.TextDelta("Nice"), ev.TextDelta(" to meet you."),
                                  ev.TurnComplete("STOP")])  # fmt: skip
    assert answer is not None
    assert answer.text == "Nice to meet you."
    assert answer.audio == b"" and answer.reason == "STOP"


def test_a_cut_answer_starts_over_and_lifecycle_events_are_kept() -> None:
    events: list[ev.AppEvent] = [
        ev.OutputTranscript("1 2 3 ", False),
        ev.Disconnected(None, ""),
        ev.Rewound("1 2 3", False, (), reasked=True),  # the question is asked again
        ev.Reconnecting(0.1, 1, "lost", "server"),
        ev.Resumed(2, 0.2, 1),
        ev.OutputTranscript("1 2 3 4 5 ", False),
        ev.TurnComplete(),
    ]
    answer = feed_all(AnswerCollector(), events)
    assert answer is not None
    assert answer.text == "1 2 3 4 5"
    assert answer.restarts == 1
    assert ev.Resumed(2, 0.2, 1) in answer.events


def test_interrupted_answer_says_so() -> None:
    answer = feed_all(
        AnswerCollector(),
        [ev.OutputTranscript("Well ", False), ev.Interrupted(), ev.TurnComplete()],
    )
    assert answer is not None and answer.interrupted


@pytest.mark.parametrize(
    ("events", "error", "seq"),
    [
        ([ev.Failed(classify_close(1008, "models/x is not found for API version v1alpha"))],
         AnswerFailed, None),
        ([ev.OutputTranscript("half ", False), ev.Closed()], AnswerClosed, None),
        # reply_lost: the answer will not come unless the app asks again (issue 13)
        ([ev.Rewound("", True, ())], AnswerLost, None),
        ([ev.Rewound("a", True, (), ("count to 10",))], AnswerLost, 7),
        ([ev.SendDropped((7,), "text", "outbox full")], AnswerLost, 7),
        ([ev.ToolCallRequested((FunctionCall("c1", "lights", {}),))], ToolCallsPending, None),
    ],
)  # fmt: skip
def test_no_answer_is_a_typed_error_never_a_wait(
    events: list[ev.AppEvent], error: type[AnswerError], seq: int | None
) -> None:
    collector = AnswerCollector(question_seq=seq)
    with pytest.raises(error) as raised:
        feed_all(collector, events)
    assert raised.value.events == tuple(events)


def test_failed_carries_the_advice() -> None:
    verdict = classify_close(1008, "models/x is not found for API version v1alpha")
    with pytest.raises(AnswerFailed) as raised:
        AnswerCollector().feed(ev.Failed(verdict))
    assert raised.value.advice == verdict.advice and verdict.advice in str(raised.value)


def test_context_reset_without_a_cut_reply_or_for_audio_questions_keeps_waiting() -> None:
    # Nothing was cut: the fresh session will answer what is still queued.
    assert AnswerCollector(question_seq=3).feed(ev.ContextReset("expired", 2)) is None
    # A spoken question (no text seq): its audio is replayed into the fresh session.
    collector = AnswerCollector()
    assert collector.feed(ev.Rewound("", False, (), reasked=True)) is None
    assert collector.feed(ev.ContextReset("expired", 2)) is None
    # Another message dropped is not this question.
    assert AnswerCollector(question_seq=3).feed(ev.SendDropped((4,), "text", "x")) is None


async def _stream(events: list[ev.AppEvent], then_wait: bool) -> AsyncIterator[ev.AppEvent]:
    for event in events:
        yield event
    if then_wait:
        await asyncio.Event().wait()


async def test_collect_answer_times_out_with_what_it_has() -> None:
    stream = _stream([ev.OutputTranscript("so far ", False)], then_wait=True)
    with pytest.raises(AnswerTimeout) as raised:
        await collect_answer(stream, timeout=0.2)
    assert raised.value.partial == "so far"
    assert isinstance(raised.value, TimeoutError)


async def test_collect_answer_ends_when_the_stream_ends() -> None:
    with pytest.raises(AnswerClosed):
        await collect_answer(_stream([ev.OutputTranscript("x", False)], then_wait=False))


class _FakeSession:
    def __init__(self, config: LiveConfig, result: SendResult) -> None:
        self.config = config
        self.result = result
        self.sent: list[str] = []
        self.last_turn_held = False

    async def send_text(self, text: str) -> SendResult:
        self.sent.append(text)
        return self.result

    def __aiter__(self) -> AsyncIterator[ev.AppEvent]:
        return _stream([ev.OutputTranscript("Hi. ", False), ev.TurnComplete()], then_wait=True)


async def test_ask_refuses_audio_without_transcription_before_sending() -> None:
    session = _FakeSession(LiveConfig(output_audio_transcription=False), SendResult("sent", 1))
    with pytest.raises(ValueError, match="output_audio_transcription"):
        await ask(session, "hello")
    assert session.sent == []


async def test_ask_reports_a_refused_question_at_once() -> None:
    session = _FakeSession(LiveConfig(), SendResult("dropped", 1, "outbox full"))
    with pytest.raises(AnswerLost, match="outbox full"):
        await ask(session, "hello", timeout=1)


async def test_ask_returns_the_transcript() -> None:
    session = _FakeSession(LiveConfig(), SendResult("sent", 1))
    answer = await ask(session, "hello", timeout=5)
    assert answer.text == "Hi." and session.sent == ["hello"]


async def test_ask_returns_once_the_handle_holding_the_turn_arrived() -> None:
    # Google sends the turn's resumable handle tens of ms after turnComplete; returning
    # before it would let a drop right after replay the question (a second answer).
    session = _FakeSession(LiveConfig(), SendResult("sent", 1))
    loop = asyncio.get_running_loop()
    loop.call_later(0.15, setattr, session, "last_turn_held", True)
    started = loop.time()
    await ask(session, "hello", timeout=5)
    assert 0.14 <= loop.time() - started < HANDLE_GRACE


async def test_ask_waits_for_the_handle_only_a_bounded_moment() -> None:
    session = _FakeSession(LiveConfig(), SendResult("sent", 1))  # no new handle ever
    loop = asyncio.get_running_loop()
    started = loop.time()
    await ask(session, "hello", timeout=5)
    assert HANDLE_GRACE - 0.05 <= loop.time() - started < HANDLE_GRACE + 1.0
    session.config = LiveConfig(session_resumption=False)  # no handles to wait for
    started = loop.time()
    await ask(session, "hello", timeout=5)
    assert loop.time() - started < HANDLE_GRACE - 0.1
