"""``LiveSession``: a Gemini Live session that survives network drops.

Usage::

    from tunnelproof import LiveConfig, LiveSession, TokenServiceSource

    config = LiveConfig()  # gemini-3.8-live: AUDIO answers with their transcription
    tokens = TokenServiceSource("https://app.example.com/api/live/token")
    async with LiveSession(config, tokens, conversation_id="user-42") as session:
        answer = await session.ask("Hello!")   # through any reconnects
        print(answer.text)                      # the transcript; answer.audio is the PCM

``async for event in session`` gives every typed event instead (``OutputTranscript``,
``AudioChunk``, ``TurnComplete``, ``Reconnecting``, ...).

The session owns the reconnect logic: it asks ``token_source`` for a fresh credential on
every attempt, resumes with the newest resumable handle, queues what the app sends while
disconnected and replays what the resumed server state lacks, hands over planned on
``goAway``, and reports everything as typed events (:mod:`~tunnelproof.session.app_events`).

Design: all decisions are made by the pure :class:`~tunnelproof.session.machine.SessionMachine`;
this class only performs its actions (token fetches, sockets, timers, handle-store writes)
and feeds the results back. It runs on one event loop; use it from that loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl as ssl_module
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from tunnelproof.protocol.client_messages import (
    INPUT_AUDIO_RATE,
    FunctionResponse,
    Turn,
)
from tunnelproof.protocol.config import LiveConfig
from tunnelproof.session import answers
from tunnelproof.session import app_events as ev
from tunnelproof.session.actions import (
    AbortSocket,
    Action,
    CancelTimer,
    CancelTokenFetch,
    CheckLink,
    CloseSocket,
    DeleteHandle,
    Emit,
    FetchToken,
    OpenSocket,
    SaveHandle,
    SendFrame,
    SetTimer,
)
from tunnelproof.session.answers import Answer
from tunnelproof.session.config_check import LockChecker
from tunnelproof.session.credentials import TokenSource
from tunnelproof.session.driver import (
    classify_token_error,
    log_lifecycle,
)
from tunnelproof.session.event_buffer import DEFAULT_MAX_CONTENT_BYTES, EventBuffer
from tunnelproof.session.events import (
    CloseRequested,
    Event,
    ReseedRequested,
    ResumeRequested,
    Started,
    TimerFired,
    TokenFetched,
)
from tunnelproof.session.handle_store import HandleStore, StoredSession
from tunnelproof.session.machine import SessionMachine, SessionState
from tunnelproof.session.metrics import SessionMetrics
from tunnelproof.session.outbox import OutboxLimits, SendResult
from tunnelproof.session.outgoing import ClientMessage
from tunnelproof.session.policy import DEFAULT_POLICY, DEFAULT_WATCHDOGS, RetryPolicy, Watchdogs
from tunnelproof.session.sockets import (
    DEFAULT_MAX_FRAME_BYTES,
    ConnectOptions,
    SocketAttempt,
    close_quietly,
    run_socket,
)
from tunnelproof.session.store_writer import StoreWriter

log = logging.getLogger("tunnelproof.session")

# Content events carry no lifecycle change: the driver skips log_lifecycle's match for them.
_CONTENT_EVENTS = frozenset({ev.AudioChunk, ev.TextDelta, ev.InputTranscript, ev.OutputTranscript})


class LiveSession:
    """A reconnecting Gemini Live session.

    Args:
        config: the session's :class:`~tunnelproof.protocol.config.LiveConfig` (model,
            modality, tools, ...). ``config.session_resumption`` should stay on: it is what
            lets a reconnect keep the conversation.
        token_source: an async callable returning a fresh
            :class:`~tunnelproof.session.credentials.Credential` per call, e.g.
            :class:`tunnelproof.tokens.client.TokenServiceSource` (devices),
            :class:`tunnelproof.tokens.direct.ApiKeyMintingSource` (servers), or your own.
            Raise the typed errors of :mod:`tunnelproof.session.credentials` so failures
            are classified (401 fatal, 429 wait, 5xx back off, offline probe).
        conversation_id: the app's id for this conversation; the handle store keys on it
            so a restarted process resumes the same server session. Default: a random id.
            ``InvalidConversationId`` (a ``ValueError``) for an empty or overlong id.
        handle_store: where handles live; default a new
            :class:`~tunnelproof.session.stores.MemoryHandleStore`. Use
            :class:`~tunnelproof.session.stores.SqliteHandleStore` to survive restarts.
        policy: the :class:`~tunnelproof.session.policy.RetryPolicy` (default
            :data:`~tunnelproof.session.policy.DEFAULT_POLICY`).
        watchdogs: timeouts for dead links and stuck steps
            (:class:`~tunnelproof.session.policy.Watchdogs`).
        limits: outbox bounds (:class:`~tunnelproof.session.outbox.OutboxLimits`).
        rng: random source for jitter (tests pass a seeded one).
        ssl: TLS context for ``wss://`` endpoints (e.g. trusting the emulator's test CA).
        max_frame_bytes: the largest server frame accepted.
        connect_kwargs: extra keyword arguments for ``websockets.asyncio.client.connect``
            (e.g. ``proxy=None``). Keepalive pings stay off whatever is passed here. A
            ``create_connection`` of yours replaces the session's
            :class:`~tunnelproof.session.sockets.DirectConnection` (frames then go through
            ``recv()``, a little more CPU per frame).
        max_buffered_event_bytes: content events (audio, text, transcripts) the app has
            not read yet are bounded by this many bytes; beyond it the oldest are dropped
            and reported (``EventsDropped``). Lifecycle events are never dropped.
    """

    def __init__(
        self,
        config: LiveConfig,
        token_source: TokenSource,
        *,
        conversation_id: str | None = None,
        handle_store: HandleStore | None = None,
        policy: RetryPolicy | None = None,
        watchdogs: Watchdogs | None = None,
        limits: OutboxLimits | None = None,
        rng: random.Random | None = None,
        ssl: ssl_module.SSLContext | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        connect_kwargs: Mapping[str, Any] | None = None,
        max_buffered_event_bytes: int = DEFAULT_MAX_CONTENT_BYTES,
    ) -> None:
        self._watchdogs = watchdogs or DEFAULT_WATCHDOGS
        self._machine = SessionMachine(
            config,
            policy=policy or DEFAULT_POLICY,
            watchdogs=self._watchdogs,
            limits=limits,
            rng=rng,
        )
        self._token_source = token_source
        from tunnelproof.session.stores import validate_conversation_id

        # Fail here, loudly, rather than on every later save (which only logs).
        self.conversation_id = validate_conversation_id(conversation_id or uuid.uuid4().hex)
        self._config = config
        self._lock_checker = LockChecker(config, self.conversation_id)
        self._handle_at_turn_end: str | None = None
        self._own_store = handle_store is None
        self._store: HandleStore = handle_store if handle_store is not None else _memory_store()
        self._connect = ConnectOptions.build(self._watchdogs, ssl, max_frame_bytes, connect_kwargs)
        self._events = EventBuffer(max_buffered_event_bytes)
        self._sockets: dict[int, SocketAttempt] = {}
        self._token_tasks: dict[int, asyncio.Task[None]] = {}
        # name -> [loop handle, serial, deadline]. A SetTimer that only moves a deadline
        # later (the reply watchdog, re-armed on every audio frame) updates the record and
        # keeps the handle; _fire re-arms for the rest. Saves a TimerHandle cancel + heap
        # push per 20 ms frame; the machine still sees one TimerFired, at its deadline.
        self._timers: dict[str, list[Any]] = {}
        self._writer = StoreWriter(self._store, self.conversation_id)
        self._closers: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()
        self._started = False
        self._shut_down = False

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> LiveSession:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Load any stored handle for ``conversation_id`` and start connecting.

        Returns at once; watch :meth:`events` for ``Connected``/``Resumed``.
        """
        if self._started:
            return
        self._started = True
        stored: StoredSession | None = None
        try:
            stored = await self._store.load(self.conversation_id, now_wall=time.time())
        except Exception:
            log.warning("handle store load failed; starting a fresh session", exc_info=True)
        self._writer.start()
        self._feed(Started(stored))

    async def close(self) -> None:
        """Close the session gracefully (code 1000) and stop all background work.

        Queued messages are reported dropped (``SendDropped``); the handle is kept in the
        store with its disconnect time, so a later session with the same
        ``conversation_id`` can resume within the 2-hour window.
        """
        if self._shut_down:
            return
        if self._started:
            self._feed(CloseRequested())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), self._watchdogs.close_timeout + 1.0)
        await self._shutdown()

    async def resume(self) -> None:
        """Try again after a ``Failed`` event (or skip a pending backoff wait)."""
        self._feed(ResumeRequested())

    async def reseed(self) -> None:
        """Start a fresh server session re-seeded from the transcript (``ContextReset``).

        For a resume the server accepted but that restored nothing (the model "greets
        afresh", reported on 3.1 native audio): the wire cannot tell such a resume from a
        good one, the app can (its own check, or the user's). The current connection is
        closed at once; the handle is dropped; the next one is a fresh session seeded with
        the conversation so far, and unanswered questions are asked again after it.
        """
        self._feed(ReseedRequested())

    @property
    def state(self) -> SessionState:
        """``idle``, ``connecting``, ``connected``, ``reconnecting``, ``failed``,
        ``closing`` or ``closed``."""
        return self._machine.state

    @property
    def metrics(self) -> SessionMetrics:
        """A snapshot of the session's counters (reconnects, downtime, replays, ...)."""
        return self._machine.metrics.copy()

    @property
    def config(self) -> LiveConfig:
        """The session's :class:`~tunnelproof.protocol.config.LiveConfig`."""
        return self._config

    @property
    def resumption_handle(self) -> str | None:
        """The newest resumable handle (opaque; for diagnostics)."""
        return self._machine.resumption_handle

    @property
    def last_turn_held(self) -> bool:
        """True once a resumable handle arrived after the last ``TurnComplete``.

        Google sends the handle that holds a turn some 20-70 ms after ``turnComplete``; a
        drop before it resumes from the older state, into which the session restores the
        turn as history (``TurnsRestored``; only with no text of it known is its question
        asked again). Recorded when the machine emits ``TurnComplete``, not when the app
        reads it.
        """
        handle = self._machine.resumption_handle
        return handle is not None and handle != self._handle_at_turn_end

    # -- events ---------------------------------------------------------------------------

    async def events(self, *, end_on_failed: bool = False) -> AsyncIterator[ev.AppEvent]:
        """Every event, in order, until ``Closed`` (or, with ``end_on_failed``, ``Failed``).

        Without ``end_on_failed`` the iterator outlives a ``Failed``, for apps that offer
        the user a retry (``resume()``) and keep reading. Each event goes to one reader.

        Consume it steadily. Lifecycle events are never dropped; content events (audio,
        text, transcripts) beyond ``max_buffered_event_bytes`` are dropped oldest first
        and reported with one ``EventsDropped`` event, so nothing is lost silently.
        """
        buffer = self._events
        while True:
            item = buffer.take()  # no coroutine per event while events are waiting
            if item is None:
                item = await buffer.get()
                if item is None:
                    return
            yield item
            if isinstance(item, ev.Closed) or (end_on_failed and isinstance(item, ev.Failed)):
                return

    def __aiter__(self) -> AsyncIterator[ev.AppEvent]:
        """``async for event in session``: ends after ``Failed`` or ``Closed``, never hangs.

        After ``Failed`` and ``resume()``, a new ``async for`` reads the events that follow.
        """
        return self.events(end_on_failed=True)

    # -- sending -----------------------------------------------------------------------------

    async def ask(self, text: str, *, timeout: float | None = None) -> Answer:
        """Send ``text`` and return the model's answer as text (and its audio).

        See :func:`tunnelproof.session.answers.ask`: the text is the output transcription
        (AUDIO) or the model text (TEXT); a failed or closed session raises instead of
        waiting for ever; ``timeout`` bounds the whole question.
        """
        return await answers.ask(self, text, timeout=timeout)

    async def send_text(self, text: str) -> SendResult:
        """Send user text as ``realtimeInput.text`` (the model answers it as a turn)."""
        return self._send(ClientMessage.text(text))

    async def send_audio(self, pcm: bytes, *, rate: int = INPUT_AUDIO_RATE) -> SendResult:
        """Send 16-bit little-endian mono PCM (20-40 ms chunks are best)."""
        return self._send(ClientMessage.audio(pcm, rate=rate))

    async def send_client_content(
        self, turns: Iterable[Turn | Mapping[str, Any]], *, turn_complete: bool = True
    ) -> SendResult:
        """Append ``turns`` to the history; ``turn_complete`` asks the model to answer."""
        return self._send(ClientMessage.content(turns, turn_complete=turn_complete))

    async def send_tool_response(self, responses: Sequence[FunctionResponse]) -> SendResult:
        """Answer tool calls. Answers to calls cancelled by a reconnect are refused."""
        return self._send(ClientMessage.tool_response(responses))

    async def send_raw(self, message: Mapping[str, Any]) -> SendResult:
        """Send any client message dict (one of clientContent/realtimeInput/toolResponse).

        The dict is read as the server would read it (``ClientMessage.from_dict``), so a
        raw text or tool response gets the same replay rules as a typed one.
        ``ValueError`` for a ``setup`` or a dict that is not exactly one client message.
        """
        return self._send(ClientMessage.from_dict(message))

    def _send(self, message: ClientMessage) -> SendResult:
        if not self._started:
            raise RuntimeError("start the session first (async with LiveSession(...))")
        loop = asyncio.get_running_loop()
        result, actions = self._machine.send(message, now=loop.time(), wall=time.time())
        self._perform(actions)
        return result

    # -- the driver ---------------------------------------------------------------------------

    def _feed(self, event: Event) -> None:
        if self._shut_down:
            return
        loop = asyncio.get_running_loop()
        actions = self._machine.handle(event, now=loop.time(), wall=time.time())
        self._perform(actions)

    def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case Emit(event=event):
                    if type(event) in _CONTENT_EVENTS:  # audio/text: queued, nothing to log
                        self._events.put(event)
                        continue
                    if isinstance(event, ev.TurnComplete):
                        self._handle_at_turn_end = self._machine.resumption_handle
                    self._events.put(event)
                    log_lifecycle(self.conversation_id, event)
                    if isinstance(event, ev.Closed):
                        self._closed.set()
                case SendFrame(attempt=attempt, text=text):
                    sock = self._sockets.get(attempt)
                    if sock is not None:
                        sock.send(text)
                case SetTimer(name=name, serial=serial, at=at):
                    record = self._timers.get(name)
                    if record is not None and record[0].when() <= at:
                        record[1], record[2] = serial, at  # _fire re-arms for the rest
                    else:
                        if record is not None:
                            record[0].cancel()
                        loop = asyncio.get_running_loop()
                        self._timers[name] = [loop.call_at(at, self._fire, name), serial, at]
                case CancelTimer(name=name):
                    record = self._timers.pop(name, None)
                    if record is not None:
                        record[0].cancel()
                case FetchToken(request=request):
                    self._token_tasks[request] = asyncio.create_task(
                        self._fetch_token(request), name=f"tunnelproof-token-{request}"
                    )
                case CancelTokenFetch(request=request):
                    task = self._token_tasks.pop(request, None)
                    if task is not None:
                        task.cancel()
                case OpenSocket(attempt=attempt, endpoint=endpoint, timeout=timeout):
                    sock = SocketAttempt(attempt)
                    self._sockets[attempt] = sock
                    sock.task = asyncio.create_task(
                        run_socket(
                            sock, endpoint, timeout, self._connect, self._feed, self._release
                        ),
                        name=f"tunnelproof-socket-{attempt}",
                    )
                case CloseSocket(attempt=attempt, code=code, reason=reason):
                    sock = self._sockets.get(attempt)
                    if sock is not None and sock.ws is not None:
                        # The reader reports the outcome (SocketClosed); the machine's
                        # close timer turns a hanging close into an abort.
                        task = asyncio.create_task(close_quietly(sock.ws, code, reason))
                        self._closers.add(task)
                        task.add_done_callback(self._closers.discard)
                case AbortSocket(attempt=attempt):
                    self._abort(attempt)
                case CheckLink(attempt=attempt):
                    sock = self._sockets.get(attempt)
                    if sock is not None:
                        sock.check_link(self._connect.watchdogs, self._feed)
                case SaveHandle(session=session):
                    self._writer.save(session)
                case DeleteHandle():
                    self._writer.delete()

    def _fire(self, name: str) -> None:
        record = self._timers.get(name)
        if record is None:
            return
        if record[2] > record[0].when():  # the deadline moved later since the handle was set
            record[0] = asyncio.get_running_loop().call_at(record[2], self._fire, name)
            return
        del self._timers[name]
        self._feed(TimerFired(name, record[1]))

    def _abort(self, attempt: int) -> None:
        """Tear the socket down now: no close handshake, no close_timeout wait."""
        sock = self._sockets.pop(attempt, None)
        if sock is not None:
            sock.abort()

    def _release(self, attempt: int) -> None:
        self._sockets.pop(attempt, None)

    async def _fetch_token(self, request: int) -> None:
        try:
            credential = await self._token_source()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._token_tasks.pop(request, None)
            self._feed(classify_token_error(request, exc))
            return
        self._token_tasks.pop(request, None)
        if not self._shut_down:
            for mismatch in self._lock_checker.check(credential):  # before it is used
                self._events.put(mismatch)
        self._feed(TokenFetched(request, credential))

    async def _shutdown(self) -> None:
        self._shut_down = True
        for record in self._timers.values():
            record[0].cancel()
        self._timers.clear()
        for attempt in list(self._sockets):
            self._abort(attempt)
        for task in list(self._token_tasks.values()):
            task.cancel()
        self._token_tasks.clear()
        for closer in list(self._closers):
            closer.cancel()
        await self._writer.close()  # the newest handle lands (coalesced writes)
        if self._own_store:
            with contextlib.suppress(Exception):
                await self._store.close()
        self._events.end()


def _memory_store() -> HandleStore:
    from tunnelproof.session.stores import MemoryHandleStore

    return MemoryHandleStore()
