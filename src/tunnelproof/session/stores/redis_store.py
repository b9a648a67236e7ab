"""Redis handle store: shared by every worker of a server-side deployment.

One key per conversation (``prefix + conversation_id``) holding the session as versioned
JSON (orjson). Each save sets a server-side TTL equal to the handle's remaining validity, so
Redis forgets expired sessions by itself and the keyspace stays bounded even for
conversations nobody loads again. The TTL is computed from the store's ``clock`` (relative
``PX``, not an absolute ``PXAT``) so tests that inject a wall time stay consistent with it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from tunnelproof.protocol.types import HANDLE_VALIDITY_SECONDS
from tunnelproof.session.handle_store import StoredSession
from tunnelproof.session.stores._common import (
    DEFAULT_MAX_TRANSCRIPT_TURNS,
    CorruptRecord,
    bound_transcript,
    check_limits,
    check_session,
    decode_record,
    encode_record,
    expires_at,
    logger,
    validate_conversation_id,
)

DEFAULT_PREFIX = "tunnelproof:handle:"

# Delete the key only if it still holds the value we judged expired or corrupt: another
# worker may have saved a fresh handle in between, and that one must survive.
_DELETE_IF_UNCHANGED = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisHandleStore:
    """Sessions in Redis, one key per conversation, expired by Redis itself.

    Args:
        url: e.g. ``redis://127.0.0.1:6379/0`` (ignored when ``client`` is given).
        prefix: key prefix, to share a database with other data.
        validity: seconds a handle stays usable after the last disconnect (2 h).
        max_transcript_turns: newest turns kept per conversation.
        client: an existing ``redis.asyncio.Redis`` to use (not closed by :meth:`close`).
        clock: wall clock (UNIX seconds) the TTL is computed from.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        validity: float = HANDLE_VALIDITY_SECONDS,
        max_transcript_turns: int = DEFAULT_MAX_TRANSCRIPT_TURNS,
        client: aioredis.Redis[bytes] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_limits(validity, max_transcript_turns)
        if client is None:
            if url is None:
                raise ValueError("RedisHandleStore needs a url or a client")
            # Bounded timeouts: a dead Redis must fail a load, not hang a reconnect.
            client = aioredis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
            self._owns_client = True
        else:
            self._owns_client = False
        self._redis: aioredis.Redis[bytes] = client
        self.prefix = prefix
        self.validity = validity
        self.max_transcript_turns = max_transcript_turns
        self._clock = clock

    def key(self, conversation_id: str) -> str:
        """The Redis key of ``conversation_id``."""
        return self.prefix + validate_conversation_id(conversation_id)

    async def _delete_if_unchanged(self, key: str, raw: bytes) -> None:
        try:
            await self._redis.eval(_DELETE_IF_UNCHANGED, 1, key, raw)  # type: ignore[no-untyped-call]
        except ResponseError:  # scripting disabled (some managed Redis): plain delete
            await self._redis.delete(key)

    async def load(self, conversation_id: str, *, now_wall: float) -> StoredSession | None:
        """The stored session, or ``None`` if absent, corrupt (logged) or expired (deleted)."""
        key = self.key(conversation_id)
        raw: Any = await self._redis.get(key)
        if raw is None:
            return None
        try:
            session = decode_record(raw)
        except CorruptRecord as exc:
            logger.warning(
                "handle store redis: corrupt value at %r (%s); treating it as absent and "
                "deleting it",
                key,
                exc,
            )
            await self._delete_if_unchanged(key, raw)
            return None
        if now_wall >= expires_at(session, self.validity):
            await self._delete_if_unchanged(key, raw)
            return None
        return session

    async def save(self, conversation_id: str, session: StoredSession) -> None:
        """Store (replace) the session with a TTL of its remaining validity.

        A session already past its validity is not written (and any older value is removed):
        Redis would refuse a non-positive TTL, and nobody could use it anyway.
        """
        key = self.key(conversation_id)
        check_session(session)
        bounded = bound_transcript(session, self.max_transcript_turns)
        remaining_ms = math.ceil((expires_at(bounded, self.validity) - self._clock()) * 1000)
        if remaining_ms <= 0:
            await self._redis.delete(key)
            return
        await self._redis.set(key, encode_record(bounded), px=remaining_ms)

    async def delete(self, conversation_id: str) -> None:
        """Forget ``conversation_id`` (no error if absent)."""
        await self._redis.delete(self.key(conversation_id))

    async def purge_expired(self, *, now_wall: float) -> int:
        """Nothing to do: Redis expires keys by their TTL. Returns 0 (same API as the others)."""
        return 0

    async def close(self) -> None:
        """Close the connection pool if this store created it. Idempotent."""
        if self._owns_client:
            # types-redis predates aclose() (redis >= 5); close() is deprecated there.
            await self._redis.aclose()  # type: ignore[attr-defined]
