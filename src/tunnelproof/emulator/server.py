"""``EmulatorServer``: HTTP and WebSocket on one port (aiohttp), around the rule modules.

Paths, as Google serves them (reference section 1)::

    POST /{v1,v1alpha,v1beta}/auth_tokens
    GET  /ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent
    GET  /ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContentConstrained

``//ws/...`` (what a base URL with a trailing slash produces) is served too. The control
API lives under ``/_emulator`` and answers loopback peers only.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

from tunnelproof.emulator.admission import ClosedBy
from tunnelproof.emulator.auth import authenticate
from tunnelproof.emulator.connection import LiveConnection
from tunnelproof.emulator.control import PREFIX, control_routes, loopback_only
from tunnelproof.emulator.controls import EmulatorControls
from tunnelproof.emulator.errors import HttpRefusal
from tunnelproof.emulator.hub import Hub
from tunnelproof.emulator.policy import EmulatorPolicy
from tunnelproof.emulator.tls import make_tls
from tunnelproof.emulator.tokens import AuthToken
from tunnelproof.protocol.close_codes import REASON_API_KEY_INVALID, REASON_UNREGISTERED_CALLER
from tunnelproof.protocol.endpoints import TOKEN_PREFIX, Method

DEFAULT_API_KEY = "emulator-key"
STATE_FILE = "emulator-state.json"

_WS_PATH = re.compile(
    r"^/+ws/google\.ai\.generativelanguage\.(v1|v1alpha|v1beta)\.GenerativeService\."
    r"(BidiGenerateContent|BidiGenerateContentConstrained)$"
)
_TOKENS_PATH = re.compile(r"^/(v1|v1alpha|v1beta)/auth_tokens$")


class EmulatorServer:
    """A local Gemini Live API server with fault controls.

    Use as ``async with EmulatorServer(...) as emu:``; ``port=0`` picks a free port.
    ``state_dir`` keeps the CA (and, with ``persist_sessions``, sessions, handles and
    tokens) across restarts; ``clock`` is the wall clock used by every rule (injectable).
    """

    def __init__(
        self,
        policy: EmulatorPolicy | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        api_key: str = DEFAULT_API_KEY,
        state_dir: str | Path | None = None,
        persist_sessions: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not api_key or api_key.startswith(TOKEN_PREFIX):
            raise ValueError("api_key must be non-empty and not look like an ephemeral token")
        self.policy = policy if policy is not None else EmulatorPolicy()
        self.host = host
        self.requested_port = port
        self.tls = tls
        self.api_key = api_key
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.persist_sessions = persist_sessions
        self.clock = clock
        self.port = 0
        self.ca_file: str | None = None
        self._hub: Hub | None = None
        self._controls: EmulatorControls | None = None
        self._runner: web.AppRunner | None = None
        self._temp_dir: str | None = None

    # -- public attributes -------------------------------------------------------------

    @property
    def hub(self) -> Hub:
        """Shared state (for advanced tests); available once started."""
        if self._hub is None:
            raise RuntimeError("EmulatorServer is not started")
        return self._hub

    @property
    def controls(self) -> EmulatorControls:
        """Python fault controls (same powers as the HTTP control API)."""
        if self._controls is None:
            raise RuntimeError("EmulatorServer is not started")
        return self._controls

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def http_base(self) -> str:
        """``http://127.0.0.1:PORT`` (``https`` with TLS)."""
        return f"{'https' if self.tls else 'http'}://{self._url_host}:{self.port}"

    @property
    def ws_base(self) -> str:
        """``ws://127.0.0.1:PORT`` (``wss`` with TLS)."""
        return f"{'wss' if self.tls else 'ws'}://{self._url_host}:{self.port}"

    @property
    def control_url(self) -> str:
        """Base URL of the HTTP control API."""
        return self.http_base + PREFIX

    def ready_info(self) -> dict[str, Any]:
        """The JSON the CLI prints when ready."""
        return {
            "http": self.http_base,
            "ws": self.ws_base,
            "ca_file": self.ca_file,
            "control": self.control_url,
            "api_key": self.api_key,
            "pid": None,
        }

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> EmulatorServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind and serve."""
        hub = Hub.create(self.policy, self.api_key, self.clock)
        self._hub = hub
        self._controls = EmulatorControls(hub)
        if self.persist_sessions and self.state_dir is not None:
            self._load_state()
        app = web.Application(middlewares=[loopback_only], client_max_size=64 * 1024 * 1024)
        app.add_routes(control_routes(self._controls))
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        ssl_context = None
        if self.tls:
            if self.state_dir is None:
                self._temp_dir = tempfile.mkdtemp(prefix="tp-emu-")
            material = make_tls(self.state_dir or Path(self._temp_dir or "."))
            ssl_context = material.context
            self.ca_file = str(material.ca_file)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(
            runner, self.host, self.requested_port, ssl_context=ssl_context, reuse_address=True
        )
        await site.start()
        self._runner = runner
        server = site._server
        assert server is not None
        sockets: list[socket.socket] = list(getattr(server, "sockets", []) or [])
        self.port = sockets[0].getsockname()[1] if sockets else self.requested_port

    async def stop(self) -> None:
        """Close every connection (1001 going away) and stop serving."""
        if self._runner is None:
            return
        hub = self.hub
        open_ = [c for c in hub.connections.values() if c.is_open]
        closing = [asyncio.ensure_future(c.close(1001, "", by=ClosedBy.SHUTDOWN)) for c in open_]
        if closing:
            # A peer that never answers the close (a dead link) must not stall shutdown.
            _, pending = await asyncio.wait(closing, timeout=2.0)
            for task in pending:
                task.cancel()
            for conn in open_:
                if conn.is_open and not conn.socket_closed:
                    conn.abort()
        if self.persist_sessions and self.state_dir is not None:
            self._save_state()
        await self._runner.cleanup()
        self._runner = None
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    # -- state file --------------------------------------------------------------------

    def _state_path(self) -> Path:
        assert self.state_dir is not None
        return self.state_dir / STATE_FILE

    def _save_state(self) -> None:
        hub = self.hub
        data = {"store": hub.store.dump(), "tokens": hub.ledger.ledger()}
        self._state_path().parent.mkdir(parents=True, exist_ok=True)
        self._state_path().write_text(json.dumps(data))

    def _load_state(self) -> None:
        path = self._state_path()
        if not path.exists():
            return
        data = json.loads(path.read_text())
        hub = self.hub
        hub.store.load(data.get("store", {}))
        for raw in data.get("tokens", []):
            token = AuthToken.from_dict(raw)
            hub.ledger.tokens[token.name] = token

    # -- HTTP ----------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        match = _WS_PATH.match(path)
        if match is not None:
            if request.method != "GET":
                return _refusal(HttpRefusal(405, "Method not allowed."))
            return await self._websocket(request, match.group(1), Method(match.group(2)))
        match = _TOKENS_PATH.match(path)
        if match is not None:
            if request.method != "POST":
                return _refusal(HttpRefusal(405, "Method not allowed."))
            return await self._auth_tokens(request)
        return _refusal(HttpRefusal(404, f"The requested URL {path} was not found on this server."))

    async def _auth_tokens(self, request: web.Request) -> web.StreamResponse:
        hub = self.hub
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if key is None:
            return _refusal(HttpRefusal(403, REASON_UNREGISTERED_CALLER))
        if key != self.api_key:
            return _refusal(HttpRefusal(400, REASON_API_KEY_INVALID))
        raw = await request.read()
        try:
            body: Any = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError:
            return _refusal(HttpRefusal(400, "Invalid JSON payload received."))
        try:
            token = hub.ledger.create(body)
        except HttpRefusal as refusal:
            hub.events.emit("token_refused_at_mint", message=refusal.message)
            return _refusal(refusal)
        hub.events.emit("token_minted", token=token.name, uses=token.uses)
        return web.json_response(hub.ledger.mint_response(token))

    async def _websocket(
        self, request: web.Request, version: str, method: Method
    ) -> web.StreamResponse:
        hub = self.hub
        decision = authenticate(
            method,
            request.query_string,
            request.headers,
            api_key=self.api_key,
            ledger=hub.ledger,
            policy=hub.policy,
        )
        if decision.http is not None:
            hub.events.emit(
                "upgrade_refused", status=decision.http.code, message=decision.http.message
            )
            return _refusal(decision.http)
        # We answer pings ourselves (to delay or withhold pongs) and never ping first:
        # Google's pongs are slow, but its server does not ping clients either.
        ws = web.WebSocketResponse(
            autoping=False, heartbeat=None, max_msg_size=32 * 1024 * 1024, timeout=5.0
        )
        if not ws.can_prepare(request).ok:
            return _refusal(HttpRefusal(400, "Expected a WebSocket upgrade."))
        try:
            await ws.prepare(request)
        except ConnectionResetError:
            # The client left during the handshake (a process stopping, a tunnel): nothing
            # to serve and nobody to tell. Any response is dropped quietly by aiohttp's
            # writer; without this aiohttp logs it as a server error with a traceback.
            hub.events.emit("upgrade_abandoned", message="client gone during the handshake")
            return web.Response(status=400)
        conn = LiveConnection(
            hub,
            request,
            ws,
            version=version,
            method=method.value,
            credential=decision.credential,
            pending_close=decision.close,
        )
        await conn.run()
        return ws


def _refusal(refusal: HttpRefusal) -> web.Response:
    return web.json_response(refusal.body(), status=refusal.code)
