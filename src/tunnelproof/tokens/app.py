"""The standalone token service: the route, ``/healthz`` and ``/metrics``."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.responses import JSONResponse, Response

from tunnelproof.tokens.metrics import CONTENT_TYPE_LATEST
from tunnelproof.tokens.origin import add_cors
from tunnelproof.tokens.router import TokenService
from tunnelproof.tokens.settings import TokenServiceSettings
from tunnelproof.tokens.tickets import maybe_add_relay_tickets


def create_app(
    settings: TokenServiceSettings | None = None, *, service: TokenService | None = None
) -> FastAPI:
    """A FastAPI app serving the token route, ``GET /healthz`` and ``GET /metrics``.

    ``settings`` default to the environment (``TUNNELPROOF_*``). Pass ``service`` to inject
    dependencies (a custom authenticator, a shared limiter, …). Serve ``/metrics`` on an
    internal network only: it is not authenticated.
    """
    service = service or TokenService(settings)
    app = FastAPI(
        title="tunnelproof token service",
        summary="Authenticated, rate-limited minting of single-use Gemini Live tokens",
        version="0.1.0",
    )
    app.state.token_service = service
    # include_router merges the router's lifespan (start-up check, client close) into ours.
    app.include_router(service.router)
    maybe_add_relay_tickets(app, service)  # POST /api/live/relay-ticket when configured
    add_cors(app, service.origin_policy)

    @app.get("/healthz", summary="Liveness and configuration check")
    async def healthz() -> Response:
        # 503 when unconfigured, so a load balancer keeps traffic away from a replica that
        # can only answer 500.
        ok = service.configured
        return JSONResponse(
            {"status": "ok" if ok else "misconfigured"}, status_code=200 if ok else 503
        )

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app
