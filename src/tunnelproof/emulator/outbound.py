"""The send side of one emulator WebSocket: server messages out, and the closing latch.

Every message the emulator sends on a connection goes through :meth:`Outbound.send`, one
JSON message a frame, text or binary as the policy says at that moment. Once the connection
starts closing (:attr:`Outbound.closing`) nothing more is sent, so no task still running
for it can put a frame after the close.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from tunnelproof.emulator.hub import Hub


class Outbound:
    """Writes one connection's frames, in order, and counts them."""

    def __init__(self, ws: web.WebSocketResponse, hub: Hub) -> None:
        self.ws = ws
        self.hub = hub
        self.closing = False
        """Set once the connection closes, aborts or ends: nothing is sent after it."""
        self.frames = 0
        self._lock = asyncio.Lock()

    async def send(self, *messages: Mapping[str, Any]) -> bool:
        """Send server messages back to back (one frame each); ``False`` if the socket is gone.

        Several messages are sent under one lock so no other task's frame can land
        between them (``interrupted`` must be followed by its ``turnComplete``).
        """
        async with self._lock:
            for message in messages:
                if self.closing or self.ws.closed:
                    return False
                data = orjson.dumps(message)
                try:
                    if self.hub.policy.text_frames:
                        await self.ws.send_str(data.decode("utf-8"))
                    else:
                        await self.ws.send_bytes(data)
                except (ConnectionError, RuntimeError):
                    return False
                self.frames += 1
        return True

    async def close_frame(self, code: int, reason: str) -> None:
        """Send the close frame (``reason`` already cut to the 123-byte limit)."""
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=reason.encode("utf-8"))
