"""Helpers for end-to-end tests of ``LiveSession`` against the emulator on loopback.

* :class:`EmulatorMint`: a token source that mints directly against the emulator's
  ``POST /v1alpha/auth_tokens`` (one fresh single-use token per call);
* :class:`StubTokenService`: a tiny token service (aiohttp) that answers a scripted list of
  failures (401/429/503) and then mints from the emulator, used through the real
  ``TokenServiceSource`` client;
* :class:`Recorder`: consumes a session's events into a log and waits on it, so a test can
  await "the next TurnComplete" without sleeping; :class:`LiveRecorder` pulls them as they
  happen (a background task);
* :func:`live_stack`: the whole stack of an audio-first e2e test in one ``async with``:
  emulator, optionally a tunnel proxy in front of it, the token source, ``LiveSession`` and
  a :class:`LiveRecorder`, seeded with :data:`FIRST` and its resumable handle.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import httpx
from aiohttp import web

from tunnelproof.emulator import EmulatorPolicy, EmulatorServer
from tunnelproof.protocol.config import LiveConfig
from tunnelproof.protocol.endpoints import Method, live_path
from tunnelproof.session import app_events as ev
from tunnelproof.session.answers import AnswerCollector
from tunnelproof.session.credentials import Credential, TokenSource
from tunnelproof.session.live_session import LiveSession
from tunnelproof.session.policy import RetryPolicy, Watchdogs
from tunnelproof.testing.tunnel import TunnelProxy

_T = TypeVar("_T")

# What every user of Google's Live models has: AUDIO answers, their text in the transcript.
CONFIG = LiveConfig()
# Only for tests about text mode itself: no Google Live model answers in TEXT any more.
TEXT_MODEL = "tunnelproof-emulator-text"
TEXT_CONFIG = LiveConfig(model=TEXT_MODEL, response_modalities=("TEXT",))
FIRST = "My favourite colour is teal."
ASK_FIRST = "What did I say first?"
EXPECTED_FIRST = f'You first said: "{FIRST}".'
# Audio-first with both transcriptions: how the impolite tests (issue 13) talk.
AUDIO_CONFIG = LiveConfig(
    model="gemini-3.8-live",
    response_modalities=("AUDIO",),
    input_audio_transcription=True,
    output_audio_transcription=True,
)

# Short watchdogs so dead links are found in test time, not production time.
FAST_WATCHDOGS = Watchdogs(
    token_timeout=5.0,
    connect_timeout=5.0,
    probe_connect_timeout=2.0,
    setup_timeout=5.0,
    reply_timeout=4.0,
    link_check_timeout=2.0,
    stale_socket_wait=6.0,
    close_timeout=1.0,
    go_away_margin=1.0,
)


def fast_policy(**changes: Any) -> EmulatorPolicy:
    """The emulator's policy with spoken answers at 20 ms a word (real-time pacing kept)."""
    return EmulatorPolicy(seconds_per_word=0.02, audio_chunk_duration=0.02, **changes)


def text_policy(**changes: Any) -> EmulatorPolicy:
    """:func:`fast_policy` that also serves the emulator-only text model (for TEXT tests).

    Naming it in ``extra_models`` keeps these tests independent of whether the emulator
    build in use already knows its own text model.
    """
    return fast_policy(extra_models=frozenset({TEXT_MODEL}), **changes)


class EmulatorMint:
    """Mint a fresh token per call from the emulator (what a backend would do)."""

    def __init__(self, emu: Any, *, verify: ssl.SSLContext | bool = True) -> None:
        self.emu = emu
        self.verify = verify
        self.calls = 0

    async def __call__(self) -> Credential:
        self.calls += 1
        async with httpx.AsyncClient(verify=self.verify, timeout=5.0) as client:
            response = await client.post(
                f"{self.emu.http_base}/v1alpha/auth_tokens",
                headers={"x-goog-api-key": self.emu.api_key},
                json={"uses": 1},
            )
        response.raise_for_status()
        now = time.time()
        return Credential(
            kind="ephemeral_token",
            secret=response.json()["name"],
            ws_base=self.emu.ws_base,
            api_version="v1alpha",
            expires_at=now + 1800,
            new_session_expires_at=now + 60,
        )


def through(ws_base: str, source: TokenSource) -> TokenSource:
    """``source``'s credentials, pointed at ``ws_base`` (e.g. a tunnel in front of the server)."""

    async def redirected() -> Credential:
        return replace(await source(), ws_base=ws_base)

    return redirected


class StubTokenService:
    """``POST /api/live/token``: scripted failures first, then real tokens from the emulator."""

    def __init__(self, emu: Any, script: list[int] | None = None, retry_after: int = 1) -> None:
        self.emu = emu
        self.script = list(script or [])
        self.retry_after = retry_after
        self.answers: list[int] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _token(self, request: web.Request) -> web.Response:
        if self.script:
            status = self.script.pop(0)
            self.answers.append(status)
            headers = {"Retry-After": str(self.retry_after)} if status in (429, 503) else {}
            return web.json_response({"error": "scripted"}, status=status, headers=headers)
        credential = await EmulatorMint(self.emu)()
        self.answers.append(200)
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1800))
        iso_new = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
        ws_url = self.emu.ws_base + live_path("v1alpha", Method.CONSTRAINED)
        return web.json_response(
            {
                "token": credential.secret,
                "expiresAt": iso,
                "newSessionExpiresAt": iso_new,
                "model": "gemini-3.8-live",
                "wsUrl": ws_url,
            },
            headers={"Cache-Control": "no-store"},
        )

    async def __aenter__(self) -> StubTokenService:
        app = web.Application()
        app.router.add_post("/api/live/token", self._token)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/api/live/token"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _matcher(predicate: Callable[[ev.AppEvent], bool] | type[Any]) -> Callable[[ev.AppEvent], bool]:
    """What ``wait`` looks for: an event class (any instance of it) or a predicate."""
    if isinstance(predicate, type):
        kind = predicate
        return lambda event: isinstance(event, kind)
    return predicate


class Recorder:
    """Pulls events from a session into ``log``; ``wait`` returns the first match."""

    def __init__(self, session: LiveSession) -> None:
        self.session = session
        self.log: list[ev.AppEvent] = []
        self._iter = session.events().__aiter__()
        self._cursor = 0

    def mark(self) -> int:
        return len(self.log)

    async def wait(
        self,
        predicate: Callable[[ev.AppEvent], bool] | type[Any],
        *,
        since: int | None = None,
        timeout: float = 20.0,
    ) -> ev.AppEvent:
        test = _matcher(predicate)
        start = self._cursor if since is None else since
        for index in range(start, len(self.log)):
            if test(self.log[index]):
                self._cursor = index + 1
                return self.log[index]
        async with asyncio.timeout(timeout):
            while True:
                event = await self._iter.__anext__()
                self.log.append(event)
                if test(event):
                    self._cursor = len(self.log)
                    return event

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.log if isinstance(e, kind)]

    async def ask(self, text: str, *, timeout: float = 20.0) -> str:
        """Send ``text`` and return the model's answer as text (after TurnComplete)."""
        mark = self.mark()
        result = await self.session.send_text(text)
        assert not result.dropped, result
        await self.wait(ev.TurnComplete, since=mark, timeout=timeout)
        await self.settled()
        return self.answer_since(mark)

    async def settled(self, timeout: float = 2.0) -> None:
        """Wait (bounded) for the resumable handle that holds the last turn.

        Google sends it tens of ms after ``turnComplete``; a drop before it resumes from
        the older state and replays the question, answering it twice.
        """
        for _ in range(int(timeout / 0.01)):
            if self.session.last_turn_held:
                return
            await asyncio.sleep(0.01)

    def answer_since(self, mark: int) -> str:
        """The first non-empty answer logged since ``mark`` (transcript, or text in TEXT mode)."""
        collector = AnswerCollector()
        for event in self.log[mark:]:
            answer = collector.feed(event)
            if answer is None:
                continue
            if answer.text:
                return answer.text
            collector = AnswerCollector()  # an empty turn (e.g. a tool call's): the next one
        return ""


async def check_first(recorder: Recorder) -> None:
    """Every e2e test ends here: the assistant still knows what was said first."""
    answer = await recorder.ask(ASK_FIRST)
    assert answer == EXPECTED_FIRST, answer


class LiveRecorder(Recorder):
    """A :class:`Recorder` that pulls every event as it happens (a background task).

    The plain recorder only reads events while a test waits, so ``mark()`` lags behind
    what happened; storms and streams need the log to be current at every moment.
    """

    def __init__(self, session: LiveSession) -> None:
        super().__init__(session)
        self._changed = asyncio.Event()
        self._pump = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in self.session.events():
            self.log.append(event)
            self._changed.set()

    async def wait(
        self,
        predicate: Callable[[ev.AppEvent], bool] | type[Any],
        *,
        since: int | None = None,
        timeout: float = 20.0,
    ) -> ev.AppEvent:
        test = _matcher(predicate)
        index = self._cursor if since is None else since
        async with asyncio.timeout(timeout):
            while True:
                while index < len(self.log):
                    if test(self.log[index]):
                        self._cursor = index + 1
                        return self.log[index]
                    index += 1
                self._changed.clear()
                await self._changed.wait()

    async def stop(self) -> None:
        """Stop pulling (the session's event stream ends when it is closed)."""
        self._pump.cancel()

    async def drained(self, timeout: float = 5.0) -> None:
        """Once the session is closed: wait until its last events are in ``log``."""
        try:
            await asyncio.wait_for(asyncio.shield(self._pump), timeout)
        except TimeoutError:
            self._pump.cancel()
            raise


def transcript_since(rec: Recorder, mark: int) -> str:
    """Every output transcript after ``mark``, joined."""
    return "".join(e.text for e in rec.log[mark:] if isinstance(e, ev.OutputTranscript))


async def ask_spoken(rec: Recorder, text: str, *, timeout: float = 30.0) -> str:
    """Send ``text`` and return the spoken answer (transcript) once the turn completes."""
    mark = rec.mark()
    result = await rec.session.send_text(text)
    assert not result.dropped, result
    await rec.wait(ev.TurnComplete, since=mark, timeout=timeout)
    return transcript_since(rec, mark)


async def new_handle(session: LiveSession, old: str | None, *, timeout: float = 10.0) -> str:
    """Wait for a resumable handle other than ``old``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        handle = session.resumption_handle
        if handle is not None and handle != old:
            return handle
        await asyncio.sleep(0.005)
    raise AssertionError("no new resumable handle arrived")


async def held_handle(session: LiveSession, *, timeout: float = 5.0) -> str:
    """Wait until the resumable handle holds the last completed turn, and return it.

    Google sends it tens of ms after ``turnComplete``; until then the session's handle is
    an older one (the one after ``setupComplete`` at first).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        handle = session.resumption_handle
        if session.last_turn_held and handle is not None:
            return handle
        await asyncio.sleep(0.005)
    raise AssertionError("no resumable handle holding the last turn arrived")


@dataclass
class Stack:
    """What :func:`live_stack` built; ``session``/``rec`` exist once the source is made."""

    emu: EmulatorServer
    mint: EmulatorMint
    exits: AsyncExitStack
    tunnel_proxy: TunnelProxy | None = None
    session: LiveSession = field(init=False)
    rec: LiveRecorder = field(init=False)
    handle: str | None = None  # the resumable handle holding FIRST (seeded stacks)

    @property
    def tunnel(self) -> TunnelProxy:
        """The tunnel proxy in front of the emulator (``live_stack(tunnel=True)``)."""
        assert self.tunnel_proxy is not None, "live_stack(tunnel=True) was not asked for"
        return self.tunnel_proxy

    async def enter(self, context: AbstractAsyncContextManager[_T]) -> _T:
        """Enter ``context`` for the stack's lifetime (closed after the session)."""
        return await self.exits.enter_async_context(context)


SourceFactory = Callable[[Stack], Awaitable[TokenSource]]


@asynccontextmanager
async def live_stack(
    policy: EmulatorPolicy | None = None,
    *,
    config: LiveConfig = AUDIO_CONFIG,
    tunnel: bool = False,
    source: SourceFactory | None = None,
    watchdogs: Watchdogs = FAST_WATCHDOGS,
    seed: int = 0,
    host: str = "127.0.0.1",
    seeded: bool = True,
    retry: RetryPolicy | None = None,
    **session_kwargs: Any,
) -> AsyncIterator[Stack]:
    """Emulator (+ tunnel proxy) + token source + ``LiveSession`` + :class:`LiveRecorder`.

    ``source(stack)`` makes the token source (it may ``stack.enter`` services of its own);
    by default tokens are minted from the emulator, pointed through the tunnel when there
    is one. ``seeded``: wait for ``Connected``, tell the model :data:`FIRST` (checked by
    :func:`check_context`) and wait for the handle holding it (``stack.handle``).
    ``retry`` is the session's :class:`RetryPolicy` (``policy`` is the emulator's).
    Everything is closed in reverse order, the session first.
    """
    async with AsyncExitStack() as exits:
        emu = await exits.enter_async_context(
            EmulatorServer(policy=policy or EmulatorPolicy(generation_speed=0), host=host)
        )
        stack = Stack(emu=emu, mint=EmulatorMint(emu), exits=exits)
        if tunnel:
            stack.tunnel_proxy = await exits.enter_async_context(TunnelProxy(host, emu.port))
        if source is not None:
            token_source = await source(stack)
        elif stack.tunnel_proxy is not None:
            token_source = through(stack.tunnel_proxy.url("ws"), stack.mint)
        else:
            token_source = stack.mint

        async def drain() -> None:  # after the session closed: its last events are logged
            if hasattr(stack, "rec"):
                await stack.rec.drained()

        exits.push_async_callback(drain)
        stack.session = await exits.enter_async_context(
            LiveSession(
                config,
                token_source,
                watchdogs=watchdogs,
                rng=random.Random(seed),
                policy=retry,
                **session_kwargs,
            )
        )
        stack.rec = LiveRecorder(stack.session)
        if seeded:
            await stack.rec.wait(ev.Connected)
            assert "teal" in await ask_spoken(stack.rec, FIRST)
            stack.handle = await held_handle(stack.session)
        yield stack


async def check_context(rec: Recorder) -> None:
    """The conversation's context is kept: the model still knows what was said first."""
    assert "teal" in await ask_spoken(rec, ASK_FIRST)
