"""An append-only event log that tests can wait on instead of sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tunnelproof.protocol.types import JsonDict


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened in the emulator; ``seq`` orders all events."""

    seq: int
    kind: str
    at: float
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> JsonDict:
        """JSON view."""
        return {"seq": self.seq, "kind": self.kind, "at": self.at, **self.data}

    def matches(self, kind: str | None, match: Mapping[str, Any]) -> bool:
        """True when the kind (if given) and every ``match`` item agree."""
        if kind is not None and self.kind != kind:
            return False
        return all(self.data.get(k) == v for k, v in match.items())


class EventLog:
    """Events in order, plus a way to wait until a condition holds."""

    def __init__(self, clock: Callable[[], float], limit: int = 100_000) -> None:
        self.clock = clock
        self.limit = limit
        self.events: list[Event] = []
        self._seq = 0
        self._waiters: set[asyncio.Event] = set()

    def emit(self, kind: str, **data: Any) -> Event:
        """Record an event and wake every waiter."""
        self._seq += 1
        event = Event(self._seq, kind, self.clock(), data)
        self.events.append(event)
        if len(self.events) > self.limit:
            del self.events[: len(self.events) - self.limit]
        self.poke()
        return event

    def poke(self) -> None:
        """Wake waiters so they re-check their condition (state changed without an event)."""
        for waiter in self._waiters:
            waiter.set()

    def since(self, seq: int = 0, kind: str | None = None) -> list[Event]:
        """Events after ``seq`` (optionally of one kind)."""
        return [e for e in self.events if e.seq > seq and (kind is None or e.kind == kind)]

    def count(self, kind: str | None = None, **match: Any) -> int:
        """How many recorded events match."""
        return sum(1 for e in self.events if e.matches(kind, match))

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Return when ``predicate()`` is true; ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate():
                waiter = asyncio.Event()
                self._waiters.add(waiter)
                try:
                    await waiter.wait()
                finally:
                    self._waiters.discard(waiter)

    async def wait_for(
        self, kind: str | None = None, *, count: int = 1, timeout: float = 10.0, **match: Any
    ) -> Event:
        """Wait until ``count`` matching events exist; return the ``count``-th one."""

        def ready() -> bool:
            return self.count(kind, **match) >= count

        await self.wait_until(ready, timeout)
        found = [e for e in self.events if e.matches(kind, match)]
        return found[count - 1]
