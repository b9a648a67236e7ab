"""Outputs of :class:`~tunnelproof.session.machine.SessionMachine`: what to do.

The driver performs each action in order and feeds the results back as events. It never
decides anything itself: when to reconnect, with which credential and handle, what to send
and what to tell the app are all the machine's decisions.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunnelproof.protocol.endpoints import Endpoint
from tunnelproof.session.app_events import AppEvent
from tunnelproof.session.handle_store import StoredSession


@dataclass(frozen=True, slots=True)
class FetchToken:
    """Call the token source; answer with ``TokenFetched``/``TokenFailed(request)``.

    ``prefetch`` is true when the token is fetched ahead of a planned handover (goAway).
    """

    request: int
    prefetch: bool = False


@dataclass(frozen=True, slots=True)
class CancelTokenFetch:
    """Abandon the token request ``request`` (its answer would be ignored anyway)."""

    request: int


@dataclass(frozen=True, slots=True)
class OpenSocket:
    """Open a WebSocket to ``endpoint``; answer with ``SocketOpened``/``SocketOpenFailed``.

    The machine's own connect timer bounds the attempt; ``timeout`` is also given so the
    driver can pass it to the library as a second line of defence.
    """

    attempt: int
    endpoint: Endpoint
    timeout: float


@dataclass(frozen=True, slots=True)
class SendFrame:
    """Send one text frame on the socket of ``attempt``."""

    attempt: int
    text: str


@dataclass(frozen=True, slots=True)
class CloseSocket:
    """Start a graceful close of ``attempt``; the driver reports ``SocketClosed`` when done."""

    attempt: int
    code: int = 1000
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AbortSocket:
    """Drop ``attempt`` at once (dead link): no close handshake, no waiting.

    After this action the machine considers the socket gone; a later ``SocketClosed`` for
    it is ignored. The driver must tear the transport down synchronously.
    """

    attempt: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CheckLink:
    """Find evidence that the link of ``attempt`` is alive or dead; answer ``LinkChecked``.

    Asked when a reply is overdue. The driver reads the kernel's view (``TCP_INFO``:
    data unacknowledged and retransmitted for long is a dead link) and sends a WebSocket
    ping; a pong, like any inbound frame, is evidence of life. Silence is not evidence
    either way: the machine's own timer decides when the absence of evidence is enough.
    """

    attempt: int


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Fire ``TimerFired(name, serial)`` at monotonic time ``at`` (replaces ``name``)."""

    name: str
    serial: int
    at: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Forget the timer ``name``."""

    name: str


@dataclass(frozen=True, slots=True)
class SaveHandle:
    """Store ``session`` for the conversation (handle store)."""

    session: StoredSession


@dataclass(frozen=True, slots=True)
class DeleteHandle:
    """Forget the conversation's stored handle (the server refused it)."""


@dataclass(frozen=True, slots=True)
class Emit:
    """Deliver ``event`` to the app."""

    event: AppEvent


Action = (
    FetchToken
    | CancelTokenFetch
    | OpenSocket
    | SendFrame
    | CloseSocket
    | AbortSocket
    | CheckLink
    | SetTimer
    | CancelTimer
    | SaveHandle
    | DeleteHandle
    | Emit
)
