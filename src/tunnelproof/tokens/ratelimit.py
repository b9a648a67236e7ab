"""Per-user rate limits (moving window).

In memory (:class:`MemoryMovingWindow`) the budget serves one process. With a Redis URL
every replica counts against the same budget, so running three replicas does not triple
what a user may mint; that path is
:class:`~tunnelproof.tokens.redis_window.RedisMovingWindow` (one pipelined round trip per
request, the ``limits`` library's data layout). Limits are written in ``limits`` notation.
"""

from __future__ import annotations

import collections
import math
import time

from limits import RateLimitItem, parse

from tunnelproof.tokens.redis_window import RedisError, RedisMovingWindow


class MemoryMovingWindow:
    """Moving windows in this process: per key, the times of the hits still in the window.

    Each hit prunes its own key's expired entries (amortised O(1)); keys idle for a whole
    window are dropped by a sweep at most once per window. Replaces the ``limits``
    library's memory storage, whose expiry task hands every key to a worker thread after
    each hit: with 200 users that sweep cost more CPU than the Redis round trip it is
    compared with (``docs/performance.md``).
    """

    def __init__(self) -> None:
        """An empty store."""
        self._hits: dict[str, collections.deque[float]] = {}
        self._next_sweep = 0.0

    def hit(self, key: str, limit: int, expiry: float) -> float | None:
        """Record a hit unless ``limit`` hits fall in the last ``expiry`` seconds.

        ``None`` when recorded, else the seconds until one is allowed.
        """
        now = time.monotonic()
        if now >= self._next_sweep:
            self._sweep(now, expiry)
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = collections.deque()
        start = now - expiry
        while hits and hits[0] <= start:
            hits.popleft()
        if len(hits) >= limit:
            return hits[0] + expiry - now
        hits.append(now)
        return None

    def _sweep(self, now: float, expiry: float) -> None:
        start = now - expiry
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= start]:
            del self._hits[key]
        self._next_sweep = now + expiry


class RateLimiterUnavailable(Exception):
    """The shared storage (Redis) could not be reached. The route fails closed (503)."""


class UserRateLimiter:
    """A moving-window budget per user id, e.g. ``"10/minute"``."""

    def __init__(
        self,
        limit: str,
        *,
        redis_url: str | None = None,
        namespace: str = "",
        timeout: float = 2.0,
    ) -> None:
        """``limit`` in ``limits`` notation; ``redis_url`` shares the budget between replicas.

        ``timeout`` bounds each check: a Redis that hangs must not hang every token request.
        """
        self.item: RateLimitItem = parse(limit)
        # Keys are namespaced so several services can share one Redis database.
        self._namespace = namespace or "tunnelproof-token"
        self._timeout = timeout
        self._redis = RedisMovingWindow(redis_url, timeout=timeout) if redis_url else None
        self._memory = MemoryMovingWindow()

    async def hit(self, user_id: str) -> float | None:
        """Count one request for ``user_id``. ``None`` if allowed, else seconds to wait."""
        if self._redis is not None:
            key = self.item.key_for(self._namespace, user_id)
            try:
                wait = await self._redis.hit(key, self.item.amount, self.item.get_expiry())
            except (RedisError, ValueError) as exc:
                raise RateLimiterUnavailable(str(exc)) from exc
            return None if wait is None else max(1.0, float(math.ceil(wait)))
        wait = self._memory.hit(user_id, self.item.amount, self.item.get_expiry())
        return None if wait is None else max(1.0, float(math.ceil(wait)))

    async def check_storage(self) -> bool:
        """True if the storage answers within the timeout (used by ``/healthz``)."""
        if self._redis is None:
            return True
        return await self._redis.ping()  # bounded by the timeout

    async def aclose(self) -> None:
        """Close the Redis connection, if any."""
        if self._redis is not None:
            await self._redis.aclose()
