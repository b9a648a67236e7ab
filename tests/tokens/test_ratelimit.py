"""Per-user moving-window limits: in memory, and in a real redis-server shared by two
service processes (one budget, not two)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import httpx

from tunnelproof.testing.tokens_fixtures import running_token_service

from .helpers import ALICE, BOB, closed_port_url, serve_subprocesses, settings_for, static_env


async def test_burst_beyond_the_limit_is_429_with_retry_after(emu: Any) -> None:
    async with (
        running_token_service(settings_for(emu.http_base, rate_limit="3/minute")) as svc,
        httpx.AsyncClient(timeout=20) as http,
    ):
        statuses = [(await http.post(svc.token_url, headers=ALICE)).status_code for _ in range(3)]
        limited = await http.post(svc.token_url, headers=ALICE)
        other_user = await http.post(svc.token_url, headers=BOB)
    assert statuses == [200, 200, 200]
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.headers["cache-control"] == "no-store"
    assert "token" not in limited.json()
    assert other_user.status_code == 200  # the budget is per user


async def test_memory_limits_are_per_process(emu: Any) -> None:
    # The contrast for the Redis test below: without shared storage each replica counts alone.
    settings = settings_for(emu.http_base, rate_limit="1/minute")
    async with (
        running_token_service(settings) as one,
        running_token_service(settings) as two,
        httpx.AsyncClient(timeout=20) as http,
    ):
        assert (await http.post(one.token_url, headers=ALICE)).status_code == 200
        assert (await http.post(two.token_url, headers=ALICE)).status_code == 200
        assert (await http.post(one.token_url, headers=ALICE)).status_code == 429


async def test_two_replicas_share_one_budget_in_redis(
    emu: Any, redis_url: str, tmp_path: Path
) -> None:
    env = static_env(
        emu.http_base, TUNNELPROOF_REDIS_URL=redis_url, TUNNELPROOF_RATE_LIMIT="3/minute"
    )
    async with (
        serve_subprocesses(tmp_path, (env, "a"), (env, "b")) as (a, b),
        httpx.AsyncClient(timeout=20) as http,
    ):
        first = [
            (await http.post(url, headers=ALICE)).status_code
            for url in (a.token_url, b.token_url, a.token_url)
        ]
        over_b = await http.post(b.token_url, headers=ALICE)
        over_a = await http.post(a.token_url, headers=ALICE)
        bob = await http.post(b.token_url, headers=BOB)
    assert first == [200, 200, 200]
    assert over_b.status_code == 429
    assert over_a.status_code == 429
    assert int(over_b.headers["retry-after"]) >= 1
    assert bob.status_code == 200


async def test_redis_unreachable_fails_closed(emu: Any) -> None:
    redis = closed_port_url().replace("http://", "redis://") + "/0"
    async with (
        running_token_service(settings_for(emu.http_base, redis_url=redis)) as svc,
        httpx.AsyncClient(timeout=30) as http,
    ):
        r = await http.post(svc.token_url, headers=ALICE)
    assert r.status_code == 503
    assert "retry-after" in r.headers


async def test_hanging_redis_does_not_hang_token_requests(emu: Any) -> None:
    # A TCP peer that accepts and never answers: what a wedged Redis looks like to us.
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while await reader.read(4096):
                pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with (
            running_token_service(
                settings_for(emu.http_base, redis_url=f"redis://127.0.0.1:{port}/0")
            ) as svc,
            httpx.AsyncClient(timeout=30) as http,
        ):
            started = time.monotonic()
            r = await http.post(svc.token_url, headers=ALICE)
            elapsed = time.monotonic() - started
    finally:
        server.close()
    assert r.status_code == 503
    assert elapsed < 10  # bounded by the limiter's 2 s timeout, not by the peer
