"""A moving-window rate limit in Redis at one round trip and a few microseconds of CPU per hit.

Why not the ``limits`` library's Redis storage: profiling the token service (see
``docs/performance.md``, "Token service on Redis") showed that a hit through it costs more
CPU than the rest of the limiter by far: redis-py's per-command machinery (connection pool
get/release, argument encoding, retry and observability wrappers) on every request, plus a
second round trip (``get_window_stats``) for every refusal. Here each hit is one
``EVALSHA`` of a script that checks, records and, when refused, says how long to wait; the
command bytes are assembled from pre-encoded parts; requests share one connection per
process and are pipelined (replies come back in order, matched first-in first-out).

The data is the ``limits`` library's own moving window (a Redis list of timestamps, newest
first, trimmed to the limit, under the same key), so replicas running the older
``limits``-based limiter during a rolling upgrade share one budget with these.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import ssl
import time
from urllib.parse import unquote, urlsplit

__all__ = ["RedisError", "RedisMovingWindow", "parse_redis_url"]

# KEYS[1] the user's window; ARGV: now (seconds, float), limit, expiry (seconds).
# Returns 0 when the hit is recorded, else the seconds until a slot frees (a string: Lua
# numbers returned to Redis are truncated to integers).
MOVING_WINDOW_SCRIPT = b"""
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local expiry = tonumber(ARGV[3])
local entry = redis.call('lindex', KEYS[1], limit - 1)
if entry and tonumber(entry) >= now - expiry then
    return tostring(tonumber(entry) + expiry - now)
end
redis.call('lpush', KEYS[1], ARGV[1])
redis.call('ltrim', KEYS[1], 0, limit - 1)
redis.call('expire', KEYS[1], expiry)
return 0
"""
SCRIPT_SHA = hashlib.sha1(MOVING_WINDOW_SCRIPT, usedforsecurity=False).hexdigest().encode()


class RedisError(Exception):
    """Redis could not be reached, answered an error, or broke the protocol."""


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _command(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(_bulk(p) for p in parts)


def parse_redis_url(url: str) -> tuple[str, int, int, str | None, str | None, bool]:
    """``redis://[user:password@]host[:port][/db]`` (or ``rediss://``, ``async+redis://``)
    -> ``(host, port, db, username, password, tls)``."""
    parts = urlsplit(url.removeprefix("async+"))
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError("Redis URL must look like redis://host:6379/0 (or rediss://)")
    path = parts.path.strip("/")
    db = int(path) if path else 0
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, parts.port or 6379, db, username, password, parts.scheme == "rediss"


class _Connection:
    """One pipelined RESP2 connection: writes in order, a reader task resolves replies FIFO."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._pending: collections.deque[asyncio.Future[bytes | int | None]] = collections.deque()
        self._task = asyncio.create_task(self._read_replies(), name="tunnelproof-redis-reader")
        self.broken = False

    def request(self, packed: bytes) -> asyncio.Future[bytes | int | None]:
        if self.broken:
            raise RedisError("connection closed")
        future: asyncio.Future[bytes | int | None] = asyncio.get_running_loop().create_future()
        self._pending.append(future)
        self._writer.write(packed)
        return future

    async def _read_replies(self) -> None:
        try:
            while True:
                reply = await self._read_one()
                future = self._pending.popleft()
                if future.done():  # its caller timed out; the order still holds
                    continue
                if isinstance(reply, RedisError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except (OSError, EOFError, asyncio.LimitOverrunError, ValueError, IndexError) as exc:
            self._fail(RedisError(f"connection lost: {type(exc).__name__}"))
        except asyncio.CancelledError:
            self._fail(RedisError("connection closed"))
            raise

    async def _read_one(self) -> bytes | int | RedisError | None:
        line = await self._reader.readuntil(b"\r\n")
        kind, body = line[:1], line[1:-2]
        if kind == b":":
            return int(body)
        if kind == b"$":
            size = int(body)
            if size < 0:
                return None
            return (await self._reader.readexactly(size + 2))[:-2]
        if kind == b"+":
            return body
        if kind == b"-":
            return RedisError(body.decode("utf-8", errors="replace")[:200])
        raise ValueError(f"unexpected RESP reply type {kind!r}")

    def _fail(self, error: RedisError) -> None:
        self.broken = True
        while self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_exception(error)
        self._writer.transport.abort()

    async def close(self) -> None:
        self.broken = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class RedisMovingWindow:
    """Per-key moving windows in one Redis (see the module docstring).

    ``timeout`` bounds each call, connecting included; a call that times out drops the
    connection (a wedged Redis must not queue every later request behind it) and the next
    call connects again.
    """

    def __init__(self, url: str, *, timeout: float = 2.0, prefix: str = "LIMITS") -> None:
        """``url``: see :func:`parse_redis_url`; ``prefix`` matches the ``limits`` library's."""
        self._host, self._port, self._db, self._user, self._password, tls = parse_redis_url(url)
        self._ssl = ssl.create_default_context() if tls else None
        self._timeout = timeout
        self._prefix = prefix
        self._connection: _Connection | None = None
        self._connecting = asyncio.Lock()

    async def _connect(self) -> _Connection:
        connection = self._connection
        if connection is not None and not connection.broken:
            return connection
        async with self._connecting:
            if self._connection is not None and not self._connection.broken:
                return self._connection
            reader, writer = await asyncio.open_connection(self._host, self._port, ssl=self._ssl)
            fresh = _Connection(reader, writer)
            try:
                if self._password is not None:
                    auth = (b"AUTH",) + ((self._user.encode(),) if self._user else ())
                    await fresh.request(_command(*auth, self._password.encode()))
                if self._db:
                    await fresh.request(_command(b"SELECT", str(self._db).encode()))
                loaded = await fresh.request(_command(b"SCRIPT", b"LOAD", MOVING_WINDOW_SCRIPT))
                if loaded != SCRIPT_SHA:
                    raise RedisError("SCRIPT LOAD returned an unexpected digest")
            except BaseException:
                await fresh.close()
                raise
            self._connection = fresh
            return fresh

    async def _call(self, packed: bytes) -> bytes | int | None:
        try:
            async with asyncio.timeout(self._timeout):
                connection = await self._connect()
                return await connection.request(packed)
        except TimeoutError:
            await self._drop()
            raise RedisError(f"no answer within {self._timeout:g} s") from None
        except OSError as exc:
            await self._drop()
            raise RedisError(f"cannot connect: {type(exc).__name__}") from None

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    async def hit(self, key: str, limit: int, expiry: int) -> float | None:
        """Record one hit on ``key`` unless ``limit`` hits fall in the last ``expiry``
        seconds. ``None`` when recorded, else the seconds until it would be allowed."""
        full_key = f"{self._prefix}:{key}".encode()
        packed = (
            b"*7\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$1\r\n1\r\n" % SCRIPT_SHA
            + _bulk(full_key)
            + _bulk(repr(time.time()).encode())
            + _bulk(str(limit).encode())
            + _bulk(str(expiry).encode())
        )
        try:
            reply = await self._call(packed)
        except RedisError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            await self._drop()  # the script cache was flushed: reconnect loads it again
            reply = await self._call(packed)
        if reply == 0:
            return None
        if isinstance(reply, bytes):
            return float(reply)
        raise RedisError(f"unexpected reply {reply!r}")

    async def ping(self) -> bool:
        """True if Redis answers ``PING`` within the timeout."""
        try:
            return await self._call(_command(b"PING")) == b"PONG"
        except RedisError:
            return False

    async def aclose(self) -> None:
        """Close the connection (a later call opens a new one)."""
        await self._drop()
