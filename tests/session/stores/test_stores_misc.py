"""open_handle_store URLs, memory sweep, constructor checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunnelproof.session.handle_store import StoredSession
from tunnelproof.session.stores import (
    MemoryHandleStore,
    RedisHandleStore,
    SqliteHandleStore,
    open_handle_store,
)
from tunnelproof.session.stores import memory_store as memory_store_module

T0 = 1_800_000_000.0


async def test_open_handle_store_by_url(tmp_path: Path) -> None:
    assert isinstance(open_handle_store("memory://"), MemoryHandleStore)
    sqlite = open_handle_store(f"sqlite://{tmp_path}/h.db", validity=60)
    assert isinstance(sqlite, SqliteHandleStore)
    assert sqlite.path == tmp_path / "h.db"
    assert sqlite.validity == 60
    redis = open_handle_store("redis://127.0.0.1:1/0")  # lazy: nothing connects yet
    assert isinstance(redis, RedisHandleStore)
    await redis.close()
    for bad in ("nope", "ftp://x", "sqlite://"):
        with pytest.raises(ValueError, match=r"handle store|sqlite"):
            open_handle_store(bad)


@pytest.mark.parametrize(
    "options", [{"validity": 0}, {"validity": float("inf")}, {"max_transcript_turns": -1}]
)
def test_constructor_limits(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"validity|max_transcript_turns"):
        MemoryHandleStore(**options)  # type: ignore[arg-type]


async def test_memory_store_sweeps_expired_entries_while_saving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory_store_module, "_SWEEP_EVERY", 10)
    now = [T0]
    store = MemoryHandleStore(validity=100, clock=lambda: now[0])
    for i in range(9):
        await store.save(f"old-{i}", StoredSession("h", T0, T0))
    now[0] = T0 + 1000
    await store.save("fresh", StoredSession("h", now[0]))  # 10th save triggers the sweep
    assert len(store) == 1


def test_a_session_in_memory_does_not_load_redis_or_sqlite() -> None:
    """The SQLite and Redis stores load on first use: a LiveSession with the default
    memory store does not import ``redis`` (~16k objects every full collection walks)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from tunnelproof.session.live_session import LiveSession\n"
        "from tunnelproof.session.stores import MemoryHandleStore, open_handle_store\n"
        "open_handle_store('memory://')\n"
        "heavy = [m for m in ('redis', 'sqlite3') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from tunnelproof.session import stores\n"
        "assert stores.RedisHandleStore.__name__ == 'RedisHandleStore'\n"
        "assert 'redis' in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
