"""A TCP fault proxy: put a "tunnel" between a client and a server, and drive it from a test.

::

    async with TunnelProxy("127.0.0.1", emulator_port) as tunnel:
        client = connect_to(f"ws://127.0.0.1:{tunnel.port}/...")
        await tunnel.wait_for_connections(1)
        tunnel.blackhole()            # the train enters the tunnel
        ...                           # the client should notice and wait
        tunnel.restore()              # and comes out
        tunnel.reset()                # or: every connection dies with RST

Controls, callable at any time or on a timeline with :meth:`TunnelProxy.schedule`:

* :meth:`~TunnelProxy.blackhole` — a half-open link. Existing connections stay open and
  silent in both directions: nothing is delivered, nothing is closed (EOFs and resets are
  held back too, so neither peer learns anything). New connections are accepted but hang:
  nothing is read from them and no upstream connection is made until the link returns.
* :meth:`~TunnelProxy.reset` — abort every connection with a TCP RST on both sides.
* :meth:`~TunnelProxy.offline` — the device *knows* it has no network (what a phone's OS
  does in a long tunnel): every connection is reset and new ones are refused (RST) at once.
* :meth:`~TunnelProxy.latency` — delay each chunk by ``ms ± jitter_ms`` (order kept, as TCP).
* :meth:`~TunnelProxy.bandwidth` — cap each direction of each connection to N bytes/s.
* :meth:`~TunnelProxy.restore` — back to a clean, fast link.

What happens to bytes sent into a blackhole. Real tunnels lose packets, so by default
(``blackhole(drop=True)``) the proxy keeps reading and **drops** them, counting them in
:attr:`TunnelStats.bytes_dropped_up`/``_down``. TCP never delivers a stream with a hole in
it, though, so a connection that lost bytes cannot honestly carry on: :meth:`restore` aborts
exactly those connections with RST (what a real stack ends with once its retransmissions
fail), and lets the ones that stayed quiet resume. ``blackhole(drop=False)`` models a short
tunnel that TCP rides out instead: the proxy stops reading, the kernels' buffers hold the
bytes and everything is delivered, late but intact, on restore.

Why this is hand-written. toxiproxy (the usual tool) is a Go binary that is not installable
here, and nothing in the Python ecosystem offers a controllable half-open link. Note what any
user-space proxy cannot do: the proxy's own kernel still ACKs what the client sends, so a
client's ``TCP_USER_TIMEOUT``/keepalive never fire through it; only application-level
timeouts (setup watchdog, missing replies) notice. To test kernel-level detection use the
network-namespace tunnel in :mod:`tunnelproof.testing.netns`. This module stays small on
purpose: asyncio streams, two tasks per direction, no dependencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import socket
import struct
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

__all__ = [
    "Action",
    "TunnelProxy",
    "TunnelStats",
    "parse_action",
]

logger = logging.getLogger("tunnelproof.testing.tunnel")

Action = str | Callable[[], object] | Callable[[], Awaitable[object]]
"""A control step: a command string (see :func:`parse_action`) or a callable."""

Direction = Literal["up", "down"]

_CHUNK = 64 * 1024
_QUEUE_CHUNKS = 64  # per direction; beyond this the reader stops and TCP backpressure applies


class _Eof:
    """Queue marker: the source half-closed (FIN)."""


class _Abort:
    """Queue marker: the source was reset (RST) or failed."""


_EOF = _Eof()
_ABORT = _Abort()
_Item = tuple[float, bytes] | _Eof | _Abort


@dataclass(frozen=True, slots=True)
class TunnelStats:
    """Counters since the proxy started. ``up`` is client → upstream, ``down`` the reverse."""

    connections_accepted: int = 0
    connections_active: int = 0
    connections_reset: int = 0
    upstream_connect_failures: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    bytes_dropped_up: int = 0
    bytes_dropped_down: int = 0


@dataclass(slots=True)
class _Counters:
    connections_accepted: int = 0
    connections_reset: int = 0
    upstream_connect_failures: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    bytes_dropped_up: int = 0
    bytes_dropped_down: int = 0


def _set_rst_on_close(writer: asyncio.StreamWriter | None) -> None:
    """Make the next close/abort send RST instead of FIN (SO_LINGER on, timeout 0)."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _log_failure(task: asyncio.Task[None]) -> None:
    """Retrieve a finished task's outcome: log a failure, never leave it unretrieved."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("tunnel: %s failed", task.get_name(), exc_info=exc)


def _abort(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        _set_rst_on_close(writer)
        writer.transport.abort()


@dataclass(eq=False)
class _Connection:
    """One proxied client connection and its upstream counterpart."""

    ident: int
    client_reader: asyncio.StreamReader
    client_writer: asyncio.StreamWriter
    upstream_reader: asyncio.StreamReader | None = None
    upstream_writer: asyncio.StreamWriter | None = None
    upstream_sock: socket.socket | None = None  # while connecting, before a writer exists
    damaged: bool = False  # lost bytes in a drop-mode blackhole
    task: asyncio.Task[None] | None = None  # runs the connection; abort() cancels it
    next_free: dict[str, float] = field(default_factory=lambda: {"up": 0.0, "down": 0.0})
    last_due: dict[str, float] = field(default_factory=lambda: {"up": 0.0, "down": 0.0})

    def abort(self) -> None:
        """RST both sides and stop the pumps."""
        _abort(self.client_writer)
        _abort(self.upstream_writer)
        if self.upstream_writer is None and self.upstream_sock is not None:
            # Aborted while connecting upstream: the connect may already have completed in
            # the kernel, so the server must get its RST too, not a FIN.
            with contextlib.suppress(OSError):
                self.upstream_sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            self.upstream_sock.close()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()


class TunnelProxy:
    """An asyncio TCP proxy to ``upstream_host:upstream_port`` with fault controls.

    Args:
        upstream_host: where connections are forwarded (e.g. the emulator's host).
        upstream_port: its port.
        listen_host: where the proxy listens; keep it on loopback.
        listen_port: 0 picks a free port (read it from :attr:`port`).
        connect_timeout: seconds allowed for each upstream connect.
        seed: seed of the jitter's random source, for reproducible runs.
        on_action: called with ``(seconds since start, description)`` after every control
            action, manual or scheduled (the CLI prints them).
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        connect_timeout: float = 10.0,
        seed: int | None = None,
        on_action: Callable[[float, str], None] | None = None,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.listen_host = listen_host
        self._listen_port = listen_port
        self._connect_timeout = connect_timeout
        self._random = random.Random(seed)  # jitter, not security
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._counters = _Counters()
        self._changed = asyncio.Condition()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._blackhole: Literal["drop", "hold"] | None = None
        self._offline = False
        self._latency_s = 0.0
        self._jitter_s = 0.0
        self._bandwidth: float | None = None
        self._schedules: set[asyncio.Task[None]] = set()
        self._started_at: float | None = None
        self._next_ident = 0
        self._on_action = on_action
        self.history: list[tuple[float, str]] = []
        """Every control action applied so far: ``(seconds since start, description)``."""

    # -- lifecycle --------------------------------------------------------------------

    async def start(self, sock: socket.socket | None = None) -> Self:
        """Start listening; returns self.

        ``sock``: listen on this bound socket instead of ``listen_host``/``listen_port``,
        e.g. one created inside a network namespace (``NetnsTunnel.create_socket``) so a
        client outside reaches the proxy across the namespace's veth, where a kernel
        blackhole can cut it.
        """
        if self._server is not None:
            return self
        if sock is not None:
            self.listen_host = str(sock.getsockname()[0])
            self._server = await asyncio.start_server(self._handle, sock=sock, limit=_CHUNK)
        else:
            self._server = await asyncio.start_server(
                self._handle, self.listen_host, self._listen_port, limit=_CHUNK
            )
        self._started_at = asyncio.get_running_loop().time()
        return self

    async def stop(self) -> None:
        """Stop listening, abort every connection, cancel schedules. Idempotent."""
        for task in list(self._schedules):
            task.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.abort()
        tasks = [c.task for c in self._connections if c.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout=5)
            self._server = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The port clients connect to."""
        if self._server is None:
            raise RuntimeError("TunnelProxy is not started; use `async with` or start()")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def url(self, scheme: str = "ws") -> str:
        """``scheme://listen_host:port``, e.g. the ``ws_base`` to give a client instead of
        the upstream's (TLS passes through untouched, so ``wss`` works too)."""
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"{scheme}://{host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        """``(listen_host, port)``."""
        return self.listen_host, self.port

    # -- state ------------------------------------------------------------------------

    @property
    def stats(self) -> TunnelStats:
        """A snapshot of the counters."""
        c = self._counters
        return TunnelStats(
            connections_accepted=c.connections_accepted,
            connections_active=len(self._connections),
            connections_reset=c.connections_reset,
            upstream_connect_failures=c.upstream_connect_failures,
            bytes_up=c.bytes_up,
            bytes_down=c.bytes_down,
            bytes_dropped_up=c.bytes_dropped_up,
            bytes_dropped_down=c.bytes_dropped_down,
        )

    @property
    def blackholed(self) -> bool:
        """True while a blackhole is in force."""
        return self._blackhole is not None

    def describe(self) -> dict[str, object]:
        """The current faults, JSON-friendly."""
        return {
            "blackhole": self._blackhole,
            "offline": self._offline,
            "latency_ms": self._latency_s * 1000,
            "jitter_ms": self._jitter_s * 1000,
            "bandwidth_bytes_per_s": self._bandwidth,
        }

    async def wait_for_connections(self, n: int, *, timeout: float = 10.0) -> None:
        """Wait until at least ``n`` connections have been accepted in total.

        Raises:
            TimeoutError: with the count reached, after ``timeout`` seconds.
        """
        await self._wait(lambda: self._counters.connections_accepted >= n, timeout, f"{n} accepted")

    async def wait_for_active(self, n: int, *, timeout: float = 10.0) -> None:
        """Wait until exactly ``n`` connections are open (e.g. 0 after the client closed)."""
        await self._wait(lambda: len(self._connections) == n, timeout, f"{n} active")

    async def _wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(predicate), timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"tunnel: waited {timeout} s for {what}; stats: {self.stats}"
                ) from None

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _record(self, description: str) -> None:
        now = asyncio.get_running_loop().time()
        elapsed = now - self._started_at if self._started_at is not None else 0.0
        self.history.append((round(elapsed, 4), description))
        logger.info("tunnel %s: %s", self.listen_host, description)
        if self._on_action is not None:
            self._on_action(elapsed, description)

    # -- controls ---------------------------------------------------------------------

    def blackhole(self, *, drop: bool = True) -> None:
        """Make the link half-open: everything open stays open, nothing gets through.

        Args:
            drop: True (default) loses bytes sent meanwhile, and :meth:`restore` then
                resets the connections that lost some; False holds them (via TCP
                backpressure) and delivers them intact on restore.
        """
        self._blackhole = "drop" if drop else "hold"
        self._flowing.clear()
        self._record(f"blackhole {'drop' if drop else 'hold'}")

    def restore(self, *, reset_damaged: bool = True) -> None:
        """Clear every fault (blackhole, offline, latency, bandwidth).

        Args:
            reset_damaged: abort (RST) connections that lost bytes in a blackhole, since
                their streams have holes a real TCP would never deliver.
        """
        damaged = [c for c in self._connections if c.damaged]
        for conn in damaged:
            conn.damaged = False  # judged once, for this blackhole only
            if reset_damaged:
                conn.abort()
        if reset_damaged:
            self._counters.connections_reset += len(damaged)
        self._blackhole = None
        self._offline = False
        self._latency_s = self._jitter_s = 0.0
        self._bandwidth = None
        self._flowing.set()
        self._record("restore")

    def reset(self) -> None:
        """Abort every current connection with RST on both sides; the faults stay as set."""
        conns = list(self._connections)
        for conn in conns:
            conn.abort()
        self._counters.connections_reset += len(conns)
        self._record(f"reset {len(conns)}")

    def offline(self) -> None:
        """Reset every connection and refuse new ones (RST on accept) until :meth:`restore`.

        Unlike :meth:`blackhole`, failures are immediate: this is a device that knows it has
        lost the network, not a link that silently stopped carrying packets.
        """
        self._offline = True
        conns = list(self._connections)
        for conn in conns:
            conn.abort()
        self._counters.connections_reset += len(conns)
        self._record(f"offline {len(conns)}")

    def latency(self, ms: float, jitter_ms: float = 0.0) -> None:
        """Delay every chunk by ``ms`` ± ``jitter_ms`` (uniform, never reordering)."""
        if ms < 0 or jitter_ms < 0:
            raise ValueError("latency and jitter must be >= 0")
        self._latency_s, self._jitter_s = ms / 1000, jitter_ms / 1000
        self._record(f"latency {ms:g} {jitter_ms:g}")

    def bandwidth(self, bytes_per_s: float | None) -> None:
        """Cap each direction of each connection to ``bytes_per_s`` (None: no cap)."""
        if bytes_per_s is not None and bytes_per_s <= 0:
            raise ValueError("bandwidth must be > 0 bytes/s (or None for no cap)")
        self._bandwidth = bytes_per_s
        self._record(f"bandwidth {bytes_per_s}")

    def apply(self, action: str) -> None:
        """Apply a command string such as ``"latency 200 50"`` (see :func:`parse_action`)."""
        parse_action(action)(self)

    def schedule(self, steps: Iterable[tuple[float, Action]]) -> asyncio.Task[None]:
        """Run ``steps`` (``(seconds from now, action)``) in time order, in the background.

        Actions are command strings (``"blackhole"``, ``"restore"``, ``"reset"``, ``"offline"``,
        ``"latency 300 50"``, ``"bandwidth 16000"``, ``"blackhole hold"``) or callables
        (sync or async). Steps with equal times run in the order given. Await the returned
        task to wait for the last step; :meth:`stop` cancels it.
        """
        ordered = sorted(enumerate(steps), key=lambda item: (item[1][0], item[0]))
        plan = [(float(at), action) for _, (at, action) in ordered]
        for at, action in plan:
            if at < 0:
                raise ValueError(f"schedule times must be >= 0, got {at}")
            if isinstance(action, str):
                parse_action(action)  # fail now, not at 30 s into the test
        task = asyncio.create_task(self._run_schedule(plan))
        self._schedules.add(task)
        task.add_done_callback(self._schedules.discard)
        return task

    async def _run_schedule(self, plan: list[tuple[float, Action]]) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for at, action in plan:
            delay = start + at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                if isinstance(action, str):
                    self.apply(action)
                else:
                    result = action()
                    if inspect.isawaitable(result):
                        await result
            except Exception:
                logger.exception("tunnel: scheduled action %r at %s s failed", action, at)
                raise

    # -- data path --------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The ``start_server`` callback: runs the connection in its own task, ends normally.

        Aborting a connection cancels that task (:attr:`_Connection.task`), never this one:
        Python 3.11's stream callback calls ``task.exception()`` on the handler task when it
        ends, so a *cancelled* handler put a ``CancelledError`` traceback (from wherever the
        pumps were, often ``_write_side``) into the loop's exception handler on every reset,
        abort or shutdown with traffic flowing.
        """
        self._next_ident += 1
        conn = _Connection(self._next_ident, reader, writer)
        work = asyncio.create_task(self._serve(conn), name=f"tunnel-connection-{conn.ident}")
        work.add_done_callback(_log_failure)
        conn.task = work
        self._connections.add(conn)
        self._counters.connections_accepted += 1
        try:
            await self._notify()
            while not work.done():
                try:
                    await asyncio.wait({work})
                except asyncio.CancelledError:
                    # Cancelled from outside (asyncio.run ending, a cancelled server): stop
                    # the connection and end normally once it has stopped. Nobody awaits a
                    # start_server handler, so the cancellation has done its job.
                    task = asyncio.current_task()
                    if task is not None:
                        task.uncancel()
                    conn.abort()
        finally:
            self._connections.discard(conn)
            with contextlib.suppress(asyncio.CancelledError):
                await self._notify()

    async def _serve(self, conn: _Connection) -> None:
        """One connection's life: wait for the link, connect upstream, pump both ways."""
        reader, writer = conn.client_reader, conn.client_writer
        try:
            if self._offline:
                self._counters.connections_reset += 1
                _abort(writer)
                return
            # A new connection in a blackhole hangs: nothing read, no upstream connect.
            await self._flowing.wait()
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    self._connect_upstream(conn), self._connect_timeout
                )
            except (OSError, TimeoutError) as exc:
                # The client's connect already succeeded (we accepted it); RST is the
                # closest thing to the "connection refused" it would have seen directly.
                self._counters.upstream_connect_failures += 1
                logger.info("tunnel: upstream connect failed: %r", exc)
                _abort(writer)
                return
            conn.upstream_reader, conn.upstream_writer = up_reader, up_writer
            await asyncio.gather(
                self._pump(conn, "up", reader, up_writer),
                self._pump(conn, "down", up_reader, writer),
            )
            writer.close()
            up_writer.close()
        except asyncio.CancelledError:
            conn.abort()  # reset(), restore() or stop(): already aborted; make sure
            raise
        except Exception:
            logger.exception("tunnel: connection %d failed", conn.ident)
            conn.abort()

    async def _connect_upstream(
        self, conn: _Connection
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # Our own socket, so that a reset() during the connect can still RST it.
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self.upstream_host, self.upstream_port, type=socket.SOCK_STREAM
        )
        if not infos:
            raise OSError(f"cannot resolve {self.upstream_host!r}")
        family, type_, proto, _, address = infos[0]
        sock = socket.socket(family, type_, proto)
        conn.upstream_sock = sock
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
            return await asyncio.open_connection(sock=sock, limit=_CHUNK)
        except BaseException:
            if conn.upstream_writer is None:
                sock.close()
            raise

    async def _pump(
        self,
        conn: _Connection,
        direction: Direction,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
    ) -> None:
        """Move one direction: a reader task feeding a delivering writer through a queue."""
        queue: asyncio.Queue[_Item] = asyncio.Queue(_QUEUE_CHUNKS)
        reader = asyncio.create_task(self._read_side(conn, direction, src, queue))
        reader.add_done_callback(_log_failure)  # its outcome is always retrieved
        try:
            await self._write_side(conn, direction, dst, queue)
        finally:
            reader.cancel()
            # wait() neither raises the reader's CancelledError nor swallows our own.
            await asyncio.wait({reader})

    async def _read_side(
        self,
        conn: _Connection,
        direction: Direction,
        src: asyncio.StreamReader,
        queue: asyncio.Queue[_Item],
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._blackhole == "hold":
                await self._flowing.wait()  # stop reading: the kernels hold the bytes
            try:
                data = await src.read(_CHUNK)
            except OSError:
                await queue.put(_ABORT)
                return
            if not data:
                await queue.put(_EOF)
                return
            if self._blackhole == "drop":
                self._drop(conn, direction, len(data))
                continue
            delay = self._latency_s
            if self._jitter_s:
                delay = max(0.0, delay + self._random.uniform(-self._jitter_s, self._jitter_s))
            # TCP keeps order: with jitter a chunk is never due before the previous one.
            due = max(loop.time() + delay, conn.last_due[direction])
            conn.last_due[direction] = due
            await queue.put((due, data))

    async def _write_side(
        self,
        conn: _Connection,
        direction: Direction,
        dst: asyncio.StreamWriter,
        queue: asyncio.Queue[_Item],
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await queue.get()
            if isinstance(item, _Eof | _Abort):
                # A FIN or RST in a blackhole is lost too: hold it until the link returns.
                await self._flowing.wait()
                if isinstance(item, _Abort):
                    conn.abort()  # pass the RST on; this cancels the connection's task
                    return
                if dst.can_write_eof():
                    with contextlib.suppress(OSError):
                        dst.write_eof()
                return
            due, data = item
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            view = memoryview(data)
            while view:
                if self._blackhole == "drop":
                    self._drop(conn, direction, len(view))  # in flight when the tunnel began
                    break
                if self._blackhole == "hold":
                    await self._flowing.wait()
                    continue
                piece = view
                if self._bandwidth is not None:
                    # Small slices so a cap shapes the stream smoothly, not in bursts.
                    piece = view[: max(1, int(self._bandwidth / 50))]
                    wait = conn.next_free[direction] - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                        continue  # faults may have changed while we slept
                    conn.next_free[direction] = (
                        max(loop.time(), conn.next_free[direction]) + len(piece) / self._bandwidth
                    )
                dst.write(piece)
                try:
                    await dst.drain()
                except OSError:
                    conn.abort()
                    return
                if direction == "up":
                    self._counters.bytes_up += len(piece)
                else:
                    self._counters.bytes_down += len(piece)
                view = view[len(piece) :]

    def _drop(self, conn: _Connection, direction: Direction, n: int) -> None:
        conn.damaged = True
        if direction == "up":
            self._counters.bytes_dropped_up += n
        else:
            self._counters.bytes_dropped_down += n


def parse_action(text: str) -> Callable[[TunnelProxy], None]:
    """Turn a command string into a function of the proxy.

    Commands: ``blackhole`` (``blackhole hold`` to hold bytes instead of dropping them),
    ``restore``, ``reset``, ``offline``, ``latency MS [JITTER_MS]``, ``bandwidth
    BYTES_PER_S`` (``bandwidth off`` for no cap).

    Raises:
        ValueError: unknown command or bad arguments.
    """
    words = text.split()
    if not words:
        raise ValueError("empty tunnel action")
    name, args = words[0].lower(), words[1:]
    try:
        if name == "blackhole" and len(args) <= 1:
            if args and args[0] not in ("drop", "hold"):
                raise ValueError("blackhole takes 'drop' or 'hold'")
            drop = not args or args[0] == "drop"
            return lambda t: t.blackhole(drop=drop)
        if name == "restore" and not args:
            return lambda t: t.restore()
        if name == "reset" and not args:
            return lambda t: t.reset()
        if name == "offline" and not args:
            return lambda t: t.offline()
        if name == "latency" and 1 <= len(args) <= 2:
            ms, jitter = float(args[0]), float(args[1]) if len(args) == 2 else 0.0
            if ms < 0 or jitter < 0:
                raise ValueError("latency must be >= 0")
            return lambda t: t.latency(ms, jitter)
        if name == "bandwidth" and len(args) == 1:
            rate = None if args[0].lower() in ("off", "none") else float(args[0])
            if rate is not None and rate <= 0:
                raise ValueError("bandwidth must be > 0")
            return lambda t: t.bandwidth(rate)
    except ValueError as exc:
        raise ValueError(f"bad tunnel action {text!r}: {exc}") from None
    raise ValueError(
        f"unknown tunnel action {text!r}; expected blackhole [drop|hold], restore, reset, offline, "
        "latency MS [JITTER_MS], bandwidth BYTES_PER_S|off"
    )
