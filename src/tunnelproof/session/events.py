"""Inputs of :class:`~tunnelproof.session.machine.SessionMachine`: what happened.

Events are plain frozen dataclasses. The driver creates them from I/O results and feeds
them to the machine together with the current time; tests create them by hand. Every
event that concerns one socket carries the ``attempt`` id from the
:class:`~tunnelproof.session.actions.OpenSocket` action, so a late event from an old socket
is recognised and ignored instead of corrupting the current one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tunnelproof.session.credentials import Credential
from tunnelproof.session.handle_store import StoredSession


class TokenFailure(StrEnum):
    """How a token source failed (see :mod:`tunnelproof.session.credentials`)."""

    AUTH = "auth"  # 401/403: fatal until the user signs in again
    RATE_LIMITED = "rate_limited"  # 429: wait Retry-After
    UNAVAILABLE = "unavailable"  # 5xx / timeout: back off
    OFFLINE = "offline"  # network gone: probe
    CONFIG = "config"  # misconfigured source: fatal


class OpenFailure(StrEnum):
    """Why a WebSocket could not be opened."""

    OFFLINE = "offline"  # DNS failure, unreachable, refused, connect timeout, TLS reset
    HANDSHAKE = "handshake"  # the server answered the upgrade with an HTTP status
    ERROR = "error"  # anything else (a bug, a protocol error in the handshake)


@dataclass(frozen=True, slots=True)
class Started:
    """The app opened the session. ``stored`` is what the handle store had, if anything."""

    stored: StoredSession | None = None


@dataclass(frozen=True, slots=True)
class TokenFetched:
    """The token source returned a credential for request ``request``."""

    request: int
    credential: Credential


@dataclass(frozen=True, slots=True)
class TokenFailed:
    """The token source failed for request ``request``."""

    request: int
    kind: TokenFailure
    message: str = ""
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class SocketOpened:
    """The WebSocket handshake of ``attempt`` completed (the credential is now spent)."""

    attempt: int


@dataclass(frozen=True, slots=True)
class SocketOpenFailed:
    """The WebSocket of ``attempt`` never opened."""

    attempt: int
    kind: OpenFailure
    status: int | None = None
    message: str = ""
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class FrameReceived:
    """One server frame (binary or text) on ``attempt``. The machine parses it."""

    attempt: int
    data: bytes | str


@dataclass(frozen=True, slots=True)
class SocketClosed:
    """The socket of ``attempt`` is gone. ``code`` is ``None`` without a close frame."""

    attempt: int
    code: int | None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class LinkChecked:
    """The answer to ``CheckLink(attempt)``: evidence that the link is alive or dead.

    ``alive`` is true on a pong (inbound bytes); false when the kernel reports the link
    dead (``detail`` says why). No answer at all is the machine's timer's to judge.
    """

    attempt: int
    alive: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TimerFired:
    """The timer set by ``SetTimer(name, serial, at)`` fired."""

    name: str
    serial: int


@dataclass(frozen=True, slots=True)
class CloseRequested:
    """The app asked to close the session for good."""


@dataclass(frozen=True, slots=True)
class ResumeRequested:
    """The app asked to try again after a fatal stop (or after giving up)."""


Event = (
    Started
    | TokenFetched
    | TokenFailed
    | SocketOpened
    | SocketOpenFailed
    | FrameReceived
    | SocketClosed
    | LinkChecked
    | TimerFired
    | CloseRequested
    | ResumeRequested
)
