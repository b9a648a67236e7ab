"""The outbox: what the app sent that the server may not have yet (contract point 3).

Two queues:

* ``pending``: messages not sent on the current connection yet. They are sent only after
  ``setupComplete`` (the server drops or rejects anything earlier). Bounded: audio by total
  duration, everything else by count and bytes. Audio also has a time to live: a sentence
  spoken 20 s ago inside a tunnel is no longer worth sending, so it is dropped and counted.
* ``unconfirmed``: messages already sent since the newest resumable handle. A resume from
  that handle restores a state that does not contain them, so they are put back in front
  of ``pending`` and replayed. A new resumable handle confirms them (the server's state
  now includes them). Without ``lastConsumedClientMessageIndex`` (Vertex only) this is the
  best the wire allows: messages still in flight when the handle was issued count as
  confirmed.

Nothing leaves the outbox silently: every drop is returned to the caller (the machine),
which reports it as a ``SendDropped`` event and in the metrics.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

from tunnelproof.protocol.casing import get_field, to_camel
from tunnelproof.protocol.client_messages import Role, Turn, encode_client_message

JsonDict = dict[str, Any]


class MessageKind(StrEnum):
    """What an outgoing message is, for bounds and replay rules."""

    AUDIO = "audio"
    TEXT = "text"  # realtimeInput.text
    CLIENT_CONTENT = "client_content"
    TOOL_RESPONSE = "tool_response"
    REALTIME = "realtime"  # video, activity signals, audioStreamEnd
    RAW = "raw"


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


@dataclass(frozen=True, slots=True)
class OutboxLimits:
    """Bounds of the outbox.

    Attributes:
        max_audio_ms: queued audio beyond this is dropped oldest-first (the newest speech
            matters most after a gap).
        audio_ttl: audio older than this (seconds since the app sent it) is dropped
            instead of sent.
        max_messages: queued non-audio messages; a send beyond it is refused.
        max_bytes: queued non-audio bytes; a send beyond it is refused.
        max_unconfirmed_messages: sent-but-unconfirmed non-audio messages kept for replay.
    """

    max_audio_ms: float = 5_000.0
    audio_ttl: float = 5.0
    max_messages: int = 256
    max_bytes: int = 1 << 20
    max_unconfirmed_messages: int = 512


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message the app asked to send, with what the machine needs to know about it."""

    seq: int
    kind: MessageKind
    message: JsonDict
    wire: str
    created_at: float
    audio_ms: float = 0.0
    tool_ids: tuple[str, ...] = ()
    expects_reply: bool = False
    turns: tuple[Turn, ...] = ()
    was_sent: bool = False  # sent on some connection before (so a resend is a replay)

    @property
    def size(self) -> int:
        """Bytes on the wire."""
        return len(self.wire)


_RATE = re.compile(r"rate=(\d+)")


def make_outgoing(seq: int, message: Mapping[str, Any], now: float) -> Outgoing:
    """Classify a client message (camelCase or snake_case top-level key).

    Raises ``ValueError`` for a ``setup`` (the session owns it) or a message that does not
    hold exactly one client message kind.
    """
    if len(message) != 1:
        raise ValueError(f"a client message holds exactly one kind, got {list(message)}")
    key = next(iter(message))
    kind_name = to_camel(key)
    body = message[key]
    if not isinstance(body, Mapping):
        raise ValueError(f"{kind_name} must be an object")
    msg: JsonDict = dict(message)
    wire = encode_client_message(msg)
    if kind_name == "setup":
        raise ValueError("setup is sent by the session itself; do not send it")
    if kind_name == "realtimeInput":
        audio = get_field(body, "audio")
        if isinstance(audio, Mapping):
            data = get_field(audio, "data") or ""
            mime = get_field(audio, "mimeType") or ""
            match = _RATE.search(str(mime))
            rate = int(match.group(1)) if match else 16_000
            b64 = str(data)
            nbytes = len(b64) * 3 // 4 - (len(b64) - len(b64.rstrip("=")))
            ms = nbytes / (2 * rate) * 1000.0
            return Outgoing(seq, MessageKind.AUDIO, msg, wire, now, audio_ms=ms)
        text = get_field(body, "text")
        if isinstance(text, str):
            return Outgoing(
                seq,
                MessageKind.TEXT,
                msg,
                wire,
                now,
                expects_reply=True,
                turns=(Turn("user", text),),
            )
        ends_turn = get_field(body, "activityEnd") is not None or bool(
            get_field(body, "audioStreamEnd")
        )
        return Outgoing(seq, MessageKind.REALTIME, msg, wire, now, expects_reply=ends_turn)
    if kind_name == "clientContent":
        turns = tuple(_turns(get_field(body, "turns") or []))
        complete = bool(get_field(body, "turnComplete"))
        return Outgoing(
            seq, MessageKind.CLIENT_CONTENT, msg, wire, now, expects_reply=complete, turns=turns
        )
    if kind_name == "toolResponse":
        ids = tuple(
            str(get_field(r, "id"))
            for r in get_field(body, "functionResponses") or []
            if isinstance(r, Mapping) and get_field(r, "id")
        )
        return Outgoing(
            seq, MessageKind.TOOL_RESPONSE, msg, wire, now, tool_ids=ids, expects_reply=True
        )
    return Outgoing(seq, MessageKind.RAW, msg, wire, now)


def _turns(raw: Iterable[Any]) -> Iterable[Turn]:
    for turn in raw:
        if not isinstance(turn, Mapping):
            continue
        role: Role = "model" if get_field(turn, "role") == "model" else "user"
        texts = [
            str(get_field(p, "text"))
            for p in get_field(turn, "parts") or []
            if isinstance(p, Mapping) and isinstance(get_field(p, "text"), str)
        ]
        if texts:
            yield Turn(role, "".join(texts))


def without_tool_ids(item: Outgoing, ids: set[str]) -> Outgoing | None:
    """``item`` minus the function responses answering ``ids``; ``None`` if none is left."""
    if item.kind is not MessageKind.TOOL_RESPONSE or not ids.intersection(item.tool_ids):
        return item
    key = next(iter(item.message))
    body = item.message[key]
    responses = [
        r
        for r in get_field(body, "functionResponses") or []
        if not (isinstance(r, Mapping) and str(get_field(r, "id")) in ids)
    ]
    if not responses:
        return None
    message = {key: {**body, "functionResponses": responses}}
    return replace(
        item,
        message=message,
        wire=encode_client_message(message),
        tool_ids=tuple(i for i in item.tool_ids if i not in ids),
    )


@dataclass(slots=True)
class Outbox:
    """The two bounded queues described in the module docstring."""

    limits: OutboxLimits = field(default_factory=OutboxLimits)
    pending: deque[Outgoing] = field(default_factory=deque)
    unconfirmed: deque[Outgoing] = field(default_factory=deque)
    _unconfirmed_audio_ms: float = 0.0  # running total: mark_sent runs per audio chunk

    # -- sizes -------------------------------------------------------------------------

    def pending_audio_ms(self) -> float:
        """Total duration of queued audio."""
        return sum(i.audio_ms for i in self.pending if i.kind is MessageKind.AUDIO)

    def pending_other(self) -> tuple[int, int]:
        """(count, bytes) of queued non-audio messages."""
        items = [i for i in self.pending if i.kind is not MessageKind.AUDIO]
        return len(items), sum(i.size for i in items)

    def within_bounds(self) -> bool:
        """The invariant the machine keeps at all times."""
        count, size = self.pending_other()
        return (
            self.pending_audio_ms() <= self.limits.max_audio_ms + 1e-6
            and count <= self.limits.max_messages
            and size <= self.limits.max_bytes
            and len(self.unconfirmed) <= self.limits.max_unconfirmed_messages
            and self._unconfirmed_audio_ms <= self.limits.max_audio_ms + 1e-6
            and abs(self._unconfirmed_audio_ms - sum(i.audio_ms for i in self.unconfirmed)) < 1e-3
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

    def mark_sent(self, item: Outgoing) -> list[Outgoing]:
        """Record ``item`` as sent and unconfirmed; returns items too old to keep for replay."""
        self.unconfirmed.append(replace(item, was_sent=True))
        evicted: list[Outgoing] = []
        # Audio: keep only as much as the outbox could replay.
        self._unconfirmed_audio_ms += item.audio_ms
        while self._unconfirmed_audio_ms > self.limits.max_audio_ms + 1e-6:
            for index, queued in enumerate(self.unconfirmed):
                if queued.kind is MessageKind.AUDIO:
                    del self.unconfirmed[index]
                    self._unconfirmed_audio_ms -= queued.audio_ms
                    evicted.append(queued)
                    break
            else:  # pragma: no cover - the total only counts audio
                self._unconfirmed_audio_ms = 0.0
        while len(self.unconfirmed) > self.limits.max_unconfirmed_messages:
            oldest = self.unconfirmed.popleft()
            self._unconfirmed_audio_ms -= oldest.audio_ms
            evicted.append(oldest)
        return evicted

    def _recount(self) -> None:
        self._unconfirmed_audio_ms = sum(i.audio_ms for i in self.unconfirmed)

    def confirm(self, keep_last: int = 0) -> None:
        """A resumable handle arrived: the server's state holds what was sent before it.

        ``keep_last`` newest sends stay unconfirmed: the machine knows the handle was
        issued before the server read them (their reply is still due).
        """
        if keep_last <= 0:
            self.unconfirmed.clear()
            self._unconfirmed_audio_ms = 0.0
            return
        while len(self.unconfirmed) > keep_last:
            self.unconfirmed.popleft()
        self._recount()

    def requeue_unconfirmed(self, now: float) -> list[Outgoing]:
        """Put unconfirmed messages back in front of ``pending`` for replay.

        Returns what could not be kept (stale audio, or non-audio beyond the bounds).
        """
        replay = list(self.unconfirmed)
        self.unconfirmed.clear()
        self._unconfirmed_audio_ms = 0.0
        self.pending = deque([*replay, *self.pending])
        dropped = self.expire_audio(now)
        while self.pending_audio_ms() > self.limits.max_audio_ms:
            dropped.append(self._pop_oldest_audio())
        # Non-audio over the bounds: drop the oldest replays first (newest sends win).
        while True:
            count, size = self.pending_other()
            if count <= self.limits.max_messages and size <= self.limits.max_bytes:
                break
            for index, queued in enumerate(self.pending):
                if queued.kind is not MessageKind.AUDIO:
                    del self.pending[index]
                    dropped.append(queued)
                    break
        return dropped

    def remove_where(self, predicate: Any) -> list[Outgoing]:
        """Remove and return queued or unconfirmed items for which ``predicate(item)``."""
        removed = [i for i in (*self.unconfirmed, *self.pending) if predicate(i)]
        if removed:
            gone = {id(i) for i in removed}
            self.pending = deque(i for i in self.pending if id(i) not in gone)
            self.unconfirmed = deque(i for i in self.unconfirmed if id(i) not in gone)
            self._recount()
        return removed

    def drop_tool_answers(self, ids: set[str]) -> list[Outgoing]:
        """Strip answers to ``ids`` (tool calls the next server state never saw)."""
        dropped: list[Outgoing] = []
        for name in ("pending", "unconfirmed"):
            queue: deque[Outgoing] = getattr(self, name)
            kept: deque[Outgoing] = deque()
            for item in queue:
                trimmed = without_tool_ids(item, ids)
                if trimmed is None:
                    dropped.append(item)
                else:
                    kept.append(trimmed)
            setattr(self, name, kept)
        self._recount()
        return dropped

    def clear(self) -> list[Outgoing]:
        """Drop everything not yet sent (session closed)."""
        items = list(self.pending)
        self.pending.clear()
        self.unconfirmed.clear()
        self._unconfirmed_audio_ms = 0.0
        return items
