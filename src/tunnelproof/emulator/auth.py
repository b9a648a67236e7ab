"""Which credential a WebSocket upgrade carries, and whether its method allows it. No I/O.

The four forms (reference section 1.2): ``?key=`` and ``x-goog-api-key`` on the plain
``BidiGenerateContent``; ``?access_token=`` (URL-encoded or not) and
``Authorization: Token ...`` on ``BidiGenerateContentConstrained``. google-genai also sends
``x-goog-api-key: auth_tokens/...`` beside the ``Authorization`` header on Constrained,
which must not be mistaken for an API key there.

How refusals surface (our reading of the reference, see docs/emulator.md):

* Credential problems that users have reported as *close reasons* (invalid API key,
  token on the plain method, no credential) are refused by accepting the upgrade and
  closing after the first message, with the reference's reason text.
* An ephemeral token that is unknown, expired or used up is refused at the upgrade with
  HTTP 401, as the seed saw ("rejected with a 401 on every reconnect"). The policy can
  switch that to a close (``token_rejection="close"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl

from tunnelproof.emulator.errors import HttpRefusal
from tunnelproof.emulator.policy import EmulatorPolicy
from tunnelproof.emulator.tokens import AuthToken, TokenLedger, TokenRejected
from tunnelproof.protocol.close_codes import REASON_API_KEY_INVALID, REASON_UNREGISTERED_CALLER
from tunnelproof.protocol.endpoints import TOKEN_PREFIX, AuthForm, Method
from tunnelproof.protocol.errors import CloseRefusal


@dataclass(frozen=True, slots=True)
class Credential:
    """The credential a connection was admitted with."""

    kind: Literal["api_key", "token"]
    form: AuthForm
    token: AuthToken | None = None

    @property
    def token_name(self) -> str | None:
        """The token's ``auth_tokens/...`` name, or ``None`` for an API key."""
        return self.token.name if self.token is not None else None


@dataclass(frozen=True, slots=True)
class AuthDecision:
    """Either a credential, or a refusal to send at the upgrade or after the first message."""

    credential: Credential | None = None
    close: CloseRefusal | None = None
    http: HttpRefusal | None = None


def authenticate(
    method: Method,
    query_string: str,
    headers: Mapping[str, str],
    *,
    api_key: str,
    ledger: TokenLedger,
    policy: EmulatorPolicy,
) -> AuthDecision:
    """Decide how a WebSocket upgrade is authenticated.

    ``headers`` must be case-insensitive (aiohttp's ``CIMultiDict`` is) or lower-case.
    """
    query = dict(parse_qsl(query_string, keep_blank_values=True))
    header_key = _header(headers, "x-goog-api-key")
    authorization = _header(headers, "authorization")
    header_token: str | None = None
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "token" and value.strip():
            header_token = value.strip()

    if method is Method.BIDI:
        key_value, form = (
            (query["key"], AuthForm.KEY_QUERY)
            if "key" in query
            else (header_key, AuthForm.KEY_HEADER)
        )
        if key_value is not None:
            if key_value == api_key and not key_value.startswith(TOKEN_PREFIX):
                return AuthDecision(Credential("api_key", form))
            # A token passed as a key is "not valid" as an API key (js-genai#600).
            return _close(policy.api_key_invalid_close_code, REASON_API_KEY_INVALID)
        # A token on the plain method, or nothing at all: an unregistered caller
        # (cookbook#821).
        return _close(policy.unregistered_caller_close_code, REASON_UNREGISTERED_CALLER)

    token_name, token_form = (
        (query["access_token"], AuthForm.TOKEN_QUERY)
        if "access_token" in query
        else (header_token, AuthForm.TOKEN_HEADER)
    )
    if token_name is None:
        # Assumption: the Constrained method accepts only ephemeral tokens; an API key
        # there is refused like a missing credential (no report of Google accepting it).
        return _close(policy.unregistered_caller_close_code, REASON_UNREGISTERED_CALLER)
    try:
        token = ledger.check_upgrade(token_name)
    except TokenRejected as exc:
        return token_refusal(policy, exc.message)
    return AuthDecision(Credential("token", token_form, token))


def token_refusal(policy: EmulatorPolicy, message: str) -> AuthDecision:
    """Refuse a bad token at the upgrade, as the policy says (HTTP 401 or a close)."""
    if policy.token_rejection == "close":
        return _close(policy.token_rejection_close_code, policy.token_rejection_close_reason)
    return AuthDecision(http=HttpRefusal(401, message))


def _close(code: int, reason: str) -> AuthDecision:
    return AuthDecision(close=CloseRefusal(code, reason))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.title())
    return value
