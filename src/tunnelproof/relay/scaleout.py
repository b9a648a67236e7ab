"""Scale-out on Redis: one owner per conversation (a lease), handover, shared state.

Several relay processes behind any load balancer. Each conversation has one owner at a
time, recorded as ``owner:{conv}`` = process id with a lease (``PX``) the owner renews. A
device that lands on another process makes that process *take the conversation over*:

1. it asks the owner to hand over (``PUBLISH handover:{owner} conv``) and polls for the lease;
2. the owner waits for the model's turn to end (bounded), closes the device socket and the
   upstream session (its handle goes to the shared handle store), flushes the buffer and
   the conversation's state, and releases the lease (compare-and-delete);
3. the new owner takes the lease, loads state and buffer, resumes upstream from the handle.

Because the old owner closes its upstream *before* it releases the lease, and the new one
opens only after taking it, there are never two upstream sockets for one conversation. If
the owner dies, its lease expires (``lease`` seconds) and the new owner proceeds with what
was last flushed (every ``flush_interval``): output of the last flush interval, and the rest
of a turn cut by the death (Gemini never continues a cut generation), are lost; the device
is told the turn ended (``interrupted`` + ``turnComplete``). The device's messages that no
upstream handle held yet (``unheld``) are sent again after the resume, their re-answers
withheld from the device (see ``relay/unheld.py``): the model's context loses nothing
flushed.

Keys (prefix ``tp:relay:``): ``owner:{conv}`` (string), ``state:{conv}`` (hash: user,
setup, last_seq, received, generating, unheld_runs), ``buf:{conv}`` (list of ``seq(8 bytes)
+ frame``), ``dig:{conv}`` (list of ``index(8 bytes) + digest``: the shared duplicate check),
``in:{conv}`` (hash: unheld device messages by index), ``ticket:{nonce}`` (single-use
tickets across processes). Flushes write only what changed (see :meth:`RedisCoordinator.flush`);
:class:`FlushingHandleStore` flushes before each upstream handle is stored, so a stored
handle never holds a device message the record lacks. State, buffer and record expire
``state_ttl`` after the last write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis

from tunnelproof.relay.buffer import OutputBuffer
from tunnelproof.relay.unheld import UnheldInput
from tunnelproof.session.handle_store import HandleStore, StoredSession
from tunnelproof.tokens.tickets import RelayTicket

log = logging.getLogger("tunnelproof.relay.scaleout")

DIGESTS_KEPT = 4096  # device message digests kept in Redis (the duplicate check's memory)

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Loaded:
    """A conversation's shared state, as the previous owner last flushed it."""

    user_id: str
    setup: dict[str, Any]
    last_seq: int
    received: int
    generating: bool
    frames: list[tuple[int, bytes]]
    unheld: list[Any]  # [message, closed turn, index]: no upstream handle held them
    digests: list[tuple[int, bytes]]  # (index, digest) of device messages received


class Mirrored(Protocol):
    """What the coordinator mirrors of a conversation (a :class:`Conversation`)."""

    buffer: OutputBuffer
    unheld: UnheldInput

    def state(self) -> dict[str, Any]:
        """Small scalar state (user, setup, counters)."""
        ...

    def digests_after(self, index: int) -> list[tuple[int, bytes]]:
        """``(index, digest)`` of the device messages numbered above ``index``."""
        ...


@dataclass(slots=True)
class _Mirror:
    conv: Mirrored
    first: int  # first seq held in Redis
    last: int  # last seq held in Redis
    resync: bool = True  # rewrite the input record and digests from memory
    rebuffer: bool = False  # rewrite the output frames from memory too
    digested: int = -1  # last device message index whose digest is in Redis
    digests_in_redis: int = 0  # length of the digest list (trimmed past twice the bound)
    unheld_version: int = -1  # UnheldInput.version last written
    bodies: set[int] = field(default_factory=set)  # unheld message indices in Redis
    body_max: int = -1  # the highest index whose body was written (later ones are new)
    fields: dict[str, bytes] = field(default_factory=dict)  # state fields as written
    expires_at: float = 0.0  # when the TTLs were last pushed forward (monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class RedisCoordinator:
    """Owner leases, handover requests and the shared copy of each owned conversation."""

    def __init__(
        self,
        url: str,
        *,
        lease: float = 10.0,
        flush_interval: float = 0.05,
        state_ttl: float = 2 * 60 * 60,
        prefix: str = "tp:relay:",
        process_id: str | None = None,
    ) -> None:
        if lease <= 0 or flush_interval <= 0:
            raise ValueError("lease and flush_interval must be positive")
        self.redis: aioredis.Redis[bytes] = aioredis.Redis.from_url(
            url, socket_timeout=5.0, socket_connect_timeout=5.0
        )
        self.lease = lease
        self.flush_interval = flush_interval
        self.state_ttl_ms = int(state_ttl * 1000)
        self.prefix = prefix
        self.process_id = process_id or secrets.token_hex(8)
        self._mirrors: dict[str, _Mirror] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._on_handover: Callable[[str], Coroutine[Any, Any, None]] | None = None
        self._on_lost: Callable[[str], Awaitable[None]] | None = None
        self._handovers: set[asyncio.Task[None]] = set()
        self._pubsub: Any = None

    def _key(self, kind: str, conv: str) -> str:
        return f"{self.prefix}{kind}:{conv}"

    # -- lifecycle -------------------------------------------------------------------------

    async def start(
        self,
        on_handover: Callable[[str], Coroutine[Any, Any, None]],
        on_lost: Callable[[str], Awaitable[None]],
    ) -> None:
        """Subscribe to handover requests and start the renew and flush loops."""
        self._on_handover, self._on_lost = on_handover, on_lost
        self._pubsub = self.redis.pubsub()
        await self._pubsub.subscribe(f"{self.prefix}handover:{self.process_id}")
        self._tasks = [
            asyncio.create_task(self._listen(), name="relay-handover-listener"),
            asyncio.create_task(self._renew_loop(), name="relay-lease-renewer"),
            asyncio.create_task(self._flush_loop(), name="relay-flusher"),
        ]

    async def stop(self) -> None:
        """Flush, release every lease, stop (a graceful shutdown hands everything back)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for conv in list(self._mirrors):
            with contextlib.suppress(Exception):
                await self.flush(conv)
                await self.release(conv)
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        # types-redis predates aclose() (redis >= 5).
        await self.redis.aclose()  # type: ignore[attr-defined]

    # -- leases --------------------------------------------------------------------------

    async def try_acquire(self, conv: str) -> bool:
        """Take the lease if nobody holds it."""
        ok = await self.redis.set(
            self._key("owner", conv), self.process_id, nx=True, px=int(self.lease * 1000)
        )
        return bool(ok)

    async def owner(self, conv: str) -> str | None:
        """The process holding the lease, if any."""
        value = await self.redis.get(self._key("owner", conv))
        return value.decode() if value is not None else None

    async def request_handover(self, conv: str, owner: str) -> None:
        """Ask ``owner`` to hand ``conv`` over."""
        await self.redis.publish(f"{self.prefix}handover:{owner}", conv)

    async def release(self, conv: str) -> None:
        """Release the lease (only if still ours) and stop mirroring ``conv``."""
        self._mirrors.pop(conv, None)
        await self.redis.eval(_RELEASE, 1, self._key("owner", conv), self.process_id)  # type: ignore[no-untyped-call]

    async def _listen(self) -> None:
        assert self._pubsub is not None
        while True:
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None or message.get("type") != "message":
                continue
            conv = message["data"].decode()
            if conv in self._mirrors and self._on_handover is not None:
                task = asyncio.create_task(self._on_handover(conv))
                self._handovers.add(task)
                task.add_done_callback(self._handovers.discard)

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            for conv in list(self._mirrors):
                try:
                    renewed = await self.redis.eval(  # type: ignore[no-untyped-call]
                        _RENEW,
                        1,
                        self._key("owner", conv),
                        self.process_id,
                        int(self.lease * 1000),
                    )
                except Exception:
                    log.warning("lease renewal failed for %s", conv, exc_info=True)
                    continue
                if not renewed and conv in self._mirrors:
                    # Someone else owns it now: stop touching it at once.
                    log.error("[%s] lease lost: dropping the conversation here", conv)
                    self._mirrors.pop(conv, None)
                    if self._on_lost is not None:
                        await self._on_lost(conv)

    # -- state -------------------------------------------------------------------------

    def track(self, conv: str, mirrored: Mirrored, *, stored_through: int = 0) -> None:
        """Mirror ``mirrored`` to Redis while this process owns ``conv``.

        ``stored_through``: the buffer's frames up to this seq are in Redis already (a
        takeover loaded them); the input record and digests are rewritten by the first
        flush.
        """
        self._mirrors[conv] = _Mirror(mirrored, stored_through + 1, stored_through)

    async def flush(self, conv: str) -> None:
        """Write what changed since the last flush, in one pipeline (one round trip).

        Only changes: new output frames (and evictions), the digests of new device
        messages, the bodies of newly unheld ones (each written once, deleted when held),
        the unheld record's run-length index, and scalar state fields whose value changed;
        TTLs are pushed forward at most once a second. Nothing changed, nothing written.

        The pipeline is not a transaction (``MULTI``/``EXEC`` would add two commands to
        every flush): its commands are ordered so that any prefix of them that reaches
        Redis (the process killed mid-write) is consistent: additions first (frames,
        digests, bodies), then the state that refers to them, then deletions of what it no
        longer refers to. A rewrite from memory (first flush of an owner, or after a
        failed flush) deletes before it adds, so it is one ``MULTI``/``EXEC``.
        """
        mirror = self._mirrors.get(conv)
        if mirror is None:
            return
        async with mirror.lock:  # concurrent flushes would reorder the appends
            pipe = self.redis.pipeline(transaction=mirror.resync)
            try:
                if self._stage(conv, mirror, pipe):
                    await pipe.execute()
            except BaseException:
                # What this flush staged may not have landed: rewrite everything next time.
                mirror.resync = mirror.rebuffer = True
                mirror.fields.clear()
                raise

    def _stage(self, conv: str, mirror: _Mirror, pipe: Any) -> bool:
        """Queue the changed parts on ``pipe``; False when there is nothing to write."""
        buffer, unheld = mirror.conv.buffer, mirror.conv.unheld
        buf_key, state_key = self._key("buf", conv), self._key("state", conv)
        in_key, dig_key = self._key("in", conv), self._key("dig", conv)
        staged = 0
        if mirror.rebuffer:  # the output frames too (after a failed flush)
            pipe.delete(buf_key)
            mirror.first, mirror.last = buffer.first_seq, buffer.first_seq - 1
            mirror.rebuffer = False
        if mirror.resync:
            pipe.delete(in_key, dig_key)
            mirror.bodies.clear()
            mirror.body_max = -1
            mirror.digested = -1
            mirror.digests_in_redis = 0
            mirror.unheld_version = -1
            mirror.resync = False
            staged += 1
        # 1. additions
        replay = buffer.since(mirror.last)
        if replay.frames:
            pipe.rpush(buf_key, *[seq.to_bytes(8, "big") + data for seq, data in replay.frames])
            mirror.last = replay.frames[-1][0]
            mirror.first = min(mirror.first, replay.frames[0][0])
            staged += 1
        digests = mirror.conv.digests_after(mirror.digested)
        if digests:
            pipe.rpush(dig_key, *[i.to_bytes(8, "big") + d for i, d in digests])
            mirror.digested = digests[-1][0]
            mirror.digests_in_redis += len(digests)
            staged += 1
        gone: list[int] = []
        runs: bytes | None = None
        if unheld.version != mirror.unheld_version:
            mirror.unheld_version = unheld.version
            # Entries are in index order and each index is written once: the new bodies are
            # the newest entries, the gone ones a set difference (no pass over the record).
            new = {i: orjson.dumps(m) for i, m in unheld.messages_after(mirror.body_max)}
            gone = list(mirror.bodies - unheld.indices)
            if new:
                pipe.hset(in_key, mapping=new)
                mirror.bodies.update(new)
                mirror.body_max = max(new)
                staged += 1
            runs = orjson.dumps(unheld.runs())
        # 2. the state that refers to them
        state = {k: orjson.dumps(v) for k, v in mirror.conv.state().items()}
        if runs is not None:
            state["unheld_runs"] = runs
        changed = {k: v for k, v in state.items() if mirror.fields.get(k) != v}
        if changed:
            pipe.hset(state_key, mapping=changed)
            mirror.fields.update(changed)
            staged += 1
        # 3. deletions
        if gone:
            pipe.hdel(in_key, *gone)
            mirror.bodies.difference_update(gone)
            staged += 1
        first = buffer.first_seq
        if first > mirror.first:
            drop = min(first, mirror.last + 1) - mirror.first
            if drop > 0:
                pipe.lpop(buf_key, drop)
                staged += 1
            mirror.first = first
        if mirror.digests_in_redis > 2 * DIGESTS_KEPT:  # trimmed now and then, not per flush
            pipe.ltrim(dig_key, -DIGESTS_KEPT, -1)
            mirror.digests_in_redis = DIGESTS_KEPT
        now = time.monotonic()
        if staged and now - mirror.expires_at >= 1.0:
            for key in (state_key, buf_key, in_key, dig_key):
                pipe.pexpire(key, self.state_ttl_ms)
            mirror.expires_at = now
        return staged > 0

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            for conv in list(self._mirrors):
                try:
                    await self.flush(conv)
                except Exception:
                    log.warning("flush failed for %s", conv, exc_info=True)

    async def load(self, conv: str) -> Loaded | None:
        """The shared state of ``conv`` (``None`` if Redis has none)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(self._key("state", conv))
        pipe.lrange(self._key("buf", conv), 0, -1)
        pipe.hgetall(self._key("in", conv))
        pipe.lrange(self._key("dig", conv), 0, -1)
        raw, entries, stored_bodies, stored_digests = await pipe.execute()
        if not raw:
            return None
        state = {k.decode(): orjson.loads(v) for k, v in raw.items()}
        frames = [(int.from_bytes(e[:8], "big"), bytes(e[8:])) for e in entries]
        bodies = {int(k): orjson.loads(v) for k, v in stored_bodies.items()}
        unheld: list[Any] = []
        for first, last, closed in state.get("unheld_runs") or []:
            for index in range(int(first), int(last) + 1):
                if index in bodies:  # written in the same transaction: always there
                    unheld.append([bodies[index], closed, index])
        digests = [(int.from_bytes(e[:8], "big"), bytes(e[8:])) for e in stored_digests]
        return Loaded(
            user_id=str(state["user"]),
            setup=dict(state["setup"]),
            last_seq=int(state["last_seq"]),
            received=int(state["received"]),
            generating=bool(state.get("generating", False)),
            frames=frames,
            unheld=unheld,
            digests=digests,
        )

    async def forget(self, conv: str) -> None:
        """Delete the shared copy (the conversation ended) and release the lease."""
        self._mirrors.pop(conv, None)
        await self.redis.delete(*(self._key(k, conv) for k in ("state", "buf", "in", "dig")))
        await self.release(conv)


class RedisTicketLedger:
    """Single-use tickets across relay processes (``SET NX`` until the ticket expires)."""

    def __init__(self, redis: aioredis.Redis[bytes], prefix: str = "tp:relay:") -> None:
        self._redis = redis
        self._prefix = prefix

    async def consume(self, ticket: RelayTicket) -> bool:
        """True the first time ``ticket`` is presented anywhere."""
        ttl = max(1, int((ticket.expires_at - time.time()) * 1000) + 1000)
        ok = await self._redis.set(f"{self._prefix}ticket:{ticket.nonce}", b"1", nx=True, px=ttl)
        return bool(ok)


class FlushingHandleStore:
    """A handle store that flushes the conversation's shared record before each save.

    The invariant it keeps: every device message a stored upstream handle holds has its
    digest (and, while unheld, its body) in Redis. So after a killed owner's takeover the
    new owner resumes from a handle whose state holds only messages it knows: it drops a
    device's replay of any of them (they reached Gemini once), and a replayed message it
    does not know cannot be in the resumed state, so forwarding it is its only copy there.
    """

    def __init__(self, inner: HandleStore, coordinator: RedisCoordinator) -> None:
        self.inner = inner
        self.coordinator = coordinator

    async def load(self, conversation_id: str, *, now_wall: float) -> StoredSession | None:
        """The inner store's record."""
        return await self.inner.load(conversation_id, now_wall=now_wall)

    async def save(self, conversation_id: str, session: StoredSession) -> None:
        """Flush the conversation first; a failed flush fails the save (the older handle
        stays, and it holds less: safe).

        The session emitted ``Delivered`` (the sends this handle holds) before it asked for
        this save, and the relay's event pump, woken first, has removed them from the
        unheld record by now; one more loop turn is cheap insurance. So the record written
        here does not list as unheld what the handle holds (a new owner would send it to
        Gemini a second time)."""
        await asyncio.sleep(0)
        await self.coordinator.flush(conversation_id)
        await self.inner.save(conversation_id, session)

    async def delete(self, conversation_id: str) -> None:
        """Delete in the inner store."""
        await self.inner.delete(conversation_id)

    async def close(self) -> None:
        """Close the inner store."""
        await self.inner.close()
