"""Helpers for the impolite end-to-end tests (issue 13): users who do not wait their turn.

Audio-first: the session answers in AUDIO with transcriptions, and answers are read from
``OutputTranscript`` events. Everything runs for real over loopback: the emulator, a
tunnel proxy in front of it, and a token service (aiohttp) that can be slow or blip.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tunnelproof.protocol.config import LiveConfig
from tunnelproof.protocol.endpoints import Method, live_path
from tunnelproof.session import app_events as ev
from tunnelproof.session.live_session import LiveSession

from .session_e2e_helpers import EmulatorMint, Recorder

AUDIO_CONFIG = LiveConfig(
    model="gemini-3.8-live",
    response_modalities=("AUDIO",),
    input_audio_transcription=True,
    output_audio_transcription=True,
)
CHUNK_MS = 20
CHUNK = 16_000 * 2 * CHUNK_MS // 1000  # 20 ms of 16 kHz 16-bit mono


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
        if isinstance(predicate, type):
            kind = predicate
            test: Callable[[ev.AppEvent], bool] = lambda e: isinstance(e, kind)  # noqa: E731
        else:
            test = predicate
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


def transcript_since(rec: Recorder, mark: int) -> str:
    """Every output transcript after ``mark``, joined."""
    return "".join(e.text for e in rec.log[mark:] if isinstance(e, ev.OutputTranscript))


async def wait_transcript(rec: Recorder, needle: str, *, since: int, timeout: float) -> None:
    """Wait until the model's transcript after ``since`` contains ``needle``."""
    deadline = time.monotonic() + timeout
    while needle not in transcript_since(rec, since):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(
                f"{needle!r} never answered; transcript: {transcript_since(rec, since)!r}"
            )
        try:
            await rec.wait(ev.OutputTranscript, since=len(rec.log), timeout=left)
        except TimeoutError:
            continue


async def ask(rec: Recorder, text: str, *, timeout: float = 30.0) -> str:
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


class SlowTokenService:
    """``POST /api/live/token`` that takes ``delay`` seconds and may blip.

    ``script`` holds HTTP statuses answered (after the delay) before real tokens are
    minted from the emulator; ``ws_base`` points the answered ``wsUrl`` somewhere else
    (a tunnel in front of the emulator). ``started``/``finished`` count requests.
    """

    def __init__(
        self,
        emu: Any,
        *,
        delay: float = 0.0,
        ws_base: str | None = None,
        script: list[int] | None = None,
        retry_after: int = 1,
    ) -> None:
        self.emu = emu
        self.delay = delay
        self.ws_base = ws_base or emu.ws_base
        self.script = list(script or [])
        self.retry_after = retry_after
        self.started = 0
        self.minted = 0
        self.answers: list[int] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/live/token"

    async def _token(self, request: web.Request) -> web.Response:
        self.started += 1
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        if self.script:
            status = self.script.pop(0)
            self.answers.append(status)
            headers = {"Retry-After": str(self.retry_after)} if status in (429, 503) else {}
            return web.json_response({"error": "scripted"}, status=status, headers=headers)
        credential = await EmulatorMint(self.emu)()
        self.minted += 1
        self.answers.append(200)
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1800))
        iso_new = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
        return web.json_response(
            {
                "token": credential.secret,
                "expiresAt": iso,
                "newSessionExpiresAt": iso_new,
                "model": "gemini-3.8-live",
                "wsUrl": self.ws_base + live_path("v1alpha", Method.CONSTRAINED),
            },
            headers={"Cache-Control": "no-store"},
        )

    async def __aenter__(self) -> SlowTokenService:
        app = web.Application()
        app.router.add_post("/api/live/token", self._token)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
