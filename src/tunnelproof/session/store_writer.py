"""Background writes of a conversation's handle to its store: coalesced, newest wins.

Each write replaces the conversation's whole record, so only the newest one matters. A
queue of every write would fall behind a flood of handle updates (a slow Redis, a busy
SQLite file) and, when the session closes with a bounded wait, leave an old handle stored.
The writer keeps one pending write instead: a new save or delete replaces the one not yet
started, and ``close()`` waits for the newest to land.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tunnelproof.session.handle_store import HandleStore, StoredSession

log = logging.getLogger("tunnelproof.session")

# What the pending write does: save this record, or (None) delete the conversation's.
_Write = StoredSession | None


class StoreWriter:
    """Writes ``conversation_id``'s record to ``store`` in one background task."""

    def __init__(self, store: HandleStore, conversation_id: str) -> None:
        self.store = store
        self.conversation_id = conversation_id
        self._pending: list[_Write] = []  # at most one: the newest write not yet started
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.writes = 0
        """Writes performed (a flood of saves is coalesced into far fewer)."""

    def start(self) -> None:
        """Start the background task (on the running loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tunnelproof-store")

    def save(self, session: StoredSession) -> None:
        """Store ``session`` (replacing any write not yet started)."""
        self._pending[:] = [session]
        self._wake.set()

    def delete(self) -> None:
        """Forget the conversation's record (replacing any write not yet started)."""
        self._pending[:] = [None]
        self._wake.set()

    async def close(self, timeout: float = 5.0) -> None:
        """Let the newest pending write land (bounded by ``timeout``), then stop."""
        self._closing = True
        self._wake.set()
        task = self._task
        if task is None:
            return
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), timeout)
        if not task.done():
            log.warning("handle store write still running after %.0f s; abandoned", timeout)
            task.cancel()

    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            write = self._pending.pop()
            try:
                if write is None:
                    await self.store.delete(self.conversation_id)
                else:
                    await self.store.save(self.conversation_id, write)
            except Exception:
                log.warning("handle store write failed", exc_info=True)
            self.writes += 1
