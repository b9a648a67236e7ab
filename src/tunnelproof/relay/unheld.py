"""Device input the upstream's newest handle does not hold yet, and re-answers to hide.

Google's resumable handle that holds a turn comes 20-70 ms after ``turnComplete`` (reference
§10); a question asked inside that window starts a turn, and no handle holds the previous
one until that turn completes. A resume from the older handle therefore lacks questions
the device already got (complete) answers to:

* the upstream :class:`~tunnelproof.session.LiveSession` restores the turns it got
  complete as history after an upstream drop (``TurnsRestored``: nothing is answered again)
  and replays the rest (its outbox: ``unconfirmed`` messages); only when it knows nothing
  of a turn as text (``TurnsRestored.reasked``) does the model answer it again;
* a relay process that takes a conversation over from a dead owner has only what the old
  owner flushed to Redis: :meth:`UnheldInput.snapshot` is part of that state, and the new
  owner sends the messages again after resuming (:meth:`UnheldInput.carry`).

Either way the device must not hear an answer twice. Each message records whether the
device has seen a turn end since it was forwarded (``turnComplete``, interrupted or not).
When the upstream resumes, the number of distinct such turn ends among the replayed
messages is the number of model turns to withhold from the device: the re-answers, in
order (a replay is in order, and an answered message precedes the open one). A message
whose turn the device still has open (the answer was cut, ``interrupted`` without
``turnComplete``) is answered to the device afresh.

:class:`~tunnelproof.session.app_events.Delivered` (a handle now holds them) and
:class:`~tunnelproof.session.app_events.SendDropped` remove messages. Bounded by count and
*records* and bytes (oldest forgotten first, counted): beyond the bound a takeover may lose
context. A record is one typed message (text, a turn, a tool response, activity markers),
or a whole run of contiguous media chunks (consecutive device messages carrying only audio
or video, with no turn end between them): long speech with no upstream handle is one
record that grows, so the record bound counts things said, and speech is bounded by bytes
(2 MB: ~47 s of 16 kHz audio as base64 JSON), i.e. by time, whatever the chunk size. Each
chunk stays its own entry (each is written to Redis once, and a handle may hold part of a
run); a cap on entries (4096) guards against floods of tiny chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from tunnelproof.relay.wire import media_only
from tunnelproof.session import app_events as ev

MAX_RECORDS = 256  # typed messages, or runs of contiguous media chunks
MAX_BYTES = 2 * 1024 * 1024  # ~47 s of 16 kHz s16le audio as base64 JSON
MAX_ENTRIES = 4096  # messages, whatever their size (tiny chunks cost an entry each)

# Upstream events that belong to a model turn (what a re-answer consists of).
_TURN_EVENTS = (
    ev.AudioChunk,
    ev.TextDelta,
    ev.OutputTranscript,
    ev.InputTranscript,
    ev.GenerationComplete,
    ev.Interrupted,
    ev.TurnComplete,
)


@dataclass(slots=True)
class _Entry:
    message: dict[str, Any]
    size: int
    seq: int | None  # the upstream SendResult.seq; None while not sent (carried over)
    index: int  # the device message's number in the conversation (Conversation.received)
    closed_turn: int | None = None  # the device-visible turn end that followed it
    carried: bool = False  # from a previous owner, not sent upstream by this session yet
    restored: bool = False  # the upstream restored its answered turn as history (no re-answer)
    media: bool = False  # only audio/video chunks: contiguous ones make one record


def _continues(before: _Entry, entry: _Entry) -> bool:
    """``entry`` extends the record ``before`` ends: both media chunks, consecutive device
    messages, no turn end between them."""
    return (
        before.media
        and entry.media
        and entry.index == before.index + 1
        and entry.closed_turn == before.closed_turn
    )


def _count_records(entries: list[_Entry]) -> int:
    return sum(1 for i, e in enumerate(entries) if i == 0 or not _continues(entries[i - 1], e))


@dataclass(slots=True)
class UnheldInput:
    """Client messages since the upstream's newest holding handle (one conversation)."""

    max_records: int = MAX_RECORDS
    max_bytes: int = MAX_BYTES
    max_entries: int = MAX_ENTRIES
    entries: list[_Entry] = field(default_factory=list)
    turn_ends: int = 0  # turn ends the device has seen
    hiding: int = 0  # upstream turns still to withhold (re-answers)
    hidden_turns: int = 0  # counter: re-answers withheld
    forgotten: int = 0  # counter: messages evicted by the bounds
    version: int = 0  # bumps on every change (the Redis mirror writes only changes)
    _bytes: int = 0
    _records: int = 0
    # Kept up to date as entries come and go, so a flush costs what changed, not the whole
    # record (up to 4096 entries while long speech streams with no handle).
    _indices: set[int] = field(default_factory=set)
    _runs: list[list[Any]] | None = field(default_factory=list)  # None: recompute

    # -- recording ---------------------------------------------------------------------

    def forwarded(self, message: dict[str, Any], seq: int, index: int) -> None:
        """``message`` (device message ``index``) went to the upstream session as ``seq``."""
        entry = _Entry(message, len(orjson.dumps(message)), seq, index)
        entry.media = media_only(message)
        self._add(entry)

    def carry(self, snapshot: list[Any], *, first_index: int = 0) -> None:
        """Messages a previous owner had not seen held (its :meth:`snapshot`:
        ``[message, closed turn, index]``; items without an index are numbered from
        ``first_index``)."""
        for offset, item in enumerate(snapshot):
            message, closed = item[0], item[1]
            index = int(item[2]) if len(item) > 2 else first_index + offset
            entry = _Entry(dict(message), len(orjson.dumps(message)), None, index, carried=True)
            entry.media = media_only(entry.message)
            if closed is not None:
                entry.closed_turn = int(closed) - 1_000_000_000  # distinct from ours
            self._add(entry)

    def pending_carried(self) -> list[_Entry]:
        """Carried messages still to send upstream (in order)."""
        return [e for e in self.entries if e.carried and e.seq is None]

    def sent_carried(self, entry: _Entry, seq: int | None) -> None:
        """A carried message was queued upstream as ``seq`` (``None``: refused)."""
        if seq is None:
            self._remove(lambda e: e is entry)
        else:
            entry.seq = seq
            self.version += 1

    def turn_ended(self) -> None:
        """The device was sent a ``turnComplete``: every open message has its answer."""
        self.turn_ends += 1
        for entry in self.entries:
            if entry.closed_turn is None:
                entry.closed_turn = self.turn_ends
                self.version += 1
                self._runs = None
        self._records = _count_records(self.entries)

    def held(self, seqs: tuple[int, ...]) -> None:
        """A handle holds these sends (``Delivered``), or they were dropped."""
        wanted = set(seqs)
        self._remove(lambda e: e.seq in wanted)

    def context_reset(self) -> None:
        """A fresh upstream session: what was sent is in its seed, nothing is replayed."""
        # Carried messages (a takeover) have not been sent to any connection yet: they go
        # to the fresh session after its seed, and their re-answers are still hidden.
        self._remove(lambda e: not e.carried)
        self.hiding = 0

    def restored(self, seqs: tuple[int, ...]) -> None:
        """The upstream put the turns that answered these sends back as history
        (``TurnsRestored``): it will not answer them again, so nothing is to be hidden."""
        wanted = set(seqs)
        for entry in self.entries:
            if entry.seq in wanted:
                entry.restored = True

    def replayed(self) -> None:
        """The upstream (re)started and (re)sent the recorded messages: hide re-answers."""
        ends = {e.closed_turn for e in self.entries if e.closed_turn is not None and not e.restored}
        self.hiding = len(ends)
        for entry in self.entries:
            entry.carried = False
        self.version += 1

    # -- output ----------------------------------------------------------------------------

    def hide(self, event: ev.AppEvent) -> bool:
        """True when ``event`` belongs to a re-answer the device already has."""
        if self.hiding <= 0:
            return False
        if isinstance(event, ev.Rewound):
            # A re-answer was cut (another drop): its cut marker is no news to the device;
            # a tool call cancellation still is.
            return not event.cancelled_tool_call_ids
        if not isinstance(event, _TURN_EVENTS):
            return False
        if isinstance(event, ev.TurnComplete):
            self.hiding -= 1
            self.hidden_turns += 1
        return True

    def snapshot(self) -> list[list[Any]]:
        """JSON-able state for another relay process: ``[message, closed turn, index]``."""
        return [[e.message, e.closed_turn, e.index] for e in self.entries]

    def runs(self) -> list[list[Any]]:
        """The record without the messages, run-length encoded for the Redis mirror:
        ``[first index, last index, closed turn]`` per run of consecutive indices with the
        same turn end. While audio streams in (one message per 20-40 ms, no turn end) this
        is one run whose last index grows: a few bytes per flush, not the whole record."""
        if self._runs is None:
            self._runs = []
            for e in self.entries:
                self._extend_runs(e)
        return [list(run) for run in self._runs]

    def bodies(self) -> dict[int, dict[str, Any]]:
        """The recorded messages by index (the mirror writes each once)."""
        return {e.index: e.message for e in self.entries}

    def messages_after(self, index: int) -> list[tuple[int, dict[str, Any]]]:
        """``(index, message)`` of the entries numbered above ``index`` (the mirror's new
        bodies: entries are kept in index order, so only the newest are looked at)."""
        newer: list[tuple[int, dict[str, Any]]] = []
        for e in reversed(self.entries):
            if e.index <= index:
                break
            newer.append((e.index, e.message))
        newer.reverse()
        return newer

    @property
    def indices(self) -> set[int]:
        """The indices held (read only: the mirror's deletions are its set minus these)."""
        return self._indices

    # -- internals ---------------------------------------------------------------------

    @property
    def records(self) -> int:
        """Records held: typed messages, and runs of contiguous media chunks."""
        return self._records

    @property
    def size_bytes(self) -> int:
        """Bytes of the messages held (their JSON)."""
        return self._bytes

    def _add(self, entry: _Entry) -> None:
        if not (self.entries and _continues(self.entries[-1], entry)):
            self._records += 1
        self.entries.append(entry)
        self._bytes += entry.size
        self._indices.add(entry.index)
        if self._runs is not None:
            self._extend_runs(entry)
        self.version += 1
        while self.entries and (
            self._records > self.max_records
            or self._bytes > self.max_bytes
            or len(self.entries) > self.max_entries
        ):
            gone = self.entries.pop(0)
            self._bytes -= gone.size
            self._indices.discard(gone.index)
            if self._runs is not None:  # the first run loses its first index
                first = self._runs[0]
                if first[0] == first[1]:
                    self._runs.pop(0)
                else:
                    first[0] += 1
            self.forgotten += 1
            if not (self.entries and _continues(gone, self.entries[0])):
                self._records -= 1  # the record's last entry went

    def _remove(self, doomed: Any) -> None:
        kept = [e for e in self.entries if not doomed(e)]
        if len(kept) != len(self.entries):
            self.entries = kept
            self._bytes = sum(e.size for e in kept)
            self._records = _count_records(kept)
            self._indices = {e.index for e in kept}
            self._runs = None
            self.version += 1

    def _extend_runs(self, e: _Entry) -> None:
        runs = self._runs
        assert runs is not None
        if runs and runs[-1][1] == e.index - 1 and runs[-1][2] == e.closed_turn:
            runs[-1][1] = e.index
        else:
            runs.append([e.index, e.index, e.closed_turn])
