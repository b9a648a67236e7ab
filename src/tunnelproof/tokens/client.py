"""A :data:`~tunnelproof.session.credentials.TokenSource` that asks a token service.

Each call POSTs to the service with the user's own credential and returns a fresh
:class:`~tunnelproof.session.credentials.Credential`. Failures become the typed errors the
reconnecting client classifies: 401/403 fatal, the service's own 500 "misconfigured"
fatal, 429 wait, other 5xx/timeouts retry, network gone probe. The wait of a 429/503 is
``retry-after-ms`` when the service sent a sane one, else ``Retry-After``
(:mod:`tunnelproof.session.retry_after`).
"""

from __future__ import annotations

import inspect
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlsplit

import httpx

from tunnelproof.protocol.endpoints import API_VERSIONS, ApiVersion
from tunnelproof.protocol.locked import LockedConfig
from tunnelproof.session.credentials import (
    Credential,
    TokenAuthError,
    TokenConfigError,
    TokenOffline,
    TokenRateLimited,
    TokenUnavailable,
)
from tunnelproof.session.retry_after import parse_retry_after, retry_after_from

__all__ = ["GetCredential", "TokenServiceSource", "UserCredential", "parse_retry_after"]

UserCredential = str | Mapping[str, str] | None
"""What ``get_credential`` returns: the ``Authorization`` header value (``"Bearer …"``), a
mapping of headers (e.g. ``{"Cookie": "session=…"}``), or ``None`` for no credential."""

GetCredential = Callable[[], UserCredential | Awaitable[UserCredential]]

_WS_URL = re.compile(
    r"^(?P<base>wss?://[^/?#]+(?:/[^?#]*?)?)/+ws/google\.ai\.generativelanguage\."
    r"(?P<version>v1|v1alpha|v1beta)\.GenerativeService\.BidiGenerateContentConstrained$"
)


def _timestamp(value: Any) -> float:
    if not isinstance(value, str):
        raise ValueError("not a timestamp string")
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _code(response: httpx.Response) -> str | None:
    """The service's machine-readable ``code`` (printable, bounded), if any."""
    code = _json_object(response).get("code")
    return code[:64] if isinstance(code, str) and code.isprintable() else None


def _misconfigured(response: httpx.Response) -> bool:
    """The tunnelproof service's own 500 ``{"code": "misconfigured"}`` (not a transient 5xx)."""
    return bool(_json_object(response).get("code") == "misconfigured")


def _detail(response: httpx.Response) -> str | None:
    detail = _json_object(response).get("detail")
    # Shown to a person: printable text only, bounded.
    if isinstance(detail, str) and detail.isprintable():
        return detail[:200]
    return None


# A header value httpx can send: visible ASCII, spaces and tabs inside (RFC 9110 field-value).
_HEADER_VALUE = re.compile(r"(?:[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*)?")


class TokenServiceSource:
    """Fetch a fresh ephemeral token from a tunnelproof token service on every call.

    ``url`` is the full route URL (``https://api.example.com/api/live/token``).
    ``get_credential`` (sync or async) returns the user's credential for each request, so a
    refreshed login is picked up on the next reconnect. ``timeout`` bounds the whole request.

    Each call uses a new connection: token fetches happen only when (re)connecting, often
    right after a network drop, when a pooled keep-alive socket is likely half-open and
    would stall the fetch until the timeout.
    """

    def __init__(
        self,
        url: str,
        get_credential: GetCredential | None = None,
        *,
        timeout: float = 10.0,
        connect_timeout: float | None = None,
        verify: ssl.SSLContext | str | bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """See the class docstring. ``verify``/``transport`` are passed to httpx."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise TokenConfigError(f"token service URL must be http(s)://host/…: {url!r}")
        if timeout <= 0:
            raise TokenConfigError("timeout must be positive")
        self.url = url
        self._get_credential = get_credential
        self._timeout = httpx.Timeout(
            timeout, connect=connect_timeout if connect_timeout is not None else timeout
        )
        # Build the TLS context once: httpx builds one per AsyncClient when given True or
        # a CA path (~20 ms of CPU each, loading the CA bundle), and this source opens a
        # fresh client per call. A herd of sessions reconnecting in one process otherwise
        # spends its CPU loading CA files instead of reconnecting.
        self._verify: ssl.SSLContext | bool = (
            verify
            if isinstance(verify, (ssl.SSLContext, bool)) and verify is not True
            else httpx.create_ssl_context(verify=verify)
        )
        self._transport = transport

    async def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._get_credential is None:
            return headers
        value = self._get_credential()
        if inspect.isawaitable(value):
            value = await value
        if isinstance(value, str):
            headers["Authorization"] = value
        elif value is not None:
            headers.update(value)
        for name, text in headers.items():
            if not _HEADER_VALUE.fullmatch(text):
                # httpx refused it deep in the connection (LocalProtocolError, whose text
                # carries the secret), which read as "service unavailable" and was retried
                # for minutes; a key read from a file with its newline is the usual cause.
                # The value is never put in the message.
                raise TokenConfigError(
                    f"the {name} header from get_credential is not a valid HTTP header value "
                    "(a newline, control or non-ASCII character, e.g. a key read from a file "
                    "with its trailing newline); strip it"
                )
        return headers

    async def __call__(self) -> Credential:
        """Ask the service for a token. Raises a ``TokenSourceError`` subclass on failure."""
        headers = await self._headers()
        try:
            async with httpx.AsyncClient(
                timeout=self._timeout,
                verify=self._verify,
                transport=self._transport,
                limits=httpx.Limits(max_keepalive_connections=0),
                follow_redirects=False,
            ) as client:
                response = await client.post(self.url, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise TokenOffline(f"token service unreachable: {type(exc).__name__}") from exc
        except httpx.TimeoutException as exc:
            raise TokenUnavailable(f"token service timed out: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise TokenUnavailable(
                f"token service connection failed: {type(exc).__name__}"
            ) from exc
        return self._credential(response)

    def _credential(self, response: httpx.Response) -> Credential:
        status = response.status_code
        # retry-after-ms (the service's own slot, to the millisecond) before Retry-After.
        retry_after = retry_after_from(response.headers)
        if status in (401, 403):
            raise TokenAuthError(f"token service refused the user ({status})", status=status)
        if status == 429:
            raise TokenRateLimited("token service rate limit", retry_after=retry_after)
        if status >= 500 and _misconfigured(response):
            # The service says it cannot mint until its operator fixes it: retrying would
            # only hide that for minutes (13 attempts, 97 s before this was read).
            raise TokenConfigError(
                f"the token service at {self.url} is misconfigured "
                f"({_detail(response) or 'it says so'}); HTTP {status}, not retried"
            )
        if status >= 500:
            # 503 + Retry-After (shedding, or its upstream is down) is a wait for the session.
            code = _code(response)
            raise TokenUnavailable(
                f"token service error {status}" + (f" ({code})" if code else ""),
                status=status,
                retry_after=retry_after,
                code=code,
            )
        if status != 200:
            # 3xx/404/413/415/…: the URL or the deployment is wrong; retrying cannot help.
            raise TokenConfigError(f"token service answered {status} at {self.url}")
        try:
            body = response.json()
            token = body["token"]
            match = _WS_URL.match(body["wsUrl"])
            if not isinstance(token, str) or not token or match is None:
                raise ValueError("bad token or wsUrl")
            version = match["version"]
            assert version in API_VERSIONS
            model = body.get("model")
            return Credential(
                kind="ephemeral_token",
                secret=token,
                ws_base=match["base"],
                api_version=cast(ApiVersion, version),
                expires_at=_timestamp(body["expiresAt"]),
                new_session_expires_at=_timestamp(body["newSessionExpiresAt"]),
                model=model if isinstance(model, str) else None,
                # What the service locked (model, modality, transcription), so the session
                # can say loudly when its own LiveConfig differs.
                locked=LockedConfig.from_json(body),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenUnavailable(
                f"token service sent an unusable answer ({type(exc).__name__})", status=status
            ) from None

    def __repr__(self) -> str:
        return f"TokenServiceSource({self.url!r})"
