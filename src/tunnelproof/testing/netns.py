"""A kernel-level tunnel: the client in its own network namespace, blackholed by nftables.

The TCP proxy in :mod:`tunnelproof.testing.tunnel` cannot show whether a client *detects*
a dead link by itself: the proxy's kernel keeps ACKing what the client sends. Here the client
lives in a fresh network namespace joined to the host by a veth pair with private addresses
(``10.213.x.y/30``), and :meth:`NetnsTunnel.blackhole` installs nftables rules on that veth
that drop every packet in both directions. Nothing is closed and nothing
answers: the client's TCP stack retransmits into the void, exactly as in a train tunnel, so
``TCP_USER_TIMEOUT``, keepalive and application watchdogs are measured against the real
kernel. :meth:`NetnsTunnel.restore` deletes the tables.

::

    with NetnsTunnel() as ns:                      # or: async with NetnsTunnel() as ns:
        server = await asyncio.start_server(handler, ns.host_address, 0)
        reader, writer = await ns.open_connection(ns.host_address, port)  # from inside
        ns.blackhole()
        ...
        ns.restore()

The client side runs inside the namespace in one of two ways:

* in this process: :meth:`NetnsTunnel.create_socket`, :meth:`~NetnsTunnel.connect` and
  :meth:`~NetnsTunnel.open_connection` create sockets from a helper thread that has joined
  the namespace (``setns(2)``); a socket belongs to the namespace it was created in, so the
  event loop can then use it normally (e.g. ``websockets.connect(uri, sock=sock)``);
* in a child process: :meth:`~NetnsTunnel.spawn` / :meth:`~NetnsTunnel.spawn_async` run a
  command through ``ip netns exec``.

Where the packets are dropped matters. Both drops sit on nftables netdev *ingress* hooks:
one in the namespace on its veth end (packets towards the client), one on the host end of
our own veth (packets from the client; that table is bound to this device only and removed
with it). A packet is dropped after the sender's veth transmit has succeeded, so the
sender's stack cannot tell it from a dead wire. Dropping on an egress/output hook instead
is reported to the sender as a local failure: Linux then counts keepalive probes as "local
congestion" and never gives up on them (measured here: an idle connection with
``TCP_USER_TIMEOUT`` 5 s + keepalive 2/1/3 took 30–53 s to fail instead of about 5 s), and
``connect`` fails at once with EPERM, which no tunnel does.

Safety: traffic only flows between the host end and the namespace end of the veth; the
namespace has no default route. Names carry the creating process's pid
(``tunnelproof-<pid>-<n>``) so leftovers of a killed run are recognised and removed
(:func:`cleanup_stale`); every namespace, veth and table is removed on exit, failure included.

Needs Linux, root (CAP_NET_ADMIN and CAP_SYS_ADMIN), ``ip`` (iproute2) and ``nft``
(nftables, installed with apt-get when missing and root). :func:`netns_available` says
whether all that holds here, and why not, so tests can skip with a clear reason.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import fcntl
import functools
import ipaddress
import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from tunnelproof.testing.redis_server import apt_install

__all__ = [
    "NetnsError",
    "NetnsTunnel",
    "cleanup_stale",
    "ensure_nft",
    "netns_available",
]

_T = TypeVar("_T")

_CLONE_NEWNET = 0x40000000
_SUBNET = ipaddress.IPv4Network("10.213.0.0/16")
_NAME_RE = re.compile(r"^tunnelproof-(\d+)-(\d+)$")
_ALLOC_LOCK = Path(tempfile.gettempdir()) / "tunnelproof-netns.lock"
_TABLE = "tunnelproof_blackhole"
_counter = itertools.count(1)


class NetnsError(RuntimeError):
    """A namespace, veth or nftables operation failed; the message has the command's stderr."""


def _run(argv: Sequence[str], *, timeout: float = 30.0, input_text: str | None = None) -> str:
    try:
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"{' '.join(argv)}: {exc}") from exc
    if result.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def ensure_nft(*, install: bool = True) -> str:
    """The path of ``nft``, installing nftables with apt-get when missing (root only).

    Raises:
        NetnsError: missing and not installable here (the message says why).
    """
    found = shutil.which("nft") or next(
        (p for p in ("/usr/sbin/nft", "/sbin/nft") if os.access(p, os.X_OK)), None
    )
    if found:
        return found
    if not install:
        raise NetnsError("nft (nftables) is not installed")
    try:
        apt_install("nftables")
    except RuntimeError as exc:
        raise NetnsError(f"nft (nftables) is not installed and {exc}") from exc
    found = shutil.which("nft") or (
        "/usr/sbin/nft" if os.access("/usr/sbin/nft", os.X_OK) else None
    )
    if found is None:
        raise NetnsError("apt-get installed nftables but nft is not on PATH")
    return found


def _ip() -> str:
    found = shutil.which("ip") or next(
        (p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise NetnsError("`ip` (iproute2) is not installed")
    return found


@functools.cache
def netns_available() -> tuple[bool, str]:
    """``(True, "")`` if :class:`NetnsTunnel` works here, else ``(False, reason)``.

    Checks the platform, root, ``ip`` and ``nft`` (installing nftables if root and missing),
    then really creates and removes a namespace with a veth and an nftables table. The
    answer is cached for the process.
    """
    if sys.platform != "linux":
        return False, f"network namespaces need Linux, not {sys.platform}"
    if os.geteuid() != 0:
        return False, "network namespaces and nftables need root (CAP_NET_ADMIN/CAP_SYS_ADMIN)"
    try:
        _ip()
        ensure_nft()
        with NetnsTunnel() as probe:
            probe.blackhole()
            probe.restore()
    except (NetnsError, OSError) as exc:
        return False, f"network namespace tunnel unavailable: {exc}"
    return True, ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale() -> list[str]:
    """Remove namespaces and veths left by tunnelproof processes that no longer exist.

    Only names of our own pattern whose creating pid is dead are touched. Returns the names
    of the namespaces removed.
    """
    ip = _ip()
    removed: list[str] = []
    with contextlib.suppress(NetnsError):
        for line in _run([ip, "netns", "list"]).splitlines():
            name = line.split()[0] if line.strip() else ""
            match = _NAME_RE.match(name)
            if match and not _pid_alive(int(match.group(1))):
                with contextlib.suppress(NetnsError):
                    _run([ip, "netns", "delete", name])
                    removed.append(name)
    with contextlib.suppress(NetnsError):
        nft = ensure_nft(install=False)
        for line in _run([nft, "list", "tables", "netdev"]).splitlines():
            table = re.match(r"^table netdev (tunnelproof_tp([0-9a-f]+)h[0-9a-f]+)$", line.strip())
            if table and not _pid_alive(int(table.group(2), 16)):
                with contextlib.suppress(NetnsError):
                    _run([nft, "delete", "table", "netdev", table.group(1)])
    with contextlib.suppress(NetnsError):
        for line in _run([ip, "-o", "link", "show", "type", "veth"]).splitlines():
            parts = line.split(":")
            if len(parts) < 2:
                continue
            ifname = parts[1].strip().split("@")[0]
            link = re.match(r"^tp([0-9a-f]+)h[0-9a-f]+$", ifname)
            if link and not _pid_alive(int(link.group(1), 16)):
                with contextlib.suppress(NetnsError):
                    _run([ip, "link", "delete", ifname])
    return removed


def _used_subnets(ip: str) -> set[ipaddress.IPv4Network]:
    used: set[ipaddress.IPv4Network] = set()
    for line in _run([ip, "-4", "-o", "addr", "show"]).splitlines():
        match = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", line)
        if match:
            address = ipaddress.IPv4Address(match.group(1))
            if address in _SUBNET:
                used.add(ipaddress.IPv4Network(f"{address}/30", strict=False))
    return used


def _ingress_drop_table(table: str, device: str) -> str:
    return (
        f"table netdev {table} {{\n"
        f'  chain in {{ type filter hook ingress device "{device}" priority -500; '
        "policy drop; }\n"
        "}\n"
    )


def _enter_namespace(path: str) -> None:
    """Move the calling thread (only) into the network namespace at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


class NetnsTunnel:
    """A network namespace joined to the host by a veth pair, with an nftables blackhole.

    Attributes after :meth:`start`: ``name`` (the namespace), ``host_interface`` /
    ``ns_interface`` (the veth ends), ``host_address`` / ``ns_address`` (their IPv4
    addresses in a free ``10.213.x.y/30``). Servers for the client to reach listen on
    ``host_address``; the client, inside, connects to it.
    """

    def __init__(self) -> None:
        pid = os.getpid()
        n = next(_counter)
        self.name = f"tunnelproof-{pid}-{n}"
        self.host_interface = f"tp{pid:x}h{n:x}"
        self.ns_interface = f"tp{pid:x}n{n:x}"
        if len(self.host_interface) > 15:  # IFNAMSIZ - 1
            raise NetnsError(f"interface name {self.host_interface!r} too long")
        self.host_address = ""
        self.ns_address = ""
        self._started = False
        self._blackholed = False
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._processes: list[subprocess.Popen[bytes]] = []
        self._async_processes: list[asyncio.subprocess.Process] = []

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> Self:
        """Create the namespace, the veth pair and the addresses. Undone on any failure."""
        if self._started:
            return self
        ip = _ip()
        cleanup_stale()
        self._started = True
        try:
            _run([ip, "netns", "add", self.name])
            with _ALLOC_LOCK.open("a") as lock:
                # Held until our address is assigned, so parallel tests pick different /30s.
                fcntl.flock(lock, fcntl.LOCK_EX)
                used = _used_subnets(ip)
                subnet = next((s for s in _SUBNET.subnets(new_prefix=30) if s not in used), None)
                if subnet is None:
                    raise NetnsError("no free /30 left in 10.213.0.0/16")
                host, inside = list(subnet.hosts())
                self.host_address, self.ns_address = str(host), str(inside)
                _run(
                    [
                        ip,
                        "link",
                        "add",
                        self.host_interface,
                        "type",
                        "veth",
                        "peer",
                        "name",
                        self.ns_interface,
                        "netns",
                        self.name,
                    ]
                )
                _run([ip, "addr", "add", f"{host}/30", "dev", self.host_interface])
            _run([ip, "link", "set", self.host_interface, "up"])
            _run([ip, "-n", self.name, "addr", "add", f"{inside}/30", "dev", self.ns_interface])
            _run([ip, "-n", self.name, "link", "set", self.ns_interface, "up"])
            _run([ip, "-n", self.name, "link", "set", "lo", "up"])
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Kill processes we spawned inside, remove table, veth and namespace. Idempotent."""
        for proc in self._processes:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        self._processes.clear()
        for aproc in self._async_processes:
            if aproc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    aproc.kill()
        self._async_processes.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if not self._started:
            return
        self._started = False
        was_blackholed, self._blackholed = self._blackholed, False
        ip = _ip()
        if was_blackholed:
            # The namespace's own table dies with it; the host-side one must go explicitly.
            with contextlib.suppress(NetnsError):
                _run([ensure_nft(install=False), "delete", "table", "netdev", self._host_table()])
        # Deleting the namespace removes its veth end (and so the pair) and its nftables
        # tables, but asynchronously: delete the host end ourselves so the name and the
        # address are free as soon as we return.
        with contextlib.suppress(NetnsError):
            _run([ip, "link", "delete", self.host_interface])
        with contextlib.suppress(NetnsError):
            _run([ip, "netns", "delete", self.name])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for aproc in self._async_processes:
            if aproc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    aproc.kill()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(aproc.wait(), 5)
        await asyncio.to_thread(self.stop)

    def _require_started(self) -> None:
        if not self._started:
            raise NetnsError("NetnsTunnel is not started; use `with` or start()")

    # -- the tunnel -------------------------------------------------------------------

    @property
    def blackholed(self) -> bool:
        """True while the blackhole table is installed."""
        return self._blackholed

    def _host_table(self) -> str:
        return f"tunnelproof_{self.host_interface}"

    def blackhole(self) -> None:
        """Drop every packet to and from the namespace; nothing is closed or answered."""
        self._require_started()
        if self._blackholed:
            return
        nft = ensure_nft()
        # Both drops sit on an *ingress* hook: the sender's veth transmit has already
        # succeeded, so its stack cannot tell the loss from a dead wire. (An egress or
        # output drop is reported to the sender as a local failure: TCP then treats its
        # keepalive probes as "local congestion" and never counts them, which hides the
        # very detection these tests measure.)
        _run(
            [_ip(), "netns", "exec", self.name, nft, "-f", "-"],
            input_text=_ingress_drop_table(_TABLE, self.ns_interface),
        )
        try:
            # Packets leaving the namespace are dropped as they arrive at the host end of
            # our own veth; the table is bound to that device only.
            _run(
                [nft, "-f", "-"],
                input_text=_ingress_drop_table(self._host_table(), self.host_interface),
            )
        except BaseException:
            with contextlib.suppress(NetnsError):
                _run([_ip(), "netns", "exec", self.name, nft, "delete", "table", "netdev", _TABLE])
            raise
        self._blackholed = True

    def restore(self) -> None:
        """Delete the blackhole tables: packets flow again."""
        self._require_started()
        if not self._blackholed:
            return
        nft = ensure_nft()
        _run([_ip(), "netns", "exec", self.name, nft, "delete", "table", "netdev", _TABLE])
        _run([nft, "delete", "table", "netdev", self._host_table()])
        self._blackholed = False

    # -- running things inside ----------------------------------------------------------

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed to run inside the namespace (``ip netns exec NAME ...``)."""
        self._require_started()
        return [_ip(), "netns", "exec", self.name, *argv]

    def spawn(self, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside the namespace; killed by :meth:`stop` if still running."""
        proc: subprocess.Popen[bytes] = subprocess.Popen(  # noqa: S603 - caller's argv
            self.exec_argv(argv), **popen_kwargs
        )
        self._processes.append(proc)
        return proc

    async def spawn_async(self, *argv: str, **kwargs: Any) -> asyncio.subprocess.Process:
        """:meth:`spawn` for asyncio (``asyncio.create_subprocess_exec`` keyword arguments)."""
        proc = await asyncio.create_subprocess_exec(*self.exec_argv(argv), **kwargs)
        self._async_processes.append(proc)
        return proc

    def _namespace_executor(self) -> concurrent.futures.ThreadPoolExecutor:
        self._require_started()
        if self._executor is None:
            # One thread, moved into the namespace once; it only ever creates sockets.
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix=f"netns-{self.name}",
                initializer=_enter_namespace,
                initargs=(f"/run/netns/{self.name}",),
            )
        return self._executor

    def run_in_namespace(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Call ``fn(*args)`` on a thread inside the namespace and return its result.

        Anything ``fn`` creates that is bound to a network namespace at creation (sockets)
        stays in this namespace wherever it is used afterwards. Keep ``fn`` short: the
        thread is shared.
        """
        return self._namespace_executor().submit(fn, *args).result(timeout=30)

    def create_socket(
        self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM, proto: int = 0
    ) -> socket.socket:
        """A new socket that belongs to the namespace (usable from any thread or loop)."""
        return self.run_in_namespace(socket.socket, family, type, proto)

    async def connect(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 10.0,
        configure: Callable[[socket.socket], None] | None = None,
    ) -> socket.socket:
        """A non-blocking TCP socket from inside the namespace, connected to ``host:port``.

        ``configure`` is called before connecting, e.g. to set ``TCP_USER_TIMEOUT`` or
        keepalive. Hand the socket to ``asyncio.open_connection(sock=...)`` or
        ``websockets.connect(..., sock=...)``.
        """
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(None, self.create_socket)
        try:
            sock.setblocking(False)
            if configure is not None:
                configure(sock)
            await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
        except BaseException:
            sock.close()
            raise
        return sock

    async def open_connection(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 10.0,
        configure: Callable[[socket.socket], None] | None = None,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """``asyncio.open_connection`` from inside the namespace (see :meth:`connect`)."""
        sock = await self.connect(host, port, timeout=timeout, configure=configure)
        return await asyncio.open_connection(sock=sock)

    def __repr__(self) -> str:
        state = "blackholed" if self._blackholed else ("up" if self._started else "stopped")
        return (
            f"<NetnsTunnel {self.name} {state} host={self.host_address or '-'} "
            f"ns={self.ns_address or '-'}>"
        )
