"""Helpers for the impolite end-to-end tests (issue 13): users who do not wait their turn.

Audio-first: the session answers in AUDIO with transcriptions, and answers are read from
``OutputTranscript`` events. The stack itself (emulator, tunnel, session, recorder) is
:func:`.session_e2e_helpers.live_stack`; here are the audio chunking, waiting for words in
the transcript, and a token service (aiohttp) that can be slow or blip.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from tunnelproof.protocol.endpoints import Method, live_path
from tunnelproof.session import app_events as ev

from .session_e2e_helpers import EmulatorMint, Recorder, transcript_since

CHUNK_MS = 20
CHUNK = 16_000 * 2 * CHUNK_MS // 1000  # 20 ms of 16 kHz 16-bit mono


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
