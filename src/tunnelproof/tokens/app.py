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

    Only this standalone app has ``/healthz`` and ``/metrics``; a router mounted in your
    app has the token route alone (``service.metrics`` holds its counters). ``settings``
    default to the environment (``TUNNELPROOF_*``). Pass ``service`` to inject dependencies
    (a custom authenticator, a shared limiter, …). Serve ``/metrics`` on an internal network
    only: it is not authenticated. ``/docs`` and ``/openapi.json`` exist only with
    ``settings.docs`` (``TUNNELPROOF_DOCS=1``).
    """
    service = service or TokenService(settings)
    docs = service.settings.docs
    app = FastAPI(
        title="tunnelproof token service",
        summary="Authenticated, rate-limited minting of single-use Gemini Live tokens",
        version="0.1.0",
        # Off unless TUNNELPROOF_DOCS is set: a public service need not publish its API.
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        # No 307 to the slash-less path: its Location would be built from the Host header
        # (an open redirect through a careless proxy); a stray slash is a plain 404.
        redirect_slashes=False,
    )
    app.state.token_service = service
    # include_router merges the router's lifespan (start-up check, client close) into ours.
    app.include_router(service.router)
    maybe_add_relay_tickets(app, service)  # POST /api/live/relay-ticket when configured
    add_cors(app, service.origin_policy)

    @app.get("/healthz", summary="Liveness and configuration check")
    async def healthz() -> Response:
        # 503 when unconfigured or when the shared rate-limit storage (Redis) does not
        # answer, so a load balancer keeps traffic away from a replica that can only
        # answer 500 or 503.
        if not service.configured:
            status = "misconfigured"
        elif service.settings.redis_url and not await service.limiter.check_storage():
            status = "rate-limit storage unavailable"
        else:
            status = "ok"
        return JSONResponse(
            {"status": status},
            status_code=200 if status == "ok" else 503,
            headers={"Cache-Control": "no-store"},
        )

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app
