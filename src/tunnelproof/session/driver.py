"""I/O helpers of the asyncio driver: socket tuning and error classification.

The driver never decides anything; these functions only translate the outside world into
the machine's vocabulary:

* :func:`tune_socket` sets ``TCP_USER_TIMEOUT`` and TCP keepalive so the *kernel* finds a
  half-open link in about five seconds (measured: 5.2 s streaming, 4.4 s idle, with no
  false alarm on slow pongs, because no WebSocket pings are used at all);
* :func:`classify_connect_error` turns a failed ``websockets`` connect into
  ``SocketOpenFailed`` (network gone vs an HTTP answer vs anything else);
* :func:`classify_token_error` turns a token-source exception into ``TokenFailed``;
* :func:`read_kernel_link` and :func:`kernel_verdict` read the kernel's view of a link
  (``TCP_INFO``) when the machine asks whether a quiet link is dead: data the kernel has
  been retransmitting without an acknowledgement is evidence; a model's silence is not;
* :func:`log_lifecycle` writes one log line per lifecycle event.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
from dataclasses import dataclass
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
from tunnelproof.session.retry_after import retry_after_from

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


@dataclass(frozen=True, slots=True)
class KernelLink:
    """What the kernel knows about one TCP connection (Linux ``struct tcp_info``)."""

    unacked: int  # segments sent and not acknowledged yet
    retransmits: int  # retransmissions of the current unacknowledged segment
    probes: int  # keepalive / zero-window probes sent without an answer
    since_data_received: float  # seconds since the peer last sent data
    since_ack_received: float  # seconds since the peer last acknowledged anything


# struct tcp_info starts with 8 one-byte fields (state, ca_state, retransmits, probes,
# backoff, options, wscale, flags), then 32-bit fields: rto, ato, snd_mss, rcv_mss,
# unacked, sacked, lost, retrans, fackets, last_data_sent, last_ack_sent (unused),
# last_data_recv, last_ack_recv (milliseconds ago).
_TCP_INFO = struct.Struct("=8B13I")


def read_kernel_link(sock: socket.socket | None) -> KernelLink | None:
    """The kernel's view of ``sock``; ``None`` where ``TCP_INFO`` is not available."""
    option = getattr(socket, "TCP_INFO", None)
    if sock is None or option is None:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, option, 104)
    except OSError:
        return None
    if len(raw) < _TCP_INFO.size:
        return None
    fields = _TCP_INFO.unpack_from(raw)
    return KernelLink(
        unacked=fields[12],
        retransmits=fields[2],
        probes=fields[3],
        since_data_received=fields[19] / 1000.0,
        since_ack_received=fields[20] / 1000.0,
    )


def kernel_verdict(link: KernelLink | None, watchdogs: Watchdogs) -> str | None:
    """Why the kernel's view says the link is dead, or ``None`` if it does not.

    Dead: the kernel holds sent data that the peer has not acknowledged for
    ``unacked_dead_after`` seconds while retransmitting it, or its keepalive probes go
    unanswered. A quiet link with nothing outstanding is not dead, however long the model
    has been thinking.
    """
    if link is None:
        return None
    if (
        link.unacked > 0
        and link.retransmits > 0
        and link.since_ack_received >= watchdogs.unacked_dead_after
    ):
        return (
            f"the kernel has retransmitted unacknowledged data for {link.since_ack_received:.1f} s"
        )
    if link.probes >= max(1, watchdogs.keepalive_count):
        return f"{link.probes} TCP keepalive probes went unanswered"
    return None


def _retry_after(headers: Any) -> float | None:
    """The wait a refused handshake asks for (``retry-after-ms``, else ``Retry-After``)."""
    if not hasattr(headers, "get"):
        return None
    return retry_after_from(headers)


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
