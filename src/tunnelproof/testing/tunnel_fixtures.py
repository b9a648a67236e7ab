"""pytest fixtures (tunnel, netns, Redis); exported through tunnelproof.testing.pytest_plugin.

Drop the link mid-answer and check the app recovers, in a few lines::

    async def test_survives_a_tunnel(emulator, tunnel):
        link = await tunnel(emulator.host, emulator.port)   # a TunnelProxy in front of it
        config = LiveConfig()                               # spoken answers + transcript
        async with ApiKeyMintingSource(
            emulator.api_key, config, http_base=emulator.http_base, ws_base=link.url("ws")
        ) as tokens, LiveSession(config, tokens) as session:
            await session.ask("my name is Ada", timeout=30)
            link.blackhole()                                # the train enters the tunnel
            link.schedule([(5.0, "restore")])               # and leaves it 5 s later
            answer = await session.ask("what did I say first?", timeout=30)
            assert "Ada" in answer.text

Fixtures:

``tunnel``
    A factory: ``await tunnel(host, port, **kwargs)`` starts a
    :class:`~tunnelproof.testing.tunnel.TunnelProxy` on a free loopback port in front of
    ``host:port`` (keyword arguments go to ``TunnelProxy``); every proxy it made is stopped
    after the test. ``host`` may also be any object with ``host`` and ``port`` attributes
    (e.g. the ``emulator`` fixture's server).
``emulator_tunnel``
    A ``TunnelProxy`` in front of the ``emulator`` fixture: ``emulator_tunnel.url("ws")`` is
    the ``ws_base`` to give your client.
``netns_tunnel``
    A started :class:`~tunnelproof.testing.netns.NetnsTunnel` (network namespace + veth +
    nftables blackhole) for half-open detection against the real kernel; skips with the
    reason where namespaces are unavailable (not root, no ``ip``/``nft``).
``redis_server``
    A private ``redis-server`` for the whole session
    (:class:`~tunnelproof.testing.redis_server.RedisServer`); skips with the reason when
    Redis is not installed and cannot be installed.
``redis_url``
    ``redis_server.url`` after ``FLUSHALL``, so each test starts from an empty server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Protocol

import pytest

from tunnelproof.testing.async_fixtures import async_fixture
from tunnelproof.testing.netns import NetnsTunnel, netns_available
from tunnelproof.testing.redis_server import RedisServer, RedisServerUnavailable
from tunnelproof.testing.tunnel import TunnelProxy

__all__ = [
    "TunnelFactory",
    "emulator_tunnel",
    "netns_tunnel",
    "redis_server",
    "redis_url",
    "tunnel",
]


class _HasHostPort(Protocol):
    host: str
    port: int


TunnelFactory = Callable[..., Awaitable[TunnelProxy]]
"""``await tunnel(host, port, **TunnelProxy_kwargs)`` or ``await tunnel(server)``."""


@async_fixture
async def tunnel() -> AsyncIterator[TunnelFactory]:
    """Start TunnelProxy instances in front of any host:port; all stopped at teardown."""
    started: list[TunnelProxy] = []

    async def make(
        target: str | _HasHostPort, port: int | None = None, **kwargs: Any
    ) -> TunnelProxy:
        if isinstance(target, str):
            if port is None:
                raise TypeError("tunnel(host, port): the port is missing")
            host = target
        else:
            host, port = target.host, target.port if port is None else port
        proxy = TunnelProxy(host, port, **kwargs)
        await proxy.start()
        started.append(proxy)
        return proxy

    try:
        yield make
    finally:
        for proxy in reversed(started):
            await proxy.stop()


@async_fixture
async def emulator_tunnel(emulator: _HasHostPort, tunnel: TunnelFactory) -> TunnelProxy:
    """A TunnelProxy in front of the ``emulator`` fixture.

    A declared dependency, not ``request.getfixturevalue``: anyio refuses to set up an async
    fixture from inside another one that is running.
    """
    return await tunnel(emulator)


@async_fixture
async def netns_tunnel() -> AsyncIterator[NetnsTunnel]:
    """A started network-namespace tunnel; skips with the reason where unavailable."""
    available, reason = netns_available()
    if not available:
        pytest.skip(reason)
    async with NetnsTunnel() as ns:
        yield ns


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
