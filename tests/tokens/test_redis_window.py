"""The Redis moving window (one pipelined EVALSHA per hit) against a real redis-server:
exact budgets under concurrency, the ``limits`` library's data layout (mixed replicas share
one budget), and recovery from a flushed script cache, a killed connection, AUTH and db."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
import redis.asyncio as redis_asyncio
from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from tunnelproof.testing.redis_server import RedisServer, RedisServerUnavailable
from tunnelproof.tokens import UserRateLimiter
from tunnelproof.tokens.ratelimit import RateLimiterUnavailable
from tunnelproof.tokens.redis_window import RedisError, RedisMovingWindow, parse_redis_url


async def test_pipelined_hits_count_exactly(redis_url: str) -> None:
    window = RedisMovingWindow(redis_url)
    try:
        keys = [f"user-{i}" for i in range(20)]
        results = await asyncio.gather(*(window.hit(k, 5, 60) for k in keys * 10))
    finally:
        await window.aclose()
    allowed = Counter(k for k, r in zip(keys * 10, results, strict=True) if r is None)
    assert allowed == dict.fromkeys(keys, 5)
    waits = [r for r in results if r is not None]
    assert len(waits) == 20 * 5
    assert all(58 < w <= 60 for w in waits)


async def test_limits_library_replicas_share_the_same_budget(redis_url: str) -> None:
    # A rolling upgrade: one replica still on the limits library, one on RedisMovingWindow.
    old = MovingWindowRateLimiter(storage_from_string("async+" + redis_url))
    new = UserRateLimiter("4/minute", redis_url=redis_url)
    item = parse("4/minute")
    try:
        assert await old.hit(item, "tunnelproof-token", "ada")
        assert await new.hit("ada") is None
        assert await old.hit(item, "tunnelproof-token", "ada")
        assert await new.hit("ada") is None
        assert not await old.hit(item, "tunnelproof-token", "ada")  # 4 of 4 spent
        wait = await new.hit("ada")
        assert wait is not None and 1 <= wait <= 60
        assert await new.hit("grace") is None  # per user
    finally:
        await new.aclose()


async def test_a_flushed_script_cache_and_a_killed_connection_recover(redis_url: str) -> None:
    window = RedisMovingWindow(redis_url)
    admin = redis_asyncio.Redis.from_url(redis_url)
    try:
        assert await window.hit("k", 100, 60) is None
        await admin.script_flush()  # EVALSHA now answers NOSCRIPT on the same connection
        assert await window.hit("k", 100, 60) is None
        killed = await admin.client_kill_filter(_type="normal", skipme=True)
        assert killed >= 1
        await asyncio.sleep(0.1)  # the reader sees the EOF
        assert await window.hit("k", 100, 60) is None  # a new connection
        assert await admin.llen("LIMITS:k") == 3
    finally:
        await window.aclose()
        await admin.aclose()


async def test_password_and_database_from_the_url() -> None:
    server = RedisServer()
    try:
        await server.start_async()
    except RedisServerUnavailable as exc:
        pytest.skip(f"redis-server unavailable: {exc}")
    try:
        # Set after start-up: RedisServer's readiness check pings without a password.
        setup = redis_asyncio.Redis(port=server.port)
        await setup.config_set("requirepass", "s3cret pass")
        await setup.aclose()
        base = f"redis://:s3cret%20pass@127.0.0.1:{server.port}"
        good = UserRateLimiter("1/minute", redis_url=base + "/3")
        bad = UserRateLimiter("1/minute", redis_url=f"redis://:wrong@127.0.0.1:{server.port}/0")
        try:
            assert await good.check_storage()
            assert await good.hit("ada") is None
            assert await good.hit("ada") is not None
            assert not await bad.check_storage()
            with pytest.raises(RateLimiterUnavailable):
                await bad.hit("ada")
        finally:
            await good.aclose()
            await bad.aclose()
        admin = redis_asyncio.Redis(port=server.port, password="s3cret pass", db=3)
        try:
            assert await admin.exists("LIMITS:LIMITER/tunnelproof-token/ada/1/1/minute")
        finally:
            await admin.aclose()
    finally:
        server.stop()


async def test_nothing_listening_is_a_redis_error_quickly() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    window = RedisMovingWindow(f"redis://127.0.0.1:{port}/0", timeout=1.0)
    with pytest.raises(RedisError, match="cannot connect"):
        await window.hit("k", 1, 60)
    assert not await window.ping()


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("redis://localhost", ("localhost", 6379, 0, None, None, False)),
        ("redis://h:7000/2", ("h", 7000, 2, None, None, False)),
        ("async+redis://u:p%40ss@h/1", ("h", 6379, 1, "u", "p@ss", False)),
        ("rediss://:pw@h:6380", ("h", 6380, 0, None, "pw", True)),
    ],
)
def test_parse_redis_url(url: str, parsed: tuple[object, ...]) -> None:
    assert parse_redis_url(url) == parsed


@pytest.mark.parametrize("url", ["http://h", "redis://", "unix:///tmp/redis.sock"])
def test_parse_redis_url_refuses_others(url: str) -> None:
    with pytest.raises(ValueError, match="redis://"):
        parse_redis_url(url)
