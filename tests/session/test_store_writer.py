"""Handle saves are coalesced: after ``close()`` the newest handle is stored (issue 14, 9).

A queue of every save fell behind a flood of handle updates and ``close()`` gave up after
5 s, leaving an old handle stored (``h-22549`` instead of ``h-99999``).
"""

from __future__ import annotations

import asyncio
import time

from tunnelproof.protocol.config import LiveConfig
from tunnelproof.session.actions import DeleteHandle, SaveHandle
from tunnelproof.session.credentials import Credential
from tunnelproof.session.handle_store import StoredSession
from tunnelproof.session.live_session import LiveSession
from tunnelproof.session.store_writer import StoreWriter
from tunnelproof.session.stores import MemoryHandleStore


class SlowStore(MemoryHandleStore):
    """A store whose writes take ``delay`` seconds each (a busy Redis or SQLite file)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.saves = 0

    async def save(self, conversation_id: str, session: StoredSession) -> None:
        await asyncio.sleep(self.delay)
        self.saves += 1
        await super().save(conversation_id, session)

    async def delete(self, conversation_id: str) -> None:
        await asyncio.sleep(self.delay)
        await super().delete(conversation_id)


def record(k: int) -> StoredSession:
    return StoredSession(handle=f"h-{k}", saved_at=time.time())


async def test_a_flood_of_saves_is_coalesced_and_the_newest_lands() -> None:
    store = SlowStore(delay=0.005)
    writer = StoreWriter(store, "conv")
    writer.start()
    for k in range(3000):
        writer.save(record(k))
        if k % 100 == 0:
            await asyncio.sleep(0)  # the loop runs between bursts, as with real frames
    await writer.close(timeout=5.0)
    stored = await store.load("conv", now_wall=time.time())
    assert stored is not None and stored.handle == "h-2999"
    assert store.saves < 100, "coalesced, not one write per update"


async def test_the_newest_write_wins_whether_save_or_delete() -> None:
    store = SlowStore(delay=0.001)
    writer = StoreWriter(store, "conv")
    writer.start()
    writer.save(record(1))
    writer.delete()
    await writer.close()
    assert await store.load("conv", now_wall=time.time()) is None
    writer = StoreWriter(store, "conv")
    writer.start()
    writer.delete()
    writer.save(record(2))
    await writer.close()
    stored = await store.load("conv", now_wall=time.time())
    assert stored is not None and stored.handle == "h-2"


async def never() -> Credential:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_live_session_close_stores_the_newest_handle_after_a_flood() -> None:
    store = SlowStore(delay=0.005)
    session = LiveSession(LiveConfig(), never, conversation_id="conv", handle_store=store)
    await session.start()
    # What the machine asks for on every resumable handle: 3000 saves at 5 ms each would
    # take 15 s one by one, three times close()'s bound.
    session._perform([SaveHandle(record(k)) for k in range(3000)])
    started = time.monotonic()
    await session.close()
    assert time.monotonic() - started < 5.0
    stored = await store.load("conv", now_wall=time.time())
    assert stored is not None and stored.handle == "h-2999"
    session2 = LiveSession(LiveConfig(), never, conversation_id="c2", handle_store=store)
    await session2.start()
    session2._perform([SaveHandle(record(1)), DeleteHandle()])
    await session2.close()
    assert await store.load("c2", now_wall=time.time()) is None
