"""The token service: authenticated, rate-limited minting of single-use ephemeral tokens.

Mount :func:`create_token_router` in your FastAPI app, or run :func:`create_app`
(``tunnelproof serve``). Clients fetch tokens with :class:`TokenServiceSource`; trusted
servers can use :class:`ApiKeyMintingSource` or :class:`ApiKeySource`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Imported on first use (PEP 562): the service half pulls in FastAPI and google-genai
# (~0.8 s), which a process that only fetches tokens (``tokens.client``: the demo, chat,
# every ``LiveSession`` app) should not pay for.
_LAZY: dict[str, str] = {
    "ApiKeyMintingSource": "tunnelproof.tokens.direct",
    "ApiKeySource": "tunnelproof.tokens.direct",
    "AuthenticationFailed": "tunnelproof.tokens.auth",
    "Authenticator": "tunnelproof.tokens.auth",
    "AuthenticatorUnavailable": "tunnelproof.tokens.auth",
    "JwksAuthenticator": "tunnelproof.tokens.auth",
    "MintedToken": "tunnelproof.tokens.minting",
    "Minter": "tunnelproof.tokens.minting",
    "MintingOverloaded": "tunnelproof.tokens.minting",
    "OriginPolicy": "tunnelproof.tokens.origin",
    "Principal": "tunnelproof.tokens.auth",
    "SharedSecretJwtAuthenticator": "tunnelproof.tokens.auth",
    "StaticKeyAuthenticator": "tunnelproof.tokens.auth",
    "TokenMetrics": "tunnelproof.tokens.metrics",
    "TokenService": "tunnelproof.tokens.router",
    "TokenServiceSettings": "tunnelproof.tokens.settings",
    "TokenServiceSource": "tunnelproof.tokens.client",
    "UpstreamError": "tunnelproof.tokens.minting",
    "UserRateLimiter": "tunnelproof.tokens.ratelimit",
    "add_cors": "tunnelproof.tokens.origin",
    "create_app": "tunnelproof.tokens.app",
    "create_token_router": "tunnelproof.tokens.router",
    "from_callable": "tunnelproof.tokens.auth",
}


def __getattr__(name: str) -> Any:
    """Import an exported name's module on first access (then it is a plain global)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The exported names, imported or not yet."""
    return sorted(set(globals()) | set(__all__))


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
