"""Handle stores: where resumption handles and transcripts live, keyed by conversation id.

All three implement :class:`tunnelproof.session.handle_store.HandleStore` with the same
rules, checked by one shared contract test:

* :class:`MemoryHandleStore` — the default; gone with the process.
* :class:`SqliteHandleStore` — a local file (WAL); the embedded choice when handles must
  survive a restart of the app.
* :class:`RedisHandleStore` — shared by several workers; Redis expires keys by itself.

Common rules: ``load`` returns ``None`` for an absent, corrupt (logged) or expired session
and deletes it; a session expires ``validity`` (2 h) after its last disconnect, or after its
last save if it was never marked disconnected; transcripts keep their newest
``max_transcript_turns`` turns; conversation ids must be non-empty strings of at most 256
characters without control characters (:class:`InvalidConversationId` otherwise).

:func:`open_handle_store` builds one from a URL: ``memory://``, ``sqlite:///path/file.db``,
``redis://host:port/db``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunnelproof.session.handle_store import HandleStore
from tunnelproof.session.stores._common import (
    DEFAULT_MAX_TRANSCRIPT_TURNS,
    MAX_CONVERSATION_ID_LENGTH,
    CorruptRecord,
    InvalidConversationId,
    validate_conversation_id,
)
from tunnelproof.session.stores.memory_store import MemoryHandleStore
from tunnelproof.session.stores.redis_store import RedisHandleStore
from tunnelproof.session.stores.sqlite_store import HandleStoreSchemaError, SqliteHandleStore

__all__ = [
    "DEFAULT_MAX_TRANSCRIPT_TURNS",
    "MAX_CONVERSATION_ID_LENGTH",
    "CorruptRecord",
    "HandleStoreSchemaError",
    "InvalidConversationId",
    "MemoryHandleStore",
    "RedisHandleStore",
    "SqliteHandleStore",
    "open_handle_store",
    "validate_conversation_id",
]


if TYPE_CHECKING:

    def _implements_the_protocol(
        memory: MemoryHandleStore, sqlite: SqliteHandleStore, redis: RedisHandleStore
    ) -> list[HandleStore]:
        # mypy checks here that every store structurally satisfies HandleStore.
        return [memory, sqlite, redis]


def open_handle_store(url: str, **options: Any) -> HandleStore:
    """A store from a URL; ``options`` go to its constructor (e.g. ``validity``).

    * ``memory://`` → :class:`MemoryHandleStore`
    * ``sqlite:///abs/path.db`` or ``sqlite://relative/path.db`` → :class:`SqliteHandleStore`
    * ``redis://…`` / ``rediss://…`` / ``unix://…`` → :class:`RedisHandleStore`
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(
            f"handle store URL needs a scheme (memory://, sqlite://, redis://): {url!r}"
        )
    scheme = scheme.lower()
    if scheme == "memory":
        return MemoryHandleStore(**options)
    if scheme == "sqlite":
        if not rest:
            raise ValueError("sqlite:// URL needs a path, e.g. sqlite:///var/lib/app/handles.db")
        return SqliteHandleStore(Path(rest), **options)
    if scheme in ("redis", "rediss", "unix"):
        return RedisHandleStore(url, **options)
    raise ValueError(f"unknown handle store scheme {scheme!r} (memory, sqlite, redis)")
