"""RedisHandleStore specifics: server-side TTL, real expiry by Redis, corrupt values, prefix."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tunnelproof.session.handle_store import StoredSession
from tunnelproof.session.stores import RedisHandleStore

T0 = 1_800_000_000.0


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis[bytes]]:
    client: aioredis.Redis[bytes] = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()  # type: ignore[attr-defined]


async def test_ttl_is_the_remaining_validity(redis_url: str, raw: aioredis.Redis[bytes]) -> None:
    store = RedisHandleStore(redis_url, validity=7200, clock=lambda: T0 + 1000)
    await store.save("c", StoredSession("h", T0, T0))
    ttl_ms = await raw.pttl("tunnelproof:handle:c")
    assert 6_150_000 <= ttl_ms <= 6_200_000  # 7200 - 1000 s, minus a little elapsed time
    await store.close()


async def test_connected_session_ttl_counts_from_its_save(
    redis_url: str, raw: aioredis.Redis[bytes]
) -> None:
    store = RedisHandleStore(redis_url, validity=7200, clock=lambda: T0)
    await store.save("c", StoredSession("h", T0))
    assert 7_150_000 <= await raw.pttl("tunnelproof:handle:c") <= 7_200_000
    await store.close()


async def test_saving_an_already_expired_session_writes_nothing(
    redis_url: str, raw: aioredis.Redis[bytes]
) -> None:
    store = RedisHandleStore(redis_url, validity=60, clock=lambda: T0 + 61)
    await store.save("c", StoredSession("old", T0 - 10, T0))
    assert await raw.exists("tunnelproof:handle:c") == 0
    await store.close()


async def test_redis_expires_the_key_by_itself(redis_url: str, raw: aioredis.Redis[bytes]) -> None:
    # Real time here: the key must vanish from Redis with nobody calling load().
    now = time.time()
    store = RedisHandleStore(redis_url, validity=0.3)
    await store.save("c", StoredSession("h", now, now))
    assert await raw.exists("tunnelproof:handle:c") == 1
    deadline = time.monotonic() + 10
    while await raw.exists("tunnelproof:handle:c"):
        assert time.monotonic() < deadline, "Redis never expired the key"
        await asyncio.sleep(0.05)
    await store.close()


async def test_prefix_and_one_key_per_conversation(
    redis_url: str, raw: aioredis.Redis[bytes]
) -> None:
    store = RedisHandleStore(redis_url, prefix="app1:h:", clock=lambda: T0)
    await store.save("a", StoredSession("h", T0))
    await store.save("b", StoredSession("h", T0))
    assert sorted(await raw.keys("*")) == [b"app1:h:a", b"app1:h:b"]
    await store.close()


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b"[]",
        b'{"v": 99, "handle": "h", "saved_at": 1}',
        b'{"v": 1, "handle": "", "saved_at": 1, "transcript": []}',
        b'{"v": 1, "handle": "h", "saved_at": "x", "transcript": []}',
        b'{"v": 1, "handle": "h", "saved_at": 1, "transcript": [{"role": "god"}]}',
        b'{"v": 1, "handle": "h", "saved_at": 1, "disconnected_at": true, "transcript": []}',
    ],
)
async def test_corrupt_value_is_logged_and_treated_as_absent(
    redis_url: str,
    raw: aioredis.Redis[bytes],
    caplog: pytest.LogCaptureFixture,
    value: bytes,
) -> None:
    store = RedisHandleStore(redis_url, clock=lambda: T0)
    await raw.set("tunnelproof:handle:c", value)
    with caplog.at_level(logging.WARNING, logger="tunnelproof.session.stores"):
        assert await store.load("c", now_wall=T0) is None
    assert "corrupt" in caplog.text
    assert await raw.exists("tunnelproof:handle:c") == 0
    await store.close()


async def test_expiry_on_load_spares_a_fresh_concurrent_save(
    redis_url: str, raw: aioredis.Redis[bytes]
) -> None:
    # Worker A reads an expired value; before it deletes, worker B saves a fresh one.
    # A's delete must not remove B's value (compare-and-delete).
    store = RedisHandleStore(redis_url, validity=100, clock=lambda: T0)
    await store.save("c", StoredSession("old", T0, T0))
    stale = await raw.get("tunnelproof:handle:c")
    assert stale is not None
    await store.save("c", StoredSession("fresh", T0 + 500, T0 + 500))
    await store._delete_if_unchanged("tunnelproof:handle:c", stale)
    loaded = await store.load("c", now_wall=T0 + 501)
    assert loaded is not None
    assert loaded.handle == "fresh"
    await store.close()


async def test_given_client_is_not_closed(redis_url: str, raw: aioredis.Redis[bytes]) -> None:
    store = RedisHandleStore(client=raw, clock=lambda: T0)
    await store.save("c", StoredSession("h", T0))
    await store.close()
    assert await raw.ping()


def test_needs_url_or_client() -> None:
    with pytest.raises(ValueError, match="url or a client"):
        RedisHandleStore()
