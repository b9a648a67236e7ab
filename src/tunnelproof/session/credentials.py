"""Credentials and token sources: how a session gets fresh auth for every attempt.

The client holds a token *source* (an async callable), never a token. Each connection
attempt asks the source for a new :class:`Credential`. The one exception: a token whose
WebSocket handshake never completed may be reused within its new-session window, because
the server never saw it used.

Token-source failures are typed so the reconnecting client can classify them:

* :class:`TokenAuthError` (HTTP 401/403): fatal, the user must sign in again;
* :class:`TokenRateLimited` (HTTP 429): wait ``retry_after`` seconds, then retry;
* :class:`TokenUnavailable` (5xx, timeouts, connection refused): retry with backoff;
* :class:`TokenOffline` (DNS, unreachable, connect timeout): the network is gone, probe.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from tunnelproof.protocol.endpoints import (
    GOOGLE_WS_BASE,
    ApiVersion,
    AuthForm,
    Endpoint,
    api_key_endpoint,
    token_endpoint,
)
from tunnelproof.protocol.locked import LockedConfig

CredentialKind = Literal["ephemeral_token", "api_key"]


@dataclass(frozen=True, slots=True)
class Credential:
    """What one connection attempt authenticates with.

    ``expires_at`` / ``new_session_expires_at`` are wall-clock UNIX seconds (``None`` when
    unknown or not applicable, e.g. API keys). ``model`` is the model the token is locked
    to, when the token service says so; ``locked`` is everything it says it locked
    (model, response modalities, transcription). When ``locked`` is set, the session
    compares it with its own ``LiveConfig`` and reports a difference as ``ConfigMismatch``.
    """

    kind: CredentialKind
    secret: str
    ws_base: str = GOOGLE_WS_BASE
    api_version: ApiVersion = "v1alpha"
    expires_at: float | None = None
    new_session_expires_at: float | None = None
    model: str | None = None
    auth_form: AuthForm | None = None  # None: the safe default for the kind (header/query)
    locked: LockedConfig | None = None

    def endpoint(self) -> Endpoint:
        """The WebSocket endpoint (URL + headers) for this credential."""
        if self.kind == "api_key":
            return api_key_endpoint(
                self.ws_base,
                self.secret,
                version=self.api_version,
                form=self.auth_form or AuthForm.KEY_HEADER,
            )
        return token_endpoint(
            self.ws_base,
            self.secret,
            version=self.api_version,
            form=self.auth_form or AuthForm.TOKEN_QUERY,
        )

    def usable_for_new_session(self, now_wall: float, margin: float = 2.0) -> bool:
        """True while a new session may still be opened with it (with ``margin`` s to spare)."""
        if self.kind == "api_key":
            return True
        limits = [t for t in (self.expires_at, self.new_session_expires_at) if t is not None]
        return all(now_wall + margin < t for t in limits)

    def __repr__(self) -> str:  # never print the secret
        return f"Credential(kind={self.kind!r}, ws_base={self.ws_base!r}, secret=<redacted>)"


TokenSource = Callable[[], Awaitable[Credential]]
"""An async callable returning a fresh :class:`Credential` on each call."""


class TokenSourceError(Exception):
    """Base class of token-source failures."""


class TokenAuthError(TokenSourceError):
    """The app's user is not (or no longer) authorised: fatal until they sign in again."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TokenRateLimited(TokenSourceError):
    """Too many tokens asked for; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TokenUnavailable(TokenSourceError):
    """The token service answered with an error or timed out: retry with backoff.

    With ``retry_after`` (a 503 + ``Retry-After``: shedding, or its upstream is down) it is
    a wait, not a failure. ``code`` is the service's machine-readable kind, if it sent one
    (``upstream_unavailable``, ``overloaded``).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.code = code


class TokenOffline(TokenSourceError):
    """The token service could not be reached at all (network gone): probe, do not back off."""


class TokenConfigError(TokenSourceError):
    """The token source itself is misconfigured (bad URL, missing key): fatal."""
