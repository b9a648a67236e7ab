"""Typed events a :class:`~tunnelproof.session.live_session.LiveSession` delivers to the app.

Two families share one stream, in the order things happened:

* **lifecycle**: :class:`Connected`, :class:`Resumed`, :class:`Reconnecting`,
  :class:`Disconnected`, :class:`Rewound`, :class:`TurnsRestored`, :class:`ContextReset`,
  :class:`GoAwayReceived`,
  :class:`Failed`, :class:`SendDropped`, :class:`Delivered`, :class:`EventsDropped`,
  :class:`Closed`, :class:`ProtocolViolation`, :class:`ConfigMismatch`;
* **server content**: :class:`TextDelta`, :class:`AudioChunk`, :class:`InputTranscript`,
  :class:`OutputTranscript`, :class:`ToolCallRequested`, :class:`ToolCallCancelled`,
  :class:`GenerationComplete`, :class:`TurnComplete`, :class:`Interrupted`,
  :class:`Usage`, :class:`UnknownServerMessage`.

Match on the class (``match event: case TextDelta(text=t): ...``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from tunnelproof.protocol.close_codes import CloseVerdict
from tunnelproof.protocol.server_messages import FunctionCall

FailureKind = Literal["offline", "server"]


# -- lifecycle -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    """A new server session is ready (``setupComplete`` on a fresh session)."""

    attempt: int
    first: bool  # the first connection of this LiveSession


@dataclass(frozen=True, slots=True)
class Resumed:
    """A reconnect resumed the previous server session with its handle.

    ``gap`` is the seconds the app was without a usable session, ``replayed`` how many
    queued or unconfirmed messages were (re)sent after ``setupComplete``.
    """

    attempt: int
    gap: float
    replayed: int


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """The next connection attempt starts in ``delay`` seconds.

    ``kind`` is ``"offline"`` (the network is gone: steady probing) or ``"server"``
    (exponential backoff). ``attempt`` counts attempts in this outage, from 1.
    """

    delay: float
    attempt: int
    reason: str
    kind: FailureKind
    planned: bool = False  # a goAway handover, not a failure


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection was lost (or handed over). ``code`` is ``None`` without a close frame."""

    code: int | None
    reason: str
    planned: bool = False


@dataclass(frozen=True, slots=True)
class Rewound:
    """The server state we reconnect to lacks something the app saw or did.

    * ``partial_text``: model output of a turn that was cut off. The server never continues
      an interrupted generation, so drop what was played of it; if the question is asked
      again (see below) the whole answer comes again, from its start.
    * ``reply_lost``: one thing only: **an answer was owed and will not come unless the
      app asks again**. It is true when the server's state holds the question (a handle
      confirmed it) but the answer was cut: replaying the question would duplicate it, so
      the session does not; ``unanswered`` holds the question texts to ask again. It is
      false when the session itself asks again (the question was not confirmed, so it is
      replayed after a resume, or re-asked after the history in a fresh session): the
      answer then comes by itself.
    * ``cancelled_tool_call_ids``: tool calls the resumed session never saw: do not answer
      them (answers are refused with ``SendResult.dropped``). The model usually calls the
      tool again; that call comes with ``ToolCallRequested.reissued`` naming these ids.
    """

    partial_text: str
    reply_lost: bool
    cancelled_tool_call_ids: tuple[str, ...]
    unanswered: tuple[str, ...] = ()
    reasked: bool = False
    """The session asks a cut-off question again itself: its whole answer follows."""


@dataclass(frozen=True, slots=True)
class TurnsRestored:
    """The link dropped after turns the app got complete and before the handle that holds
    them (Google sends it some 20-70 ms after ``turnComplete``), so the resumed server
    state lacks them. The session puts them back as history instead of asking again:
    **nothing is answered twice**; there is nothing to redo or discard.

    * ``turns``: the completed turns restored (the question's text, or the transcription
      of the user's speech, and the model's answer: its text or output transcription),
      sent to the resumed session as ``clientContent`` with ``turnComplete: false``;
    * ``seqs``: the sends those turns read: not replayed; they end ``Delivered`` once a
      handle holds the restored history (or ``SendDropped`` if it cannot be sent);
    * ``missing``: what could not be restored, in words (speech with no input
      transcription, an answer with no text, the structure of tool calls): empty when
      the restore is faithful;
    * ``reasked``: nothing of the turns is known as text (no transcriptions), so their
      sends are replayed and the model answers them again, as before this restore existed.
    """

    turns: int
    seqs: tuple[int, ...]
    missing: tuple[str, ...] = ()
    reasked: bool = False


@dataclass(frozen=True, slots=True)
class ContextReset:
    """The server session could not be resumed; a fresh one was started.

    ``seeded_turns`` turns of the client's own transcript were sent to the new session as
    history (``clientContent`` with ``turnComplete: false``).
    """

    reason: str
    seeded_turns: int


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    """The server will end this connection in ``time_left`` seconds; a handover is planned."""

    time_left: float | None
    handover_by: float  # monotonic deadline of the handover


@dataclass(frozen=True, slots=True)
class Failed:
    """The session stopped and will not retry by itself. ``verdict.advice`` says what to do.

    Call :meth:`LiveSession.resume` after fixing the cause (or to try again after giving up).
    """

    verdict: CloseVerdict

    @property
    def advice(self) -> str:
        """What a person should do about it."""
        return self.verdict.advice


@dataclass(frozen=True, slots=True)
class SendDropped:
    """Messages the app sent earlier were dropped and will never reach the server.

    ``seqs`` are the ``SendResult.seq`` values of the dropped messages; for audio,
    ``audio_ms`` is the total duration dropped.
    """

    seqs: tuple[int, ...]
    kind: str
    reason: str
    audio_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Delivered:
    """The server's state now holds these sends: a resume can no longer lose them.

    ``seqs`` are ``SendResult.seq`` values, oldest first, each confirmed at most once and
    never also reported in ``SendDropped``. The evidence is a resumable handle issued after
    the server read them (contract 3: "sent" is not "delivered"); sends still awaiting
    their answer, and speech no model turn has answered yet, wait for a later handle.
    Not confirmed this way: sends evicted from the bounded replay record, text re-seeded
    into a fresh session (``ContextReset``), and whatever was unconfirmed when the session
    closed.
    """

    seqs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class EventsDropped:
    """The app did not read events fast enough; the oldest content events were dropped.

    Only content (``AudioChunk``, ``TextDelta``, ``InputTranscript``, ``OutputTranscript``)
    is ever dropped, oldest first, once more than ``LiveSession``'s
    ``max_buffered_event_bytes`` of it waits for the app; lifecycle events never are.
    ``events`` counts the dropped events, ``audio_bytes`` their PCM bytes, ``text_bytes``
    their UTF-8 text bytes.
    """

    events: int
    audio_bytes: int
    text_bytes: int


@dataclass(frozen=True, slots=True)
class Closed:
    """The session was closed by the app; no more events follow."""


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """A server frame could not be parsed; it was skipped."""

    message: str
    size: int | None


@dataclass(frozen=True, slots=True)
class ConfigMismatch:
    """The token service locks ``field`` to a value this session's ``LiveConfig`` does not have.

    The server uses the locked value (a ``TEXT`` client behind a service that locks
    ``AUDIO`` gets audio, not text). Reported once per field and value, before the first
    connection that uses such a token; also logged at WARNING. Fix: give the client and
    the token service the same ``LiveConfig``.
    """

    field: str  # "model", "response_modalities", "input_audio_transcription", ...
    client_value: str
    locked_value: str

    @property
    def advice(self) -> str:
        """One sentence naming both values."""
        return (
            f"the token service locks {self.field}={self.locked_value} but this client "
            f"asked for {self.field}={self.client_value}; the server uses "
            f"{self.locked_value}. Use the same LiveConfig on both sides."
        )


# -- server content ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextDelta:
    """Model text (TEXT modality)."""

    text: str


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Model audio: 24 kHz 16-bit little-endian mono PCM."""

    pcm: bytes
    mime_type: str


@dataclass(frozen=True, slots=True)
class InputTranscript:
    """Transcription of the user's audio."""

    text: str
    finished: bool


@dataclass(frozen=True, slots=True)
class OutputTranscript:
    """Transcription of the model's audio."""

    text: str
    finished: bool


@dataclass(frozen=True, slots=True)
class ToolCallRequested:
    """The model wants these functions run; answer with ``send_tool_response``.

    Each call carries its ``id`` (answer with it). ``reissued`` is non-empty when these
    calls replace calls cancelled by a reconnect (``Rewound.cancelled_tool_call_ids``): the
    model asks again for the same request. A tool with side effects that already ran for
    one of the ``reissued`` ids should answer from that run instead of running twice.
    """

    calls: tuple[FunctionCall, ...]
    reissued: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolCallCancelled:
    """The server cancelled these tool calls (the user interrupted)."""

    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GenerationComplete:
    """The model finished generating this turn (playback may still be running)."""


@dataclass(frozen=True, slots=True)
class TurnComplete:
    """The model's turn is over."""

    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Interrupted:
    """The user barged in; stop playing the model's audio."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts reported by the server."""

    prompt_tokens: int | None
    response_tokens: int | None
    total_tokens: int | None


@dataclass(frozen=True, slots=True)
class UnknownServerMessage:
    """A server message kind this version does not know (kept raw)."""

    kind: str
    raw: Any


AppEvent = (
    Connected
    | Resumed
    | Reconnecting
    | Disconnected
    | Rewound
    | TurnsRestored
    | ContextReset
    | GoAwayReceived
    | Failed
    | SendDropped
    | Delivered
    | EventsDropped
    | Closed
    | ProtocolViolation
    | ConfigMismatch
    | TextDelta
    | AudioChunk
    | InputTranscript
    | OutputTranscript
    | ToolCallRequested
    | ToolCallCancelled
    | GenerationComplete
    | TurnComplete
    | Interrupted
    | Usage
    | UnknownServerMessage
)
