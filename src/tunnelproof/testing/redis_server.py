"""A throwaway, real ``redis-server`` on a free loopback port, for tests.

Tests of the Redis handle store and of the token service's shared rate limits need a real
server: fakes disagree with Redis on exactly the details (TTLs, scripting, pipelines) those
tests are about. :class:`RedisServer` starts one per use with no persistence
(``--save "" --appendonly no``), in its own temporary directory, bound to ``127.0.0.1`` only,
waits until it answers ``PING`` (bounded), and stops it on exit::

    with RedisServer() as server:          # or: async with RedisServer() as server:
        client = redis.Redis.from_url(server.url)

Redis has no "pick any free port" option (``--port 0`` *disables* TCP), so we ask the
kernel for a free port, hand it to ``redis-server`` and, if another process grabbed it in the
meantime, notice the early exit and retry with a new port.

If ``redis-server`` is missing, :func:`ensure_redis_server` installs it with ``apt-get`` when
running as root (like ``scripts/ensure-system-deps.sh``) and otherwise raises
:class:`RedisServerUnavailable` with a reason that the pytest fixtures turn into a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = [
    "RedisServer",
    "RedisServerUnavailable",
    "apt_install",
    "ensure_redis_server",
    "find_redis_server",
]

_APT_LOCK = Path(tempfile.gettempdir()) / "tunnelproof-apt.lock"
_PR_SET_PDEATHSIG = 1


class RedisServerUnavailable(RuntimeError):
    """``redis-server`` cannot be found, installed or started here; the message says why."""


def find_redis_server() -> str | None:
    """The path of ``redis-server`` on ``PATH`` (or in ``/usr/bin``/``/usr/sbin``), or None."""
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in ("/usr/bin/redis-server", "/usr/sbin/redis-server"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def ensure_redis_server(*, install: bool = True, timeout: float = 600.0) -> str:
    """Return the path of ``redis-server``, installing it with apt-get if allowed.

    Installation happens only when ``install`` is true, we are root and ``apt-get`` exists.
    Concurrent callers (several test processes) serialise on a lock file so apt runs once.

    Raises:
        RedisServerUnavailable: not installed and cannot be installed here (with the reason).
    """
    found = find_redis_server()
    if found:
        return found
    if not install:
        raise RedisServerUnavailable("redis-server is not installed (apt-get install redis-server)")
    try:
        apt_install("redis-server", timeout=timeout)
    except RuntimeError as exc:
        raise RedisServerUnavailable(f"redis-server is not installed and {exc}") from exc
    # The Debian package may start a system redis on 6379; we never use it.
    systemctl = shutil.which("systemctl")
    if systemctl:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(  # noqa: S603 - fixed argv, no shell
                [systemctl, "stop", "redis-server"], capture_output=True, timeout=30
            )
    found = find_redis_server()
    if found is None:
        raise RedisServerUnavailable("apt-get reported success but redis-server is not on PATH")
    return found


def apt_install(package: str, *, timeout: float = 600.0) -> None:
    """``apt-get install -y package`` as root, serialised across processes by a lock file.

    Shared by the helpers that need a system tool (redis-server, nftables).

    Raises:
        RuntimeError: not root, no apt-get, or apt-get failed (the message says which).
    """
    if os.geteuid() != 0:
        raise RuntimeError(
            f"we are not root to apt-get it (run `sudo apt-get install -y {package}` or "
            "`make system-deps` as root)"
        )
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        raise RuntimeError("apt-get is not available to install it")
    with _APT_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            for args in (
                [apt_get, "update", "-qq"],
                [apt_get, "install", "-y", "-qq", "--no-install-recommends", package],
            ):
                subprocess.run(  # noqa: S603 - fixed argv, no shell
                    args, env=env, check=True, capture_output=True, timeout=timeout
                )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            detail = ""
            if isinstance(exc, subprocess.CalledProcessError):
                detail = (exc.stderr or b"").decode(errors="replace").strip()[-500:]
            raise RuntimeError(f"apt-get install {package} failed: {exc} {detail}".strip()) from exc
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # If the test process is killed (SIGKILL, a CI timeout), the kernel stops redis too,
    # so no orphaned servers pile up on the machine.
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _ping(host: str, port: int, timeout: float) -> bool:
    """One raw RESP ``PING``; True on ``+PONG``. No client library needed."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


async def _ping_async(host: str, port: int, timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(b"PING\r\n")
                return (await reader.read(64)).startswith(b"+PONG")
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return False


def _command(host: str, port: int, *args: str, timeout: float = 5.0) -> bytes:
    """Send one command in RESP and return the first reply chunk (small replies only)."""
    payload = f"*{len(args)}\r\n".encode()
    for arg in args:
        raw = arg.encode()
        payload += b"$%d\r\n%s\r\n" % (len(raw), raw)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(payload)
        return sock.recv(4096)


class RedisServer:
    """A private ``redis-server`` process on ``127.0.0.1:<free port>``.

    Use as a context manager (sync or async), or call :meth:`start` / :meth:`stop`.
    Nothing is persisted and the working directory is a temporary one removed on stop.

    Args:
        executable: path of ``redis-server``; found (or installed) by
            :func:`ensure_redis_server` when omitted.
        host: address to bind; loopback unless you know why not.
        startup_timeout: seconds to wait for the first ``PONG`` per attempt.
        attempts: how many ports to try when another process steals the chosen one.
        extra_args: more ``redis-server`` arguments, e.g. ``("--maxmemory", "10mb")``.
        install: allow :func:`ensure_redis_server` to apt-get it when missing.
    """

    def __init__(
        self,
        *,
        executable: str | None = None,
        host: str = "127.0.0.1",
        startup_timeout: float = 10.0,
        attempts: int = 5,
        extra_args: tuple[str, ...] = (),
        install: bool = True,
    ) -> None:
        self._executable = executable
        self.host = host
        self._startup_timeout = startup_timeout
        self._attempts = max(1, attempts)
        self._extra_args = extra_args
        self._install = install
        self._process: subprocess.Popen[bytes] | None = None
        self._tmpdir: Path | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The TCP port the server listens on (only after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("RedisServer is not running; call start() or use `with`")
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` for ``redis.asyncio.Redis.from_url`` and friends."""
        return f"redis://{self.host}:{self.port}/0"

    def url_for_db(self, db: int) -> str:
        """The URL of logical database ``db`` (0–15), to isolate users of one server."""
        return f"redis://{self.host}:{self.port}/{db}"

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's process id, if started."""
        return self._process.pid if self._process is not None else None

    def start(self) -> Self:
        """Start the server and wait until it answers ``PING``.

        Raises:
            RedisServerUnavailable: not installed, or it never became ready (the log tail is
                in the message).
        """
        if self.running:
            return self
        executable = self._executable or ensure_redis_server(install=self._install)
        self._tmpdir = Path(tempfile.mkdtemp(prefix="tunnelproof-redis-"))
        last_error = "no attempt made"
        for _ in range(self._attempts):
            port, process, log_path = self._launch(executable)
            if self._wait_ready(process, port):
                self._process, self._port = process, port
                return self
            last_error, retry = self._failed_attempt(process, port, log_path)
            if not retry:
                break
        self._cleanup_dir()
        raise RedisServerUnavailable(f"redis-server did not start: {last_error}")

    async def start_async(self) -> Self:
        """:meth:`start` without blocking the event loop.

        The process is spawned from the calling (event-loop) thread on purpose: the kernel's
        parent-death signal follows the *thread* that forked, and a worker thread of
        ``asyncio.to_thread`` may exit long before the test does.
        """
        if self.running:
            return self
        executable = self._executable
        if executable is None:
            executable = await asyncio.to_thread(ensure_redis_server, install=self._install)
        self._tmpdir = Path(tempfile.mkdtemp(prefix="tunnelproof-redis-"))
        last_error = "no attempt made"
        for _ in range(self._attempts):
            port, process, log_path = self._launch(executable)
            if await self._wait_ready_async(process, port):
                self._process, self._port = process, port
                return self
            last_error, retry = await asyncio.to_thread(
                self._failed_attempt, process, port, log_path
            )
            if not retry:
                break
        self._cleanup_dir()
        raise RedisServerUnavailable(f"redis-server did not start: {last_error}")

    def _launch(self, executable: str) -> tuple[int, subprocess.Popen[bytes], Path]:
        assert self._tmpdir is not None
        port = _free_port(self.host)
        log_path = self._tmpdir / f"redis-{port}.log"
        with log_path.open("wb") as log:
            process = self._spawn(executable, port, log)
        return port, process, log_path

    @staticmethod
    def _failed_attempt(
        process: subprocess.Popen[bytes], port: int, log_path: Path
    ) -> tuple[str, bool]:
        """Stop a failed attempt; return (what went wrong, whether another port may help)."""
        _terminate(process)
        log_tail = log_path.read_text(errors="replace")[-800:]
        error = f"port {port}: exit code {process.returncode}; log: {log_tail.strip()}"
        # Only a port race is worth retrying; anything else will fail the same way again.
        return error, "Address already in use" in log_tail

    def _spawn(self, executable: str, port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
        assert self._tmpdir is not None
        argv = [
            executable,
            "--port",
            str(port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self._tmpdir),
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--logfile",
            "",
            *self._extra_args,
        ]
        return subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self._tmpdir,
            preexec_fn=_die_with_parent,  # only calls prctl
        )

    def _wait_ready(self, process: subprocess.Popen[bytes], port: int) -> bool:
        deadline = time.monotonic() + self._startup_timeout
        delay = 0.01
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            if _ping(self.host, port, timeout=1.0):
                return True
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        return False

    async def _wait_ready_async(self, process: subprocess.Popen[bytes], port: int) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._startup_timeout
        delay = 0.01
        while loop.time() < deadline:
            if process.poll() is not None:
                return False
            if await _ping_async(self.host, port, timeout=1.0):
                return True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
        return False

    def ping(self) -> bool:
        """True if the server answers ``PING`` now."""
        return self._port is not None and _ping(self.host, self._port, timeout=2.0)

    def flushall(self) -> None:
        """Delete every key in every database (between tests sharing one server)."""
        reply = _command(self.host, self.port, "FLUSHALL")
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"FLUSHALL failed: {reply!r}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and remove its directory."""
        if self._process is not None:
            _terminate(self._process)
            self._process = None
        self._port = None
        self._cleanup_dir()

    def _cleanup_dir(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

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
        return await self.start_async()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        state = f"url={self.url}" if self._port is not None else "stopped"
        return f"<RedisServer {state} pid={self.pid}>"


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
