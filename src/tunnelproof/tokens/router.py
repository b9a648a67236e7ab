"""The token route as a FastAPI ``APIRouter`` to mount in an app.

``POST {path}`` runs, in this order (cheapest and least revealing first):

1. body guard: at most 1 KiB, JSON object or empty (413 / 415 / 400) — the body is reserved
   for future options and ignored today, but we never buffer an attacker's megabytes;
2. ``Origin`` against the allow-list (403) — before auth, so cross-site junk never reaches
   the JWKS fetcher;
3. caller authentication (401 + ``WWW-Authenticate``; 503 if the IdP's keys are unreachable);
4. API key present (500 ``Server misconfigured``, ``"code": "misconfigured"`` so clients stop
   retrying at once);
5. upstream health: while the upstream is down (after a transient failure: unreachable,
   timed out, 5xx, 429) one request per ``upstream_probe_interval`` goes on to find out
   whether it is back; every other one is answered 503 ``upstream_unavailable`` at once;
6. a mint slot (a request waits up to ``mint_queue_timeout`` for a busy one, then 503
   ``overloaded``), reserved before the rate limit so a shed request does not spend the
   user's budget;
7. per-user rate limit (429 + ``Retry-After``);
8. upstream mint: a transient failure is 503 ``upstream_unavailable``, any other (a
   refused key, an answer without a token) 502.

Every 503 of steps 5, 6 and 8 carries a ``Retry-After`` sized by the backlog
(:class:`~tunnelproof.tokens.admission.Admission`): the *n*-th caller shed is told to come
back about ``n / admit_rate`` seconds later (after the upstream's next probe while it is
down), so a herd returns at the rate the service mints, not all at once. The wait travels
twice: ``retry-after-ms`` (milliseconds, which tunnelproof's clients prefer) and
``Retry-After`` (whole seconds, rounded up, for every other client); the 429 of step 7 does
the same. A client treats a 503 with ``Retry-After`` as a wait. A request that waited in
step 6 is checked against step 5 again: if the upstream went down meanwhile, it is shed
without upstream work like the others.

The raw path must be the route's path as is: a percent-encoded one (``/api%2Flive/token``)
gets 404, so a proxy or firewall rule written for the path cannot be sidestepped.

Every answer of the route carries ``Cache-Control: no-store`` and ``Pragma: no-cache``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tunnelproof.browser.static import static_router
from tunnelproof.tokens.admission import Admission, overload_wait, retry_after_headers
from tunnelproof.tokens.auth import (
    AuthenticationFailed,
    Authenticator,
    AuthenticatorUnavailable,
    authenticator_from_settings,
)
from tunnelproof.tokens.metrics import TokenMetrics
from tunnelproof.tokens.minting import (
    MintedToken,
    Minter,
    MintingOverloaded,
    UpstreamError,
    upstream_is_down,
)
from tunnelproof.tokens.origin import OriginPolicy
from tunnelproof.tokens.ratelimit import RateLimiterUnavailable, UserRateLimiter
from tunnelproof.tokens.settings import TokenServiceSettings

log = logging.getLogger("tunnelproof.tokens")

MAX_BODY_BYTES = 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
WWW_AUTHENTICATE = 'Bearer realm="tunnelproof"'

MISSING_KEY_MESSAGE = (
    "tunnelproof token service: no Gemini API key configured (set GEMINI_API_KEY or "
    "TUNNELPROOF_API_KEY); POST %s answers 500 until it is set"
)

_TOKEN_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["token", "expiresAt", "newSessionExpiresAt", "model", "wsUrl"],
    "properties": {
        "token": {"type": "string", "description": "auth_tokens/…, single use"},
        "expiresAt": {"type": "string", "format": "date-time"},
        "newSessionExpiresAt": {"type": "string", "format": "date-time"},
        "model": {"type": "string"},
        "wsUrl": {"type": "string", "description": "Constrained WebSocket URL, no token"},
        # What the token locks, so a client with a different LiveConfig can say so.
        "responseModalities": {"type": "array", "items": {"type": "string"}},
        "inputAudioTranscription": {"type": "boolean", "description": "true: locked on"},
        "outputAudioTranscription": {"type": "boolean", "description": "true: locked on"},
    },
}
_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "code": {"type": "string", "description": "machine-readable kind, e.g. misconfigured"},
        "detail": {"type": "string"},
    },
}

MISCONFIGURED_CODE = "misconfigured"
"""``code`` of the 500 the route answers while it cannot mint (no API key): a client reads
it to stop retrying at once (a fault only the operator can fix), unlike a transient 5xx."""
MISCONFIGURED_DETAIL = "the token service has no Gemini API key configured"
UPSTREAM_UNAVAILABLE_CODE = "upstream_unavailable"
"""``code`` of the 503 answered while the upstream (Google) is down: wait ``Retry-After``."""
OVERLOADED_CODE = "overloaded"
"""``code`` of the 503 answered when every mint slot stayed busy: wait ``Retry-After``."""


def _error(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    code: str | None = None,
    detail: str | None = None,
) -> JSONResponse:
    body = {"error": message}
    if code is not None:
        body["code"] = code
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers={**NO_STORE, **(headers or {})})


def _retry_after(seconds: float) -> dict[str, str]:
    """A fixed whole-second wait (no per-caller slot: no sub-second hint either)."""
    return {"Retry-After": str(max(1, round(seconds)))}


class TokenService:
    """The token route's dependencies and handler. Build it, then mount :attr:`router`.

    Any dependency may be injected (tests, custom setups); missing ones are built from
    ``settings``. The minter is ``None`` when no API key is configured: the route then
    answers 500 and one clear line is logged at start-up.
    """

    def __init__(
        self,
        settings: TokenServiceSettings | None = None,
        *,
        authenticator: Authenticator | None = None,
        minter: Minter | None = None,
        limiter: UserRateLimiter | None = None,
        origin_policy: OriginPolicy | None = None,
        metrics: TokenMetrics | None = None,
    ) -> None:
        """Wire the service; see the module docstring for what the route does."""
        self.settings = settings or TokenServiceSettings()
        s = self.settings
        self.authenticator = authenticator or authenticator_from_settings(s)
        self.origin_policy = origin_policy or OriginPolicy(s.allowed_origins)
        self.limiter = limiter or UserRateLimiter(s.rate_limit, redis_url=s.redis_url)
        self.metrics = metrics or TokenMetrics()
        key = s.api_key_value()
        if minter is None and key is not None:
            minter = Minter(
                key,
                s.live_config(),
                base_url=s.upstream_base_url,
                api_version=s.api_version,
                ws_base=s.ws_base_url,
                expire_seconds=s.expire_seconds,
                new_session_expire_seconds=s.new_session_expire_seconds,
                timeout=s.mint_timeout,
                max_concurrent=s.max_concurrent_mints,
                queue_timeout=s.mint_queue_timeout,
            )
        self.minter = minter
        self.admission = Admission(s.admit_rate, probe_interval=s.upstream_probe_interval)
        self.router = self._build_router()

    @property
    def configured(self) -> bool:
        """True when an API key is set (the route can mint)."""
        return self.minter is not None

    @asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        """Log misconfiguration at start-up; close upstream clients at shutdown."""
        if not self.configured:
            log.error(MISSING_KEY_MESSAGE, self.settings.path)
        try:
            yield
        finally:
            await self.limiter.aclose()
            if self.minter is not None:
                await self.minter.aclose()

    def _build_router(self) -> APIRouter:
        router = APIRouter(lifespan=self.lifespan)
        router.add_api_route(
            self.settings.path,
            self.handle,
            methods=["POST"],
            summary="Mint a single-use ephemeral Live API token for the authenticated caller",
            response_class=JSONResponse,
            responses={
                200: {"content": {"application/json": {"schema": _TOKEN_RESPONSE_SCHEMA}}},
                **{
                    code: {
                        "description": why,
                        "content": {"application/json": {"schema": _ERROR_SCHEMA}},
                    }
                    for code, why in (
                        (400, "Body is not a JSON object"),
                        (401, "Not authenticated"),
                        (403, "Origin not allowed"),
                        (404, "Percent-encoded path"),
                        (413, "Body too large"),
                        (415, "Body is not JSON"),
                        (429, "Rate limited (Retry-After)"),
                        (500, "Server misconfigured"),
                        (502, "Upstream refused (not transient)"),
                        (
                            503,
                            "Upstream down, overloaded or auth keys unreachable: wait "
                            "Retry-After (sized by the backlog), then retry",
                        ),
                    )
                },
            },
            openapi_extra={
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {"type": "object", "maxProperties": 16},
                        }
                    },
                },
            },
        )
        # The browser client (ES module) is served beside the token route it calls.
        router.include_router(static_router(self.settings.path))
        return router

    async def handle(self, request: Request) -> Response:
        """``POST {path}``: see the module docstring."""
        try:
            return await self._handle(request)
        except Exception:
            # Last line of defence: whatever broke, answer without detail and keep no-store.
            log.exception("token route failed unexpectedly")
            return _error(500, "Internal error")

    async def _handle(self, request: Request) -> Response:
        raw_path = request.scope.get("raw_path")
        if isinstance(raw_path, bytes) and b"%" in raw_path.partition(b"?")[0]:
            # Starlette routes on the decoded path; the route's path never needs encoding.
            return _error(404, "Not Found")
        refused = await self._check_body(request)
        if refused is not None:
            return refused

        origin = request.headers.get("origin")
        if not self.origin_policy.permits(origin):
            self.metrics.auth_failures.labels("origin").inc()
            log.info(
                "token request refused: origin %r not allowed", origin[:200] if origin else origin
            )
            return _error(403, "Origin not allowed")

        try:
            principal = await self.authenticator(request)
        except AuthenticationFailed as exc:
            self.metrics.auth_failures.labels("unauthenticated").inc()
            log.info("token request refused: %s", exc.reason)
            challenge = WWW_AUTHENTICATE
            if exc.credentials_present:
                challenge += ', error="invalid_token"'
            return _error(401, "Unauthorized", {"WWW-Authenticate": challenge})
        except AuthenticatorUnavailable as exc:
            log.warning("cannot authenticate token request: %s", exc)
            return _error(503, "Authentication unavailable", _retry_after(5))

        if self.minter is None:
            # Only after authentication: a stranger learns nothing about the configuration.
            return _error(
                500, "Server misconfigured", code=MISCONFIGURED_CODE, detail=MISCONFIGURED_DETAIL
            )

        admission = self.admission
        probe = admission.upstream_down  # down, yet let through: this request is the probe
        if not admission.may_call_upstream():
            # The upstream is down and this is not the probe's turn: no upstream work.
            return self._shed_upstream_down()
        try:
            # The mint slot first: a request shed because all slots are busy must not spend
            # the user's rate budget (they are told when to come back).
            async with self.minter.reserved() as mint:
                if not probe and admission.upstream_down and not admission.may_call_upstream():
                    # The upstream went down while this request waited in line: without
                    # this check every waiter of a herd would try it in turn, holding the
                    # line (and the herd's answers) for up to mint_queue_timeout.
                    return self._shed_upstream_down()
                return await self._limit_and_mint(principal.user_id, mint)
        except MintingOverloaded:
            self.metrics.rate_limited.labels("overload").inc()
            log.warning("token request shed: all mint slots busy")
            not_before = overload_wait(self.minter.waiting, self.admission.rate)
            return self._shed("Busy, retry later", OVERLOADED_CODE, not_before)

    def _shed_upstream_down(self) -> Response:
        self.metrics.rate_limited.labels("upstream_down").inc()
        return self._shed("Upstream unavailable, retry later", UPSTREAM_UNAVAILABLE_CODE)

    def _shed(self, message: str, code: str, not_before: float = 0.0) -> Response:
        """503 with the caller's own slot in the backlog (``Retry-After``, ``retry-after-ms``)."""
        wait = self.admission.shed(not_before)
        return _error(503, message, retry_after_headers(wait), code=code)

    async def _limit_and_mint(
        self, user_id: str, mint: Callable[[], Awaitable[MintedToken]]
    ) -> Response:
        try:
            wait = await self.limiter.hit(user_id)
        except RateLimiterUnavailable as exc:
            # Fail closed: without the shared budget we cannot tell abuse from use.
            log.warning("rate-limit storage unavailable (%s)", exc)
            return _error(503, "Rate limiter unavailable", _retry_after(2))
        if wait is not None:
            self.metrics.rate_limited.labels("user").inc()
            log.info("token request from user %r rate limited for %.0fs", user_id, wait)
            return _error(429, "Too many token requests", retry_after_headers(wait))

        started = time.perf_counter()
        try:
            minted = await mint()
        except UpstreamError as exc:
            self.metrics.upstream_latency.observe(time.perf_counter() - started)
            self.metrics.upstream_errors.labels(exc.kind).inc()
            log.error("upstream mint failed (%s): %s", exc.kind, exc)
            if upstream_is_down(exc):
                self.admission.upstream_failed()
                return self._shed("Upstream unavailable, retry later", UPSTREAM_UNAVAILABLE_CODE)
            return _error(502, "Failed to issue token")
        self.admission.upstream_ok()
        self.metrics.upstream_latency.observe(time.perf_counter() - started)
        self.metrics.tokens_issued.inc()
        log.info("token issued to user %r (model %s)", user_id, minted.model)
        return JSONResponse(minted.to_json(), headers=NO_STORE)

    async def _check_body(self, request: Request) -> Response | None:
        length = request.headers.get("content-length")
        if length is not None:
            try:
                if int(length) > MAX_BODY_BYTES:
                    return _error(413, "Body too large")
            except ValueError:
                return _error(400, "Bad Content-Length")
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_BODY_BYTES:
                return _error(413, "Body too large")
        if not body.strip():
            return None
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            return _error(415, "Body must be application/json")
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _error(400, "Body is not valid JSON")
        if not isinstance(parsed, dict):
            return _error(400, "Body must be a JSON object")
        return None


def create_token_router(
    settings: TokenServiceSettings | None = None,
    *,
    authenticator: Authenticator | None = None,
    minter: Minter | None = None,
    limiter: UserRateLimiter | None = None,
    origin_policy: OriginPolicy | None = None,
    metrics: TokenMetrics | None = None,
) -> APIRouter:
    """An ``APIRouter`` with ``POST {settings.path}`` to ``include_router`` in your app.

    Its lifespan (start-up check, closing the upstream client) runs with the app's. Add
    CORS with :func:`tunnelproof.tokens.origin.add_cors` if browsers call it. To reach the
    metrics, build a :class:`TokenService` yourself and use ``service.metrics``.
    """
    return TokenService(
        settings,
        authenticator=authenticator,
        minter=minter,
        limiter=limiter,
        origin_policy=origin_policy,
        metrics=metrics,
    ).router
