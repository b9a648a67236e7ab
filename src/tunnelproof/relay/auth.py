"""Who is this device? Relay tickets and the token service's authenticators.

A device WebSocket upgrade is admitted by one of:

* a relay ticket (:mod:`tunnelproof.tokens.tickets`) in ``?access_token=``, in
  ``Authorization: Token …`` (google-genai's form for ``auth_tokens/…``), or in
  ``?key=``/``x-goog-api-key`` — verified, then consumed (single use);
* ``Authorization: Bearer …`` checked by any token-service
  :data:`~tunnelproof.tokens.auth.Authenticator` (JWT/JWKS, static keys, a callable):
  for devices that can set headers, with no ticket round trip.

Anything else is refused with HTTP 401 at the upgrade, as Google refuses a bad token; the
reason goes to the log only.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from aiohttp import web
from starlette.requests import Request

from tunnelproof.tokens.auth import AuthenticationFailed, Authenticator, AuthenticatorUnavailable
from tunnelproof.tokens.tickets import TICKET_PREFIX, RelayTicket, TicketInvalid, TicketSigner

log = logging.getLogger("tunnelproof.relay.auth")

TicketConsumer = Callable[[RelayTicket], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """An admitted device: its user, and the conversation its ticket is bound to (if any)."""

    user_id: str
    conversation: str | None = None
    via: str = "ticket"


class Refused(Exception):
    """The upgrade is refused with ``status`` (the reason is for the log)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def starlette_request(request: web.Request) -> Request:
    """A Starlette ``Request`` view of an aiohttp upgrade, for token-service authenticators."""
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in request.headers.items()
    ]
    peer = request.transport.get_extra_info("peername") if request.transport else None
    scope = {
        "type": "http",
        "method": request.method,
        "path": request.path,
        "raw_path": request.raw_path.encode("latin-1", "replace"),
        "query_string": request.query_string.encode("latin-1", "replace"),
        "headers": headers,
        "client": tuple(peer[:2]) if peer else None,
        "scheme": request.scheme,
        "server": None,
        "root_path": "",
        "http_version": "1.1",
    }
    return Request(scope)


def presented_ticket(query_string: str, headers: Mapping[str, str]) -> str | None:
    """The relay ticket in the upgrade, whichever of the four places carries it."""
    query = dict(parse_qsl(query_string, keep_blank_values=True))
    candidates = [query.get("access_token"), query.get("key"), headers.get("x-goog-api-key")]
    authorization = headers.get("authorization") or ""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "token":
        candidates.insert(0, value.strip())
    for candidate in candidates:
        if candidate and candidate.startswith(TICKET_PREFIX):
            return candidate
    return None


class DeviceAuthenticator:
    """Admits device upgrades (see the module docstring)."""

    def __init__(
        self,
        *,
        signer: TicketSigner | None,
        consume: TicketConsumer | None,
        authenticator: Authenticator | None,
    ) -> None:
        if signer is None and authenticator is None:
            raise ValueError("the relay needs a ticket signer, an authenticator, or both")
        if signer is not None and consume is None:
            raise ValueError("tickets need a ledger (single use)")
        self._signer = signer
        self._consume = consume
        self._authenticator = authenticator

    async def admit(self, request: web.Request) -> DeviceIdentity:
        """The device's identity, or :class:`Refused`."""
        text = presented_ticket(request.query_string, request.headers)
        if text is not None:
            if self._signer is None or self._consume is None:
                raise Refused(401, "tickets are not enabled on this relay")
            try:
                ticket = self._signer.verify(text)
            except TicketInvalid as exc:
                raise Refused(401, f"ticket refused: {exc}") from None
            if not await self._consume(ticket):
                raise Refused(401, "ticket refused: already used")
            return DeviceIdentity(ticket.user_id, ticket.conversation, "ticket")
        if self._authenticator is None or "authorization" not in request.headers:
            raise Refused(401, "no credentials")
        try:
            principal = await self._authenticator(starlette_request(request))
        except AuthenticationFailed as exc:
            raise Refused(401, f"authentication failed: {exc.reason}") from None
        except AuthenticatorUnavailable:
            raise Refused(503, "authenticator unavailable") from None
        return DeviceIdentity(principal.user_id, None, "bearer")
