"""``DirectConnection`` hands whole binary messages over at once, in order with ``recv()``.

Real ``websockets`` on loopback. Messages go direct only while nothing is queued for
``recv()``; the first text or fragmented message turns direct delivery off for good. What
the app sees, direct and through ``recv()`` together, is what the server sent, in order.
"""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tunnelproof.session.sockets import DirectConnection

pytestmark = pytest.mark.asyncio

Message = bytes | str | list[bytes]


async def _deliveries(
    early: list[Message], queued: list[Message], late: list[Message]
) -> list[tuple[str, bytes | str]]:
    """The server sends ``early`` before direct delivery is on, ``queued`` while the client
    does not read yet, and ``late`` once it reads. Returns (path, message) as seen."""
    direct_on = asyncio.Event()
    reading = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        for batch, gate in ((early, None), (queued, direct_on), (late, reading)):
            if gate is not None:
                await gate.wait()
            for message in batch:
                await ws.send(message)
                await asyncio.sleep(0.002)
        await ws.close()

    seen: list[tuple[str, bytes | str]] = []
    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", create_connection=DirectConnection) as ws:
            assert isinstance(ws, DirectConnection)
            await asyncio.sleep(0.05)  # the early messages are queued for recv() by now
            ws.on_message = lambda data: seen.append(("direct", data))
            direct_on.set()
            await asyncio.sleep(0.1)  # the queued ones arrive while recv() has not run
            reading.set()
            async with asyncio.timeout(10):
                await _read_until_closed(ws, seen)
    return seen


async def _read_until_closed(ws: DirectConnection, seen: list[tuple[str, bytes | str]]) -> None:
    while True:
        try:
            message = await ws.recv()
        except ConnectionClosed:
            return
        seen.append(("recv", message))


async def test_binary_messages_go_direct_once_nothing_is_queued_before_them() -> None:
    seen = await _deliveries([b"0", b"1"], [b"2", b"3"], [b"4", b"5", b"6"])
    assert [m for _, m in seen] == [b"0", b"1", b"2", b"3", b"4", b"5", b"6"]
    assert [p for p, _ in seen[:4]] == ["recv"] * 4, "behind what recv() had not taken yet"
    assert ("direct", b"6") in seen


async def test_text_or_fragments_turn_direct_delivery_off_in_order() -> None:
    seen = await _deliveries([], [b"a", b"b"], ["text", b"c", [b"frag", b"ment"], b"d"])
    assert [m for _, m in seen] == [b"a", b"b", "text", b"c", b"fragment", b"d"]
    assert [p for p, _ in seen] == ["direct", "direct", "recv", "recv", "recv", "recv"]
