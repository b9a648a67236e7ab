"""Server-side token sources that hold the API key themselves.

* :class:`ApiKeyMintingSource` mints a single-use ephemeral token per call (a server that
  wants the same locked, short-lived credentials browsers get);
* :class:`ApiKeySource` hands out the API key itself, for trusted server-side agents.

Neither belongs in a browser or on a device: both need the real key.
"""

from __future__ import annotations

from tunnelproof.protocol.config import LiveConfig
from tunnelproof.protocol.endpoints import (
    GOOGLE_HTTP_BASE,
    GOOGLE_WS_BASE,
    ApiVersion,
)
from tunnelproof.protocol.locked import LockedConfig
from tunnelproof.session.credentials import (
    Credential,
    TokenConfigError,
    TokenOffline,
    TokenRateLimited,
    TokenUnavailable,
)
from tunnelproof.tokens.minting import Minter, MintingOverloaded, UpstreamError, ws_base_from_http


class ApiKeyMintingSource:
    """Mint an ephemeral token with google-genai on every call (no token service needed).

    Upstream 401/403 mean the key itself is bad: that is :class:`TokenConfigError` (fatal),
    not a user problem. Call :meth:`aclose` (or use ``async with``) when done.
    """

    def __init__(
        self,
        api_key: str,
        live_config: LiveConfig | None = None,
        *,
        http_base: str = GOOGLE_HTTP_BASE,
        ws_base: str | None = None,
        api_version: ApiVersion = "v1alpha",
        expire_seconds: float = 1800.0,
        new_session_expire_seconds: float = 60.0,
        timeout: float = 10.0,
        max_concurrent: int = 4,
    ) -> None:
        """Tokens are locked to ``live_config`` (default: ``LiveConfig()``)."""
        if not api_key:
            raise TokenConfigError("api_key is empty")
        self._ws_base = ws_base or ws_base_from_http(http_base)
        self._api_version: ApiVersion = api_version
        self._locked = LockedConfig.of(live_config or LiveConfig())
        self._minter = Minter(
            api_key,
            live_config or LiveConfig(),
            base_url=http_base,
            api_version=api_version,
            ws_base=self._ws_base,
            expire_seconds=expire_seconds,
            new_session_expire_seconds=new_session_expire_seconds,
            timeout=timeout,
            max_concurrent=max_concurrent,
        )

    async def __call__(self) -> Credential:
        """A fresh single-use token as a :class:`Credential`."""
        try:
            minted = await self._minter.mint()
        except MintingOverloaded:
            # Direct minting sheds nobody else's requests: the slots free within a mint.
            raise TokenRateLimited("too many concurrent mints", retry_after=1.0) from None
        except UpstreamError as exc:
            raise _classify(exc) from None
        return Credential(
            kind="ephemeral_token",
            secret=minted.token,
            ws_base=self._ws_base,
            api_version=self._api_version,
            expires_at=minted.expires_at.timestamp(),
            new_session_expires_at=minted.new_session_expires_at.timestamp(),
            model=minted.model,
            locked=self._locked,
        )

    async def aclose(self) -> None:
        """Close the upstream HTTP client."""
        await self._minter.aclose()

    async def __aenter__(self) -> ApiKeyMintingSource:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"ApiKeyMintingSource(ws_base={self._ws_base!r}, api_key=<redacted>)"


def _classify(exc: UpstreamError) -> Exception:
    message = f"minting failed upstream ({exc.kind}, status {exc.status})"
    if exc.kind == "connect":
        return TokenOffline(message)
    if exc.kind == "status" and exc.status is not None:
        if exc.status in (401, 403):
            return TokenConfigError(message + ": the API key was refused")
        if exc.status == 429:
            return TokenRateLimited(message)
        if exc.status in (400, 404):
            return TokenConfigError(message)
    return TokenUnavailable(message, status=exc.status)


class ApiKeySource:
    """Return the API key itself as the credential (trusted server-side agents only).

    The key goes in the ``x-goog-api-key`` header of the WebSocket handshake, never in the
    URL. ``v1beta`` is the documented version for key-authenticated Live sessions.
    """

    def __init__(
        self,
        api_key: str,
        *,
        ws_base: str = GOOGLE_WS_BASE,
        api_version: ApiVersion = "v1beta",
        model: str | None = None,
    ) -> None:
        """Hand out ``api_key`` for ``ws_base``/``api_version``."""
        if not api_key:
            raise TokenConfigError("api_key is empty")
        self._credential = Credential(
            kind="api_key", secret=api_key, ws_base=ws_base, api_version=api_version, model=model
        )

    async def __call__(self) -> Credential:
        """The API-key credential (the same value every time: keys are not single-use)."""
        return self._credential

    def __repr__(self) -> str:
        return f"ApiKeySource(ws_base={self._credential.ws_base!r}, api_key=<redacted>)"
