"""Per-user rate limits (moving window).

Memory storage (the ``limits`` library) serves one process. With a Redis URL every replica
counts against the same budget, so running three replicas does not triple what a user may
mint; that path is :class:`~tunnelproof.tokens.redis_window.RedisMovingWindow` (one
pipelined round trip per request, the ``limits`` library's data layout).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from tunnelproof.tokens.redis_window import RedisError, RedisMovingWindow


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
        self._memory = MovingWindowRateLimiter(MemoryStorage())

    async def hit(self, user_id: str) -> float | None:
        """Count one request for ``user_id``. ``None`` if allowed, else seconds to wait."""
        if self._redis is not None:
            key = self.item.key_for(self._namespace, user_id)
            try:
                wait = await self._redis.hit(key, self.item.amount, self.item.get_expiry())
            except (RedisError, ValueError) as exc:
                raise RateLimiterUnavailable(str(exc)) from exc
            return None if wait is None else max(1.0, float(math.ceil(wait)))
        if await self._memory.hit(self.item, self._namespace, user_id):
            return None
        stats = await self._memory.get_window_stats(self.item, self._namespace, user_id)
        return max(1.0, float(math.ceil(stats.reset_time - time.time())))

    async def check_storage(self) -> bool:
        """True if the storage answers within the timeout (used by ``/healthz``)."""
        if self._redis is None:
            return True
        return await self._redis.ping()  # bounded by the timeout

    async def aclose(self) -> None:
        """Close the Redis connection, if any."""
        if self._redis is not None:
            await self._redis.aclose()
