"""Per-user rate limits (moving window) with the ``limits`` library.

Memory storage serves one process. With a Redis URL every replica counts against the same
budget, so running three replicas does not triple what a user may mint.
"""

from __future__ import annotations

import asyncio
import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string


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
        self.storage: Storage
        if redis_url:
            uri = redis_url if redis_url.startswith("async+") else f"async+{redis_url}"
            storage = storage_from_string(uri, implementation="redispy")
            assert isinstance(storage, Storage)
            self.storage = storage
        else:
            self.storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self.storage)
        # Keys are namespaced so several services can share one Redis database.
        self._namespace = namespace or "tunnelproof-token"
        self._timeout = timeout

    async def hit(self, user_id: str) -> float | None:
        """Count one request for ``user_id``. ``None`` if allowed, else seconds to wait."""
        try:
            async with asyncio.timeout(self._timeout):
                if await self._limiter.hit(self.item, self._namespace, user_id):
                    return None
                stats = await self._limiter.get_window_stats(self.item, self._namespace, user_id)
        except Exception as exc:  # the storage's errors differ by backend; TimeoutError too
            raise RateLimiterUnavailable(type(exc).__name__) from exc
        return max(1.0, float(math.ceil(stats.reset_time - time.time())))

    async def check_storage(self) -> bool:
        """True if the storage answers within the timeout (used by ``/healthz``)."""
        try:
            async with asyncio.timeout(self._timeout):
                return bool(await self.storage.check())
        except Exception:  # the storage's errors differ by backend; TimeoutError too
            return False
