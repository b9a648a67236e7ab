"""TunnelProxy: bytes both ways, blackhole (drop and hold), reset, latency, bandwidth, schedule.

Everything on 127.0.0.1. The upstream is a tiny server whose accepted connections the test
drives directly, so each direction is checked on its own. Raw blocking sockets (in a thread)
stand in for the client where the point is what the kernel reports: data, EOF or RST.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest

from tunnelproof.testing.tunnel import TunnelProxy, parse_action

SILENCE = 0.5  # how long "nothing arrives" is watched for; longer only slows the suite


class Upstream:
    """A loopback server handing each accepted connection to the test."""

    def __init__(self) -> None:
        self.accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.count = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        async def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            self.count += 1
            self._writers.append(w)
            await self.accepted.put((r, w))

        self._server = await asyncio.start_server(on_connect, "127.0.0.1", 0)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def next(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(self.accepted.get(), 10)

    async def stop(self) -> None:
        for w in self._writers:
            w.transport.abort()
        if self._server is not None:
            self._server.close()


class EchoUpstream(Upstream):
    async def start(self) -> None:
        async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            self.count += 1
            self._writers.append(w)
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
                w.close()
            except OSError:
                pass

        self._server = await asyncio.start_server(echo, "127.0.0.1", 0)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def echo() -> AsyncIterator[Upstream]:
    server = EchoUpstream()
    await server.start()
    yield server
    await server.stop()


async def read_exactly(reader: asyncio.StreamReader, n: int, timeout: float = 10) -> bytes:
    return await asyncio.wait_for(reader.readexactly(n), timeout)


async def assert_silent(reader: asyncio.StreamReader) -> None:
    """Neither data nor EOF arrives within SILENCE seconds."""
    try:
        got = await asyncio.wait_for(reader.read(1), SILENCE)
    except TimeoutError:
        return
    pytest.fail(f"expected silence, got {got!r}")  # b"" would be an EOF


def raw_client(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(10)
    return sock


def raw_recv_silent(sock: socket.socket) -> bool:
    """True if nothing (no data, no EOF, no error) arrives within SILENCE seconds."""
    sock.settimeout(SILENCE)
    try:
        data = sock.recv(1)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(10)
    raise AssertionError(f"expected silence, got {data!r}")


# -- plain forwarding -------------------------------------------------------------------


async def test_passes_bytes_both_ways_and_half_close(upstream: Upstream) -> None:
    async with TunnelProxy("127.0.0.1", upstream.port) as tunnel:
        reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.port)
        await tunnel.wait_for_connections(1)
        up_r, up_w = await upstream.next()

        writer.write(b"hello upstream")
        await writer.drain()
        assert await read_exactly(up_r, 14) == b"hello upstream"
        up_w.write(b"hello client")
        await up_w.drain()
        assert await read_exactly(reader, 12) == b"hello client"

        big = bytes(range(256)) * 4096  # 1 MiB, to cross the queue bound and chunking
        writer.write(big)
        await writer.drain()
        assert await read_exactly(up_r, len(big)) == big

        writer.write_eof()  # half-close travels as a FIN, the other direction still works
        assert await asyncio.wait_for(up_r.read(), 10) == b""
        up_w.write(b"bye")
        up_w.close()
        assert await asyncio.wait_for(reader.read(), 10) == b"bye"
        writer.close()
        await tunnel.wait_for_active(0)
        stats = tunnel.stats
        assert stats.connections_accepted == 1
        assert stats.bytes_up == 14 + len(big)
        assert stats.bytes_down == 12 + 3
        assert stats.bytes_dropped_up == stats.bytes_dropped_down == 0


async def test_many_connections_in_parallel(echo: Upstream) -> None:
    async with TunnelProxy("127.0.0.1", echo.port) as tunnel:

        async def one(i: int) -> bytes:
            r, w = await asyncio.open_connection("127.0.0.1", tunnel.port)
            payload = f"conn {i} ".encode() * 100
            w.write(payload)
            await w.drain()
            got = await read_exactly(r, len(payload))
            w.close()
            return got

        results = await asyncio.gather(*(one(i) for i in range(20)))
        assert results == [f"conn {i} ".encode() * 100 for i in range(20)]
        await tunnel.wait_for_active(0)
        assert tunnel.stats.connections_accepted == 20


async def test_upstream_down_resets_the_client() -> None:
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    async with TunnelProxy("127.0.0.1", dead_port) as tunnel:
        reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.port)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(1), 10)
        writer.close()
        assert tunnel.stats.upstream_connect_failures == 1


# -- blackhole ------------------------------------------------------------------------


async def test_blackhole_is_silent_both_ways_and_new_connections_hang(upstream: Upstream) -> None:
    async with TunnelProxy("127.0.0.1", upstream.port) as tunnel:
        sock = await asyncio.to_thread(raw_client, tunnel.port)
        idle = await asyncio.to_thread(raw_client, tunnel.port)
        up_r, up_w = await upstream.next()
        idle_up_r, idle_up_w = await upstream.next()
        try:
            tunnel.blackhole()

            # client -> upstream: sent, never arrives; the kernel gives no error.
            await asyncio.to_thread(sock.sendall, b"into the tunnel")
            await assert_silent(up_r)
            # upstream -> client: nothing arrives, no EOF either.
            up_w.write(b"toward the train")
            await up_w.drain()
            assert await asyncio.to_thread(raw_recv_silent, sock)
            # A FIN is held back as well: the peer sees no EOF.
            await asyncio.to_thread(idle.shutdown, socket.SHUT_WR)
            await assert_silent(idle_up_r)

            # New connections are accepted by the kernel but hang: no upstream connect.
            late = await asyncio.to_thread(raw_client, tunnel.port)
            await tunnel.wait_for_connections(3)
            await asyncio.to_thread(late.sendall, b"hello?")
            assert await asyncio.to_thread(raw_recv_silent, late)
            assert upstream.count == 2
            assert tunnel.stats.connections_active == 3
            assert tunnel.stats.bytes_dropped_up == len(b"into the tunnel")
            assert tunnel.stats.bytes_dropped_down == len(b"toward the train")

            tunnel.restore()

            # The connection that lost bytes cannot carry on (its stream has a hole): RST.
            with pytest.raises(ConnectionResetError):
                await asyncio.to_thread(sock.recv, 1)
            # The quiet one resumes: its held FIN is delivered now.
            assert await asyncio.wait_for(idle_up_r.read(), 10) == b""
            idle_up_w.write(b"still here")
            await idle_up_w.drain()
            assert await asyncio.to_thread(idle.recv, 100) == b"still here"
            # The hanging one goes through, with what it sent meanwhile.
            late_up_r, late_up_w = await upstream.next()
            assert await read_exactly(late_up_r, 6) == b"hello?"
            late_up_w.write(b"welcome")
            await late_up_w.drain()
            assert await asyncio.to_thread(late.recv, 100) == b"welcome"
            assert tunnel.stats.connections_reset == 1
        finally:
            for s in (sock, idle):
                s.close()
            if "late" in locals():
                late.close()


async def test_blackhole_hold_delivers_everything_on_restore(upstream: Upstream) -> None:
    async with TunnelProxy("127.0.0.1", upstream.port) as tunnel:
        reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.port)
        up_r, up_w = await upstream.next()
        tunnel.blackhole(drop=False)
        writer.write(b"A" * 1000)
        await writer.drain()
        up_w.write(b"B" * 1000)
        await up_w.drain()
        await assert_silent(up_r)
        await assert_silent(reader)
        tunnel.restore()
        assert await read_exactly(up_r, 1000) == b"A" * 1000
        assert await read_exactly(reader, 1000) == b"B" * 1000
        # And the link is clean again afterwards.
        writer.write(b"after")
        await writer.drain()
        assert await read_exactly(up_r, 5) == b"after"
        assert tunnel.stats.bytes_dropped_up == tunnel.stats.bytes_dropped_down == 0
        writer.close()


async def test_restore_can_keep_damaged_connections(upstream: Upstream) -> None:
    async with TunnelProxy("127.0.0.1", upstream.port) as tunnel:
        _, writer = await asyncio.open_connection("127.0.0.1", tunnel.port)
        up_r, _ = await upstream.next()
        tunnel.blackhole()
        writer.write(b"lost")
        await writer.drain()
        await tunnel_dropped(tunnel, 4)
        tunnel.restore(reset_damaged=False)  # keep the holed stream: the app must cope
        writer.write(b"kept")
        assert await read_exactly(up_r, 4) == b"kept"
        tunnel.restore()  # judged once: a later restore does not reset it
        writer.write(b"again")
        assert await read_exactly(up_r, 5) == b"again"
        assert tunnel.stats.connections_reset == 0
        writer.close()


async def tunnel_dropped(tunnel: TunnelProxy, n: int) -> None:
    for _ in range(200):  # bounded: 10 s
        if tunnel.stats.bytes_dropped_up >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never dropped {n} bytes: {tunnel.stats}")


async def test_restore_then_reconnect_works(echo: Upstream) -> None:
    async with TunnelProxy("127.0.0.1", echo.port) as tunnel:
        tunnel.blackhole()
        tunnel.restore()
        reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.port)
        writer.write(b"ping")
        assert await read_exactly(reader, 4) == b"ping"
        writer.close()


# -- reset ------------------------------------------------------------------------------


async def test_reset_gives_connection_reset_on_both_sides(upstream: Upstream) -> None:
    async with TunnelProxy("127.0.0.1", upstream.port) as tunnel:
        sock = await asyncio.to_thread(raw_client, tunnel.port)
        up_r, _ = await upstream.next()
        await tunnel.wait_for_active(1)
        tunnel.reset()
        try:
            with pytest.raises(ConnectionResetError):
                await asyncio.to_thread(sock.recv, 1)
        finally:
            sock.close()
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(up_r.read(1), 10)
        await tunnel.wait_for_active(0)
        assert tunnel.stats.connections_reset == 1


async def test_reset_also_kills_connections_hanging_in_a_blackhole(upstream: Upstream) -> None:
    async with TunnelProxy("127.0.0.1", upstream.port) as tunnel:
        tunnel.blackhole()
        reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.port)
        await tunnel.wait_for_connections(1)
        tunnel.reset()
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(1), 10)
        writer.close()
        assert upstream.count == 0


async def test_client_rst_is_passed_upstream(upstream: Upstream) -> None:
    async with TunnelProxy("127.0.0.1", upstream.port) as tunnel:
        sock = await asyncio.to_thread(raw_client, tunnel.port)
        up_r, _ = await upstream.next()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # SO_LINGER 0: RST
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(up_r.read(1), 10)
        await tunnel.wait_for_active(0)


async def test_offline_resets_and_refuses_until_restore(upstream: Upstream) -> None:
    async with TunnelProxy("127.0.0.1", upstream.port) as tunnel:
        reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.port)
        up_r, _ = await upstream.next()
        tunnel.offline()
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(1), 10)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(up_r.read(1), 10)
        writer.close()
        r2, w2 = await asyncio.open_connection("127.0.0.1", tunnel.port)
        with pytest.raises(ConnectionResetError):  # refused at once, not hanging
            await asyncio.wait_for(r2.read(1), 10)
        w2.close()
        assert upstream.count == 1
        tunnel.restore()
        _, w3 = await asyncio.open_connection("127.0.0.1", tunnel.port)
        up3_r, _ = await upstream.next()
        w3.write(b"back")
        assert await read_exactly(up3_r, 4) == b"back"
        w3.close()
        assert tunnel.stats.connections_reset == 2


# -- latency and bandwidth --------------------------------------------------------------


async def test_latency_delays_each_direction(echo: Upstream) -> None:
    async with TunnelProxy("127.0.0.1", echo.port) as tunnel:
        reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.port)
        writer.write(b"warm")
        assert await read_exactly(reader, 4) == b"warm"
        tunnel.latency(300)
        start = time.monotonic()
        writer.write(b"ping")
        assert await read_exactly(reader, 4) == b"ping"
        assert time.monotonic() - start >= 0.5  # 300 ms each way; lower bound only
        writer.close()


async def test_jitter_never_reorders(echo: Upstream) -> None:
    async with TunnelProxy("127.0.0.1", echo.port, seed=7) as tunnel:
        tunnel.latency(20, jitter_ms=20)
        reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.port)
        expected = b""
        for i in range(50):
            chunk = f"<{i}>".encode()
            expected += chunk
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.002)  # separate reads, so chunks get separate delays
        assert await read_exactly(reader, len(expected), timeout=30) == expected
        writer.close()


async def test_bandwidth_caps_throughput(upstream: Upstream) -> None:
    async with TunnelProxy("127.0.0.1", upstream.port) as tunnel:
        tunnel.bandwidth(50_000)
        _, writer = await asyncio.open_connection("127.0.0.1", tunnel.port)
        up_r, _ = await upstream.next()
        payload = bytes(range(256)) * 200  # 51,200 bytes: about a second at the cap
        start = time.monotonic()
        writer.write(payload)
        await writer.drain()
        assert await read_exactly(up_r, len(payload), timeout=30) == payload
        elapsed = time.monotonic() - start
        assert elapsed >= 0.7, elapsed  # generous lower bound
        assert elapsed < 20, elapsed  # and it does get through
        tunnel.restore()  # uncapped again
        start = time.monotonic()
        writer.write(payload)
        await writer.drain()
        assert await read_exactly(up_r, len(payload), timeout=30) == payload
        assert time.monotonic() - start < 0.7
        writer.close()


# -- schedule, parsing ------------------------------------------------------------------


async def test_schedule_fires_in_order(echo: Upstream) -> None:
    fired: list[str] = []

    async def async_step() -> None:
        fired.append("async")

    async with TunnelProxy("127.0.0.1", echo.port) as tunnel:
        task = tunnel.schedule(
            [
                (0.3, "restore"),
                (0.1, "blackhole"),
                (0.2, "latency 50 10"),
                (0.2, lambda: fired.append("sync")),  # same time: keeps the given order
                (0.25, async_step),
                (0.0, "bandwidth 100000"),
            ]
        )
        await asyncio.wait_for(task, 10)
        assert [what for _, what in tunnel.history] == [
            "bandwidth 100000.0",
            "blackhole drop",
            "latency 50 10",
            "restore",
        ]
        assert fired == ["sync", "async"]
        times = [t for t, _ in tunnel.history]
        assert times == sorted(times)
        assert times[-1] >= 0.3
        assert not tunnel.blackholed


async def test_schedule_rejects_bad_steps_up_front(echo: Upstream) -> None:
    async with TunnelProxy("127.0.0.1", echo.port) as tunnel:
        with pytest.raises(ValueError, match="unknown tunnel action"):
            tunnel.schedule([(1, "explode")])
        with pytest.raises(ValueError, match=">= 0"):
            tunnel.schedule([(-1, "reset")])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "teleport",
        "latency",
        "latency -5",
        "latency x",
        "bandwidth 0",
        "blackhole maybe",
        "reset now",
    ],
)
def test_parse_action_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="tunnel action"):
        parse_action(text)


async def test_wait_for_connections_times_out_with_a_message(echo: Upstream) -> None:
    async with TunnelProxy("127.0.0.1", echo.port) as tunnel:
        with pytest.raises(TimeoutError, match="1 accepted"):
            await tunnel.wait_for_connections(1, timeout=0.2)


async def test_stop_closes_everything(upstream: Upstream) -> None:
    tunnel = await TunnelProxy("127.0.0.1", upstream.port).start()
    reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.port)
    await upstream.next()
    port = tunnel.port
    await tunnel.stop()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(1), 10)
    writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    await tunnel.stop()  # idempotent
