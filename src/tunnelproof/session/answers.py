"""The answer as text: collect one model turn from a session's events.

Google's current Live models answer in AUDIO only; the text of an answer arrives as
``OutputTranscript`` events (with ``output_audio_transcription``, on by default). Getting
"what the model said" therefore means collecting those until ``TurnComplete``, while a
reconnect may cut the answer and start it over, the session may fail, or the app may
close it. This module does that, typed and bounded::

    answer = await session.ask("What did I say first?")   # LiveSession.ask delegates here
    print(answer.text)                                      # the transcript
    play(answer.audio)                                      # 24 kHz s16le PCM

    await session.send_audio(pcm)                           # or collect after any send
    answer = await collect_answer(session, timeout=30)

Rules (:class:`AnswerCollector`, pure, no I/O):

* ``OutputTranscript`` text is the answer; in TEXT mode ``TextDelta`` text is (when both
  arrive, the transcript wins: it is what was said). ``AudioChunk`` PCM and the user's
  ``InputTranscript`` are kept too. ``TurnComplete`` ends the answer.
* A drop that cuts the answer (``Rewound``) discards what was collected: the question is
  asked again (``Rewound.reasked``) and answered anew (``Answer.restarts`` counts this). If
  the reply cannot come (``Rewound.reply_lost``, or the question itself reported dropped),
  :class:`AnswerLost` is raised: ask again.
* ``Failed`` raises :class:`AnswerFailed` (with the advice), ``Closed`` or the end of the
  stream :class:`AnswerClosed`, a tool call :class:`ToolCallsPending` (answer it, then
  collect again), the timeout :class:`AnswerTimeout`. Nothing hangs on a dead session.
* Every event consumed is kept, in order (``Answer.events`` / ``AnswerError.events``),
  lifecycle events included: collecting never hides anything from the app.

The collector reads the session's one event stream from where it stands: consume earlier
turns first, and do not iterate the session from another task meanwhile. The one
exception is :func:`ask`'s own: a question whose ``ask`` timed out or was cancelled is
still answered (one turn, before the next question's), so the next ``ask`` reads that
turn and skips it, and ``collect_answer(session)`` returns it (the rest of the answer).
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from tunnelproof.protocol.close_codes import CloseVerdict
from tunnelproof.protocol.config import LiveConfig
from tunnelproof.protocol.server_messages import FunctionCall
from tunnelproof.session import app_events as ev
from tunnelproof.session.outbox import SendResult

__all__ = [
    "Answer",
    "AnswerClosed",
    "AnswerCollector",
    "AnswerError",
    "AnswerFailed",
    "AnswerLost",
    "AnswerTimeout",
    "ToolCallsPending",
    "ask",
    "collect_answer",
]


@dataclass(frozen=True, slots=True)
class Answer:
    """One complete model turn.

    ``text``: what the model said (output transcript, or model text in TEXT mode), joined
    and stripped. ``audio``: the spoken answer, 24 kHz 16-bit mono PCM (empty in TEXT
    mode). ``heard``: the user's speech as the server transcribed it during this turn.
    ``interrupted``: the user barged in. ``reason``: ``TurnComplete.reason``.
    ``restarts``: how often a drop cut the answer and it was given anew. ``events``: every
    event consumed while collecting, in order.
    """

    text: str
    audio: bytes
    heard: str
    interrupted: bool
    reason: str | None
    restarts: int
    events: tuple[ev.AppEvent, ...]


class AnswerError(Exception):
    """No complete answer. ``events``: what was consumed meanwhile; ``partial``: text so far."""

    def __init__(self, message: str, events: tuple[ev.AppEvent, ...], partial: str = "") -> None:
        super().__init__(message)
        self.events = events
        self.partial = partial


class AnswerFailed(AnswerError):
    """The session stopped (``Failed``); ``verdict.advice`` says what to do, then ``resume()``."""

    def __init__(
        self, verdict: CloseVerdict, events: tuple[ev.AppEvent, ...], partial: str = ""
    ) -> None:
        super().__init__(f"the session failed: {verdict.advice}", events, partial)
        self.verdict = verdict

    @property
    def advice(self) -> str:
        """What a person should do about it."""
        return self.verdict.advice


class AnswerClosed(AnswerError):
    """The session was closed (or its event stream ended) before the answer was complete."""


class AnswerLost(AnswerError):
    """The answer will not come (its question was dropped or is only seeded history): ask again."""


class AnswerTimeout(AnswerError, TimeoutError):
    """No complete answer within the timeout (the rest of the turn stays in the stream).

    After :func:`ask`: ``collect_answer(session)`` returns that answer, or the next
    ``ask`` skips it and returns its own.
    """


class ToolCallsPending(AnswerError):
    """The model asks for tools: answer ``calls`` (``send_tool_response``), then collect again."""

    def __init__(
        self, calls: tuple[FunctionCall, ...], events: tuple[ev.AppEvent, ...], partial: str = ""
    ) -> None:
        names = ", ".join(call.name for call in calls)
        super().__init__(f"the model called tools ({names}); answer them", events, partial)
        self.calls = calls


class AnswerCollector:
    """Feed events one by one; :meth:`feed` returns the :class:`Answer` when the turn ends.

    Pure (no I/O, no clock), so it also works over a recorded event log. ``question_seq``
    is the ``SendResult.seq`` of a *text* question (as :func:`ask` sends): a
    ``SendDropped`` naming it, or a ``ContextReset`` after the reply was cut, means no
    answer will come.
    """

    def __init__(self, *, question_seq: int | None = None) -> None:
        """Start an empty answer."""
        self._question_seq = question_seq
        # A text question (ask()) reaches a fresh session only as seeded history, which the
        # model does not answer; spoken audio still in the outbox is replayed there.
        self._text_question = question_seq is not None
        self._events: list[ev.AppEvent] = []
        self._reset()
        self._heard: list[str] = []
        self._restarts = 0
        self._reply_lost = False  # a drop cut a reply; it comes only if the question replays

    def _reset(self) -> None:
        self._text: list[str] = []
        self._transcript: list[str] = []
        self._audio = bytearray()
        self._interrupted = False

    @property
    def question_seq(self) -> int | None:
        """The ``SendResult.seq`` of the question this answer is for, if known."""
        return self._question_seq

    @property
    def events(self) -> tuple[ev.AppEvent, ...]:
        """Every event fed so far."""
        return tuple(self._events)

    @property
    def partial(self) -> str:
        """The answer's text so far."""
        return "".join(self._transcript or self._text).strip()

    def note(self, event: ev.AppEvent) -> None:
        """Keep ``event`` in :attr:`events` without reading it (it belongs to an earlier turn)."""
        self._events.append(event)

    def feed(self, event: ev.AppEvent) -> Answer | None:
        """Take one event. Returns the answer at ``TurnComplete``; raises an ``AnswerError``."""
        self._events.append(event)
        match event:
            case ev.OutputTranscript(text=text):
                self._transcript.append(text)
                self._reply_lost = False
            case ev.TextDelta(text=text):
                self._text.append(text)
                self._reply_lost = False
            case ev.AudioChunk(pcm=pcm):
                self._audio.extend(pcm)
                self._reply_lost = False
            case ev.InputTranscript(text=text):
                self._heard.append(text)
            case ev.Interrupted():
                self._interrupted = True
            case ev.TurnComplete(reason=reason):
                return Answer(
                    text=self.partial,
                    audio=bytes(self._audio),
                    heard="".join(self._heard).strip(),
                    interrupted=self._interrupted,
                    reason=reason,
                    restarts=self._restarts,
                    events=self.events,
                )
            case ev.Rewound(partial_text=partial, reply_lost=lost, reasked=reasked):
                if partial or lost or reasked:
                    # The cut-off answer is not continued after a resume; a question asked
                    # again is answered from the start, so start collecting again.
                    if partial or self._text or self._transcript or self._audio:
                        self._restarts += 1
                    self._reset()
                if lost:
                    # reply_lost: the server's state holds the question, its answer was
                    # cut, and the session does not ask twice: it will not come.
                    raise AnswerLost(
                        "a drop cut the reply and the question is not asked again; ask again",
                        self.events,
                    )
                self._reply_lost = self._reply_lost or (bool(partial) and not reasked)
            case ev.Resumed(replayed=replayed) if self._reply_lost and replayed == 0:
                raise AnswerLost(
                    "a drop cut the reply and nothing was replayed after the resume; ask again",
                    self.events,
                )
            case ev.ContextReset(reason=reason) if self._reply_lost and self._text_question:
                raise AnswerLost(
                    f"the reply was lost to a fresh session ({reason}); the question is "
                    "only history there: ask again",
                    self.events,
                )
            case ev.SendDropped(seqs=seqs, reason=reason) if self._question_seq in seqs:
                raise AnswerLost(f"the question was dropped: {reason}", self.events)
            case ev.ToolCallRequested(calls=calls):
                raise ToolCallsPending(calls, self.events, self.partial)
            case ev.Failed(verdict=verdict):
                raise AnswerFailed(verdict, self.events, self.partial)
            case ev.Closed():
                raise AnswerClosed("the session was closed", self.events, self.partial)
            case _:
                pass
        return None


async def collect_answer(
    events: AsyncIterable[ev.AppEvent],
    *,
    timeout: float | None = None,
    question_seq: int | None = None,
) -> Answer:
    """Collect the next model turn from ``events`` (a ``LiveSession`` or its ``events()``).

    ``timeout`` (seconds, ``None``: no limit) bounds the wait: :class:`AnswerTimeout`.
    Without one, the wait lasts through reconnects (a tunnel may take minutes) but still
    ends on ``Failed`` / ``Closed``. See the module docstring for the rules.

    On a session whose :func:`ask` timed out (or was cancelled), it continues that
    question's answer, from what the ask had collected: the rest of the turn.
    """
    owed = _OWED.get(events) if _weak_referenceable(events) else None
    collector = AnswerCollector(question_seq=question_seq)
    if owed and question_seq is None:
        collector = owed[0]  # the oldest abandoned ask: its turn is the next one

    def step(event: ev.AppEvent) -> Answer | None:
        try:
            answer = collector.feed(event)
        except AnswerError:
            if owed:
                _forget(owed, collector)
            raise
        if answer is not None and owed:
            _forget(owed, collector)
        return answer

    return await _read_until_answer(events, step, collector, timeout)


async def _read_until_answer(
    events: AsyncIterable[ev.AppEvent],
    step: Callable[[ev.AppEvent], Answer | None],
    collector: AnswerCollector,
    timeout: float | None,
) -> Answer:
    """Feed ``events`` to ``step`` until it returns the answer, within ``timeout``; the
    stream is closed either way, and a timeout or its end is raised with what
    ``collector`` holds."""
    iterator: AsyncIterator[ev.AppEvent] = aiter(events)
    try:
        async with asyncio.timeout(timeout):
            async for event in iterator:
                answer = step(event)
                if answer is not None:
                    return answer
    except TimeoutError:
        raise AnswerTimeout(
            f"no complete answer within {timeout:g} s", collector.events, collector.partial
        ) from None
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()
    raise AnswerClosed("the event stream ended", collector.events, collector.partial)


HANDLE_GRACE = 0.5
"""Seconds :func:`ask` waits after ``TurnComplete`` for the resumable handle that holds the
turn (Google sends it some 20-70 ms later, reference section 10)."""


class SessionLike(Protocol):
    """What :func:`ask` needs of a session (``LiveSession`` has it)."""

    @property
    def config(self) -> LiveConfig:
        """The session's config."""
        ...

    @property
    def last_turn_held(self) -> bool:
        """A resumable handle arrived after the last ``TurnComplete``."""
        ...

    async def send_text(self, text: str) -> SendResult:
        """Send user text."""
        ...

    def __aiter__(self) -> AsyncIterator[ev.AppEvent]:
        """The session's events."""
        ...


async def ask(session: SessionLike, text: str, *, timeout: float | None = None) -> Answer:
    """Send ``text`` as the user's turn and return the model's :class:`Answer`.

    ``timeout`` bounds the whole question. ``ValueError`` when the config answers in AUDIO
    without ``output_audio_transcription`` (there would be no text to return).

    After ``TurnComplete`` it waits (at most :data:`HANDLE_GRACE`) for the next resumable
    handle, which is the server state that holds this turn: a drop right after the answer
    then resumes *after* the question instead of replaying it, and the next question's
    answer is not preceded by a second answer to this one.
    """
    config = session.config
    if config.modality == "AUDIO" and not config.output_audio_transcription:
        raise ValueError(
            "ask() returns the answer's transcript, but this LiveConfig answers in AUDIO "
            "without output_audio_transcription; turn it on (LiveConfig's default)"
        )
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    result = await session.send_text(text)
    if result.dropped:
        raise AnswerLost(f"the question was not sent: {result.reason}", ())
    left = None if deadline is None else max(0.0, deadline - loop.time())
    mine = AnswerCollector(question_seq=result.seq)
    owed = _owed_answers(session)
    owed.append(mine)
    try:
        answer = await _collect_in_turn(session, owed, mine, left)
    except (AnswerTimeout, asyncio.CancelledError):
        raise  # the answer still comes: the next ask() skips its turn (mine stays owed)
    except BaseException:
        _forget(owed, mine)
        raise
    if config.session_resumption:
        until = loop.time() + HANDLE_GRACE
        await _turn_held(session, min(until, deadline or until))
    return answer


# Per session, the asks whose question was sent and whose turn has not been read yet,
# oldest first. An ask that timed out (or was cancelled) leaves its collector here: the
# server still answers that question, one turn, before the next one (FIFO). Without this
# the next ask() returned that stale turn (often cut short by its own question's barge-in)
# and every later ask() the answer before its own, for ever.
_OWED: weakref.WeakKeyDictionary[object, list[AnswerCollector]] = weakref.WeakKeyDictionary()


def _owed_answers(session: object) -> list[AnswerCollector]:
    try:
        return _OWED.setdefault(session, [])
    except TypeError:  # not weak-referenceable: no memory of abandoned asks
        return []


def _weak_referenceable(obj: object) -> bool:
    try:
        weakref.ref(obj)
    except TypeError:
        return False
    return True


def _forget(owed: list[AnswerCollector], collector: AnswerCollector) -> None:
    if collector in owed:
        owed.remove(collector)


async def _collect_in_turn(
    session: SessionLike,
    owed: list[AnswerCollector],
    mine: AnswerCollector,
    timeout: float | None,
) -> Answer:
    """Read events into the oldest owed answer until it is done, then into ``mine``.

    An earlier (abandoned) question's turn is read by its own collector and discarded;
    its events stay in ``mine.events``. What ends the session for everyone (``Failed``,
    ``Closed``) or needs the app (a tool call) is raised to this caller, as
    :func:`collect_answer` does; so is a ``SendDropped`` naming this question.
    """

    def step(event: ev.AppEvent) -> Answer | None:
        head = owed[0] if owed else mine
        if head is mine:
            answer = mine.feed(event)
            if answer is not None:
                _forget(owed, mine)
            return answer
        if isinstance(event, (ev.Failed, ev.Closed, ev.ToolCallRequested)):
            del owed[: owed.index(mine)]  # no one will read those turns now
            mine.feed(event)  # raises this caller's typed error
            return None
        if isinstance(event, ev.SendDropped) and mine.question_seq in event.seqs:
            mine.feed(event)  # raises AnswerLost: this question was dropped
        mine.note(event)
        if isinstance(event, ev.SendDropped):
            for waiting in owed[1 : owed.index(mine)]:
                if waiting.question_seq in event.seqs:
                    _forget(owed, waiting)  # its turn will never come
        try:
            done = head.feed(event) is not None
        except AnswerError:  # its reply was lost or dropped: nothing to skip
            done = True
        if done:
            _forget(owed, head)
        return None

    return await _read_until_answer(session, step, mine, timeout)


async def _turn_held(session: SessionLike, until: float) -> None:
    """Wait until ``session.last_turn_held``, or ``until`` (loop time).

    Polled: the handle is session state, not an event; 10 ms steps, bounded by ``until``.
    """
    loop = asyncio.get_running_loop()
    for _ in range(max(0, math.ceil((until - loop.time()) / 0.01))):
        if session.last_turn_held or loop.time() >= until:
            return
        await asyncio.sleep(0.01)
