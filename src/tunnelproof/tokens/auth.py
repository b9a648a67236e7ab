"""Caller authentication: who is asking for a token?

An :data:`Authenticator` is any async callable that takes the Starlette ``Request`` and
returns a :class:`Principal`, or raises :class:`AuthenticationFailed`. Built-in ones:

* :class:`JwksAuthenticator` — an OIDC access/ID token (JWT) checked against the issuer's
  JWKS: signature, issuer, audience, expiry, algorithms pinned;
* :class:`SharedSecretJwtAuthenticator` — a JWT signed with a shared HS256 secret;
* :class:`StaticKeyAuthenticator` — fixed bearer keys, for development;
* :func:`from_callable` — adapt any sync or async function.

Failures carry a ``reason`` for the server log and metrics only; the caller always gets the
same 401, so the answer never tells an attacker which check failed.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
from jwt import PyJWKClient
from starlette.requests import Request

from tunnelproof.tokens.settings import TokenServiceSettings

log = logging.getLogger("tunnelproof.tokens.auth")


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller. ``user_id`` keys the per-user rate limit."""

    user_id: str
    claims: Mapping[str, Any] = field(default_factory=dict)


class AuthenticationFailed(Exception):
    """The caller is not authenticated (answered with 401).

    ``reason`` goes to the server log and metrics, never to the caller.
    """

    def __init__(self, reason: str, *, credentials_present: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.credentials_present = credentials_present


class AuthenticatorUnavailable(Exception):
    """The authenticator could not decide (e.g. the JWKS URL is down): answered with 503.

    Not a 401: a 401 tells the client its user must sign in again, which is not true here.
    """


Authenticator = Callable[[Request], Awaitable[Principal]]
"""Async callable: ``Request -> Principal``; raises :class:`AuthenticationFailed`."""


def bearer_token(request: Request, *, cookie: str | None = None) -> str:
    """The bearer token from ``Authorization: Bearer …`` (or from ``cookie`` if named)."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthenticationFailed("malformed authorization header")
        return value.strip()
    if cookie is not None:
        value = request.cookies.get(cookie, "")
        if value:
            return value
    raise AuthenticationFailed("no credentials", credentials_present=False)


class StaticKeyAuthenticator:
    """Fixed bearer keys mapped to user ids. For development and tests, not production."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        """``keys`` maps each bearer key to the user id it stands for."""
        if not keys:
            raise ValueError("StaticKeyAuthenticator needs at least one key")
        self._keys = {k.encode(): user for k, user in keys.items()}

    async def __call__(self, request: Request) -> Principal:
        """Authenticate ``request`` by its bearer key."""
        presented = bearer_token(request).encode()
        user: str | None = None
        # Compare against every key in constant time, so timing does not reveal prefixes.
        for key, owner in self._keys.items():
            if hmac.compare_digest(presented, key):
                user = owner
        if user is None:
            raise AuthenticationFailed("unknown static key")
        return Principal(user)


class _JwtAuthenticator:
    def __init__(
        self,
        *,
        issuer: str | None,
        audience: str | Sequence[str] | None,
        algorithms: Sequence[str],
        user_claim: str,
        leeway: float,
        cookie: str | None,
    ) -> None:
        if not algorithms or any(a.lower() == "none" for a in algorithms):
            raise ValueError("algorithms must be pinned and never 'none'")
        self._issuer = issuer
        self._audience = audience
        self._algorithms = list(algorithms)
        self._user_claim = user_claim
        self._leeway = leeway
        self._cookie = cookie

    def _decode(self, token: str, key: Any) -> Principal:
        required = ["exp", self._user_claim]
        if self._issuer is not None:
            required.append("iss")
        if self._audience is not None:
            required.append("aud")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": required},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationFailed("expired token") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthenticationFailed("wrong audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthenticationFailed("wrong issuer") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthenticationFailed(f"invalid token ({type(exc).__name__})") from exc
        user = claims.get(self._user_claim)
        if not isinstance(user, str) or not user:
            raise AuthenticationFailed("no user claim")
        return Principal(user, claims)

    def _header(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise AuthenticationFailed("malformed token") from exc
        if header.get("alg") not in self._algorithms:
            raise AuthenticationFailed("algorithm not allowed")
        return header


class SharedSecretJwtAuthenticator(_JwtAuthenticator):
    """A JWT signed with a secret shared with the app's login service (HS256 by default)."""

    def __init__(
        self,
        secret: str,
        *,
        issuer: str | None = None,
        audience: str | Sequence[str] | None = None,
        algorithms: Sequence[str] = ("HS256",),
        user_claim: str = "sub",
        leeway: float = 30.0,
        cookie: str | None = None,
    ) -> None:
        """Verify tokens with ``secret``; ``issuer``/``audience`` are checked when given."""
        if len(secret) < 32:
            # RFC 7518 §3.2: an HS256 key shorter than the hash output is brute-forceable.
            raise ValueError("the JWT secret must be at least 32 characters")
        if any(not a.upper().startswith("HS") for a in algorithms):
            raise ValueError("a shared secret only verifies HS* algorithms")
        super().__init__(
            issuer=issuer,
            audience=audience,
            algorithms=algorithms,
            user_claim=user_claim,
            leeway=leeway,
            cookie=cookie,
        )
        self._secret = secret

    async def __call__(self, request: Request) -> Principal:
        """Authenticate ``request`` by its HS256 JWT."""
        token = bearer_token(request, cookie=self._cookie)
        self._header(token)
        return self._decode(token, self._secret)


class JwksAuthenticator(_JwtAuthenticator):
    """An OIDC JWT verified against the issuer's JWKS (RS256 by default).

    The key set is fetched with PyJWT's :class:`~jwt.PyJWKClient` in a worker thread (its
    HTTP client blocks) and cached here for ``cache_seconds``. A token naming an unknown ``kid``
    triggers at most one refetch per ``min_refresh_seconds``: otherwise anyone could make us
    hammer the identity provider by sending made-up key ids.
    """

    def __init__(
        self,
        jwks_url: str,
        *,
        issuer: str | None,
        audience: str | Sequence[str] | None,
        algorithms: Sequence[str] = ("RS256",),
        user_claim: str = "sub",
        leeway: float = 30.0,
        cookie: str | None = None,
        cache_seconds: float = 300.0,
        min_refresh_seconds: float = 30.0,
        fetch_timeout: float = 5.0,
    ) -> None:
        """Verify tokens against the keys at ``jwks_url``."""
        if any(a.upper().startswith("HS") for a in algorithms):
            # A public JWKS key used as an HMAC secret is the alg-confusion attack.
            raise ValueError("JWKS verification only takes asymmetric algorithms")
        if issuer is None or audience is None:
            raise ValueError("OIDC verification needs both issuer and audience")
        super().__init__(
            issuer=issuer,
            audience=audience,
            algorithms=algorithms,
            user_claim=user_claim,
            leeway=leeway,
            cookie=cookie,
        )
        # We cache (and rate-limit refreshes) ourselves, so the client fetches when told to.
        self._client = PyJWKClient(jwks_url, cache_jwk_set=False, timeout=fetch_timeout)
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._cache_seconds = cache_seconds
        self._min_refresh = min_refresh_seconds
        self._lock = asyncio.Lock()

    async def _refresh(self) -> None:
        try:
            keys = await asyncio.to_thread(self._client.get_signing_keys, True)
        except jwt.PyJWKClientError as exc:
            raise AuthenticatorUnavailable(f"JWKS fetch failed: {exc}") from exc
        self._keys = {k.key_id: k.key for k in keys if k.key_id}
        self._fetched_at = time.monotonic()

    async def _key_for(self, kid: str) -> Any:
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            if age > self._cache_seconds or (kid not in self._keys and age > self._min_refresh):
                try:
                    await self._refresh()
                except AuthenticatorUnavailable:
                    # An IdP outage should not sign everyone out: keep using a key we
                    # already verified came from the JWKS, until it comes back.
                    if kid not in self._keys:
                        raise
                    log.warning("JWKS refresh failed; using the cached key set")
            key = self._keys.get(kid)
        if key is None:
            raise AuthenticationFailed("unknown key id")
        return key

    async def __call__(self, request: Request) -> Principal:
        """Authenticate ``request`` by its OIDC JWT."""
        token = bearer_token(request, cookie=self._cookie)
        header = self._header(token)
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthenticationFailed("no key id")
        return self._decode(token, await self._key_for(kid))


def from_callable(
    func: Callable[[Request], Principal | str | Awaitable[Principal | str | None] | None],
) -> Authenticator:
    """Adapt a sync or async function into an :data:`Authenticator`.

    The function may return a :class:`Principal`, a user id string, or ``None`` (not
    authenticated); it may also raise :class:`AuthenticationFailed` itself.
    """

    async def authenticate(request: Request) -> Principal:
        result = func(request)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, Principal):
            return result
        if isinstance(result, str) and result:
            return Principal(result)
        raise AuthenticationFailed("callable authenticator refused the request")

    return authenticate


def authenticator_from_settings(settings: TokenServiceSettings) -> Authenticator:
    """Build the authenticator ``settings.auth_mode`` names (see :class:`TokenServiceSettings`)."""
    mode = settings.auth_mode
    if mode == "static":
        return StaticKeyAuthenticator(settings.static_key_map())
    if mode == "jwt_secret":
        if settings.jwt_secret is None:
            raise ValueError("auth_mode=jwt_secret needs TUNNELPROOF_JWT_SECRET")
        return SharedSecretJwtAuthenticator(
            settings.jwt_secret.get_secret_value(),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            algorithms=settings.jwt_algorithms
            if settings.jwt_algorithms != ["RS256"]
            else ("HS256",),
            user_claim=settings.jwt_user_claim,
            leeway=settings.jwt_leeway,
            cookie=settings.jwt_cookie,
        )
    if mode == "jwks":
        if not settings.jwks_url:
            raise ValueError("auth_mode=jwks needs TUNNELPROOF_JWKS_URL")
        return JwksAuthenticator(
            settings.jwks_url,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            algorithms=settings.jwt_algorithms,
            user_claim=settings.jwt_user_claim,
            leeway=settings.jwt_leeway,
            cookie=settings.jwt_cookie,
        )
    raise ValueError(f"unknown auth_mode {mode!r}")
