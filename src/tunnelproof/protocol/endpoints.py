"""Live API endpoint URLs and the four ways to authenticate a WebSocket.

URL template used by both official SDKs::

    {ws-base}/ws/google.ai.generativelanguage.{version}.GenerativeService.{method}

API keys go in the ``x-goog-api-key`` header by default: a key in a URL ends up in proxy
and server logs. The ``?key=`` form exists because browsers cannot set WebSocket headers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

ApiVersion = Literal["v1", "v1alpha", "v1beta"]
API_VERSIONS: tuple[ApiVersion, ...] = ("v1", "v1alpha", "v1beta")

GOOGLE_HTTP_BASE = "https://generativelanguage.googleapis.com"
GOOGLE_WS_BASE = "wss://generativelanguage.googleapis.com"

TOKEN_PREFIX = "auth_tokens/"


class Method(StrEnum):
    """The two Live methods: API-key sessions and ephemeral-token sessions."""

    BIDI = "BidiGenerateContent"
    CONSTRAINED = "BidiGenerateContentConstrained"


class AuthForm(StrEnum):
    """Where the credential travels in the WebSocket handshake."""

    KEY_QUERY = "key_query"  # ?key=API_KEY (browsers; avoid elsewhere)
    KEY_HEADER = "key_header"  # x-goog-api-key: API_KEY (the Python SDK)
    TOKEN_QUERY = "token_query"  # ?access_token=auth_tokens/... (browsers, the docs)
    TOKEN_HEADER = "token_header"  # Authorization: Token auth_tokens/...


def live_path(version: ApiVersion, method: Method) -> str:
    """The path of the Live WebSocket for ``version`` and ``method`` (no base, no query)."""
    return f"/ws/google.ai.generativelanguage.{version}.GenerativeService.{method.value}"


def live_url(ws_base: str, *, version: ApiVersion, method: Method) -> str:
    """Full WebSocket URL. ``http(s)`` bases are turned into ``ws(s)``."""
    base = _ws_scheme(ws_base).rstrip("/")
    return base + live_path(version, method)


def auth_tokens_url(http_base: str, version: ApiVersion = "v1alpha") -> str:
    """REST URL that mints ephemeral tokens (``POST``)."""
    return f"{http_base.rstrip('/')}/{version}/auth_tokens"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A URL plus the handshake headers that carry the credential."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)

    def redacted_url(self) -> str:
        """The URL with credential values hidden, fit for a log line."""
        return redact_url(self.url)


def api_key_endpoint(
    ws_base: str,
    api_key: str,
    *,
    version: ApiVersion = "v1beta",
    form: AuthForm = AuthForm.KEY_HEADER,
) -> Endpoint:
    """Endpoint for a session authenticated by an API key (the plain method)."""
    if not api_key:
        raise ValueError("api_key is empty")
    url = live_url(ws_base, version=version, method=Method.BIDI)
    if form is AuthForm.KEY_HEADER:
        return Endpoint(url, {"x-goog-api-key": api_key})
    if form is AuthForm.KEY_QUERY:
        return Endpoint(f"{url}?{urlencode({'key': api_key})}")
    raise ValueError(f"{form} is not an API-key auth form")


def token_endpoint(
    ws_base: str,
    token: str,
    *,
    version: ApiVersion = "v1alpha",
    form: AuthForm = AuthForm.TOKEN_QUERY,
) -> Endpoint:
    """Endpoint for a session authenticated by an ephemeral token (Constrained method).

    The token is URL-encoded in the query form (``auth_tokens%2F...``); Google and the
    emulator accept it encoded or not.
    """
    if not token:
        raise ValueError("token is empty")
    url = live_url(ws_base, version=version, method=Method.CONSTRAINED)
    if form is AuthForm.TOKEN_QUERY:
        return Endpoint(f"{url}?access_token={quote(token, safe='')}")
    if form is AuthForm.TOKEN_HEADER:
        return Endpoint(url, {"Authorization": f"Token {token}"})
    raise ValueError(f"{form} is not a token auth form")


_SECRET_PARAMS = frozenset({"key", "access_token"})


def redact_url(url: str) -> str:
    """Replace the values of ``key`` and ``access_token`` query parameters with ``REDACTED``."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = [
        (name, "REDACTED" if name in _SECRET_PARAMS else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query, safe="/")))


def _ws_scheme(base: str) -> str:
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :]
    if base.startswith("http://"):
        return "ws://" + base[len("http://") :]
    return base
