"""``RelaySettings``: every knob of the relay in one immutable value."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from tunnelproof.relay.buffer import BufferLimits
from tunnelproof.session.outbox import OutboxLimits
from tunnelproof.session.policy import DEFAULT_WATCHDOGS, Watchdogs

# Speech the unheld record keeps (2 MB of base64 JSON: ~47 s at 16 kHz), and the time a
# takeover's resume may take before the carried audio is sent.
RELAY_UPSTREAM_OUTBOX = OutboxLimits(max_audio_ms=48_000.0, audio_ttl=60.0)


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """How the relay behaves.

    Attributes:
        grace_period: seconds the upstream session stays open after a device drops. After
            it the upstream is closed, its handle kept in the handle store, and a later
            device resume reopens it (Gemini's context survives; the buffer too, within
            ``buffer.max_age``).
        buffer: bounds of each conversation's output buffer (bytes, age).
        device_queue_bytes: output queued for an attached device that is not draining
            beyond this means its link is dead: it is detached (nothing is lost, the
            buffer has it all).
        parked_ttl: seconds a conversation with no device and no upstream is remembered
            (Google keeps a handle 2 h after the last disconnect).
        max_conversations: new conversations beyond this are refused (1013, try again).
        max_upstreams_per_user: a user's new conversations are refused (1013, "Resource has
            been exhausted") while this many of theirs hold an open upstream session: each
            one is a paid Gemini session, and a looping device must not multiply them.
        default_model: the model for a device setup that names none.
        secret: signs device handles; every relay process of one deployment must share
            it (random per process by default, fine for one process).
        upstream_watchdogs: the upstream LiveSession's timeouts.
        upstream_outbox: the upstream LiveSession's outbox bounds. A device client drops
            the oldest speech beyond 5 s (the newest matters most after a gap); the relay
            keeps as much as its unheld record (2 MB, ~47 s of 16 kHz speech), so speech
            no upstream handle holds yet survives an upstream drop or a takeover whole.
        handle_in_frame: put each new device handle in the same frame as the message it
            follows (``{"serverContent": ..., "sessionResumptionUpdate": ...}``), so a cut
            can never fall between the two: exactly-once replay. google-genai, the seed's
            browser client and tunnelproof's clients read both keys. ``False`` sends the
            handle as its own frame, as Google does (for strict protobuf clients that
            refuse two oneof fields); a cut between the two frames then replays that one
            message twice.
        text_frames: send devices text frames instead of Google's binary frames (for
            clients that only ``JSON.parse(event.data)``; Google itself sends binary).
        takeover_timeout: how long a process waits for another to hand a conversation over
            (or for a dead owner's lease to expire) before refusing the device with 1013.
        handover_turn_wait: how long an owner asked to hand over waits for the model's
            turn to end first (a cut turn would be lost: Gemini never continues it).
        upstream_connect_timeout: how long a new conversation waits for the upstream
            ``setupComplete`` before the device is refused with 1011.
    """

    grace_period: float = 120.0
    buffer: BufferLimits = field(default_factory=BufferLimits)
    device_queue_bytes: int = 4 * 1024 * 1024
    parked_ttl: float = 2 * 60 * 60
    max_conversations: int = 10_000
    max_upstreams_per_user: int = 8
    default_model: str = "gemini-3.8-live"
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    upstream_watchdogs: Watchdogs = DEFAULT_WATCHDOGS
    upstream_outbox: OutboxLimits = field(default_factory=lambda: RELAY_UPSTREAM_OUTBOX)
    handle_in_frame: bool = True
    text_frames: bool = False
    takeover_timeout: float = 30.0
    handover_turn_wait: float = 10.0
    upstream_connect_timeout: float = 20.0
