"""One contract, three stores: memory, SQLite file, and Redis (a real redis-server).

Every test here runs against each store through the ``store`` fixture. Wall time is always
injected (``now_wall`` for loads, ``clock`` for the Redis TTL), never read from the machine.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tunnelproof.protocol.client_messages import Turn
from tunnelproof.session.handle_store import HANDLE_VALIDITY_SECONDS, HandleStore, StoredSession
from tunnelproof.session.stores import (
    MAX_CONVERSATION_ID_LENGTH,
    InvalidConversationId,
    MemoryHandleStore,
    RedisHandleStore,
    SqliteHandleStore,
)

T0 = 1_800_000_000.0  # an arbitrary fixed "now" (2027); stores never read the real clock here
VALIDITY = HANDLE_VALIDITY_SECONDS

StoreFactory = Callable[..., HandleStore]


class FakeWallClock:
    """A settable wall clock for the stores' ``clock`` argument."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeWallClock:
    return FakeWallClock()


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def make_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeWallClock
) -> AsyncIterator[StoreFactory]:
    """A factory of stores of one kind; every store it made is closed afterwards."""
    made: list[HandleStore] = []
    kind: str = request.param
    redis_url = request.getfixturevalue("redis_url") if kind == "redis" else ""

    def factory(**options: object) -> HandleStore:
        store: HandleStore
        if kind == "memory":
            store = MemoryHandleStore(clock=clock, **options)  # type: ignore[arg-type]
        elif kind == "sqlite":
            store = SqliteHandleStore(tmp_path / "handles.db", clock=clock, **options)  # type: ignore[arg-type]
        else:
            store = RedisHandleStore(redis_url, clock=clock, **options)  # type: ignore[arg-type]
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> HandleStore:
    return make_store()


def session(
    handle: str = "h-1",
    *,
    saved_at: float = T0,
    disconnected_at: float | None = None,
    turns: int = 2,
) -> StoredSession:
    transcript = tuple(
        Turn("user" if i % 2 == 0 else "model", f'turn {i}: héllo ☃ "quoted" \n')
        for i in range(turns)
    )
    return StoredSession(handle, saved_at, disconnected_at, transcript)


async def test_absent_is_none(store: HandleStore) -> None:
    assert await store.load("nobody", now_wall=T0) is None


async def test_round_trip(store: HandleStore) -> None:
    saved = session(disconnected_at=T0 + 5)
    await store.save("conv-1", saved)
    loaded = await store.load("conv-1", now_wall=T0 + 10)
    assert loaded == saved
    assert loaded is not None
    assert all(isinstance(t, Turn) for t in loaded.transcript)


async def test_round_trip_empty_transcript_and_connected(store: HandleStore) -> None:
    saved = StoredSession("h", T0)
    await store.save("c", saved)
    assert await store.load("c", now_wall=T0) == saved


async def test_save_replaces(store: HandleStore) -> None:
    await store.save("c", session("old"))
    await store.save("c", session("new", saved_at=T0 + 1, turns=5))
    loaded = await store.load("c", now_wall=T0 + 2)
    assert loaded is not None
    assert loaded.handle == "new"
    assert len(loaded.transcript) == 5


async def test_conversations_are_isolated(store: HandleStore) -> None:
    await store.save("a", session("ha"))
    await store.save("b", session("hb"))
    await store.delete("a")
    assert await store.load("a", now_wall=T0) is None
    loaded = await store.load("b", now_wall=T0)
    assert loaded is not None
    assert loaded.handle == "hb"


async def test_delete_is_idempotent(store: HandleStore) -> None:
    await store.delete("never-saved")
    await store.save("c", session())
    await store.delete("c")
    await store.delete("c")
    assert await store.load("c", now_wall=T0) is None


async def test_valid_until_validity_after_last_disconnect(store: HandleStore) -> None:
    disconnected = T0 + 100
    await store.save("c", session(disconnected_at=disconnected))
    assert await store.load("c", now_wall=disconnected + VALIDITY - 1) is not None
    # At the boundary the server no longer honours it: None, and it is deleted...
    assert await store.load("c", now_wall=disconnected + VALIDITY) is None
    # ...so even a load "in the past" no longer finds it.
    assert await store.load("c", now_wall=disconnected) is None


async def test_connected_session_expires_validity_after_its_last_save(
    store: HandleStore,
) -> None:
    await store.save("c", session(saved_at=T0))
    assert await store.load("c", now_wall=T0 + VALIDITY - 1) is not None
    assert await store.load("c", now_wall=T0 + VALIDITY + 1) is None


async def test_custom_validity(make_store: StoreFactory) -> None:
    store = make_store(validity=60)
    await store.save("c", session(disconnected_at=T0))
    assert await store.load("c", now_wall=T0 + 59) is not None
    assert await store.load("c", now_wall=T0 + 61) is None


async def test_a_later_disconnect_extends_validity(store: HandleStore) -> None:
    await store.save("c", session(disconnected_at=T0))
    await store.save("c", session(saved_at=T0 + 3600, disconnected_at=T0 + 3600))
    assert await store.load("c", now_wall=T0 + VALIDITY + 10) is not None


async def test_transcript_keeps_the_newest_turns(make_store: StoreFactory) -> None:
    store = make_store(max_transcript_turns=3)
    await store.save("c", session(turns=10))
    loaded = await store.load("c", now_wall=T0)
    assert loaded is not None
    assert [t.text.split(":")[0] for t in loaded.transcript] == ["turn 7", "turn 8", "turn 9"]


async def test_transcript_bound_zero_keeps_only_the_handle(make_store: StoreFactory) -> None:
    store = make_store(max_transcript_turns=0)
    await store.save("c", session(turns=4))
    loaded = await store.load("c", now_wall=T0)
    assert loaded is not None
    assert loaded.handle == "h-1"
    assert loaded.transcript == ()


async def test_large_transcript_round_trips(store: HandleStore) -> None:
    big = StoredSession("h", T0, None, tuple(Turn("user", "x" * 10_000) for _ in range(50)))
    await store.save("c", big)
    assert await store.load("c", now_wall=T0) == big


@pytest.mark.parametrize(
    "bad_id",
    ["", "x" * (MAX_CONVERSATION_ID_LENGTH + 1), "tab\there", "nul\x00", 42, None],
)
async def test_bad_conversation_ids_are_rejected(store: HandleStore, bad_id: object) -> None:
    with pytest.raises(InvalidConversationId):
        await store.save(bad_id, session())  # type: ignore[arg-type]
    with pytest.raises(InvalidConversationId):
        await store.load(bad_id, now_wall=T0)  # type: ignore[arg-type]
    with pytest.raises(InvalidConversationId):
        await store.delete(bad_id)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "good_id", ["x" * MAX_CONVERSATION_ID_LENGTH, "user:42/conv 7", "Ünïcödé-会話", "a'; DROP--"]
)
async def test_unusual_but_valid_ids(store: HandleStore, good_id: str) -> None:
    await store.save(good_id, session())
    assert await store.load(good_id, now_wall=T0) == session()


async def test_bad_sessions_are_rejected_before_writing(store: HandleStore) -> None:
    with pytest.raises(ValueError, match="handle"):
        await store.save("c", StoredSession("", T0))
    with pytest.raises(ValueError, match="saved_at"):
        await store.save("c", StoredSession("h", float("nan")))
    assert await store.load("c", now_wall=T0) is None


async def test_concurrent_saves_and_loads(store: HandleStore) -> None:
    ids = [f"conv-{i}" for i in range(40)]
    await asyncio.gather(*(store.save(c, session(f"h-{c}")) for c in ids))
    loaded = await asyncio.gather(*(store.load(c, now_wall=T0) for c in ids))
    assert [s.handle if s else None for s in loaded] == [f"h-{c}" for c in ids]


async def test_a_second_store_on_the_same_backend_sees_the_data(make_store: StoreFactory) -> None:
    first, second = make_store(), make_store()
    await first.save("c", session("shared"))
    await first.close()
    loaded = await second.load("c", now_wall=T0)
    if isinstance(second, MemoryHandleStore):
        assert loaded is None  # memory stores are per instance, by design
    else:
        assert loaded is not None
        assert loaded.handle == "shared"


async def test_close_is_idempotent(make_store: StoreFactory) -> None:
    store = make_store()
    await store.save("c", session())
    await store.close()
    await store.close()


async def test_purge_expired_keeps_the_valid_ones(make_store: StoreFactory) -> None:
    store = make_store(validity=100)
    await store.save("old", session(disconnected_at=T0))
    await store.save("fresh", session(saved_at=T0 + 500, disconnected_at=T0 + 500))
    purged = await store.purge_expired(now_wall=T0 + 200)  # type: ignore[attr-defined]
    assert purged in (0, 1)  # Redis expires by TTL and reports 0
    assert await store.load("old", now_wall=T0 + 200) is None
    assert await store.load("fresh", now_wall=T0 + 200) is not None
