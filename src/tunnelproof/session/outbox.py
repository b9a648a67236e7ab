"""The outbox: what the app sent that the server may not have yet (contract point 3).

Two queues:

* ``pending``: messages not sent on the current connection yet. They are sent only after
  ``setupComplete`` (the server drops or rejects anything earlier). Bounded: audio by total
  duration, everything else by count and bytes. Audio also has a time to live: a sentence
  spoken 20 s ago inside a tunnel is no longer worth sending, so it is dropped and counted.
* ``unconfirmed``: messages already sent since the newest resumable handle (a
  :class:`~tunnelproof.session.replay.ReplayRecord`, which keeps audio chunks as plain
  values the garbage collector does not track). A resume from that handle restores a
  state that does not contain them, so they are put back in front of ``pending`` and
  replayed. A new resumable handle confirms them (the server's state now includes them).
  Without ``lastConsumedClientMessageIndex`` (Vertex only) this is the best the wire
  allows: messages still in flight when the handle was issued count as confirmed.

Nothing leaves the outbox silently: every drop is returned to the caller (the machine),
which reports it as a ``SendDropped`` event and in the metrics.

Audio is accounted for to the millisecond (issue 13): a chunk ends *delivered* (a
resumable handle issued after output that answers it), *replayed*, or *reported dropped*.
Two records make that possible without keeping every payload:

* ``unverified``: chunks that left the replay window (``unconfirmed`` keeps at most
  ``max_audio_ms`` of audio) before any evidence that the server holds them. Only their
  ``seq`` and duration are kept (two deques of numbers, nothing per chunk for the garbage
  collector); the next confirmation makes them delivered, a drop first makes them dropped
  ("sent into a link that died, too old to replay").
* :class:`AudioDropLedger`: drops during one outage (stale audio, bounds, the above) are
  gathered and reported as one ``SendDropped`` with the outage's total duration, not one
  event per 20 ms chunk.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from typing import Literal

from tunnelproof.session.outgoing import MessageKind, Outgoing
from tunnelproof.session.replay import ReplayRecord


@dataclass(frozen=True, slots=True)
class SendResult:
    """What happened to one ``send_*`` call. Never silent.

    ``status`` is ``"sent"`` (written to the live socket), ``"queued"`` (held until the
    session is ready; a later drop is reported with a ``SendDropped`` event carrying this
    ``seq``) or ``"dropped"`` (refused now, ``reason`` says why).
    """

    status: Literal["sent", "queued", "dropped"]
    seq: int
    reason: str | None = None

    @property
    def sent(self) -> bool:
        """Written to the live socket."""
        return self.status == "sent"

    @property
    def queued(self) -> bool:
        """Held for the next ready connection."""
        return self.status == "queued"

    @property
    def dropped(self) -> bool:
        """Refused; it will never be sent."""
        return self.status == "dropped"


# The largest client frame known to be accepted: the emulator's (Google's own limit is not
# documented; docs/emulator.md). A single message must fit the outbox, so max_bytes <= this.
MAX_CLIENT_FRAME_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class OutboxLimits:
    """Bounds of the outbox.

    Attributes:
        max_audio_ms: queued audio beyond this is dropped oldest-first (the newest speech
            matters most after a gap).
        audio_ttl: audio older than this (seconds since the app sent it) is dropped
            instead of sent.
        max_messages: queued non-audio messages; a send beyond it is refused.
        max_bytes: queued non-audio bytes; a send beyond it is refused, and a single
            message larger than it is refused in every phase (it could never be queued or
            replayed). At most :data:`MAX_CLIENT_FRAME_BYTES`.

    Every bound must be positive (numbers finite, counts integers): ``ValueError`` else.
        max_unconfirmed_messages: sent-but-unconfirmed non-audio messages kept for replay.
    """

    max_audio_ms: float = 5_000.0
    audio_ttl: float = 5.0
    max_messages: int = 256
    max_bytes: int = 1 << 20
    max_unconfirmed_messages: int = 512

    def __post_init__(self) -> None:
        # A zero, negative or nan bound refused every send (nan compares false, so a nan
        # bound let the queue grow without limit): refused here, where it was written.
        for name in ("max_audio_ms", "audio_ttl"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"OutboxLimits.{name} must be a positive number, got {value!r}")
        for name in ("max_messages", "max_bytes", "max_unconfirmed_messages"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"OutboxLimits.{name} must be an integer >= 1, got {value!r}")
        if self.max_bytes > MAX_CLIENT_FRAME_BYTES:
            raise ValueError(
                f"OutboxLimits.max_bytes must be <= {MAX_CLIENT_FRAME_BYTES} (the largest "
                f"client frame the server is known to accept), got {self.max_bytes!r}"
            )


@dataclass(frozen=True, slots=True)
class SentAudio:
    """A chunk that left the replay window unconfirmed: its seq and duration only."""

    seq: int
    audio_ms: float


# Beyond this many unverified chunks (about an hour of 20 ms chunks with no confirmation
# at all) the oldest are taken as delivered: memory stays bounded on endless monologues.
MAX_UNVERIFIED = 200_000


@dataclass(slots=True)
class AudioDropLedger:
    """Audio dropped during one outage, reported once when the outage ends."""

    seqs: list[int] = field(default_factory=list)
    audio_ms: float = 0.0
    reasons: list[str] = field(default_factory=list)

    def add(self, seqs: Iterable[int], audio_ms: float, reason: str) -> None:
        """Record dropped chunks and why."""
        before = len(self.seqs)
        self.seqs.extend(seqs)
        if len(self.seqs) == before:
            return
        self.audio_ms += audio_ms
        if reason not in self.reasons:
            self.reasons.append(reason)

    def take(self) -> tuple[tuple[int, ...], float, str] | None:
        """``(seqs, audio_ms, reason)`` of everything recorded, and start over."""
        if not self.seqs:
            return None
        out = (tuple(self.seqs), self.audio_ms, "; ".join(self.reasons))
        self.seqs, self.audio_ms, self.reasons = [], 0.0, []
        return out


@dataclass(slots=True)
class Outbox:
    """The two bounded queues described in the module docstring."""

    limits: OutboxLimits = field(default_factory=OutboxLimits)
    pending: deque[Outgoing] = field(default_factory=deque)
    unconfirmed: ReplayRecord = field(default_factory=ReplayRecord)
    # Chunks beyond the replay window, unconfirmed: seqs and durations at the same index.
    _unverified_seqs: deque[int] = field(default_factory=deque)
    _unverified_ms: deque[float] = field(default_factory=deque)

    # -- sizes -------------------------------------------------------------------------

    def pending_audio_ms(self) -> float:
        """Total duration of queued audio."""
        return sum(i.audio_ms for i in self.pending if i.kind is MessageKind.AUDIO)

    def pending_other(self) -> tuple[int, int]:
        """(count, bytes) of queued non-audio messages."""
        items = [i for i in self.pending if i.kind is not MessageKind.AUDIO]
        return len(items), sum(i.size for i in items)

    @property
    def unverified(self) -> list[SentAudio]:
        """Chunks sent beyond the replay window since the last confirmation, oldest first."""
        pairs = zip(self._unverified_seqs, self._unverified_ms, strict=True)
        return [SentAudio(seq, ms) for seq, ms in pairs]

    def within_bounds(self) -> bool:
        """The invariant the machine keeps at all times."""
        count, size = self.pending_other()
        record = self.unconfirmed
        return (
            self.pending_audio_ms() <= self.limits.max_audio_ms + 1e-6
            and count <= self.limits.max_messages
            and size <= self.limits.max_bytes
            and len(record) <= self.limits.max_unconfirmed_messages
            and record.audio_ms <= self.limits.max_audio_ms + 1e-6
            and abs(record.audio_ms - sum(record.durations)) < 1e-3
        )

    # -- operations --------------------------------------------------------------------

    def enqueue(self, item: Outgoing, now: float) -> tuple[SendResult, list[Outgoing]]:
        """Queue ``item``. Returns its result and any older items dropped to make room."""
        dropped = self.expire_audio(now)
        if item.kind is MessageKind.AUDIO:
            if item.audio_ms > self.limits.max_audio_ms:
                return SendResult(
                    "dropped", item.seq, "audio chunk longer than the outbox"
                ), dropped
            total = self.pending_audio_ms()
            while total + item.audio_ms > self.limits.max_audio_ms:
                oldest = self._pop_oldest_audio()
                total -= oldest.audio_ms
                dropped.append(oldest)
            self.pending.append(item)
            return SendResult("queued", item.seq), dropped
        count, size = self.pending_other()
        if count + 1 > self.limits.max_messages or size + item.size > self.limits.max_bytes:
            return SendResult("dropped", item.seq, "outbox full"), dropped
        self.pending.append(item)
        return SendResult("queued", item.seq), dropped

    def _pop_oldest_audio(self) -> Outgoing:
        for index, queued in enumerate(self.pending):
            if queued.kind is MessageKind.AUDIO:
                del self.pending[index]
                return queued
        raise AssertionError("no audio to drop")  # pragma: no cover - guarded by caller

    def expire_audio(self, now: float) -> list[Outgoing]:
        """Drop queued audio older than the TTL."""
        ttl = self.limits.audio_ttl
        # The queue is in the order the app sent (replays, older, go in front), so the
        # stale items are a prefix: stop at the first fresh one.
        stale: list[Outgoing] = []
        for item in self.pending:
            if now - item.created_at <= ttl:
                break
            if item.kind is MessageKind.AUDIO:
                stale.append(item)
        if stale:
            keep = {id(i) for i in stale}
            self.pending = deque(i for i in self.pending if id(i) not in keep)
        return stale

    def take_all(self, now: float) -> tuple[list[Outgoing], list[Outgoing]]:
        """Empty ``pending`` for sending: ``(to_send, dropped_as_stale)``."""
        dropped = self.expire_audio(now)
        items = list(self.pending)
        self.pending.clear()
        return items, dropped

    def mark_sent(self, item: Outgoing) -> list[int]:
        """Record ``item`` as sent and unconfirmed; returns the seqs of the chunks that left
        the replay record (too old to keep for replay: they are remembered as unverified)."""
        item.was_sent = True  # in place: the item left pending (or was never queued)
        record = self.unconfirmed
        record.append(item)
        evicted: list[int] = []
        # Audio: keep only as much as the outbox could replay.
        limit = self.limits.max_audio_ms + 1e-6
        while record.audio_ms > limit:
            if record.head_is_audio():  # the usual case (per chunk): the oldest is audio
                seq, ms, _ = record.popleft()
            else:
                index = record.first_audio()
                if index is None:  # pragma: no cover - the total only counts audio
                    record.audio_ms = 0.0
                    break
                seq, ms, _ = record.delete(index)
            evicted.append(seq)
            self._unverified(seq, ms)
        while len(record) > self.limits.max_unconfirmed_messages:
            seq, ms, is_audio = record.popleft()
            evicted.append(seq)
            if is_audio:
                self._unverified(seq, ms)
        return evicted

    def _unverified(self, seq: int, audio_ms: float) -> None:
        self._unverified_seqs.append(seq)
        self._unverified_ms.append(audio_ms)
        if len(self._unverified_seqs) > MAX_UNVERIFIED:
            self._unverified_seqs.popleft()
            self._unverified_ms.popleft()

    def take_unverified(self, before: int | None = None) -> list[SentAudio]:
        """Chunks sent beyond the replay window since the last confirmation (and forget);
        with ``before``, only those with a lower ``seq``."""
        seqs, durations = self._unverified_seqs, self._unverified_ms
        items: list[SentAudio] = []
        while seqs and (before is None or seqs[0] < before):
            items.append(SentAudio(seqs.popleft(), durations.popleft()))
        return items

    def confirm(self, keep_last: int = 0) -> list[int]:
        """The server's state holds what was sent before the ``keep_last`` newest sends.

        Returns the seqs confirmed (oldest first). The machine decides ``keep_last`` (see
        ``SessionMachine._confirm_delivery``): sends whose reply is still due were not read
        when the handle was issued.
        """
        return self.unconfirmed.pop_older(max(0, keep_last))

    def requeue_unconfirmed(self, now: float) -> list[Outgoing]:
        """Put unconfirmed messages back in front of ``pending`` for replay.

        Returns what could not be kept (stale audio, or non-audio beyond the bounds).
        """
        replay = self.unconfirmed.take_all()
        self.pending = deque([*replay, *self.pending])
        dropped = self.expire_audio(now)
        while self.pending_audio_ms() > self.limits.max_audio_ms:
            dropped.append(self._pop_oldest_audio())
        # Non-audio over the bounds: drop the newest first, as a full outbox refuses a new
        # send. What the server gets stays a prefix of what the app sent; dropping the
        # oldest replays instead cut the conversation's start (a turn whose answer the app
        # already had, unconfirmed because its handle comes ~40 ms after turnComplete).
        while True:
            count, size = self.pending_other()
            if count <= self.limits.max_messages and size <= self.limits.max_bytes:
                break
            for index in range(len(self.pending) - 1, -1, -1):
                queued = self.pending[index]
                if queued.kind is not MessageKind.AUDIO:
                    del self.pending[index]
                    dropped.append(queued)
                    break
        return dropped

    def remove_where(
        self, predicate: Callable[[Outgoing], bool], *, among: Container[int] | None = None
    ) -> list[Outgoing]:
        """Remove and return unconfirmed or queued items for which ``predicate(item)``
        (unconfirmed first, each oldest first); with ``among``, only items whose ``seq``
        is in it are considered (the replay record then rebuilds only those)."""
        record = self.unconfirmed
        sent = list(record) if among is None else record.select(among)
        queued = self.pending if among is None else [i for i in self.pending if i.seq in among]
        from_record = [i for i in sent if predicate(i)]
        from_pending = [i for i in queued if predicate(i)]
        if from_record:
            record.discard({i.seq for i in from_record})  # a seq is unique in the record
        if from_pending:
            # By identity, as before: a restore message takes the seq of the last send it
            # stands for (restore.py), so a seq need not be unique across the two queues.
            gone = {id(i) for i in from_pending}
            self.pending = deque(i for i in self.pending if id(i) not in gone)
        return from_record + from_pending

    def drop_tool_answers(self, ids: set[str]) -> list[Outgoing]:
        """Strip answers to ``ids`` (tool calls the next server state never saw)."""
        dropped: list[Outgoing] = []
        kept: deque[Outgoing] = deque()
        for item in self.pending:
            trimmed = item.without_tool_ids(ids)
            if trimmed is None:
                dropped.append(item)
            else:
                kept.append(trimmed)
        self.pending = kept
        record = self.unconfirmed
        gone: set[int] = set()
        for item in record.others():  # audio answers no tool call
            trimmed = item.without_tool_ids(ids)
            if trimmed is None:
                dropped.append(item)
                gone.add(item.seq)
            elif trimmed is not item:
                record.set_other(trimmed)
        record.discard(gone)
        return dropped

    def clear(self) -> list[Outgoing]:
        """Drop everything not yet sent (session closed)."""
        items = list(self.pending)
        self.pending.clear()
        self.unconfirmed.clear()
        return items
