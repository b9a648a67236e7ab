"""No API key: one clear start-up log line, 500 "Server misconfigured", /healthz 503."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tunnelproof.protocol import LiveConfig
from tunnelproof.protocol.close_codes import CloseClass
from tunnelproof.session import Failed, LiveSession
from tunnelproof.tokens import TokenServiceSource

from .helpers import ALICE, closed_port_url, serve_subprocess, static_env


async def test_missing_key_is_logged_at_startup_and_answered_with_500(tmp_path: Path) -> None:
    env = static_env(closed_port_url(), key=None)
    async with serve_subprocess(tmp_path, env) as svc, httpx.AsyncClient(timeout=20) as http:
        unauthenticated = await http.post(svc.token_url)
        r = await http.post(svc.token_url, headers=ALICE)
        health = await http.get(svc.url + "/healthz")
        log = svc.stderr()
    assert [line for line in log.splitlines() if "no Gemini API key configured" in line], log
    assert "GEMINI_API_KEY" in log
    # Auth still comes first: a stranger learns nothing about the configuration.
    assert unauthenticated.status_code == 401
    assert r.status_code == 500
    assert r.json() == {
        "error": "Server misconfigured",
        "code": "misconfigured",
        "detail": "the token service has no Gemini API key configured",
    }
    assert r.headers["cache-control"] == "no-store"
    assert health.status_code == 503


async def test_a_session_reports_a_misconfigured_service_within_seconds(tmp_path: Path) -> None:
    """End to end: a real ``tunnelproof serve`` without its key, a LiveSession fetching from it
    through TokenServiceSource. One request, then ``Failed`` with a sentence saying the token
    service is misconfigured (it took 97 s and 13 attempts when every 500 was retried)."""
    env = static_env(closed_port_url(), key=None)
    config = LiveConfig(response_modalities=("TEXT",))
    async with serve_subprocess(tmp_path, env) as svc:
        source = TokenServiceSource(svc.token_url, lambda: ALICE["Authorization"], timeout=5)
        started = time.monotonic()
        events: list[object] = []
        async with LiveSession(config, source) as session:
            async with asyncio.timeout(20):
                async for event in session:
                    events.append(event)
                    if isinstance(event, Failed):
                        break
            elapsed = time.monotonic() - started
        log = svc.stderr()
    failed = events[-1]
    assert isinstance(failed, Failed), events
    assert elapsed < 5.0, elapsed
    assert failed.verdict.kind is CloseClass.FATAL_CONFIG
    assert "misconfigured" in failed.verdict.reason
    assert "no Gemini API key configured" in failed.verdict.reason
    assert "misconfigured" in failed.advice
    # Exactly one token request reached the service: nothing was retried.
    assert log.count("POST /api/live/token") == 1, log
