"""The token service: authenticated, rate-limited minting of single-use ephemeral tokens.

Mount :func:`create_token_router` in your FastAPI app, or run :func:`create_app`
(``tunnelproof serve``). Clients fetch tokens with :class:`TokenServiceSource`; trusted
servers can use :class:`ApiKeyMintingSource` or :class:`ApiKeySource`.
"""

from tunnelproof.tokens.app import create_app
from tunnelproof.tokens.auth import (
    AuthenticationFailed,
    Authenticator,
    AuthenticatorUnavailable,
    JwksAuthenticator,
    Principal,
    SharedSecretJwtAuthenticator,
    StaticKeyAuthenticator,
    from_callable,
)
from tunnelproof.tokens.client import TokenServiceSource
from tunnelproof.tokens.direct import ApiKeyMintingSource, ApiKeySource
from tunnelproof.tokens.metrics import TokenMetrics
from tunnelproof.tokens.minting import MintedToken, Minter, MintingOverloaded, UpstreamError
from tunnelproof.tokens.origin import OriginPolicy, add_cors
from tunnelproof.tokens.ratelimit import UserRateLimiter
from tunnelproof.tokens.router import TokenService, create_token_router
from tunnelproof.tokens.settings import TokenServiceSettings

__all__ = [
    "ApiKeyMintingSource",
    "ApiKeySource",
    "AuthenticationFailed",
    "Authenticator",
    "AuthenticatorUnavailable",
    "JwksAuthenticator",
    "MintedToken",
    "Minter",
    "MintingOverloaded",
    "OriginPolicy",
    "Principal",
    "SharedSecretJwtAuthenticator",
    "StaticKeyAuthenticator",
    "TokenMetrics",
    "TokenService",
    "TokenServiceSettings",
    "TokenServiceSource",
    "UpstreamError",
    "UserRateLimiter",
    "add_cors",
    "create_app",
    "create_token_router",
    "from_callable",
]
