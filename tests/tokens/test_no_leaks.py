"""The API key and every issued token never appear in a log line or an error body.

Logs are captured twice: caplog (DEBUG, every logger) for a service running in this process,
and the stderr of `tunnelproof serve` subprocesses running at debug level. Both go through
success and failure paths; then we grep for the key and each token we were handed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from tunnelproof.testing.tokens_fixtures import running_token_service
from tunnelproof.tokens import TokenServiceSource

from .helpers import (
    ALICE,
    BOB,
    EMULATOR_KEY,
    closed_port_url,
    misbehaving_upstream,
    serve_subprocesses,
    settings_for,
    static_env,
)


async def _exercise(
    http: httpx.AsyncClient, token_url: str, tokens: list[str], bodies: list[str]
) -> None:
    for _ in range(3):
        r = await http.post(token_url, headers=ALICE)
        if r.status_code == 200:
            tokens.append(r.json()["token"])
        else:
            bodies.append(r.text)  # error bodies only: a 200 body *is* the token
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {**BOB, "Origin": "https://evil.example"},
        {**BOB, "Content-Type": "text/plain"},
    ):
        bodies.append((await http.post(token_url, headers=headers, content=b"x")).text)


async def test_no_key_or_token_in_any_log_or_body(
    emu: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens: list[str] = []
    bodies: list[str] = []
    stderr_logs: list[str] = []
    async with httpx.AsyncClient(timeout=30) as http:
        # 1. in this process: success, rate limit, auth failures, then client-source use.
        async with running_token_service(settings_for(emu.http_base, rate_limit="2/minute")) as svc:
            await _exercise(http, svc.token_url, tokens, bodies)
            credential = await TokenServiceSource(svc.token_url, lambda: BOB["Authorization"])()
            tokens.append(credential.secret)
        # 2. upstream failures in this process: down, and an upstream echoing the key.
        async with running_token_service(settings_for(closed_port_url())) as down:
            bodies.append((await http.post(down.token_url, headers=ALICE)).text)
        async with (
            misbehaving_upstream("error") as upstream,
            running_token_service(settings_for(upstream.base)) as failing,
        ):
            bodies.append((await http.post(failing.token_url, headers=ALICE)).text)
        # 3. real `tunnelproof serve` processes at debug level (started at once).
        env = static_env(emu.http_base, TUNNELPROOF_RATE_LIMIT="2/minute")
        async with (
            misbehaving_upstream("error") as upstream,
            serve_subprocesses(tmp_path, (env, "ok"), (static_env(upstream.base), "err")) as (
                proc,
                proc_err,
            ),
        ):
            await _exercise(http, proc.token_url, tokens, bodies)
            bodies.append((await http.post(proc_err.token_url, headers=ALICE)).text)
        stderr_logs.append(proc.stderr())
        stderr_logs.append(proc_err.stderr())

    assert len(tokens) >= 5, "the success paths must have run"
    assert len(set(tokens)) == len(tokens)
    # The emulator plays Google: it knows the key and the tokens it minted, and may log them.
    ours = [r for r in caplog.records if not r.name.startswith("tunnelproof.emulator")]
    captured = "\n".join(r.getMessage() + (r.exc_text or "") for r in ours)
    assert len(bodies) >= 12
    everything = [captured, *stderr_logs, *bodies]
    assert "upstream mint failed" in captured  # the failure paths were logged...
    assert any("upstream mint failed" in log for log in stderr_logs)
    assert "UPSTREAM-SECRET-DETAIL" in captured  # ...with upstream detail for the operator
    assert not any("UPSTREAM-SECRET-DETAIL" in body for body in bodies)  # but not the caller
    for text in everything:
        assert EMULATOR_KEY not in text
        for token in tokens:
            assert token not in text
            assert token.removeprefix("auth_tokens/") not in text
