"""The reconnecting client: a sans-I/O state machine and a thin asyncio driver.

The public API:

* :class:`LiveSession` — ``async with LiveSession(config, token_source, ...) as s``;
  ``answer = await s.ask("...")`` returns the model's :class:`Answer` (its text is the
  output transcript; :func:`collect_answer` after any send);
  ``send_text`` / ``send_audio`` / ``send_client_content`` / ``send_tool_response`` /
  ``send_raw`` return a :class:`SendResult`; ``async for event in s`` yields the typed
  events below; ``s.state``, ``s.metrics``, ``await s.close()``, ``await s.resume()``.
* Policies: :class:`RetryPolicy` (:data:`DEFAULT_POLICY`, :data:`SEED_POLICY`),
  :class:`Watchdogs`, :class:`OutboxLimits`.
* Credentials: :class:`Credential`, :data:`TokenSource` and the typed token errors.
* Typed outgoing messages: :class:`ClientMessage` (what every ``send_*`` builds).
* The core: :class:`SessionMachine` (no I/O), for tests and other drivers.
"""

from tunnelproof.session.answers import (
    Answer,
    AnswerClosed,
    AnswerCollector,
    AnswerError,
    AnswerFailed,
    AnswerLost,
    AnswerTimeout,
    ToolCallsPending,
    ask,
    collect_answer,
)
from tunnelproof.session.app_events import (
    AppEvent,
    AudioChunk,
    Closed,
    ConfigMismatch,
    Connected,
    ContextReset,
    Delivered,
    Disconnected,
    EventsDropped,
    Failed,
    GenerationComplete,
    GoAwayReceived,
    InputTranscript,
    Interrupted,
    OutputTranscript,
    ProtocolViolation,
    Reconnecting,
    Resumed,
    Rewound,
    SendDropped,
    TextDelta,
    ToolCallCancelled,
    ToolCallRequested,
    TurnComplete,
    TurnsRestored,
    UnknownServerMessage,
    Usage,
)
from tunnelproof.session.credentials import (
    Credential,
    TokenAuthError,
    TokenConfigError,
    TokenOffline,
    TokenRateLimited,
    TokenSource,
    TokenSourceError,
    TokenUnavailable,
)
from tunnelproof.session.handle_store import HandleStore, StoredSession
from tunnelproof.session.live_session import LiveSession
from tunnelproof.session.machine import SessionMachine
from tunnelproof.session.metrics import SessionMetrics
from tunnelproof.session.outbox import OutboxLimits, SendResult
from tunnelproof.session.outgoing import ClientMessage
from tunnelproof.session.phases import SessionState
from tunnelproof.session.policy import (
    DEFAULT_POLICY,
    DEFAULT_WATCHDOGS,
    SEED_POLICY,
    RetryPolicy,
    Watchdogs,
)

__all__ = [
    "DEFAULT_POLICY",
    "DEFAULT_WATCHDOGS",
    "SEED_POLICY",
    "Answer",
    "AnswerClosed",
    "AnswerCollector",
    "AnswerError",
    "AnswerFailed",
    "AnswerLost",
    "AnswerTimeout",
    "AppEvent",
    "AudioChunk",
    "ClientMessage",
    "Closed",
    "ConfigMismatch",
    "Connected",
    "ContextReset",
    "Credential",
    "Delivered",
    "Disconnected",
    "EventsDropped",
    "Failed",
    "GenerationComplete",
    "GoAwayReceived",
    "HandleStore",
    "InputTranscript",
    "Interrupted",
    "LiveSession",
    "OutboxLimits",
    "OutputTranscript",
    "ProtocolViolation",
    "Reconnecting",
    "Resumed",
    "RetryPolicy",
    "Rewound",
    "SendDropped",
    "SendResult",
    "SessionMachine",
    "SessionMetrics",
    "SessionState",
    "StoredSession",
    "TextDelta",
    "TokenAuthError",
    "TokenConfigError",
    "TokenOffline",
    "TokenRateLimited",
    "TokenSource",
    "TokenSourceError",
    "TokenUnavailable",
    "ToolCallCancelled",
    "ToolCallRequested",
    "ToolCallsPending",
    "TurnComplete",
    "TurnsRestored",
    "UnknownServerMessage",
    "Usage",
    "Watchdogs",
    "ask",
    "collect_answer",
]
