"""The token service's sharp edges (issue 14.10), each probed the way an attacker or an
operator meets it: /healthz while Redis is dead, an unknown log level, trailing slashes
and Host-header redirects, published API docs, ``%2F`` in the path, and requests shed
while every mint slot is busy."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from tunnelproof.testing.redis_server import RedisServer, RedisServerUnavailable
from tunnelproof.testing.tokens_fixtures import running_token_service

from .helpers import ALICE, BOB, closed_port_url, misbehaving_upstream, settings_for


async def test_healthz_is_503_while_redis_is_dead(emu: Any) -> None:
    redis = RedisServer()
    try:
        await redis.start_async()
    except RedisServerUnavailable as exc:
        pytest.skip(f"redis-server unavailable: {exc}")
    try:
        settings = settings_for(emu.http_base, redis_url=redis.url)
        async with (
            running_token_service(settings) as svc,
            httpx.AsyncClient(timeout=20) as http,
        ):
            alive = await http.get(svc.url + "/healthz")
            minted = await http.post(svc.token_url, headers=ALICE)
            redis.stop()
            started = time.monotonic()
            dead = await http.get(svc.url + "/healthz")
            elapsed = time.monotonic() - started
            refused = await http.post(svc.token_url, headers=ALICE)
    finally:
        redis.stop()
    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
    assert minted.status_code == 200
    assert dead.status_code == 503
    assert dead.json() == {"status": "rate-limit storage unavailable"}
    assert elapsed < 5  # bounded by the limiter's timeout
    assert refused.status_code == 503  # what /healthz now warns a load balancer about


async def test_healthz_with_a_hanging_redis_answers_503_within_the_timeout(emu: Any) -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        settings = settings_for(emu.http_base, redis_url=f"redis://127.0.0.1:{port}/0")
        async with (
            running_token_service(settings) as svc,
            httpx.AsyncClient(timeout=30) as http,
        ):
            started = time.monotonic()
            r = await http.get(svc.url + "/healthz")
            elapsed = time.monotonic() - started
    finally:
        server.close()
    assert r.status_code == 503
    assert elapsed < 6


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TUNNELPROOF_")}
    clean.pop("GEMINI_API_KEY", None)
    clean.update(
        {
            "TUNNELPROOF_AUTH_MODE": "static",
            "TUNNELPROOF_STATIC_KEYS": "alice:alice-key-0001",
            "TUNNELPROOF_UPSTREAM_BASE_URL": closed_port_url(),
            **(env or {}),
        }
    )
    return subprocess.run(
        [sys.executable, "-c", "from tunnelproof.cli import main; main()", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("--port", "0", "--log-level", "trace"), None),
        (("--port", "0", "--log-level", "LOUD"), None),
        (("--port", "0"), {"TUNNELPROOF_LOG_LEVEL": "verbose"}),
    ],
)
def test_an_unknown_log_level_is_one_sentence(
    args: tuple[str, ...], env: dict[str, str] | None
) -> None:
    result = _serve(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "log level must be one of critical, error, warning, info, debug" in lines[0]
    assert result.stdout == ""  # never announced "ready"


def test_log_level_is_case_insensitive() -> None:
    from tunnelproof.tokens import TokenServiceSettings

    assert TokenServiceSettings(log_level="DEBUG").log_level == "debug"


async def test_no_redirect_built_from_the_host_header(emu: Any) -> None:
    async with (
        running_token_service(settings_for(emu.http_base)) as svc,
        httpx.AsyncClient(timeout=20, follow_redirects=False) as http,
    ):
        evil = {"Host": "evil.example", **ALICE}
        post = await http.post(svc.token_url + "/", headers=evil)
        health = await http.get(svc.url + "/healthz/", headers={"Host": "evil.example"})
        metrics = await http.get(svc.url + "/metrics/", headers={"Host": "evil.example"})
    for response in (post, health, metrics):
        assert response.status_code == 404, (response.request.url, response.status_code)
        assert "location" not in response.headers


async def test_api_docs_are_off_by_default_and_a_setting_turns_them_on(emu: Any) -> None:
    paths = ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect")
    async with (
        running_token_service(settings_for(emu.http_base)) as closed,
        running_token_service(settings_for(emu.http_base, docs=True)) as opened,
        httpx.AsyncClient(timeout=20) as http,
    ):
        off = [(await http.get(closed.url + p)).status_code for p in paths]
        on = [(await http.get(opened.url + p)).status_code for p in paths[:3]]
        schema = (await http.get(opened.url + "/openapi.json")).json()
    assert off == [404, 404, 404, 404]
    assert on == [200, 200, 200]
    assert "/api/live/token" in schema["paths"]


@pytest.mark.parametrize(
    "raw_path",
    [
        b"/api%2Flive%2Ftoken",
        b"/api/live%2ftoken",
        b"/api/live/tok%65n",
        b"/api/%6Cive/token",
    ],
)
async def test_a_percent_encoded_path_never_reaches_the_route(emu: Any, raw_path: bytes) -> None:
    async with (
        running_token_service(settings_for(emu.http_base)) as svc,
        httpx.AsyncClient(timeout=20) as http,
    ):
        url = httpx.URL(svc.url).copy_with(raw_path=raw_path)
        assert url.raw_path == raw_path  # httpx sends the path as written
        r = await http.post(url, headers=ALICE)
        plain = await http.post(svc.token_url, headers=ALICE)
    assert r.status_code == 404, r.text
    assert "token" not in r.json()
    assert svc.service.metrics.tokens_issued._value.get() == 1  # only the plain request
    assert plain.status_code == 200


async def test_requests_shed_while_mint_slots_are_busy_do_not_spend_the_budget() -> None:
    # One mint slot, held by a request the upstream never answers (until mint_timeout);
    # meanwhile the same user asks four more times: all shed with 503, none counted.
    async with misbehaving_upstream("hang") as upstream:
        settings = settings_for(
            upstream.base,
            rate_limit="2/minute",
            max_concurrent_mints=1,
            mint_timeout=1.5,
            mint_queue_timeout=0,  # shed at once, no wait in line
            upstream_probe_interval=0.001,  # the hung upstream is probed on every request
        )
        async with (
            running_token_service(settings) as svc,
            httpx.AsyncClient(timeout=20) as http,
        ):
            holder = asyncio.create_task(http.post(svc.token_url, headers=ALICE))
            async with asyncio.timeout(10):
                while not upstream.requests:  # the slot is taken once the upstream is asked
                    await asyncio.sleep(0.01)
            shed = [(await http.post(svc.token_url, headers=ALICE)) for _ in range(4)]
            other_user = await http.post(svc.token_url, headers=BOB)
            first = await holder
            # The budget (2/minute) has one request spent, by the request that held the slot.
            again = await http.post(svc.token_url, headers=ALICE)
            over = await http.post(svc.token_url, headers=ALICE)
    assert [r.status_code for r in shed] == [503] * 4
    assert all(int(r.headers["retry-after-ms"]) >= 1000 for r in shed)  # overload: >= 1 s
    assert other_user.status_code == 503
    assert first.status_code == 503  # the upstream never answered: a transient failure
    assert again.status_code == 503  # not 429: the shed requests cost nothing
    assert over.status_code == 429
    assert len(upstream.requests) == 2
