"""Pings and pongs of one emulator WebSocket: pong faults, and liveness probes.

The server turns aiohttp's automatic pongs off, so the emulator answers each ping itself:
at once, late, or never, as the policy or a per-connection fault says (a client's own
keepalive must find a server that stops answering). A probe is the other direction: before
a resume takes a silent socket's session over, the emulator pings that socket's client and
waits to hear anything from it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from tunnelproof.emulator.hub import Hub

PROBE_PAYLOAD = b"tunnelproof-emulator-probe"


class Pongs:
    """One connection's pong answers and probes.

    ``delay`` and ``withhold`` are the per-connection fault; ``None`` falls back to the
    policy. The receive loop calls :meth:`heard` for every frame it reads.
    """

    def __init__(
        self,
        connection_id: str,
        ws: web.WebSocketResponse,
        hub: Hub,
        *,
        spawn: Callable[[Coroutine[Any, Any, Any]], object],
        is_open: Callable[[], bool],
    ) -> None:
        self.connection_id = connection_id
        self.ws = ws
        self.hub = hub
        self.delay: float | None = None
        self.withhold: bool | None = None
        self._spawn = spawn
        self._is_open = is_open
        self._listeners: set[asyncio.Event] = set()  # probes waiting to hear from the client

    def heard(self) -> None:
        """The client sent something (any frame answers a probe)."""
        for listener in self._listeners:
            listener.set()

    def answer_ping(self, payload: bytes) -> None:
        """Pong ``payload`` back, late or not at all if a fault says so."""
        policy = self.hub.policy
        withhold = self.withhold if self.withhold is not None else policy.withhold_pongs
        delay = self.delay if self.delay is not None else policy.pong_delay
        self.hub.events.emit("ping", connection=self.connection_id, withheld=withhold, delay=delay)
        if withhold:
            return
        self._spawn(self._pong_later(payload, delay))

    async def probe(self, timeout: float) -> bool:
        """Ping the client; True if anything (its pong, any frame) arrives within ``timeout``.

        A silent but live client answers (WebSocket stacks pong by themselves), a
        half-open socket does not.
        """
        if not self._is_open() or self.ws.closed:
            return False
        heard = asyncio.Event()
        self._listeners.add(heard)
        try:
            with contextlib.suppress(Exception):
                await self.ws.ping(PROBE_PAYLOAD)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(heard.wait(), timeout)
        finally:
            self._listeners.discard(heard)
        answered = heard.is_set() and self._is_open()
        self.hub.events.emit("probe", connection=self.connection_id, answered=answered)
        return answered

    async def _pong_later(self, payload: bytes, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        if not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.pong(payload)
