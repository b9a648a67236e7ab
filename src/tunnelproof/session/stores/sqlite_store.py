"""SQLite file handle store: the embedded default when handles must outlive the process.

The stdlib ``sqlite3`` module blocks, so every call runs in a worker thread
(:func:`asyncio.to_thread`) and the event loop never waits on the disk. One connection is
shared by those threads behind a lock (SQLite connections are not safe for concurrent use).

The file uses WAL journaling, so readers in other processes never block the writer, and
``synchronous=NORMAL``: a committed save survives the process being killed (what a restart
needs); only an OS crash or power cut can lose the last few saves, which costs a fresh
session, not correctness. The schema version lives in ``PRAGMA user_version``; a file
written by a newer tunnelproof is refused rather than misread.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tunnelproof.protocol.types import HANDLE_VALIDITY_SECONDS
from tunnelproof.session.handle_store import StoredSession
from tunnelproof.session.stores._common import (
    DEFAULT_MAX_TRANSCRIPT_TURNS,
    CorruptRecord,
    bound_transcript,
    check_limits,
    check_session,
    decode_transcript,
    encode_transcript,
    expires_at,
    logger,
    validate_conversation_id,
)

SCHEMA_VERSION = 1

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS handle_sessions (
    conversation_id TEXT PRIMARY KEY NOT NULL,
    handle          TEXT NOT NULL,
    saved_at        REAL NOT NULL,
    disconnected_at REAL,
    expires_at      REAL NOT NULL,
    transcript      BLOB NOT NULL
) WITHOUT ROWID
""",
    "CREATE INDEX IF NOT EXISTS handle_sessions_expires_at ON handle_sessions (expires_at)",
)

# One statement, so the replace is atomic even with several processes on one file.
_UPSERT = """
INSERT INTO handle_sessions
    (conversation_id, handle, saved_at, disconnected_at, expires_at, transcript)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (conversation_id) DO UPDATE SET
    handle = excluded.handle,
    saved_at = excluded.saved_at,
    disconnected_at = excluded.disconnected_at,
    expires_at = excluded.expires_at,
    transcript = excluded.transcript
"""

_T = TypeVar("_T")


class HandleStoreSchemaError(RuntimeError):
    """The SQLite file has a schema this version does not understand."""


class SqliteHandleStore:
    """Sessions in a SQLite file, keyed by conversation id; survives process restarts.

    Args:
        path: the database file (created with its directory if missing).
        validity: seconds a handle stays usable after the last disconnect (2 h).
        max_transcript_turns: newest turns kept per conversation.
        busy_timeout: seconds to wait for another process's write lock.
        clock: wall clock (UNIX seconds) for the sweep of expired rows on open.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        validity: float = HANDLE_VALIDITY_SECONDS,
        max_transcript_turns: int = DEFAULT_MAX_TRANSCRIPT_TURNS,
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_limits(validity, max_transcript_turns)
        self.path = Path(path)
        self.validity = validity
        self.max_transcript_turns = max_transcript_turns
        self._busy_timeout = busy_timeout
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._closed = False

    # -- thread side -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError("SqliteHandleStore is closed")
        if self._conn is not None:
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,  # autocommit: each statement is its own transaction
            check_same_thread=False,  # used from worker threads, serialised by self._lock
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                (version,) = conn.execute("PRAGMA user_version").fetchone()
                if version > SCHEMA_VERSION:
                    raise HandleStoreSchemaError(
                        f"{self.path} has handle-store schema {version}; this tunnelproof "
                        f"understands up to {SCHEMA_VERSION}. Upgrade tunnelproof or use "
                        "another file."
                    )
                if version < SCHEMA_VERSION:
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                # Sweep rows nobody will load again, so the file stays bounded.
                conn.execute("DELETE FROM handle_sessions WHERE expires_at <= ?", (self._clock(),))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            return fn(self._connect())

    def _load_sync(self, conversation_id: str, now_wall: float) -> StoredSession | None:
        def op(conn: sqlite3.Connection) -> StoredSession | None:
            row = conn.execute(
                "SELECT handle, saved_at, disconnected_at, transcript FROM handle_sessions "
                "WHERE conversation_id = ?",
                (conversation_id,),
            ).fetchone()
            if row is None:
                return None
            handle, saved_at, disconnected_at, transcript = row
            try:
                session = _row_to_session(handle, saved_at, disconnected_at, transcript)
            except CorruptRecord as exc:
                logger.warning(
                    "handle store %s: corrupt row for conversation %r (%s); treating it as "
                    "absent and deleting it",
                    self.path,
                    conversation_id,
                    exc,
                )
                conn.execute(
                    "DELETE FROM handle_sessions WHERE conversation_id = ?", (conversation_id,)
                )
                return None
            if now_wall >= expires_at(session, self.validity):
                # Only the row we judged: a concurrent save of a fresh handle must survive.
                conn.execute(
                    "DELETE FROM handle_sessions WHERE conversation_id = ? AND saved_at = ?",
                    (conversation_id, saved_at),
                )
                return None
            return session

        return self._run(op)

    def _save_sync(self, conversation_id: str, session: StoredSession) -> None:
        params = (
            conversation_id,
            session.handle,
            session.saved_at,
            session.disconnected_at,
            expires_at(session, self.validity),
            encode_transcript(session.transcript),
        )
        self._run(lambda conn: conn.execute(_UPSERT, params))

    def _delete_sync(self, conversation_id: str) -> None:
        self._run(
            lambda conn: conn.execute(
                "DELETE FROM handle_sessions WHERE conversation_id = ?", (conversation_id,)
            )
        )

    def _purge_sync(self, now_wall: float) -> int:
        def op(conn: sqlite3.Connection) -> int:
            cursor = conn.execute("DELETE FROM handle_sessions WHERE expires_at <= ?", (now_wall,))
            return cursor.rowcount

        return self._run(op)

    def _close_sync(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- async API -------------------------------------------------------------------

    async def load(self, conversation_id: str, *, now_wall: float) -> StoredSession | None:
        """The stored session, or ``None`` if absent, corrupt (logged) or expired (deleted)."""
        validate_conversation_id(conversation_id)
        return await asyncio.to_thread(self._load_sync, conversation_id, now_wall)

    async def save(self, conversation_id: str, session: StoredSession) -> None:
        """Store (replace) the session atomically; the transcript is cut to the newest turns."""
        validate_conversation_id(conversation_id)
        check_session(session)
        bounded = bound_transcript(session, self.max_transcript_turns)
        await asyncio.to_thread(self._save_sync, conversation_id, bounded)

    async def delete(self, conversation_id: str) -> None:
        """Forget ``conversation_id`` (no error if absent)."""
        validate_conversation_id(conversation_id)
        await asyncio.to_thread(self._delete_sync, conversation_id)

    async def purge_expired(self, *, now_wall: float) -> int:
        """Delete every expired row; returns how many (also done when the file is opened)."""
        return await asyncio.to_thread(self._purge_sync, now_wall)

    async def close(self) -> None:
        """Close the database; later calls raise. Idempotent."""
        await asyncio.to_thread(self._close_sync)


def _row_to_session(
    handle: object, saved_at: object, disconnected_at: object, transcript: object
) -> StoredSession:
    if not isinstance(handle, str) or not handle:
        raise CorruptRecord("handle is missing or not text")
    if isinstance(saved_at, int):
        saved_at = float(saved_at)
    if not isinstance(saved_at, float):
        raise CorruptRecord("saved_at is not a number")
    if isinstance(disconnected_at, int):
        disconnected_at = float(disconnected_at)
    if disconnected_at is not None and not isinstance(disconnected_at, float):
        raise CorruptRecord("disconnected_at is not a number")
    if not isinstance(transcript, bytes | str):
        raise CorruptRecord("transcript is not JSON text")
    return StoredSession(
        handle=handle,
        saved_at=saved_at,
        disconnected_at=disconnected_at,
        transcript=decode_transcript(transcript),
    )
