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

The SQLite and Redis stores are imported on first use (``__getattr__``): a session that
keeps its handles in memory does not load ``redis`` (and what it imports), whose ~16k
objects every full collection of the garbage collector would walk.
"""

from __future__ import annotations

import importlib
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

if TYPE_CHECKING:
    from tunnelproof.session.stores.redis_store import RedisHandleStore
    from tunnelproof.session.stores.sqlite_store import HandleStoreSchemaError, SqliteHandleStore

# name -> the submodule that defines it, loaded on first use.
_LAZY = {
    "RedisHandleStore": "redis_store",
    "SqliteHandleStore": "sqlite_store",
    "HandleStoreSchemaError": "sqlite_store",
}

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


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
        from tunnelproof.session.stores.sqlite_store import SqliteHandleStore

        return SqliteHandleStore(Path(rest), **options)
    if scheme in ("redis", "rediss", "unix"):
        from tunnelproof.session.stores.redis_store import RedisHandleStore

        return RedisHandleStore(url, **options)
    raise ValueError(f"unknown handle store scheme {scheme!r} (memory, sqlite, redis)")
