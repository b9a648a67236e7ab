"""Relay tickets: short-lived, single-use credentials a browser puts in ``?access_token=``.

A browser cannot set headers on a WebSocket, so it cannot show the relay its app login
(``Authorization: Bearer …``). The token service, which *can* see that login, mints a
ticket instead: the same ``getToken()`` → ``?access_token=`` dance the seed does with
Google's ephemeral tokens, with the relay in Google's place.

A ticket is ``auth_tokens/relay.<payload>.<signature>``: an HMAC-SHA256 over a JSON payload
(user id, optional conversation id, expiry, nonce) with a secret the token service and the
relay share. The ``auth_tokens/`` prefix makes google-genai treat it as an ephemeral token
(Constrained method, ``Authorization: Token``), so the SDK needs only a new base URL.
Single use is enforced by the relay (:class:`TicketLedger`), which remembers each nonce
until the ticket expires. Nothing here talks to Google: the API key is not involved.

The route (:func:`relay_ticket_router`) answers in the token route's shape
(``token``/``expiresAt``/``newSessionExpiresAt``/``model``/``wsUrl``) so the existing
clients (:class:`~tunnelproof.tokens.client.TokenServiceSource`, the browser module) use
it unchanged. It is added to the standalone app when ``TUNNELPROOF_RELAY_TICKET_SECRET``
and ``TUNNELPROOF_RELAY_WS_URL`` are set (:func:`maybe_add_relay_tickets`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tunnelproof.protocol.endpoints import TOKEN_PREFIX, Method, live_path
from tunnelproof.tokens.auth import AuthenticationFailed, AuthenticatorUnavailable
from tunnelproof.tokens.ratelimit import RateLimiterUnavailable
from tunnelproof.tokens.router import NO_STORE, WWW_AUTHENTICATE, TokenService

log = logging.getLogger("tunnelproof.tokens.tickets")

TICKET_PREFIX = TOKEN_PREFIX + "relay."
DEFAULT_TICKET_PATH = "/api/live/relay-ticket"
DEFAULT_TICKET_TTL = 60.0
MAX_CONVERSATION_ID = 200
_MAX_BODY = 1024
_B64 = re.compile(r"^[A-Za-z0-9_-]+$")


class TicketInvalid(Exception):
    """A ticket that is malformed, forged, expired or already used (the reason is for logs)."""


@dataclass(frozen=True, slots=True)
class RelayTicket:
    """What a verified ticket says: who, for which conversation (if bound), until when."""

    user_id: str
    conversation: str | None
    expires_at: float
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not _B64.match(text):
        raise TicketInvalid("bad base64")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TicketSigner:
    """Mints and verifies tickets with a shared secret (at least 16 bytes)."""

    def __init__(
        self,
        secret: str | bytes,
        *,
        ttl: float = DEFAULT_TICKET_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        if len(key) < 16:
            raise ValueError("the relay ticket secret must be at least 16 bytes")
        if ttl <= 0:
            raise ValueError("ticket ttl must be positive")
        self._key = key
        self.ttl = ttl
        self._clock = clock

    def mint(self, user_id: str, conversation: str | None = None) -> tuple[str, RelayTicket]:
        """A new ticket for ``user_id``, optionally bound to ``conversation``."""
        if not user_id:
            raise ValueError("user_id is empty")
        ticket = RelayTicket(
            user_id, conversation, round(self._clock() + self.ttl, 3), secrets.token_urlsafe(12)
        )
        payload = json.dumps(
            {
                "u": ticket.user_id,
                "c": ticket.conversation,
                "e": ticket.expires_at,
                "n": ticket.nonce,
            },
            separators=(",", ":"),
        ).encode()
        body = _b64(payload)
        return f"{TICKET_PREFIX}{body}.{self._sign(body)}", ticket

    def verify(self, text: str) -> RelayTicket:
        """The ticket's content if the signature holds and it has not expired.

        Single use is *not* checked here (see :class:`TicketLedger`).
        """
        if not text.startswith(TICKET_PREFIX):
            raise TicketInvalid("not a relay ticket")
        body, _, signature = text[len(TICKET_PREFIX) :].partition(".")
        if not body or not signature or len(text) > 2048:
            raise TicketInvalid("malformed ticket")
        if not hmac.compare_digest(signature, self._sign(body)):
            raise TicketInvalid("bad signature")
        try:
            raw: Any = json.loads(_unb64(body))
            ticket = RelayTicket(str(raw["u"]), raw["c"], float(raw["e"]), str(raw["n"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise TicketInvalid("unreadable payload") from exc
        if ticket.conversation is not None and not isinstance(ticket.conversation, str):
            raise TicketInvalid("bad conversation")
        if self._clock() >= ticket.expires_at:
            raise TicketInvalid("expired")
        return ticket

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, b"relay-ticket." + body.encode(), hashlib.sha256).digest())


class TicketLedger:
    """Remembers used nonces until their ticket expires (one process).

    For several relay processes use a shared ledger (the relay's Redis ledger), or a
    ticket could be used once per process.
    """

    def __init__(self, clock: Callable[[], float] = time.time, max_entries: int = 1_000_000):
        self._used: dict[str, float] = {}
        self._clock = clock
        self._max = max_entries

    async def consume(self, ticket: RelayTicket) -> bool:
        """True the first time ``ticket`` is presented, False ever after."""
        now = self._clock()
        if len(self._used) > self._max // 2:
            self._used = {n: e for n, e in self._used.items() if e > now}
        if ticket.nonce in self._used or len(self._used) >= self._max:
            return False
        self._used[ticket.nonce] = ticket.expires_at
        return True


def _handle_conversation(handle: Any) -> str | None:
    """The conversation id inside a relay handle (``rh1.<payload>.<sig>``), unverified."""
    if not isinstance(handle, str) or not handle.startswith("rh1.") or len(handle) > 4096:
        return None
    try:
        payload = json.loads(_unb64(handle.split(".")[1]))
    except (TicketInvalid, ValueError, IndexError):
        return None
    if isinstance(payload, list) and payload and isinstance(payload[0], str):
        return payload[0]
    return None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": message}, status_code=status, headers={**NO_STORE, **(headers or {})}
    )


def relay_ticket_router(
    service: TokenService,
    signer: TicketSigner,
    relay_ws_base: str,
    *,
    path: str = DEFAULT_TICKET_PATH,
    model: str | None = None,
) -> APIRouter:
    """``POST {path}``: a relay ticket for the authenticated caller.

    Same gates as the token route, in the same order: body (≤ 1 KiB JSON object), Origin,
    authentication (the service's authenticator), per-user rate limit. The optional body
    ``{"handle": "<relay handle>"}`` (or ``{"conversation": "<id>"}``) binds the ticket to
    that conversation: it can then only resume it.
    ``relay_ws_base`` is the relay's ``ws(s)://host:port`` as devices reach it.
    """
    ws_url = relay_ws_base.rstrip("/") + live_path("v1alpha", Method.CONSTRAINED)
    shown_model = model or service.settings.model

    async def handle(request: Request) -> Response:
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > _MAX_BODY:
                return _error(413, "Body too large")
        conversation: str | None = None
        if raw.strip():
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                return _error(400, "Body is not valid JSON")
            if not isinstance(body, dict):
                return _error(400, "Body must be a JSON object")
            value = body.get("conversation")
            handle = body.get("handle")
            if value is None and handle is not None:
                # A resume: bind to the conversation the relay handle names. Not verified
                # here (the relay does that); a wrong one only makes the ticket useless.
                value = _handle_conversation(handle)
                if value is None:
                    return _error(400, "handle is not a relay handle")
            if value is not None:
                if not isinstance(value, str) or not 0 < len(value) <= MAX_CONVERSATION_ID:
                    return _error(400, "conversation must be a short string")
                conversation = value
        if not service.origin_policy.permits(request.headers.get("origin")):
            return _error(403, "Origin not allowed")
        try:
            principal = await service.authenticator(request)
        except AuthenticationFailed as exc:
            log.info("relay ticket refused: %s", exc.reason)
            return _error(401, "Unauthorized", {"WWW-Authenticate": WWW_AUTHENTICATE})
        except AuthenticatorUnavailable:
            return _error(503, "Authentication unavailable", {"Retry-After": "5"})
        try:
            wait = await service.limiter.hit(principal.user_id)
        except RateLimiterUnavailable:
            return _error(503, "Rate limiter unavailable", {"Retry-After": "2"})
        if wait is not None:
            return _error(429, "Too many token requests", {"Retry-After": str(max(1, round(wait)))})
        ticket_text, ticket = signer.mint(principal.user_id, conversation)
        log.info("relay ticket issued to user %r", principal.user_id)
        return JSONResponse(
            {
                "token": ticket_text,
                "expiresAt": _iso(ticket.expires_at),
                "newSessionExpiresAt": _iso(ticket.expires_at),
                "model": shown_model,
                "wsUrl": ws_url,
            },
            headers=NO_STORE,
        )

    router = APIRouter()
    router.add_api_route(
        path, handle, methods=["POST"], summary="Mint a single-use relay ticket for the caller"
    )
    return router


def maybe_add_relay_tickets(app: FastAPI, service: TokenService) -> None:
    """Add the ticket route when ``TUNNELPROOF_RELAY_TICKET_SECRET`` and
    ``TUNNELPROOF_RELAY_WS_URL`` are set (``TUNNELPROOF_RELAY_TICKET_PATH`` optional)."""
    secret = os.environ.get("TUNNELPROOF_RELAY_TICKET_SECRET", "")
    ws_base = os.environ.get("TUNNELPROOF_RELAY_WS_URL", "")
    if not secret or not ws_base:
        return
    path = os.environ.get("TUNNELPROOF_RELAY_TICKET_PATH", DEFAULT_TICKET_PATH)
    app.include_router(relay_ticket_router(service, TicketSigner(secret), ws_base, path=path))
