"""Origin allow-list and the CORS setup that matches it.

Browsers attach cookies to cross-site POSTs. A cookie-authenticated token route that does
not check ``Origin`` would mint a token for any page the user happens to visit: a cross-site
token vending machine. CORS alone does not stop that (the request is sent, only the response
is hidden, and the token is minted either way), so the route refuses foreign origins itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware


class OriginPolicy:
    """Which browser origins may call the token route.

    Requests without ``Origin`` (server-to-server callers, native apps) pass: they cannot
    carry a victim's cookies. With an empty allow-list every request *with* an ``Origin``
    is refused. ``"*"`` allows every origin; only use it with bearer-token auth.
    """

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        """``allowed``: exact origins such as ``https://app.example.com`` (no path)."""
        cleaned = [o.strip().rstrip("/") for o in allowed if o.strip()]
        self.allow_any = "*" in cleaned
        self.allowed = frozenset(o.lower() for o in cleaned if o != "*")

    def permits(self, origin: str | None) -> bool:
        """True if a request with this ``Origin`` header value may proceed."""
        if origin is None:
            return True
        if self.allow_any:
            return True
        # "null" (sandboxed iframes, file://) is never in an allow-list of real origins.
        return origin.strip().rstrip("/").lower() in self.allowed

    def cors_origins(self) -> list[str]:
        """The list to give CORSMiddleware so preflights agree with :meth:`permits`."""
        return ["*"] if self.allow_any else sorted(self.allowed)


def add_cors(app: FastAPI, policy: OriginPolicy) -> None:
    """Install CORS on ``app`` matching ``policy`` (nothing when no origin is allowed).

    Credentials (cookies) are allowed only with an explicit list: browsers refuse
    ``Access-Control-Allow-Credentials`` together with ``*`` anyway.
    """
    origins = policy.cors_origins()
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_credentials=not policy.allow_any,
        allow_methods=["POST"],
        allow_headers=["Authorization", "Content-Type"],
        # Neither is CORS-safelisted: without this a cross-origin page cannot read when a
        # shed answer (429/503) tells it to come back, and retries on its own backoff.
        expose_headers=["Retry-After", "retry-after-ms"],
        max_age=600,
    )
