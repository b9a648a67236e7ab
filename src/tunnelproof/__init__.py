"""tunnelproof: Gemini Live sessions that survive network drops, with auth and context.

The names an app needs, from one place::

    from tunnelproof import LiveConfig, LiveSession, TokenServiceSource

    config = LiveConfig()  # AUDIO answers with their transcription, as Google's Live models
    tokens = TokenServiceSource("https://app.example.com/api/live/token")
    async with LiveSession(config, tokens, conversation_id="user-42") as session:
        answer = await session.ask("Hello!")   # answer.text: the transcript; .audio: PCM
        print(answer.text)

The facade is lazy (PEP 562): ``import tunnelproof`` imports nothing else, and each name
loads its module on first use, so ``tunnelproof --help`` and small tools stay fast. The
parts themselves are :mod:`tunnelproof.session` (the client), :mod:`tunnelproof.tokens`
(the token service), :mod:`tunnelproof.emulator` (a local Live API) and
:mod:`tunnelproof.testing` (tunnels and fixtures). ``tests/test_exports.py`` pins this list.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> module that defines it. One line per name keeps the facade reviewable.
_EXPORTS: dict[str, str] = {
    # the session and its settings
    "LiveSession": "tunnelproof.session.live_session",
    "LiveConfig": "tunnelproof.protocol.config",
    "SessionState": "tunnelproof.session.phases",
    "SessionMetrics": "tunnelproof.session.metrics",
    "SendResult": "tunnelproof.session.outbox",
    "OutboxLimits": "tunnelproof.session.outbox",
    "RetryPolicy": "tunnelproof.session.policy",
    "Watchdogs": "tunnelproof.session.policy",
    "DEFAULT_POLICY": "tunnelproof.session.policy",
    "DEFAULT_WATCHDOGS": "tunnelproof.session.policy",
    "SEED_POLICY": "tunnelproof.session.policy",
    "Turn": "tunnelproof.protocol.client_messages",
    "FunctionResponse": "tunnelproof.protocol.client_messages",
    # credentials and token sources
    "Credential": "tunnelproof.session.credentials",
    "TokenSource": "tunnelproof.session.credentials",
    "TokenSourceError": "tunnelproof.session.credentials",
    "TokenAuthError": "tunnelproof.session.credentials",
    "TokenConfigError": "tunnelproof.session.credentials",
    "TokenOffline": "tunnelproof.session.credentials",
    "TokenRateLimited": "tunnelproof.session.credentials",
    "TokenUnavailable": "tunnelproof.session.credentials",
    "TokenServiceSource": "tunnelproof.tokens.client",
    "ApiKeyMintingSource": "tunnelproof.tokens.direct",
    # handle stores
    "HandleStore": "tunnelproof.session.handle_store",
    "StoredSession": "tunnelproof.session.handle_store",
    "MemoryHandleStore": "tunnelproof.session.stores",
    "SqliteHandleStore": "tunnelproof.session.stores",
    "RedisHandleStore": "tunnelproof.session.stores",
    # app events
    "AppEvent": "tunnelproof.session.app_events",
    "AudioChunk": "tunnelproof.session.app_events",
    "Closed": "tunnelproof.session.app_events",
    "Connected": "tunnelproof.session.app_events",
    "ConfigMismatch": "tunnelproof.session.app_events",
    "ContextReset": "tunnelproof.session.app_events",
    "Delivered": "tunnelproof.session.app_events",
    "Disconnected": "tunnelproof.session.app_events",
    "EventsDropped": "tunnelproof.session.app_events",
    "Failed": "tunnelproof.session.app_events",
    "GenerationComplete": "tunnelproof.session.app_events",
    "GoAwayReceived": "tunnelproof.session.app_events",
    "InputTranscript": "tunnelproof.session.app_events",
    "Interrupted": "tunnelproof.session.app_events",
    "OutputTranscript": "tunnelproof.session.app_events",
    "ProtocolViolation": "tunnelproof.session.app_events",
    "Reconnecting": "tunnelproof.session.app_events",
    "Resumed": "tunnelproof.session.app_events",
    "Rewound": "tunnelproof.session.app_events",
    "SendDropped": "tunnelproof.session.app_events",
    "TextDelta": "tunnelproof.session.app_events",
    "ToolCallCancelled": "tunnelproof.session.app_events",
    "ToolCallRequested": "tunnelproof.session.app_events",
    "TurnComplete": "tunnelproof.session.app_events",
    "UnknownServerMessage": "tunnelproof.session.app_events",
    "Usage": "tunnelproof.session.app_events",
    # the answer as text (spoken answers are read from their transcript)
    "Answer": "tunnelproof.session.answers",
    "AnswerError": "tunnelproof.session.answers",
    "AnswerFailed": "tunnelproof.session.answers",
    "AnswerClosed": "tunnelproof.session.answers",
    "AnswerLost": "tunnelproof.session.answers",
    "AnswerTimeout": "tunnelproof.session.answers",
    "ToolCallsPending": "tunnelproof.session.answers",
    "collect_answer": "tunnelproof.session.answers",
    # a local Live API for development and tests
    "EmulatorServer": "tunnelproof.emulator.server",
}

# Literal, so linters and type checkers read it; tests/test_exports.py checks it matches.
__all__ = [
    "DEFAULT_POLICY",
    "DEFAULT_WATCHDOGS",
    "SEED_POLICY",
    "Answer",
    "AnswerClosed",
    "AnswerError",
    "AnswerFailed",
    "AnswerLost",
    "AnswerTimeout",
    "ApiKeyMintingSource",
    "AppEvent",
    "AudioChunk",
    "Closed",
    "ConfigMismatch",
    "Connected",
    "ContextReset",
    "Credential",
    "Delivered",
    "Disconnected",
    "EmulatorServer",
    "EventsDropped",
    "Failed",
    "FunctionResponse",
    "GenerationComplete",
    "GoAwayReceived",
    "HandleStore",
    "InputTranscript",
    "Interrupted",
    "LiveConfig",
    "LiveSession",
    "MemoryHandleStore",
    "OutboxLimits",
    "OutputTranscript",
    "ProtocolViolation",
    "Reconnecting",
    "RedisHandleStore",
    "Resumed",
    "RetryPolicy",
    "Rewound",
    "SendDropped",
    "SendResult",
    "SessionMetrics",
    "SessionState",
    "SqliteHandleStore",
    "StoredSession",
    "TextDelta",
    "TokenAuthError",
    "TokenConfigError",
    "TokenOffline",
    "TokenRateLimited",
    "TokenServiceSource",
    "TokenSource",
    "TokenSourceError",
    "TokenUnavailable",
    "ToolCallCancelled",
    "ToolCallRequested",
    "ToolCallsPending",
    "Turn",
    "TurnComplete",
    "UnknownServerMessage",
    "Usage",
    "Watchdogs",
    "collect_answer",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tunnelproof' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ loads these
    from tunnelproof.emulator.server import EmulatorServer
    from tunnelproof.protocol.client_messages import FunctionResponse, Turn
    from tunnelproof.protocol.config import LiveConfig
    from tunnelproof.session.answers import (
        Answer,
        AnswerClosed,
        AnswerError,
        AnswerFailed,
        AnswerLost,
        AnswerTimeout,
        ToolCallsPending,
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
    from tunnelproof.session.metrics import SessionMetrics
    from tunnelproof.session.outbox import OutboxLimits, SendResult
    from tunnelproof.session.phases import SessionState
    from tunnelproof.session.policy import (
        DEFAULT_POLICY,
        DEFAULT_WATCHDOGS,
        SEED_POLICY,
        RetryPolicy,
        Watchdogs,
    )
    from tunnelproof.session.stores import MemoryHandleStore, RedisHandleStore, SqliteHandleStore
    from tunnelproof.tokens.client import TokenServiceSource
    from tunnelproof.tokens.direct import ApiKeyMintingSource
