"""The credential slot: the one credential the session holds, and its token request.

Client contract 1: a credential whose WebSocket handshake completed is never used again;
one whose handshake never completed may be reused while its new-session window lasts. The
slot counts how many attempts used the credential it holds, so "is this attempt the first
to use it" is derived, not stored beside it.
"""

from __future__ import annotations

from tunnelproof.session.credentials import Credential


class CredentialSlot:
    """At most one unspent credential and at most one token request in flight."""

    __slots__ = (
        "_asked_at",
        "_credential",
        "_request_seq",
        "_uses",
        "auth_retry_used",
        "last_fetch_seconds",
        "request",
        "timeouts_in_row",
    )

    def __init__(self) -> None:
        self._request_seq = 0
        self.request: int | None = None
        """The token request in flight, if any."""
        self._credential: Credential | None = None
        self._uses = 0  # attempts that used self._credential (none completed the handshake)
        self.auth_retry_used = False
        """A refused reused token already got its one fresh retry in this outage."""
        self._asked_at: float | None = None
        self.last_fetch_seconds: float | None = None
        """How long the last successful token fetch took (a slow backend is let answer)."""
        self.timeouts_in_row = 0
        """Token fetches in a row that the machine gave up on (each doubles the next wait)."""

    # -- questions -------------------------------------------------------------------------

    def usable(self, wall: float) -> Credential | None:
        """The held credential, if it can still open a new session at ``wall``."""
        cred = self._credential
        if cred is not None and cred.usable_for_new_session(wall):
            return cred
        return None

    @property
    def tried(self) -> bool:
        """An earlier attempt already used the held credential (handshake incomplete)."""
        return self._uses > 0

    @property
    def reused(self) -> bool:
        """The attempt now using the credential is not the first one to use it."""
        return self._uses > 1

    # -- what happened -----------------------------------------------------------------------

    def requested(self) -> int:
        """A new token request was sent; returns its id."""
        self._request_seq += 1
        self.request = self._request_seq
        return self.request

    def asked(self, now: float) -> int:
        """A fetch starts at ``now``; returns its request id."""
        self._asked_at = now
        return self.requested()

    def arrived(self, now: float) -> None:
        """The fetch in flight answered with a credential at ``now``."""
        if self._asked_at is not None:
            self.last_fetch_seconds = now - self._asked_at
        self.timeouts_in_row = 0

    def answered(self, request: int) -> bool:
        """The answer to ``request`` arrived: true when it is the one in flight."""
        if request != self.request:
            return False  # superseded or timed out
        self.request = None
        return True

    def abandoned(self) -> int | None:
        """The request in flight (if any) is given up; returns its id to cancel."""
        request, self.request = self.request, None
        return request

    def fetched(self, credential: Credential) -> None:
        """A fresh credential arrived; it replaces any held one."""
        self._credential = credential
        self._uses = 0

    def used(self) -> None:
        """An attempt started a handshake with the held credential."""
        self._uses += 1

    def spent(self) -> None:
        """The handshake completed: the token is spent, whatever happens next."""
        self._credential = None
        self._uses = 0
        self.auth_retry_used = False

    def refused(self) -> None:
        """The server saw the credential (an HTTP answer): never offer it again."""
        self._credential = None

    def discard(self) -> None:
        """The credential is unusable (expired window, or malformed)."""
        self._credential = None
        self._uses = 0
