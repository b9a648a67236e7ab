"""``DuplicateCheck``: which device messages are replays of what the relay already has.

A reconnecting tunnelproof client re-sends what it cannot prove the server holds. The relay
remembers a digest of every device message it received (the newest 4096, with their
numbers in the conversation; mirrored to Redis, so a new owner checks as the old one did).

* **Named messages** (a tunnelproof client on a relay connection names each message,
  :mod:`tunnelproof.protocol.relay_setup`): the digest is of the name, so a replay is
  recognised exactly, wherever it falls, and a message sent again on purpose (same bytes,
  a new name) is new. A restarted client names its messages afresh.
* **Unnamed messages** (google-genai, the seed's client, raw clients): the digest is of the
  content. A resume arms a window: the digests of the messages received after the device's
  handle (its ``received`` count). A message matching the next of those (greedy, in order:
  the replay is the tail of what it sent) is dropped; the first that matches none ends the
  check. Byte-identical content sent on purpose right after a resume, while the window is
  armed, is taken for a replay: the known limit of clients that name nothing.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field

from tunnelproof.relay import wire

RING = 4096  # device messages remembered


def content_digest(message: wire.JsonDict) -> bytes:
    """The digest of an unnamed message (its encoded content)."""
    return hashlib.blake2b(wire.encode(message), digest_size=16).digest()


def name_digest(name: str) -> bytes:
    """The digest of a named message (its name; distinct from any content digest)."""
    return hashlib.blake2b(b"name:" + name.encode(), digest_size=16).digest()


@dataclass(slots=True)
class DuplicateCheck:
    """One conversation's record of received device messages and the armed window."""

    ring: deque[tuple[int, bytes]] = field(default_factory=lambda: deque(maxlen=RING))
    window: deque[bytes] = field(default_factory=deque)
    _seen: dict[bytes, int] = field(default_factory=dict)  # digest -> count in the ring

    def remember(self, index: int, digest: bytes) -> None:
        """Device message ``index`` was received (and forwarded)."""
        if len(self.ring) == RING:
            self._forget(self.ring[0][1])
        self.ring.append((index, digest))
        self._seen[digest] = self._seen.get(digest, 0) + 1

    def load(self, digests: list[tuple[int, bytes]]) -> None:
        """Add digests another owner recorded (a takeover)."""
        for index, digest in sorted(digests):
            self.remember(index, digest)

    def arm(self, received_at_handle: int) -> None:
        """A device resumes from a handle that counted ``received_at_handle`` messages."""
        self.window = deque(d for i, d in self.ring if i >= received_at_handle)

    def after(self, index: int) -> list[tuple[int, bytes]]:
        """``(index, digest)`` of the messages numbered above ``index`` (still kept)."""
        # From the newest back: a flush asks for the few since the last one, not all 4096.
        newer: list[tuple[int, bytes]] = []
        for item in reversed(self.ring):
            if item[0] <= index:
                break
            newer.append(item)
        newer.reverse()
        return newer

    def named_replay(self, digest: bytes) -> bool:
        """A named message: ``True`` when the relay already received it (a replay)."""
        return digest in self._seen

    def content_replay(self, digest: bytes) -> bool:
        """An unnamed message: ``True`` when it matches the armed window (dropped)."""
        window = self.window
        for position, candidate in enumerate(window):
            if candidate == digest:
                for _ in range(position + 1):
                    window.popleft()
                return True
        window.clear()  # the replay is over: this message is new
        return False

    def _forget(self, digest: bytes) -> None:
        left = self._seen.get(digest, 0) - 1
        if left > 0:
            self._seen[digest] = left
        else:
            self._seen.pop(digest, None)
