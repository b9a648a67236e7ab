"""Serve an ASGI app with uvicorn in the running event loop, on a real loopback port.

The token-service fixtures (:func:`~tunnelproof.testing.tokens_fixtures.running_token_service`)
and the browser demo (:mod:`tunnelproof.demo.browser`) both serve a FastAPI app this way:
started in the caller's loop, ready when uvicorn says so, stopped on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn


@contextlib.asynccontextmanager
async def serving(
    app: Any, *, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 20.0
) -> AsyncIterator[str]:
    """Serve ``app`` on ``host``:``port`` (0: a free port); yields ``http://host:PORT``.

    Start-up is bounded by ``startup_timeout`` (``TimeoutError``); a server that fails to
    start (the port is taken, say) raises its own error, or ``RuntimeError``. On the way
    out the server is asked to stop and given 10 s to.
    """
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(startup_timeout):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn exited during start-up")
                await asyncio.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=10)


__all__ = ["serving"]
