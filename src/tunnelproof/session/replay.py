"""The replay record: messages sent since the newest resumable handle, in send order.

A resume from that handle restores a state that lacks them, so they are sent again
(:meth:`Outbox.requeue_unconfirmed <tunnelproof.session.outbox.Outbox.requeue_unconfirmed>`).
In a voice session almost all of it is audio: 50 chunks a second per session, each kept
for up to ``OutboxLimits.max_audio_ms`` (5 s). Kept as objects (an ``Outgoing``, its
``ClientMessage`` and the two dicts of its body), that was four objects per chunk that the
cyclic garbage collector tracks and promotes to its oldest generation, where they die: at
45 sessions 9-11% of a streaming client's CPU went to collections, and a full one over the
~200k tracked objects paused the event loop for 50-110 ms, longer than five chunk periods
(docs/performance.md, issue 15).

So a chunk is kept as what replaying and accounting need, in parallel deques of values the
collector does not track: its ``seq``, its encoded ``wire`` text, its duration and when the
app sent it. Other messages (text, tool responses: few, and with turns and tool ids the
session needs) keep their :class:`~tunnelproof.session.outgoing.Outgoing` too. Iterating the
record gives ``Outgoing`` items, rebuilt for audio (the body read back from the wire text
that was sent); only the rare paths (a drop, a close, a rejected message) iterate it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Container, Iterator

import orjson

from tunnelproof.session.outgoing import ClientMessage, MessageKind, Outgoing


class ReplayRecord:
    """Sent, unconfirmed messages, oldest first (see the module docstring).

    Every entry has a ``seq``, audio duration (0 for non-audio), creation time and, for
    audio, its ``wire`` text at the same index of four deques; a non-audio entry has its
    ``Outgoing`` (wire text included) in ``_others`` under its ``seq`` (sequence numbers are
    unique) and an empty string in the ``wire`` deque.
    """

    __slots__ = ("_built", "_created", "_ms", "_others", "_seqs", "_wires", "audio_ms")

    def __init__(self) -> None:
        self._seqs: deque[int] = deque()
        self._wires: deque[str] = deque()
        self._ms: deque[float] = deque()
        self._created: deque[float] = deque()
        self._others: dict[int, Outgoing] = {}
        # Audio entries rebuilt as Outgoing by a rare path, kept while they are held: the
        # record gives the same object for an entry every time (as a deque of items did),
        # so a caller may compare identities across two iterations.
        self._built: dict[int, Outgoing] = {}
        self.audio_ms = 0.0
        """Total duration of the audio held (a running total: kept per 20 ms chunk)."""

    # -- reading ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._seqs)

    def __bool__(self) -> bool:
        return bool(self._seqs)

    def __iter__(self) -> Iterator[Outgoing]:
        """The entries as ``Outgoing`` items (``was_sent``), oldest first."""
        for index in range(len(self._seqs)):
            yield self._item(index)

    @property
    def seqs(self) -> deque[int]:
        """The entries' sequence numbers, oldest first (read-only by convention)."""
        return self._seqs

    @property
    def durations(self) -> deque[float]:
        """The entries' audio durations (0 for non-audio), oldest first (read-only)."""
        return self._ms

    def head_is_audio(self) -> bool:
        """The oldest entry is an audio chunk (the usual case while audio streams)."""
        return bool(self._seqs) and self._seqs[0] not in self._others

    def first_audio(self) -> int | None:
        """Index of the oldest audio chunk, or ``None``."""
        others = self._others
        for index, seq in enumerate(self._seqs):
            if seq not in others:
                return index
        return None

    def select(self, seqs: Container[int]) -> list[Outgoing]:
        """The entries numbered in ``seqs`` as ``Outgoing`` items, oldest first (only those
        are rebuilt)."""
        return [self._item(i) for i, seq in enumerate(self._seqs) if seq in seqs]

    def others(self) -> list[Outgoing]:
        """The non-audio entries, oldest first."""
        others = self._others
        return [others[seq] for seq in self._seqs if seq in others]

    def _item(self, index: int) -> Outgoing:
        seq = self._seqs[index]
        item = self._others.get(seq) or self._built.get(seq)
        if item is None:
            wire = self._wires[index]
            message = ClientMessage(MessageKind.AUDIO, orjson.loads(wire), self._ms[index])
            item = self._built[seq] = Outgoing(
                seq, message, wire, self._created[index], was_sent=True
            )
        return item

    # -- changing --------------------------------------------------------------------------

    def append(self, item: Outgoing) -> None:
        """Record ``item`` (just sent) as the newest entry."""
        message = item.message
        ms = message.audio_ms
        self._seqs.append(item.seq)
        self._ms.append(ms)
        self._created.append(item.created_at)
        if message.kind is MessageKind.AUDIO:
            self._wires.append(item.wire)
        else:
            self._wires.append("")
            self._others[item.seq] = item
        self.audio_ms += ms

    def appendleft(self, item: Outgoing) -> None:
        """Record ``item`` (sent, or standing for sent ones) as the oldest entry."""
        ms = item.message.audio_ms
        self._seqs.appendleft(item.seq)
        self._ms.appendleft(ms)
        self._created.appendleft(item.created_at)
        if item.kind is MessageKind.AUDIO:
            self._wires.appendleft(item.wire)
            self._built[item.seq] = item
        else:
            self._wires.appendleft("")
            self._others[item.seq] = item
        self.audio_ms += ms

    def popleft(self) -> tuple[int, float, bool]:
        """Remove the oldest entry: ``(seq, audio_ms, is_audio)``, without building it."""
        seq = self._seqs.popleft()
        self._wires.popleft()
        ms = self._ms.popleft()
        self._created.popleft()
        self.audio_ms -= ms
        if self._built:
            self._built.pop(seq, None)
        return seq, ms, self._others.pop(seq, None) is None

    def delete(self, index: int) -> tuple[int, float, bool]:
        """Remove the entry at ``index``: ``(seq, audio_ms, is_audio)``."""
        seq = self._seqs[index]
        ms = self._ms[index]
        del self._seqs[index], self._wires[index], self._ms[index], self._created[index]
        self.audio_ms -= ms
        self._built.pop(seq, None)
        return seq, ms, self._others.pop(seq, None) is None

    def pop_older(self, keep_last: int) -> list[int]:
        """Remove all but the ``keep_last`` newest entries; their seqs, oldest first."""
        taken: list[int] = []
        while len(self._seqs) > keep_last:
            taken.append(self.popleft()[0])
        self.recount()
        return taken

    def take_all(self) -> list[Outgoing]:
        """Remove every entry and return them as ``Outgoing`` items, oldest first."""
        items = list(self)
        self.clear()
        return items

    def discard(self, seqs: Container[int]) -> None:
        """Remove the entries numbered in ``seqs`` (none is rebuilt)."""
        rows = [
            row
            for row in zip(self._seqs, self._wires, self._ms, self._created, strict=True)
            if row[0] not in seqs
        ]
        if len(rows) == len(self._seqs):
            return
        others = self._others
        kept = {row[0] for row in rows}
        self._others = {seq: item for seq, item in others.items() if seq in kept}
        self._built = {seq: item for seq, item in self._built.items() if seq in kept}
        self._seqs = deque(row[0] for row in rows)
        self._wires = deque(row[1] for row in rows)
        self._ms = deque(row[2] for row in rows)
        self._created = deque(row[3] for row in rows)
        self.recount()

    def set_other(self, item: Outgoing) -> None:
        """Put ``item`` in place of the non-audio entry with its ``seq`` (a trimmed copy:
        the same message minus some tool answers)."""
        if item.seq not in self._others or item.kind is MessageKind.AUDIO:
            raise ValueError(f"no non-audio entry {item.seq} to replace")
        self._others[item.seq] = item

    def clear(self) -> None:
        """Forget every entry."""
        self._seqs.clear()
        self._wires.clear()
        self._ms.clear()
        self._created.clear()
        self._others.clear()
        self._built.clear()
        self.audio_ms = 0.0

    def recount(self) -> None:
        """Set the running total to the sum of the durations held (after removals)."""
        self.audio_ms = sum(self._ms)
