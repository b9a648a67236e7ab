"""`tunnelproof serve`: run the token service with uvicorn.

Configuration comes from ``TUNNELPROOF_*`` (see ``docs/operations.md``); flags override it.
When the server is listening, one JSON line goes to stdout::

    {"event": "ready", "url": "http://127.0.0.1:8080", "tokenUrl": "http://…/api/live/token"}

With ``--port 0`` the kernel picks the port and the line says which.

``--demo`` serves the browser demo page instead (``tunnelproof demo --browser``): its own
emulator, tunnel proxy and token service, all local, no key, on a loopback address only
(the page's tunnel controls have no authentication). The ready line then also carries
``demoUrl``, the page to open.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import sys
from typing import Annotated, Any

import typer


async def _announce_when_ready(server: Any, path: str) -> None:
    # uvicorn has no "ready" callback; poll its flag (bounded by the server's own start-up).
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.02)
    sockets = [s for srv in server.servers for s in srv.sockets]
    host, port = sockets[0].getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    line = {"event": "ready", "url": url, "tokenUrl": url + path, "port": port}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def _serve(settings: Any) -> None:
    import uvicorn

    from tunnelproof.tokens.app import create_app

    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        workers=1,
        log_level=settings.log_level,
        # The access log is safe (no secret is ever in our URLs) but noisy; keep it at info.
        access_log=True,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    announcer = asyncio.create_task(_announce_when_ready(server, settings.path))
    try:
        await server.serve()
    finally:
        announcer.cancel()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve_demo(host: str | None, port: int | None, ignored: dict[str, Any]) -> int:
    """``serve --demo``: the browser demo on a loopback address; returns the exit code."""
    given = sorted("--" + name.replace("_", "-") for name, value in ignored.items() if value)
    if given:
        typer.echo(
            f"tunnelproof serve --demo: runs its own emulator, tunnel and token service; "
            f"drop {', '.join(given)}",
            err=True,
        )
        return 2
    bind = host or "127.0.0.1"
    if not _is_loopback(bind):
        typer.echo(
            f"tunnelproof serve --demo: {bind} is not a loopback address (the demo's tunnel "
            "controls have no authentication); use 127.0.0.1 or ::1",
            err=True,
        )
        return 2
    from tunnelproof.demo.browser import run_browser_demo_command

    return run_browser_demo_command(host=bind, port=port or 0, ready_line=True)


def register(app: typer.Typer) -> None:
    """Add the `serve` command to ``app``."""

    @app.command("serve")
    def serve_command(
        host: Annotated[str | None, typer.Option(help="Interface to bind.")] = None,
        port: Annotated[int | None, typer.Option(help="Port; 0 picks a free one.")] = None,
        upstream: Annotated[
            str | None, typer.Option(help="HTTP base of the minting API (emulator or Google).")
        ] = None,
        ws_base: Annotated[str | None, typer.Option(help="WebSocket base put in wsUrl.")] = None,
        api_version: Annotated[
            str | None, typer.Option(help="v1alpha (default), v1beta, v1.")
        ] = None,
        path: Annotated[str | None, typer.Option(help="Route path (/api/live/token).")] = None,
        rate_limit: Annotated[
            str | None, typer.Option(help="Per-user budget, e.g. 10/minute.")
        ] = None,
        redis_url: Annotated[
            str | None, typer.Option(help="Share limits between replicas.")
        ] = None,
        allowed_origin: Annotated[
            list[str] | None, typer.Option(help="Allowed browser Origin (repeat).")
        ] = None,
        auth_mode: Annotated[str | None, typer.Option(help="jwks | jwt_secret | static")] = None,
        static_key: Annotated[
            list[str] | None,
            typer.Option(help="Dev bearer key as user:key (repeat; dev only, visible in ps)."),
        ] = None,
        jwks_url: Annotated[str | None, typer.Option(help="OIDC JWKS URL.")] = None,
        issuer: Annotated[str | None, typer.Option(help="Expected JWT issuer.")] = None,
        audience: Annotated[str | None, typer.Option(help="Expected JWT audience.")] = None,
        model: Annotated[str | None, typer.Option(help="Model the tokens are locked to.")] = None,
        log_level: Annotated[
            str | None, typer.Option(help="uvicorn/tunnelproof log level.")
        ] = None,
        demo: Annotated[
            bool,
            typer.Option(
                "--demo",
                help="Serve the browser demo page with its own emulator and tunnel "
                "(all local, no key; loopback only).",
            ),
        ] = False,
    ) -> None:
        """Run the token service (one uvicorn worker) and print one JSON line when ready."""
        if demo:
            ignored = {
                "upstream": upstream,
                "ws_base": ws_base,
                "api_version": api_version,
                "path": path,
                "rate_limit": rate_limit,
                "redis_url": redis_url,
                "allowed_origin": allowed_origin,
                "auth_mode": auth_mode,
                "static_key": static_key,
                "jwks_url": jwks_url,
                "issuer": issuer,
                "audience": audience,
                "model": model,
            }
            raise typer.Exit(code=_serve_demo(host, port, ignored))
        from pydantic import ValidationError

        from tunnelproof.tokens.settings import TokenServiceSettings

        overrides: dict[str, Any] = {
            "host": host,
            "port": port,
            "upstream_base_url": upstream,
            "ws_base_url": ws_base,
            "api_version": api_version,
            "path": path,
            "rate_limit": rate_limit,
            "redis_url": redis_url,
            "allowed_origins": allowed_origin,
            "auth_mode": auth_mode,
            "static_keys": static_key,
            "jwks_url": jwks_url,
            "jwt_issuer": issuer,
            "jwt_audience": audience,
            "model": model,
            "log_level": log_level,
        }
        try:
            settings = TokenServiceSettings(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as exc:
            # Only field names and messages: the input values may be secrets.
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                for err in exc.errors(include_input=False, include_url=False)
            )
            typer.echo(f"tunnelproof serve: bad configuration: {problems}", err=True)
            raise typer.Exit(code=2) from None
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        try:
            asyncio.run(_serve(settings))
        except ValueError as exc:  # e.g. auth mode without its parameters
            typer.echo(f"tunnelproof serve: bad configuration: {exc}", err=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            pass
