"""``DeviceSocket``: one device WebSocket as the conversation sees it (a bounded sender)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from aiohttp import web


class DeviceSocket:
    """Frames queued for one device, written by one task, in order.

    ``push`` never blocks: the conversation must not wait on a slow device. A device whose
    queue grows past ``max_bytes`` is not draining (a dead link the kernel has not noticed
    yet); ``push`` then says so and the conversation detaches it.
    """

    def __init__(
        self, ws: web.WebSocketResponse, *, max_bytes: int, text_frames: bool = False
    ) -> None:
        self.ws = ws
        self.text_frames = text_frames
        self.max_bytes = max_bytes
        self.frames_out = 0
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._closing: tuple[int, str] | None = None
        self._writer = asyncio.create_task(self._write_loop(), name="relay-device-writer")
        self.gone = asyncio.Event()

    def push(self, data: bytes) -> bool:
        """Queue ``data``; ``False`` if the device is gone or not draining."""
        if self._closing is not None or self.gone.is_set():
            return False
        if self._queued_bytes + len(data) > self.max_bytes:
            return False
        self._queue.append(data)
        self._queued_bytes += len(data)
        self._wake.set()
        return True

    def kick(self, code: int, reason: str) -> None:
        """Close after what is queued (bounded by the socket's own close timeout)."""
        if self._closing is None:
            self._closing = (code, reason)
            self._wake.set()

    async def _write_loop(self) -> None:
        try:
            while True:
                while self._queue:
                    data = self._queue.popleft()
                    self._queued_bytes -= len(data)
                    if self.text_frames:
                        await self.ws.send_str(data.decode("utf-8"))
                    else:
                        await self.ws.send_bytes(data)  # binary, as Google sends
                    self.frames_out += 1
                if self._closing is not None:
                    code, reason = self._closing
                    await asyncio.wait_for(
                        self.ws.close(code=code, message=reason.encode()), timeout=2.0
                    )
                    return
                self._wake.clear()
                await self._wake.wait()
        except (ConnectionError, RuntimeError, TimeoutError):
            pass
        finally:
            self.gone.set()
            if self._closing is not None and not self.ws.closed:
                # The close handshake did not finish: drop the connection.
                with contextlib.suppress(Exception):
                    await self.ws.close(code=self._closing[0])

    async def stop(self) -> None:
        """Stop writing (the socket is finished)."""
        self.gone.set()
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._writer
