"""Regression (found by the chaos soak): every TunnelProxy reset used to put a
``CancelledError`` into the event loop's exception handler on Python 3.11, because the
proxy cancelled its own ``start_server`` handler task and 3.11's stream callback then
called ``task.exception()`` on it. 1,249 such reports in one soak."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tunnelproof.testing.tunnel import TunnelProxy

pytestmark = pytest.mark.timeout(30)


async def test_resets_and_restores_report_nothing_to_the_loop() -> None:
    loop = asyncio.get_running_loop()
    reports: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reports.append(context))

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1024):
                writer.write(data)
        except ConnectionError:
            pass  # the proxy's RST reaches this side too
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with TunnelProxy("127.0.0.1", port) as proxy:
            for round_ in range(3):
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
                writer.write(b"ping")
                assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
                if round_ == 2:
                    proxy.blackhole()
                    writer.write(b"lost")  # dropped: restore() resets this connection
                    await asyncio.sleep(0.1)
                    proxy.restore()
                else:
                    proxy.reset()
                await proxy.wait_for_active(0, timeout=5)
                writer.close()
            await asyncio.sleep(0.2)  # done-callbacks run on the next loop iterations
            assert proxy.stats.connections_reset == 3
    finally:
        server.close()
        loop.set_exception_handler(None)
    assert not reports, [r.get("message") for r in reports]
