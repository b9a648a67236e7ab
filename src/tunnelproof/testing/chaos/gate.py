"""``TokenGate``: a fault-injecting HTTP layer in front of a real token service.

The soak's clients ask the gate for tokens with their own bearer key; the gate forwards
each request to the real tunnelproof token service (which authenticates, rate-limits and
mints from the emulator) and passes its answer back, unless a fault is armed for that
caller: then it answers ``503`` or ``429`` itself, or stalls before forwarding. Everything
is real HTTP over loopback, so the client's ``TokenServiceSource`` sees exactly what a
failing deployment would send.

The gate also notes which caller each minted token went to: that is how the soak ties the
emulator's connections (which only know the token) back to its sessions.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from dataclasses import dataclass
from types import TracebackType

import aiohttp
import orjson
from aiohttp import web


@dataclass(frozen=True, slots=True)
class GateFault:
    """One scripted answer: ``status`` 503/429 (with ``Retry-After``), or ``stall`` seconds."""

    status: int | None = None
    retry_after: float = 1.0
    stall: float = 0.0


class TokenGate:
    """An aiohttp server on loopback forwarding ``POST /api/live/token`` to ``upstream``.

    ``on_mint(caller, token_name)`` is called for every token the upstream handed out,
    ``caller`` being the ``Authorization`` header value.
    """

    def __init__(self, upstream: str, *, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
        self.upstream = upstream
        self.host = host
        self.timeout = timeout
        self.url = ""
        self.minted: dict[str, str] = {}  # token name -> caller
        self.answers: defaultdict[str, int] = defaultdict(int)  # "200", "503", "stall", ...
        self._scripts: dict[str, deque[GateFault]] = {}
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    def arm(self, caller: str, faults: list[GateFault]) -> None:
        """Answer ``caller``'s next requests with ``faults`` (in order), then forward again."""
        self._scripts.setdefault(caller, deque()).extend(faults)

    def armed(self, caller: str) -> int:
        """How many scripted answers are still waiting for ``caller``."""
        return len(self._scripts.get(caller, ()))

    async def __aenter__(self) -> TokenGate:
        app = web.Application(client_max_size=4096)
        app.router.add_post("/api/live/token", self._token)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://{self.host}:{port}/api/live/token"
        # A fresh connection per forward (force_close): like the clients, never ride a
        # pooled socket that an emulator restart may have left dead.
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        self._http = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout)
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _token(self, request: web.Request) -> web.StreamResponse:
        caller = request.headers.get("Authorization", "")
        script = self._scripts.get(caller)
        fault = script.popleft() if script else None
        if fault is not None and fault.status is not None:
            self.answers[str(fault.status)] += 1
            return web.json_response(
                {"error": "injected"},
                status=fault.status,
                headers={"Retry-After": f"{fault.retry_after:g}", "Cache-Control": "no-store"},
            )
        if fault is not None and fault.stall > 0:
            self.answers["stall"] += 1
            await asyncio.sleep(fault.stall)
        assert self._http is not None
        try:
            async with self._http.post(
                self.upstream, headers={"Authorization": caller, "Accept": "application/json"}
            ) as upstream:
                body = await upstream.read()
                status = upstream.status
                retry_after = upstream.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError):
            self.answers["upstream_unreachable"] += 1
            return web.json_response({"error": "Bad gateway"}, status=502)
        self.answers[str(status)] += 1
        if status == 200:
            try:
                token = orjson.loads(body)["token"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                token = None
            if isinstance(token, str):
                self.minted[token] = caller
        headers = {"Cache-Control": "no-store"}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        return web.Response(
            body=body, status=status, content_type="application/json", headers=headers
        )
