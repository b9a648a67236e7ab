"""pytest fixtures (tunnel, Redis); exported through tunnelproof.testing.pytest_plugin.

Fixtures:

``redis_server``
    A private ``redis-server`` for the whole test session (:class:`RedisServer`). Skips the
    test, with the reason, when Redis is not installed and cannot be installed.
``redis_url``
    ``redis_server.url`` after ``FLUSHALL``, so each test starts from an empty server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tunnelproof.testing.redis_server import RedisServer, RedisServerUnavailable

__all__ = ["redis_server", "redis_url"]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real ``redis-server`` on a free loopback port, shared by the test session."""
    server = RedisServer()
    try:
        server.start()
    except RedisServerUnavailable as exc:
        pytest.skip(f"redis-server unavailable: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, emptied (``FLUSHALL``) before this test."""
    redis_server.flushall()
    return redis_server.url
