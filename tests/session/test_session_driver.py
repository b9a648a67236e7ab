"""The driver's translations: socket options, connect errors, token-source errors."""

from __future__ import annotations

import asyncio
import socket
import sys

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import InvalidMessage, InvalidStatus
from websockets.http11 import Response

from tunnelproof.session.credentials import (
    TokenAuthError,
    TokenConfigError,
    TokenOffline,
    TokenRateLimited,
    TokenUnavailable,
)
from tunnelproof.session.driver import classify_connect_error, classify_token_error, tune_socket
from tunnelproof.session.events import OpenFailure, TokenFailure
from tunnelproof.session.policy import Watchdogs


@pytest.mark.skipif(sys.platform != "linux", reason="TCP_USER_TIMEOUT is Linux-only")
def test_tune_socket_sets_user_timeout_and_keepalive() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        missing = tune_socket(sock, Watchdogs(tcp_user_timeout=5.0))
        assert missing == []
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 5000
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 2
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
    finally:
        sock.close()


def test_tune_socket_without_a_socket_reports_it() -> None:
    assert tune_socket(None, Watchdogs()) == ["socket"]


def _status(code: int, headers: dict[str, str] | None = None) -> InvalidStatus:
    return InvalidStatus(Response(code, "Reason", Headers(headers or {}), b""))


@pytest.mark.parametrize(
    ("exc", "kind", "status"),
    [
        (ConnectionRefusedError(111, "refused"), OpenFailure.OFFLINE, None),
        (socket.gaierror(-2, "Name or service not known"), OpenFailure.OFFLINE, None),
        (TimeoutError(), OpenFailure.OFFLINE, None),
        (InvalidMessage("did not receive a valid HTTP response"), OpenFailure.OFFLINE, None),
        (_status(401), OpenFailure.HANDSHAKE, 401),
        (_status(503), OpenFailure.HANDSHAKE, 503),
        (ValueError("bug"), OpenFailure.ERROR, None),
    ],
)
def test_connect_errors_are_classified(
    exc: BaseException, kind: OpenFailure, status: int | None
) -> None:
    event = classify_connect_error(4, exc)
    assert event.attempt == 4
    assert event.kind is kind
    assert event.status == status


def test_retry_after_of_a_429_handshake_is_read() -> None:
    event = classify_connect_error(1, _status(429, {"Retry-After": "7"}))
    assert event.retry_after == 7.0


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (TokenAuthError("no", status=401), TokenFailure.AUTH),
        (TokenConfigError("bad url"), TokenFailure.CONFIG),
        (TokenRateLimited("slow down", retry_after=3), TokenFailure.RATE_LIMITED),
        (TokenUnavailable("503", status=503), TokenFailure.UNAVAILABLE),
        (TokenOffline("dns"), TokenFailure.OFFLINE),
        (ConnectionError("reset"), TokenFailure.OFFLINE),
        (TimeoutError(), TokenFailure.OFFLINE),
        (RuntimeError("app bug"), TokenFailure.UNAVAILABLE),
    ],
)
def test_token_errors_are_classified(exc: BaseException, kind: TokenFailure) -> None:
    event = classify_token_error(2, exc)
    assert event.request == 2
    assert event.kind is kind
    if isinstance(exc, TokenRateLimited):
        assert event.retry_after == 3


async def test_live_session_probes_an_unreachable_server_and_closes_promptly() -> None:
    import time as _time

    from tunnelproof.protocol.config import LiveConfig
    from tunnelproof.session import LiveSession, Reconnecting
    from tunnelproof.session.credentials import Credential

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now: connections are refused

    async def source() -> Credential:
        now = _time.time()
        return Credential(
            "ephemeral_token",
            "auth_tokens/x",
            ws_base=f"ws://127.0.0.1:{port}",
            expires_at=now + 1800,
            new_session_expires_at=now + 60,
        )

    session = LiveSession(LiveConfig(), source)
    with pytest.raises(RuntimeError):
        await session.send_text("too early")
    async with session:
        probes = []
        async with asyncio.timeout(10):
            async for event in session:
                if isinstance(event, Reconnecting):
                    probes.append(event)
                    if len(probes) == 3:
                        break
        assert all(p.kind == "offline" for p in probes)
        assert session.metrics.tokens_fetched == 1, "the unspent token is reused by probes"
        queued = await session.send_text("hello")
        assert queued.queued
        started = _time.monotonic()
    assert _time.monotonic() - started < 2.0
    assert session.state == "closed"


def test_invalid_conversation_id_is_refused_at_construction() -> None:
    from tunnelproof.protocol.config import LiveConfig
    from tunnelproof.session import Credential, LiveSession

    async def source() -> Credential:
        raise AssertionError("not called")

    with pytest.raises(ValueError, match=r"control"):
        LiveSession(LiveConfig(), source, conversation_id="bad\nid")
