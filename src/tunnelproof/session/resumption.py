"""The resumption state: the newest handle, what it holds, and the re-seed of a fresh session.

Client contract 2 and 7: only ``resumable: true`` handles are kept, the newest is used on
every reconnect, a refused or expired handle is dropped and the next session is fresh,
re-seeded from the client's transcript (and the app is told with ``ContextReset``).

The re-seed is sent right after ``setupComplete``, so a handle the server issued at setup
predates it. :class:`Seed` tracks that: until a resumable handle arrives after model output
(which shows the server read the seed), a drop starts another fresh, re-seeded session
instead of resuming one that may be empty.
"""

from __future__ import annotations

from enum import Enum

from tunnelproof.session.handle_store import StoredSession


class Seed(Enum):
    """Where the re-seed of a fresh session stands."""

    NONE = "none"  # no re-seed outstanding (resumed, or the seed is in a handle's state)
    SENT = "sent"  # sent after setupComplete; the server may not have read it yet
    READ = "read"  # the server answered, so it read the seed; the next handle holds it


class ResumptionState:
    """The handle, whether it is current, and what a fresh session must say and send."""

    __slots__ = (
        "current",
        "disconnected_at",
        "had_session",
        "handle",
        "refusals",
        "refused_since",
        "reset_reason",
        "resuming",
        "seed",
    )

    def __init__(self) -> None:
        self.handle: str | None = None
        """The newest resumable handle."""
        self.current = False
        """No server output since the newest handle (a resume from it loses nothing)."""
        self.disconnected_at: float | None = None
        """Wall-clock time of the last disconnect (the 2 h validity counts from it)."""
        self.reset_reason: str | None = None
        """Set when the next fresh session must be announced with ``ContextReset``."""
        self.had_session = False
        """A server session existed whose context the next fresh session must take over."""
        self.refusals = 0
        """Resumed setups refused in a row (closed before ``setupComplete``)."""
        self.refused_since: float | None = None
        """When the first of those refusals came (a stale socket is waited out)."""
        self.resuming = False
        """The current attempt sent a handle in its setup."""
        self.seed = Seed.NONE

    # -- questions -------------------------------------------------------------------------

    def expired(self, wall: float, validity: float) -> bool:
        """The handle is past its validity window at ``wall``."""
        if self.handle is None or self.disconnected_at is None:
            return False
        return wall >= self.disconnected_at + validity

    @property
    def fresh_session_due(self) -> bool:
        """The next setup has no handle but must take over an earlier session's context."""
        return self.handle is None and self.had_session

    @property
    def will_resume(self) -> bool:
        """A reconnect now would resume (a handle, and no re-seed the server may not hold)."""
        return self.handle is not None and self.seed is Seed.NONE

    # -- what happened -----------------------------------------------------------------------

    def restored(self, stored: StoredSession, *, valid: bool) -> None:
        """A stored session was loaded at start."""
        self.disconnected_at = stored.disconnected_at
        if valid:
            self.handle = stored.handle
            self.had_session = True
        else:
            self.reset_reason = "the stored resumption handle has expired"

    def dropped(self, reason: str) -> bool:
        """The handle is unusable; returns whether there was one (to delete from the store)."""
        had = self.handle is not None
        self.handle = None
        self.current = False
        self.reset_reason = reason
        return had

    def setup_sent(self, handle: str | None) -> None:
        """A setup went out, resuming ``handle`` (``None``: a fresh session)."""
        self.resuming = handle is not None

    def ready(self) -> None:
        """``setupComplete``: a resumed state *is* its handle's state; a fresh one has none."""
        self.current = self.resuming
        self.disconnected_at = None  # the 2 h window counts from the *next* disconnect
        self.had_session = True
        self.refusals = 0
        self.refused_since = None

    def seed_sent(self) -> None:
        """The transcript went to the fresh session as history."""
        self.seed = Seed.SENT

    def output_seen(self) -> None:
        """The server produced output: the handle is behind; a seed was read."""
        self.current = False
        if self.seed is Seed.SENT:
            self.seed = Seed.READ

    def turn_ended(self) -> None:
        """A turn completed: the next handle will include it, the current one does not."""
        self.current = False

    def issued(self, handle: str | None, *, resumable: bool) -> bool:
        """A ``sessionResumptionUpdate``; returns whether ``handle`` is now the one kept."""
        if not resumable or handle is None:
            # Never replaces the handle (contract 2): resuming from it would lose data.
            self.current = False
            return False
        self.handle = handle
        self.current = True
        if self.seed is Seed.READ:
            self.seed = Seed.NONE  # issued after the server read the seed: it holds it
        return True

    def disconnected(self, wall: float) -> None:
        """A connection that reached ``setupComplete`` is gone."""
        self.disconnected_at = wall

    def link_lost(self) -> bool:
        """The socket is gone; returns whether the handle was dropped (seed not in it)."""
        if self.seed is Seed.NONE:
            return False
        self.seed = Seed.NONE
        self.had_session = True
        return self.dropped("the link dropped before the re-seeded session showed its history")

    def refused(self, now: float) -> float:
        """A resumed setup was closed before ``setupComplete`` at ``now``; returns how long
        the refusals in a row have lasted."""
        self.refusals += 1
        if self.refused_since is None:
            self.refused_since = now
        return now - self.refused_since

    def bad_resume(self, reason: str) -> bool:
        """The server refused the handle; returns whether one was dropped."""
        had = self.dropped(reason)
        self.refusals = 0
        self.refused_since = None
        self.had_session = True
        return had

    def fresh_session_started(self) -> None:
        """The old session's context has been settled for a fresh one."""
        self.had_session = False
        if self.reset_reason is None:
            self.reset_reason = "the connection was lost before a resumption handle arrived"
