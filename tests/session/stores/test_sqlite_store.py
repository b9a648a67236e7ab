"""SqliteHandleStore specifics: WAL, schema version, corrupt rows, a real process restart."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from tunnelproof.protocol.client_messages import Turn
from tunnelproof.session.handle_store import StoredSession
from tunnelproof.session.stores import HandleStoreSchemaError, SqliteHandleStore
from tunnelproof.session.stores.sqlite_store import SCHEMA_VERSION

T0 = 1_800_000_000.0


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


async def test_file_is_wal_with_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "handles.db"
    store = SqliteHandleStore(path)
    await store.save("c", StoredSession("h", T0))
    await store.close()
    conn = raw(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    finally:
        conn.close()


async def test_newer_schema_is_refused_not_misread(tmp_path: Path) -> None:
    path = tmp_path / "handles.db"
    conn = raw(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    store = SqliteHandleStore(path)
    with pytest.raises(HandleStoreSchemaError, match="schema"):
        await store.load("c", now_wall=T0)
    await store.close()


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("transcript", b"{not json"),
        ("transcript", b'[{"role": "narrator", "text": "x"}]'),
        ("transcript", b'{"role": "user"}'),
        ("handle", ""),
        ("saved_at", "yesterday"),
        ("disconnected_at", b"\x00"),
    ],
)
async def test_corrupt_row_is_logged_and_treated_as_absent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, column: str, value: object
) -> None:
    path = tmp_path / "handles.db"
    store = SqliteHandleStore(path, clock=lambda: T0)
    await store.save("c", StoredSession("h", T0, None, (Turn("user", "hi"),)))
    conn = raw(path)
    conn.execute(f"UPDATE handle_sessions SET {column} = ?", (value,))
    conn.close()
    with caplog.at_level(logging.WARNING, logger="tunnelproof.session.stores"):
        assert await store.load("c", now_wall=T0) is None
    assert "corrupt" in caplog.text
    # Deleted, so it does not warn for ever; a new save works.
    assert await store.load("c", now_wall=T0) is None
    await store.save("c", StoredSession("h2", T0))
    loaded = await store.load("c", now_wall=T0)
    assert loaded is not None
    assert loaded.handle == "h2"
    await store.close()


async def test_expired_rows_are_swept_when_the_file_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "handles.db"
    store = SqliteHandleStore(path, validity=100, clock=lambda: T0)
    await store.save("old", StoredSession("h", T0, T0))
    await store.save("fresh", StoredSession("h", T0 + 500, T0 + 500))
    await store.close()
    reopened = SqliteHandleStore(path, validity=100, clock=lambda: T0 + 200)
    assert await reopened.purge_expired(now_wall=T0 + 200) == 0  # already swept on open
    await reopened.close()
    conn = raw(path)
    try:
        ids = [r[0] for r in conn.execute("SELECT conversation_id FROM handle_sessions")]
    finally:
        conn.close()
    assert ids == ["fresh"]


async def test_load_of_expired_row_deletes_it(tmp_path: Path) -> None:
    path = tmp_path / "handles.db"
    store = SqliteHandleStore(path, clock=lambda: T0)
    await store.save("c", StoredSession("h", T0, T0))
    assert await store.load("c", now_wall=T0 + 3 * 3600) is None
    await store.close()
    conn = raw(path)
    try:
        assert conn.execute("SELECT count(*) FROM handle_sessions").fetchone() == (0,)
    finally:
        conn.close()


async def test_closed_store_raises(tmp_path: Path) -> None:
    store = SqliteHandleStore(tmp_path / "h.db")
    await store.close()
    with pytest.raises(RuntimeError, match="closed"):
        await store.load("c", now_wall=T0)


def run_child(code: str, timeout: float = 60) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_survives_a_process_restart(tmp_path: Path) -> None:
    """One process saves and dies without closing the store; a new process resumes from it."""
    path = tmp_path / "handles.db"
    run_child(
        f"""
        import asyncio, os
        from tunnelproof.protocol.client_messages import Turn
        from tunnelproof.session.handle_store import StoredSession
        from tunnelproof.session.stores import SqliteHandleStore

        async def main():
            store = SqliteHandleStore({str(path)!r})
            turns = (Turn("user", "my name is Ada"), Turn("model", "hello Ada"))
            await store.save("conv-7", StoredSession("handle-xyz", {T0}, {T0 + 1}, turns))
            os._exit(0)  # no close(), no atexit: like a crash right after the save

        asyncio.run(main())
        """
    )
    out = run_child(
        f"""
        import asyncio, orjson
        from tunnelproof.session.stores import SqliteHandleStore

        async def main():
            store = SqliteHandleStore({str(path)!r})
            s = await store.load("conv-7", now_wall={T0 + 60})
            await store.close()
            print(orjson.dumps([s.handle, s.disconnected_at, [[t.role, t.text] for t in s.transcript]]).decode())

        asyncio.run(main())
        """
    )
    assert orjson.loads(out) == [
        "handle-xyz",
        T0 + 1,
        [["user", "my name is Ada"], ["model", "hello Ada"]],
    ]


async def test_two_processes_share_one_file(tmp_path: Path) -> None:
    """A writer in another process and this process's store interleave without errors."""
    path = tmp_path / "handles.db"
    store = SqliteHandleStore(path)
    await store.save("mine", StoredSession("h-mine", T0))
    run_child(
        f"""
        import asyncio
        from tunnelproof.session.handle_store import StoredSession
        from tunnelproof.session.stores import SqliteHandleStore

        async def main():
            store = SqliteHandleStore({str(path)!r})
            for i in range(50):
                await store.save(f"theirs-{{i}}", StoredSession(f"h-{{i}}", {T0}))
            await store.close()

        asyncio.run(main())
        """
    )
    loaded = await store.load("theirs-49", now_wall=T0)
    assert loaded is not None
    assert loaded.handle == "h-49"
    mine = await store.load("mine", now_wall=T0)
    assert mine is not None
    await store.close()
