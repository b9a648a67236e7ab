"""The kernel-level tunnel, for real: a namespace, a veth, an nftables blackhole.

A server listens on the host end of the veth, the client connects from inside the
namespace. Blackholed, the client's TCP connection goes half-open: nothing arrives, nothing
closes, and only the kernel's own ``TCP_USER_TIMEOUT`` ends it. Restored, a new connection
works. Needs root, ``ip`` and ``nft``; skips with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest

from tunnelproof.testing.netns import NetnsTunnel, cleanup_stale, netns_available

_available, _reason = netns_available()
pytestmark = [pytest.mark.netns, pytest.mark.skipif(not _available, reason=_reason)]


class EchoServer:
    def __init__(self) -> None:
        self.connections = 0
        self.eofs = 0
        self.resets = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str) -> None:
        async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
                self.eofs += 1
            except OSError:
                self.resets += 1
            finally:
                w.transport.abort()

        self._server = await asyncio.start_server(echo, host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


@pytest.fixture
async def ns() -> AsyncIterator[NetnsTunnel]:
    async with NetnsTunnel() as tunnel:
        yield tunnel


@pytest.fixture
async def server(ns: NetnsTunnel) -> AsyncIterator[EchoServer]:
    srv = EchoServer()
    await srv.start(ns.host_address)
    yield srv
    srv.close()


# The kernel's give-up time for unacknowledged data in these tests: short, so each test
# waits seconds less; the bounds below are relative to it.
USER_TIMEOUT = 1.5


def user_timeout(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(USER_TIMEOUT * 1000))


async def test_blackhole_makes_the_connection_half_open_until_the_kernel_gives_up(
    ns: NetnsTunnel, server: EchoServer
) -> None:
    reader, writer = await ns.open_connection(ns.host_address, server.port, configure=user_timeout)
    writer.write(b"hello")
    assert await asyncio.wait_for(reader.readexactly(5), 10) == b"hello"

    ns.blackhole()
    started = time.monotonic()
    error: OSError | None = None
    # Keep talking, like an app streaming audio, until the kernel declares the link dead.
    # Bounded: 40 s at most, far beyond the expected ~3 s.
    while time.monotonic() - started < 40:
        writer.write(b"are you there?")
        try:
            await writer.drain()
            got = await asyncio.wait_for(reader.read(100), 0.25)
        except TimeoutError as exc:
            if exc.errno == errno.ETIMEDOUT:  # the kernel's verdict, not our wait_for
                error = exc
                break
            continue
        except OSError as exc:
            error = exc
            break
        assert got != b"", "a blackhole must not deliver an EOF"
        pytest.fail(f"a blackhole must not deliver data, got {got!r}")
    detected_after = time.monotonic() - started
    assert error is not None, "TCP_USER_TIMEOUT never fired"
    assert error.errno == errno.ETIMEDOUT
    print(
        f"half-open link detected by TCP_USER_TIMEOUT={USER_TIMEOUT}s after {detected_after:.2f} s"
    )
    assert 0.8 * USER_TIMEOUT <= detected_after <= 15
    # The server side never heard a thing: its connection is still open (half-open).
    assert server.eofs == 0
    assert server.resets == 0
    writer.transport.abort()

    ns.restore()
    reader2, writer2 = await ns.open_connection(ns.host_address, server.port)
    writer2.write(b"back")
    assert await asyncio.wait_for(reader2.readexactly(4), 10) == b"back"
    writer2.close()
    assert server.connections == 2


def keepalive_and_user_timeout(sock: socket.socket) -> None:
    user_timeout(sock)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 2)


async def test_idle_connection_is_found_dead_by_keepalive(
    ns: NetnsTunnel, server: EchoServer
) -> None:
    """An idle client only learns of the blackhole through keepalive probes.

    This fails (30+ s) if the drops are visible to the sender's stack as local errors (an
    egress hook): Linux then never counts the probes. Ingress drops look like a dead wire.
    """
    reader, writer = await ns.open_connection(
        ns.host_address, server.port, configure=keepalive_and_user_timeout
    )
    writer.write(b"x")
    assert await asyncio.wait_for(reader.readexactly(1), 10) == b"x"
    ns.blackhole()
    started = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        await asyncio.wait_for(reader.read(1), 40)
    detected_after = time.monotonic() - started
    assert info.value.errno == errno.ETIMEDOUT  # the kernel's verdict, not wait_for's
    print(
        f"idle half-open link detected by keepalive + TCP_USER_TIMEOUT={USER_TIMEOUT}s after {detected_after:.2f} s"
    )
    # No verdict is possible before the first keepalive probe (1 s idle).
    assert 1.0 <= detected_after <= 15
    writer.transport.abort()


async def test_new_connections_hang_in_the_blackhole(ns: NetnsTunnel, server: EchoServer) -> None:
    ns.blackhole()
    # The SYN is dropped on the wire: connect neither succeeds nor fails fast (no EPERM).
    with pytest.raises(TimeoutError) as info:
        await ns.open_connection(ns.host_address, server.port, timeout=1.0)
    assert info.value.errno is None  # our own timeout, not an error from the stack
    ns.restore()
    reader, writer = await ns.open_connection(ns.host_address, server.port)
    writer.write(b"ok")
    assert await asyncio.wait_for(reader.readexactly(2), 10) == b"ok"
    writer.close()


async def test_blackhole_is_silent_in_both_directions(ns: NetnsTunnel, server: EchoServer) -> None:
    reader, writer = await ns.open_connection(ns.host_address, server.port)
    writer.write(b"1")
    assert await asyncio.wait_for(reader.readexactly(1), 10) == b"1"
    ns.blackhole()
    writer.write(b"2")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 1.0)
    # A short tunnel that TCP rides out: after restore, retransmission delivers the byte
    # and the echo comes back on the same connection.
    ns.restore()
    assert await asyncio.wait_for(reader.readexactly(1), 20) == b"2"
    writer.close()


async def test_a_command_runs_inside_the_namespace(ns: NetnsTunnel, server: EchoServer) -> None:
    code = (
        "import socket, sys\n"
        "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)\n"
        "s.sendall(b'from the child')\n"
        "print(s.getsockname()[0], s.recv(100).decode())\n"
    )
    proc = await ns.spawn_async(
        sys.executable,
        "-c",
        code,
        ns.host_address,
        str(server.port),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert out.decode().split(maxsplit=1) == [ns.ns_address, "from the child\n"]


def test_namespace_has_no_route_out_and_is_removed_on_failure() -> None:
    tunnel = NetnsTunnel()

    def use_then_fail() -> None:
        with tunnel:
            routes = subprocess.run(
                ["ip", "-n", tunnel.name, "route", "show"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert "default" not in routes
            assert routes.count("\n") == 1  # just the /30 link route
            tunnel.blackhole()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        use_then_fail()
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert tunnel.name not in names
    link = subprocess.run(["ip", "link", "show", tunnel.host_interface], capture_output=True)
    assert link.returncode != 0
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert tunnel.host_interface not in tables


def test_cleanup_stale_removes_namespaces_of_dead_processes() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    name = f"tunnelproof-{dead.pid}-1"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        assert name in cleanup_stale()
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def test_leftovers_of_a_killed_process_are_cleaned_up() -> None:
    code = (
        "import os, sys\n"
        "from tunnelproof.testing.netns import NetnsTunnel\n"
        "t = NetnsTunnel().start()\n"
        "t.blackhole()\n"
        "print(t.name, t.host_interface, flush=True)\n"
        "sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        name, host_interface = child.stdout.readline().split()
    finally:
        child.kill()  # no cleanup runs: namespace, veth and host table are left behind
        child.wait(timeout=10)
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert host_interface in tables
    assert name in cleanup_stale()
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert host_interface not in tables
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert name not in names
    link = subprocess.run(["ip", "link", "show", host_interface], capture_output=True)
    assert link.returncode != 0


async def test_a_proxy_listening_inside_the_namespace_is_cut_by_the_blackhole(
    ns: NetnsTunnel,
) -> None:
    # The chaos soak's kernel path: the client stays on the host and connects across the
    # veth to a TunnelProxy whose listening socket lives in the namespace; the proxy's
    # upstream is on host loopback. The blackhole then drops the client's own packets.
    from tunnelproof.testing.tunnel import TunnelProxy

    echo = EchoServer()
    await echo.start("127.0.0.1")
    listener = ns.create_socket()
    listener.bind((ns.ns_address, 0))
    listener.listen(8)
    listener.setblocking(False)
    proxy = await TunnelProxy("127.0.0.1", echo.port).start(sock=listener)
    try:
        assert proxy.listen_host == ns.ns_address
        reader, writer = await asyncio.open_connection(ns.ns_address, proxy.port)
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
        ns.blackhole()
        writer.write(b"lost")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(4), 0.8)
        ns.restore()  # TCP retransmits what was dropped: the bytes come through late
        assert await asyncio.wait_for(reader.readexactly(4), 10) == b"lost"
        writer.transport.abort()
    finally:
        await proxy.stop()
        echo.close()
