"""No API key: one clear start-up log line, 500 "Server misconfigured", /healthz 503."""

from __future__ import annotations

from pathlib import Path

import httpx

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
    assert r.json() == {"error": "Server misconfigured"}
    assert r.headers["cache-control"] == "no-store"
    assert health.status_code == 503
