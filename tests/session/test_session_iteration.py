"""``async for event in session`` ends after ``Failed`` and ``Closed`` (issue 14, item 2).

A loop written as the README writes it cannot hang: a fatal stop ends it. ``events()``
outlives ``Failed`` for apps that offer a retry, and ends at ``Closed``.
"""

from __future__ import annotations

import asyncio

from tunnelproof.protocol.config import LiveConfig
from tunnelproof.session import app_events as ev
from tunnelproof.session.credentials import Credential, TokenAuthError
from tunnelproof.session.live_session import LiveSession


async def refuse() -> Credential:
    raise TokenAuthError("HTTP 401: sign in again")


async def test_async_for_ends_after_failed_and_a_new_loop_reads_on() -> None:
    async with LiveSession(LiveConfig(), refuse) as session:
        seen: list[ev.AppEvent] = []
        async with asyncio.timeout(10):
            async for event in session:
                seen.append(event)
        assert isinstance(seen[-1], ev.Failed)
        assert seen[-1].verdict.kind == "fatal_auth"
        await session.resume()  # refused again: a second loop sees the second Failed
        async with asyncio.timeout(10):
            again = [event async for event in session]
        assert isinstance(again[-1], ev.Failed)
        assert again[0] is not seen[-1]


async def test_events_outlives_failed_and_ends_at_closed() -> None:
    session = LiveSession(LiveConfig(), refuse)
    await session.start()
    kinds: list[type] = []

    async def read() -> None:
        async for event in session.events():
            kinds.append(type(event))
            if isinstance(event, ev.Failed):
                await session.close()

    async with asyncio.timeout(10):
        await read()
    assert ev.Failed in kinds and kinds[-1] is ev.Closed
    assert kinds.index(ev.Failed) < kinds.index(ev.Closed)


async def test_async_for_ends_at_closed() -> None:
    session = LiveSession(LiveConfig(), refuse)
    await session.start()
    await session.close()
    async with asyncio.timeout(10):
        events = [event async for event in session.events()]
    assert isinstance(events[-1], ev.Closed)
