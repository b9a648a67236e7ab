"""In-process handle store: the default, gone when the process exits."""

from __future__ import annotations

import time
from collections.abc import Callable

from tunnelproof.protocol.types import HANDLE_VALIDITY_SECONDS
from tunnelproof.session.handle_store import StoredSession
from tunnelproof.session.stores._common import (
    DEFAULT_MAX_TRANSCRIPT_TURNS,
    bound_transcript,
    check_limits,
    check_session,
    expires_at,
    validate_conversation_id,
)

# Expired entries are also swept every this many saves, so a long-running server that
# never loads old conversations again does not keep them for ever.
_SWEEP_EVERY = 1024


class MemoryHandleStore:
    """A dict of conversation id → :class:`StoredSession`, with the same rules as the others.

    Args:
        validity: seconds a handle stays usable after the last disconnect (2 h).
        max_transcript_turns: newest turns kept per conversation.
        clock: wall clock (UNIX seconds) for the periodic sweep of expired entries.
    """

    def __init__(
        self,
        *,
        validity: float = HANDLE_VALIDITY_SECONDS,
        max_transcript_turns: int = DEFAULT_MAX_TRANSCRIPT_TURNS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_limits(validity, max_transcript_turns)
        self.validity = validity
        self.max_transcript_turns = max_transcript_turns
        self._sessions: dict[str, StoredSession] = {}
        self._saves = 0
        self._clock = clock

    async def load(self, conversation_id: str, *, now_wall: float) -> StoredSession | None:
        """The stored session, or ``None`` if absent or past its validity (then deleted)."""
        validate_conversation_id(conversation_id)
        session = self._sessions.get(conversation_id)
        if session is None:
            return None
        if now_wall >= expires_at(session, self.validity):
            del self._sessions[conversation_id]
            return None
        return session

    async def save(self, conversation_id: str, session: StoredSession) -> None:
        """Store (replace) the session; the transcript is cut to the newest turns."""
        validate_conversation_id(conversation_id)
        check_session(session)
        self._sessions[conversation_id] = bound_transcript(session, self.max_transcript_turns)
        self._saves += 1
        if self._saves % _SWEEP_EVERY == 0:
            self._purge(self._clock())

    async def delete(self, conversation_id: str) -> None:
        """Forget ``conversation_id`` (no error if absent)."""
        validate_conversation_id(conversation_id)
        self._sessions.pop(conversation_id, None)

    async def purge_expired(self, *, now_wall: float) -> int:
        """Drop every expired entry; returns how many (also done every 1,024 saves)."""
        return self._purge(now_wall)

    def _purge(self, now_wall: float) -> int:
        dead = [k for k, s in self._sessions.items() if now_wall >= expires_at(s, self.validity)]
        for key in dead:
            del self._sessions[key]
        return len(dead)

    def __len__(self) -> int:
        return len(self._sessions)

    async def close(self) -> None:
        """Nothing to release; the contents stay readable until the object is dropped."""
