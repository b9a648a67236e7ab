"""Where resumption handles live between connections and, optionally, between processes.

A handle is valid on the server for a window (2 h) after the session's *last disconnect*.
Stores are keyed by the app's own conversation id. Implementations: memory (default),
SQLite file (embedded, survives a process restart) and Redis (shared by workers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from tunnelproof.protocol.client_messages import Turn
from tunnelproof.protocol.types import HANDLE_VALIDITY_SECONDS as HANDLE_VALIDITY_SECONDS


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A conversation's resumable state as the client knows it.

    ``saved_at`` and ``disconnected_at`` are wall-clock UNIX seconds. ``transcript`` is the
    client's own record of the conversation, used to re-seed a fresh session when the
    server refuses the handle.
    """

    handle: str
    saved_at: float
    disconnected_at: float | None = None
    transcript: tuple[Turn, ...] = field(default_factory=tuple)

    def valid_at(self, now_wall: float, validity: float = HANDLE_VALIDITY_SECONDS) -> bool:
        """True while the server should still accept the handle."""
        if self.disconnected_at is None:
            return True
        return now_wall < self.disconnected_at + validity


class HandleStore(Protocol):
    """Async storage of :class:`StoredSession` by conversation id."""

    async def load(self, conversation_id: str, *, now_wall: float) -> StoredSession | None:
        """The stored session, or ``None`` if absent or past its validity (then deleted)."""
        ...

    async def save(self, conversation_id: str, session: StoredSession) -> None:
        """Store (replace) the session for ``conversation_id``."""
        ...

    async def delete(self, conversation_id: str) -> None:
        """Forget ``conversation_id`` (e.g. after the server refused its handle)."""
        ...

    async def close(self) -> None:
        """Release connections/files."""
        ...
