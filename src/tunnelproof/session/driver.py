"""I/O helpers of the asyncio driver: socket tuning and error classification.

The driver never decides anything; these functions only translate the outside world into
the machine's vocabulary:

* :func:`tune_socket` sets ``TCP_USER_TIMEOUT`` and TCP keepalive so the *kernel* finds a
  half-open link in about five seconds (measured: 5.2 s streaming, 4.4 s idle, with no
  false alarm on slow pongs, because no WebSocket pings are used at all);
* :func:`classify_connect_error` turns a failed ``websockets`` connect into
  ``SocketOpenFailed`` (network gone vs an HTTP answer vs anything else);
* :func:`classify_token_error` turns a token-source exception into ``TokenFailed``;
* :func:`log_lifecycle` writes one log line per lifecycle event.
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import Any

from websockets.exceptions import (
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
)

from tunnelproof.session import app_events as ev
from tunnelproof.session.credentials import (
    TokenAuthError,
    TokenConfigError,
    TokenOffline,
    TokenRateLimited,
    TokenUnavailable,
)
from tunnelproof.session.events import OpenFailure, SocketOpenFailed, TokenFailed, TokenFailure
from tunnelproof.session.policy import Watchdogs

log = logging.getLogger("tunnelproof.session")


def tune_socket(sock: socket.socket | None, watchdogs: Watchdogs) -> list[str]:
    """Set ``TCP_USER_TIMEOUT`` and keepalive on ``sock``; return the options not available.

    ``TCP_USER_TIMEOUT`` bounds how long sent data may stay unacknowledged (and, on Linux
    >= 5.11, zero-window probing) before the kernel resets the connection; keepalive finds
    a dead peer while nothing is being sent. Platforms without an option simply skip it.
    """
    missing: list[str] = []
    if sock is None:
        return ["socket"]
    options: list[tuple[str, int, int]] = [("SO_KEEPALIVE", socket.SOL_SOCKET, 1)]
    tcp = socket.IPPROTO_TCP
    for name, value in (
        ("TCP_USER_TIMEOUT", int(watchdogs.tcp_user_timeout * 1000)),
        ("TCP_KEEPIDLE", watchdogs.keepalive_idle),
        ("TCP_KEEPINTVL", watchdogs.keepalive_interval),
        ("TCP_KEEPCNT", watchdogs.keepalive_count),
    ):
        options.append((name, tcp, value))
    for name, level, value in options:
        option = getattr(socket, name, None)
        if option is None:
            missing.append(name)
            continue
        try:
            sock.setsockopt(level, option, value)
        except OSError:
            missing.append(name)
    return missing


def _retry_after(headers: Any) -> float | None:
    try:
        value = headers.get("Retry-After")
    except AttributeError:
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def classify_connect_error(attempt: int, exc: BaseException) -> SocketOpenFailed:
    """A failed WebSocket open, as the machine's event."""
    if isinstance(exc, InvalidStatus):
        response = exc.response
        return SocketOpenFailed(
            attempt,
            OpenFailure.HANDSHAKE,
            response.status_code,
            f"HTTP {response.status_code} {response.reason_phrase}".strip(),
            _retry_after(response.headers),
        )
    if isinstance(exc, InvalidURI):
        return SocketOpenFailed(attempt, OpenFailure.HANDSHAKE, 404, f"invalid URI: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        # A certificate problem does not heal by probing faster; back off instead.
        return SocketOpenFailed(attempt, OpenFailure.ERROR, None, f"TLS: {exc}")
    if isinstance(exc, OSError | TimeoutError | EOFError | InvalidMessage):
        # refused, unreachable, DNS, reset, timed out, or the link died mid-handshake
        return SocketOpenFailed(attempt, OpenFailure.OFFLINE, None, _describe(exc))
    if isinstance(exc, InvalidHandshake):
        return SocketOpenFailed(attempt, OpenFailure.ERROR, None, _describe(exc))
    return SocketOpenFailed(attempt, OpenFailure.ERROR, None, _describe(exc))


def classify_token_error(request: int, exc: BaseException) -> TokenFailed:
    """A token-source failure, as the machine's event."""
    message = _describe(exc)
    if isinstance(exc, TokenAuthError):
        return TokenFailed(request, TokenFailure.AUTH, message)
    if isinstance(exc, TokenConfigError):
        return TokenFailed(request, TokenFailure.CONFIG, message)
    if isinstance(exc, TokenRateLimited):
        return TokenFailed(request, TokenFailure.RATE_LIMITED, message, exc.retry_after)
    if isinstance(exc, TokenUnavailable):
        return TokenFailed(request, TokenFailure.UNAVAILABLE, message, exc.retry_after)
    if isinstance(exc, TokenOffline | OSError | TimeoutError):
        return TokenFailed(request, TokenFailure.OFFLINE, message)
    # Anything else from an app-supplied callable: back off (with caps), never spin.
    return TokenFailed(request, TokenFailure.UNAVAILABLE, message)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def log_lifecycle(conversation: str, event: ev.AppEvent) -> None:
    """One log line per lifecycle change (never content, never credentials)."""
    match event:
        case ev.Reconnecting(delay=delay, attempt=attempt, reason=reason, kind=kind):
            log.info(
                "[%s] reconnecting in %.2f s (attempt %d, %s): %s",
                conversation,
                delay,
                attempt,
                kind,
                reason,
            )
        case ev.Resumed(gap=gap, replayed=replayed):
            log.info("[%s] resumed after %.2f s, replayed %d", conversation, gap, replayed)
        case ev.Connected(first=first):
            log.info("[%s] connected (%s)", conversation, "first" if first else "fresh session")
        case ev.ContextReset(reason=reason, seeded_turns=turns):
            log.warning("[%s] context reset (%s); re-seeded %d turns", conversation, reason, turns)
        case ev.Failed(verdict=verdict):
            log.error("[%s] stopped: %s (%s)", conversation, verdict.advice, verdict.reason)
        case ev.GoAwayReceived(time_left=left):
            log.info("[%s] goAway, %s s left: planned handover", conversation, left)
        case _:
            pass
