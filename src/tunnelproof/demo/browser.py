"""The browser demo: the train journey as a page (``tunnelproof demo --browser``, or
``tunnelproof serve --demo``).

All local, no key: an emulator, a tunnel proxy in front of it and the token service
(serving the client module) in one process. The page talks by text or microphone through
the tunnel; its buttons blackhole, restore or cut the link through this server's small
control API (loopback only), ask the emulator for a goAway, or play the whole journey, and
a timeline shows every drop, gap, handle and token.

The page itself (``demo.html``) is a static file of :mod:`tunnelproof.browser`, beside the
client module it loads; this module assembles the running demo around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import FastAPI
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from tunnelproof.browser import MODULE_DIR
from tunnelproof.browser.static import client_url
from tunnelproof.emulator import EmulatorPolicy, EmulatorServer
from tunnelproof.testing.app_server import serving
from tunnelproof.testing.tunnel import TunnelProxy
from tunnelproof.tokens.app import create_app
from tunnelproof.tokens.router import TokenService
from tunnelproof.tokens.settings import TokenServiceSettings

DEMO_USER = "demo"
TUNNEL_ACTIONS = ("blackhole", "restore", "reset")


@dataclass(frozen=True, slots=True)
class BrowserDemo:
    """A running demo: open :attr:`url` in a browser."""

    url: str
    token_url: str


def demo_page(bearer: str, token_path: str) -> str:
    """The demo page with its (local, per-run) bearer key and client URL filled in."""
    html = (MODULE_DIR / "demo.html").read_text(encoding="utf-8")
    return (
        html.replace("__BEARER__", bearer)
        .replace("__CLIENT_URL__", client_url(token_path))
        .replace("__TOKEN_PATH__", token_path)
    )


def add_demo_routes(
    app: FastAPI, *, tunnel: TunnelProxy, emulator: EmulatorServer, page: str
) -> None:
    """``GET /`` (the page), ``POST /demo/tunnel`` and ``POST /demo/goaway``."""

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.post("/demo/tunnel", include_in_schema=False)
    async def tunnel_control(request: Request) -> Response:
        body = await request.json()
        action = body.get("action") if isinstance(body, dict) else None
        if action not in TUNNEL_ACTIONS:
            return JSONResponse({"error": f"action must be one of {TUNNEL_ACTIONS}"}, 400)
        tunnel.apply(action)
        return JSONResponse({"action": action, "blackholed": tunnel.blackholed})

    @app.post("/demo/goaway", include_in_schema=False)
    async def go_away() -> Response:
        try:
            await emulator.controls.send_go_away(time_left=10.0)
        except LookupError:
            return JSONResponse({"error": "no open Live connection"}, 409)
        return JSONResponse({"sent": True})


@contextlib.asynccontextmanager
async def browser_demo(
    host: str = "127.0.0.1", port: int = 0, *, speed: float = 1.0
) -> AsyncIterator[BrowserDemo]:
    """Start the emulator, the tunnel and the token service with the demo page.

    ``speed`` paces the emulator's answers (1 = real time, 0 = as fast as possible).
    """
    api_key = "demo-" + secrets.token_urlsafe(12)
    bearer = secrets.token_urlsafe(18)
    async with EmulatorServer(EmulatorPolicy(generation_speed=speed), api_key=api_key) as emu:
        tunnel = TunnelProxy(emu.host, emu.port)
        await tunnel.start()
        try:
            settings = TokenServiceSettings(
                api_key=SecretStr(api_key),
                upstream_base_url=emu.http_base,
                ws_base_url=tunnel.url("ws"),
                auth_mode="static",
                static_keys=[SecretStr(f"{DEMO_USER}:{bearer}")],
                rate_limit="120/minute",
                allowed_origins=["*"],
            )
            service = TokenService(settings)
            app = create_app(service=service)
            add_demo_routes(app, tunnel=tunnel, emulator=emu, page=demo_page(bearer, settings.path))
            async with serving(app, host=host, port=port) as url:
                yield BrowserDemo(url=url + "/", token_url=url + settings.path)
        finally:
            await tunnel.stop()


def run_browser_demo_command(
    speed: float = 1.0, host: str = "127.0.0.1", port: int = 0, *, ready_line: bool = False
) -> int:
    """``tunnelproof demo --browser``: serve until Ctrl-C; returns the exit code.

    ``ready_line`` (``tunnelproof serve --demo``) announces the server as ``serve`` does:
    one JSON line on stdout (``url``, ``tokenUrl``, ``demoUrl``, ``port``), and the human
    hint on stderr.
    """

    def announce(demo: BrowserDemo) -> None:
        hint = f"tunnelproof browser demo: open {demo.url}  (Ctrl-C to stop)"
        if not ready_line:
            print(hint, flush=True)
            return
        origin = demo.url.rstrip("/")
        port_number = int(origin.rsplit(":", 1)[1])
        line = {
            "event": "ready",
            "url": origin,
            "tokenUrl": demo.token_url,
            "demoUrl": demo.url,
            "port": port_number,
        }
        print(json.dumps(line), flush=True)
        print(hint, file=sys.stderr, flush=True)

    async def main() -> None:
        async with browser_demo(host, port, speed=speed) as demo:
            announce(demo)
            await asyncio.Event().wait()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        return 130
    return 0
