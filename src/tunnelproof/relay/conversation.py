"""``Conversation``: one device conversation, its upstream LiveSession and its output.

One object per conversation owns:

* the upstream :class:`~tunnelproof.session.LiveSession` (so upstream drops, goAway and
  1007 are handled exactly as for any tunnelproof client), started on the first device
  setup, closed after the device has been gone for the grace period, reopened from the
  handle store when a device resumes later;
* the :class:`~tunnelproof.relay.buffer.OutputBuffer`: every server message, numbered;
* at most one attached device (:class:`DeviceSink`). A device resuming while an older
  socket still looks attached takes over: the old socket is half-open (the device itself
  just proved it is gone) and is closed.

Duplicates from a device's replay: :mod:`tunnelproof.relay.dedup` (a tunnelproof client
names each message, so its replays are recognised exactly; other clients get the rule by
content after a resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tunnelproof.protocol.config import LiveConfig
from tunnelproof.protocol.relay_setup import relay_note
from tunnelproof.relay import wire
from tunnelproof.relay.buffer import OutputBuffer
from tunnelproof.relay.dedup import DuplicateCheck, content_digest, name_digest
from tunnelproof.relay.handles import HandleCodec, RelayHandle
from tunnelproof.relay.settings import RelaySettings
from tunnelproof.relay.unheld import UnheldInput
from tunnelproof.session import app_events as ev
from tunnelproof.session.credentials import TokenSource
from tunnelproof.session.handle_store import HandleStore
from tunnelproof.session.live_session import LiveSession

log = logging.getLogger("tunnelproof.relay")


class DeviceSink(Protocol):
    """The conversation's view of an attached device socket."""

    def push(self, data: bytes) -> bool:
        """Queue one frame; ``False`` when the device is not draining (it is then dropped)."""
        ...

    def kick(self, code: int, reason: str) -> None:
        """Close the device socket (it has been replaced or the conversation ended)."""
        ...


@dataclass(slots=True)
class ConversationStats:
    """Counters of one conversation (also summed by the server)."""

    device_attaches: int = 0
    device_resumes: int = 0
    takeovers: int = 0
    replayed_frames: int = 0
    lost_to_bounds: int = 0  # frames a returning device needed but the buffer had evicted
    resumes_not_intact: int = 0  # resumes told output they missed was lost (resumedIntact)
    duplicates_dropped: int = 0
    upstream_drops: int = 0  # client messages the upstream session refused
    upstream_opens: int = 0
    parked: int = 0
    reanswers_withheld: int = 0  # model turns re-answering what the device already had
    unheld_forgotten: int = 0  # unheld device messages evicted by the bounds (context risk)
    input_lost_to_owner_death: int = 0  # device messages a killed owner never recorded


@dataclass(slots=True)
class Conversation:
    """One conversation (the server builds it); all methods run on one event loop."""

    id: str
    user_id: str
    config: LiveConfig
    settings: RelaySettings
    codec: HandleCodec
    token_source: TokenSource
    handle_store: HandleStore
    session_factory: Callable[..., LiveSession] = LiveSession
    buffer: OutputBuffer = field(init=False)
    stats: ConversationStats = field(default_factory=ConversationStats)
    upstream: LiveSession | None = None
    device: DeviceSink | None = None
    device_wants_handles: bool = True
    received: int = 0
    setup: wire.JsonDict = field(default_factory=dict)  # the device's setup (for handover)
    generating: bool = False  # a model turn is in progress upstream
    closed: bool = False
    last_active: float = field(default_factory=time.monotonic)
    on_closed: Callable[[Conversation], None] | None = None
    duplicates: DuplicateCheck = field(default_factory=DuplicateCheck)
    _pump: asyncio.Task[None] | None = None
    _grace: asyncio.TimerHandle | None = None
    _closer: asyncio.Future[None] | None = None
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _boundary: asyncio.Event = field(default_factory=asyncio.Event)
    _failure: str | None = None
    unheld: UnheldInput = field(default_factory=UnheldInput)
    # Scale-out: write the conversation's shared record now (RedisCoordinator.flush). Called
    # after each device message that is not a media chunk, so a typed text, a turn or a
    # tool response is recorded within one Redis round trip, not one flush interval.
    record: Callable[[str], Awaitable[None]] | None = None
    _unheld_warned_at: float = -math.inf  # the bound's warning is rate-limited

    def __post_init__(self) -> None:
        self.buffer = OutputBuffer(self.settings.buffer)

    # -- upstream ---------------------------------------------------------------------

    async def open_upstream(self) -> None:
        """Start the upstream LiveSession (resuming from the handle store if it has one)."""
        if self.upstream is not None or self.closed:
            return
        self._ready.clear()
        self._failure = None
        session = self.session_factory(
            self.config,
            self.token_source,
            conversation_id=self.id,
            handle_store=self.handle_store,
            watchdogs=self.settings.upstream_watchdogs,
            limits=self.settings.upstream_outbox,
        )
        self.upstream = session
        self.stats.upstream_opens += 1
        await session.start()
        await self._send_carried(session)
        self._pump = asyncio.create_task(self._run_pump(session), name=f"relay-pump-{self.id}")

    async def _send_carried(self, session: LiveSession) -> None:
        # What a previous owner relayed but no upstream handle holds: first in the outbox,
        # before anything the device sends now (see relay/unheld.py).
        for entry in self.unheld.pending_carried():
            result = await session.send_raw(entry.message)
            self.unheld.sent_carried(entry, None if result.dropped else result.seq)
            if result.dropped:
                self.stats.upstream_drops += 1
                log.warning("[%s] upstream refused a carried message: %s", self.id, result.reason)

    def carry(self, snapshot: list[Any], digests: list[tuple[int, bytes]] | None = None) -> None:
        """Take over a dead owner's unheld device messages (its flushed record) and the
        digests of what it received (the shared duplicate check).

        ``self.received`` must be restored first. The digests arm the duplicate check: a
        device replaying a message the old owner received (and flushed) does not make it
        reach Gemini twice; the unheld ones the new owner sends again itself.
        """
        known = {index for index, _ in digests or []}
        self.duplicates.load(digests or [])
        first = self.received - len(snapshot)
        self.unheld.carry(snapshot, first_index=first)
        for entry in self.unheld.pending_carried():
            if entry.index not in known:  # a record without digests (older owner)
                self.duplicates.remember(entry.index, content_digest(entry.message))

    def digests_after(self, index: int) -> list[tuple[int, bytes]]:
        """``(index, digest)`` of the device messages numbered above ``index`` (still kept)."""
        return self.duplicates.after(index)

    async def wait_ready(self, timeout: float) -> str | None:
        """Wait for the upstream session; ``None`` when ready, else why it is not."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        if self._failure is not None:
            return self._failure
        return None if self._ready.is_set() else "upstream did not become ready in time"

    async def _run_pump(self, session: LiveSession) -> None:
        async for event in session.events():  # outlives Failed: the relay resumes upstream
            if isinstance(event, ev.Connected | ev.Resumed):
                self.unheld.replayed()
                self._ready.set()
                if isinstance(event, ev.Connected) and not event.first:
                    log.warning("[%s] upstream context was lost (fresh session)", self.id)
            elif isinstance(event, ev.ContextReset):
                self.unheld.context_reset()
                log.warning("[%s] upstream context reset: %s", self.id, event.reason)
            elif isinstance(event, ev.Failed):
                self._failure = f"upstream failed: {event.verdict.advice}"
                self._ready.set()
                log.error("[%s] %s", self.id, self._failure)
                self._end_device(1011, "Internal error encountered.")
                continue
            elif isinstance(event, ev.TurnsRestored) and not event.reasked:
                self.unheld.restored(event.seqs)
            elif isinstance(event, ev.Delivered):
                self.unheld.held(event.seqs)
            elif isinstance(event, ev.SendDropped):
                self.unheld.held(event.seqs)
                self.stats.upstream_drops += len(event.seqs)
                log.warning(
                    "[%s] upstream dropped %d device message(s): %s",
                    self.id,
                    len(event.seqs),
                    event.reason,
                )
            self._track_turn(event)
            if self.unheld.hide(event):
                self.stats.reanswers_withheld = self.unheld.hidden_turns
                continue  # a re-answer the device already has (relay/unheld.py)
            for message in wire.server_messages(event):
                self._publish(wire.encode(message))
                if (message.get("serverContent") or {}).get("turnComplete"):
                    self.unheld.turn_ended()

    def _track_turn(self, event: ev.AppEvent) -> None:
        if isinstance(event, ev.AudioChunk | ev.TextDelta | ev.OutputTranscript):
            self.generating = True
            self._boundary.clear()
        elif isinstance(event, ev.TurnComplete | ev.ToolCallRequested | ev.Rewound):
            self.generating = False
            self._boundary.set()

    async def until_turn_boundary(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until no model turn is in progress and it is held.

        Held: the upstream's newest resumable handle was issued after the last turn ended.
        Google sends that handle some 20-70 ms after ``turnComplete``; closing the upstream
        before it arrives would store (or hand over) a handle whose state lacks the turn.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self.generating:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._boundary.wait(), timeout)
        if self.generating:
            return False
        session = self.upstream
        if session is not None:
            # Polled: the handle is session state, not an event (bounded by ``timeout``).
            for _ in range(max(0, math.ceil((deadline - loop.time()) / 0.01))):
                if session.last_turn_held:
                    break
                await asyncio.sleep(0.01)
        return True

    def state(self) -> dict[str, object]:
        """What another relay process needs to take this conversation over (besides the
        buffer, the unheld record and the digests, which the coordinator mirrors itself)."""
        return {
            "user": self.user_id,
            "setup": self.setup,
            "last_seq": self.buffer.last_seq,
            "received": self.received,
            # a withheld re-answer in progress is no turn the device must be told was cut
            "generating": self.generating and self.unheld.hiding == 0,
        }

    def report_cut_turn(self) -> None:
        """Tell the device the turn in progress ended (its producer died mid-turn)."""
        self.generating = False
        self._publish(wire.encode({"serverContent": {"interrupted": True}}))
        self._publish(wire.encode({"serverContent": {"turnComplete": True}}))
        self.unheld.turn_ended()

    def _publish(self, data: bytes) -> None:
        seq = self.buffer.append(data)
        self.last_active = time.monotonic()
        device = self.device
        if device is not None and not self._send_frame(device, seq, data):
            self.detach(device, reason="device not draining")

    def _send_frame(self, device: DeviceSink, seq: int, data: bytes) -> bool:
        if not self.device_wants_handles:
            return device.push(data)
        update = self._handle_update(seq)
        if self.settings.handle_in_frame:
            # One frame carries the message and the handle naming it, so no cut can fall
            # between them (a cut there would make the resume replay this frame twice).
            return device.push(data[:-1] + b',"sessionResumptionUpdate":' + update + b"}")
        return device.push(data) and device.push(b'{"sessionResumptionUpdate":' + update + b"}")

    def _handle_update(self, seq: int) -> bytes:
        handle = self.codec.encode(RelayHandle(self.id, self.user_id, seq, self.received))
        return wire.encode(wire.resumption_update(handle)["sessionResumptionUpdate"])

    def _handle_frame(self, seq: int) -> bytes:
        return b'{"sessionResumptionUpdate":' + self._handle_update(seq) + b"}"

    async def close_upstream(self) -> None:
        """Close the upstream session; its handle stays in the store for a later resume."""
        session, self.upstream = self.upstream, None
        pump, self._pump = self._pump, None
        if session is not None:
            await session.close()
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump

    # -- devices ----------------------------------------------------------------------

    def attach(
        self, device: DeviceSink, *, position: RelayHandle | None, wants_handles: bool
    ) -> None:
        """Attach ``device``: queue what it missed after ``position``, then go live.

        Queues ``setupComplete`` first, with the relay's note (:mod:`~tunnelproof.protocol.
        relay_setup`): the device's turn goes on through its drop, and whether this resume
        replays everything it missed (``resumedIntact``), so a tunnelproof client reports a
        cut answer (``Rewound``) only when one is lost. Synchronous on purpose: no upstream
        frame can slip in between the replay and the live stream.
        """
        self.last_active = time.monotonic()
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        old = self.device
        if old is not None and old is not device:
            self.stats.takeovers += 1
            old.kick(1000, "replaced by a newer connection of this device")
        self.device = device
        self.device_wants_handles = wants_handles
        self.stats.device_attaches += 1
        start = 0 if position is None else position.seq
        replay = self.buffer.since(start)
        intact = None if position is None else not replay.missing
        device.push(wire.encode({"setupComplete": relay_note(resumed_intact=intact)}))
        if position is not None:
            self.stats.device_resumes += 1
            self.duplicates.arm(position.received)
        if wants_handles:
            device.push(self._handle_frame(start))
        if replay.missing:
            self.stats.lost_to_bounds += replay.missing
            self.stats.resumes_not_intact += 1
            log.warning(
                "[%s] %d message(s) the device missed were evicted by the buffer bounds",
                self.id,
                replay.missing,
            )
        for seq, data in replay.frames:
            if not self._send_frame(device, seq, data):
                self.detach(device, reason="device not draining", kick=True)
                return
        self.stats.replayed_frames += len(replay.frames)
        # Everything up to the device's position is proven delivered.
        self.buffer.forget_through(start)

    def detach(self, device: DeviceSink, *, reason: str, kick: bool = False) -> None:
        """``device`` is gone; keep the upstream for the grace period.

        ``kick`` closes the device socket too (a device that stopped draining is on a dead
        link; it will resume from its handle and get everything from the buffer).
        """
        if self.device is not device:
            return
        self.device = None
        self.last_active = time.monotonic()
        log.info(
            "[%s] device detached (%s); grace %.0f s", self.id, reason, self.settings.grace_period
        )
        if kick:
            device.kick(1011, "Internal error encountered.")
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        self._grace = loop.call_later(self.settings.grace_period, self._grace_over)

    def _grace_over(self) -> None:
        self._grace = None
        if self.device is None and self.upstream is not None:
            self._closer = asyncio.ensure_future(self._park())

    async def _park(self) -> None:
        # Let a turn in progress finish first: closing mid-turn would cut it for good.
        await self.until_turn_boundary(self.settings.handover_turn_wait)
        if self.device is not None or self.upstream is None or self.closed:
            return  # the device came back meanwhile
        self.stats.parked += 1
        log.info("[%s] grace period over: closing upstream, handle kept", self.id)
        await self.close_upstream()

    def _end_device(self, code: int, reason: str) -> None:
        device, self.device = self.device, None
        if device is not None:
            device.kick(code, reason)

    # -- device input ----------------------------------------------------------------------

    async def from_device(self, kind: str, body: wire.JsonDict, *, name: str | None = None) -> None:
        """One client message from the attached device, forwarded upstream once.

        ``name``: the device's name for it (:mod:`~tunnelproof.protocol.relay_setup`): a
        name the relay already received is a replay; without one, the content decides.
        """
        message = wire.client_message(kind, body)
        check = self.duplicates
        if name is not None:
            digest = name_digest(name)
            if check.named_replay(digest):
                self.stats.duplicates_dropped += 1
                return
            check.window.clear()  # a naming device: content decides nothing
        else:
            digest = content_digest(message)
            if check.window and check.content_replay(digest):
                self.stats.duplicates_dropped += 1
                return
        index = self.received
        check.remember(index, digest)
        self.received += 1
        self.last_active = time.monotonic()
        if self.upstream is None:
            await self.open_upstream()
        assert self.upstream is not None
        result = await self.upstream.send_raw(message)
        if not result.dropped:
            self.unheld.forwarded(message, result.seq, index)
            if self.unheld.forgotten != self.stats.unheld_forgotten:
                self.stats.unheld_forgotten = self.unheld.forgotten
                now = time.monotonic()
                if now - self._unheld_warned_at >= 10.0:  # not once per 20 ms audio chunk
                    self._unheld_warned_at = now
                    log.warning(
                        "[%s] unheld device input over its bound (%d message(s) forgotten"
                        " so far): a takeover may lose context",
                        self.id,
                        self.unheld.forgotten,
                    )
        if result.dropped:
            self.stats.upstream_drops += 1
            log.warning("[%s] upstream refused a %s message: %s", self.id, kind, result.reason)
        elif self.record is not None and not wire.media_only(message):
            try:
                await self.record(self.id)
            except Exception:  # the periodic flush writes it (a rewrite after a failure)
                log.warning("[%s] recording a device message failed", self.id, exc_info=True)

    # -- end ----------------------------------------------------------------------------

    async def hand_over(self, turn_wait: float) -> None:
        """Give the conversation up to another process: at a turn boundary (bounded),
        close the device socket and the upstream session (its handle is in the store)."""
        await self.until_turn_boundary(turn_wait)
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        self._end_device(1001, "")
        await self.close_upstream()
        self.closed = True

    async def close(self) -> None:
        """End the conversation: close the device and the upstream session."""
        if self.closed:
            return
        self.closed = True
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        self._end_device(1001, "")
        await self.close_upstream()
        if self.on_closed is not None:
            self.on_closed(self)
