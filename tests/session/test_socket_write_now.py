"""``SocketAttempt.send`` writes a frame at once when nothing waits, and keeps the order.

Real ``websockets`` on loopback: a server that stops reading makes the client's transport
pause (flow control); frames sent meanwhile go through the writer task, and every frame
arrives once, in the order sent.
"""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from tunnelproof.session.sockets import SocketAttempt, can_write_now, write_loop, write_now

pytestmark = pytest.mark.asyncio


async def _received_in_order(big: int, count: int) -> tuple[list[int], int, int]:
    got: list[int] = []
    reading = asyncio.Event()
    done = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        await reading.wait()  # not reading: the client's writes back up
        async for message in ws:
            assert isinstance(message, str)
            got.append(int(message.split(":", 1)[0]))
            if len(got) == count:
                done.set()

    async with serve(handler, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(
            f"ws://127.0.0.1:{port}", compression=None, write_limit=4096, max_size=None
        ) as ws:
            assert can_write_now(ws)
            sock = SocketAttempt(1)
            sock.ws, sock.direct = ws, True
            sock.writer = asyncio.create_task(write_loop(sock))
            direct = queued = 0
            for i in range(count):
                before = len(sock.outgoing)
                sock.send(f"{i}:" + "x" * big)
                if len(sock.outgoing) > before:
                    queued += 1
                else:
                    direct += 1
                if i == count // 3:
                    reading.set()  # the transport resumes while frames are still queued
                if i % 10 == 0:
                    await asyncio.sleep(0.001)
            async with asyncio.timeout(20):
                await done.wait()
            sock.stop_helpers()
    return got, direct, queued


async def test_frames_arrive_once_in_order_through_flow_control() -> None:
    got, direct, queued = await _received_in_order(big=64 * 1024, count=300)
    assert got == list(range(300))
    assert direct > 0, "frames were written at once while the transport took them"
    assert queued > 0, "the paused transport sent frames through the writer"


async def test_write_now_refuses_a_closed_connection() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            assert write_now(ws, "hello")
            await ws.close()
            assert not write_now(ws, "too late"), "a closed connection is the writer's to report"


async def test_a_frame_waits_behind_queued_frames() -> None:
    got: list[str] = []
    done = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            assert isinstance(message, str)
            got.append(message)
            if len(got) == 3:
                done.set()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            sock = SocketAttempt(1)
            sock.ws, sock.direct = ws, True
            sock.send("first")  # nothing queued, the transport takes it: written now
            assert not sock.outgoing
            sock.outgoing.append("second")  # as if the writer had not run yet
            sock.send("third")
            assert list(sock.outgoing) == ["second", "third"], "not written past a queued frame"
            sock.writer = asyncio.create_task(write_loop(sock))
            async with asyncio.timeout(10):
                await done.wait()
            sock.stop_helpers()
    assert got == ["first", "second", "third"]
