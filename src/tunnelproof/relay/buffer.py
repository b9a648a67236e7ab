"""The per-conversation output buffer: every server message the relay produced, by sequence.

The relay cannot know what a device received until the device comes back with a handle,
so it keeps recent output whether or not a device is attached, bounded by total bytes and
by age. A resume from position ``seq`` gets ``seq + 1`` onwards. When a bound pushes out
output that a device may still need, it is counted (``evicted``), and a resume that needed
it learns exactly how many messages it lost (:attr:`Replay.missing`): never silently.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class BufferLimits:
    """Bounds of one conversation's buffer."""

    max_bytes: int = 8 * 1024 * 1024  # ~2.5 min of 24 kHz audio as base64 JSON
    max_age: float = 120.0  # seconds a message is kept for a returning device


@dataclass(frozen=True, slots=True)
class Replay:
    """What a resume from a position gets: the frames, and how many were lost to a bound."""

    frames: tuple[tuple[int, bytes], ...]
    missing: int


@dataclass(slots=True)
class _Entry:
    seq: int
    data: bytes
    at: float


@dataclass(slots=True)
class OutputBuffer:
    """Sequence-numbered server frames (encoded JSON), oldest first."""

    limits: BufferLimits = field(default_factory=BufferLimits)
    clock: Callable[[], float] = time.monotonic
    last_seq: int = 0
    evicted: int = 0
    evicted_bytes: int = 0
    _entries: deque[_Entry] = field(default_factory=deque)
    _bytes: int = 0

    def append(self, data: bytes) -> int:
        """Store one frame; returns its sequence number (1, 2, ...)."""
        self.last_seq += 1
        self._entries.append(_Entry(self.last_seq, data, self.clock()))
        self._bytes += len(data)
        self._trim()
        return self.last_seq

    def since(self, seq: int) -> Replay:
        """Frames after ``seq``, and the count of those already evicted."""
        self._trim()
        first = self._entries[0].seq if self._entries else self.last_seq + 1
        missing = max(0, min(first, self.last_seq + 1) - (seq + 1))
        frames = tuple((e.seq, e.data) for e in self._entries if e.seq > seq)
        return Replay(frames, missing)

    def forget_through(self, seq: int) -> None:
        """Drop frames up to ``seq`` (a device proved it has them)."""
        while self._entries and self._entries[0].seq <= seq:
            self._bytes -= len(self._entries.popleft().data)

    @property
    def first_seq(self) -> int:
        """The oldest sequence number held (``last_seq + 1`` when empty)."""
        return self._entries[0].seq if self._entries else self.last_seq + 1

    def restore(self, frames: list[tuple[int, bytes]], last_seq: int) -> None:
        """Load frames another process buffered (a takeover); they count as new for age."""
        now = self.clock()
        self._entries.clear()
        self._bytes = 0
        for seq, data in frames:
            self._entries.append(_Entry(seq, data, now))
            self._bytes += len(data)
        self.last_seq = max(last_seq, frames[-1][0] if frames else 0)
        self._trim()

    @property
    def size_bytes(self) -> int:
        """Bytes held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def _trim(self) -> None:
        horizon = self.clock() - self.limits.max_age
        while self._entries and (
            self._bytes > self.limits.max_bytes or self._entries[0].at < horizon
        ):
            gone = self._entries.popleft()
            self._bytes -= len(gone.data)
            self.evicted += 1
            self.evicted_bytes += len(gone.data)
