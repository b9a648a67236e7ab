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
:mod:`tunnelproof.testing` (tunnels and fixtures). ``tests/test_exports.py`` pins this list,
and checks that every public name of :mod:`tunnelproof.session` is here or named as core-only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The facade's one list: module -> the names it lends the facade. ``__all__``, the loader
# and ``dir()`` derive from it; the TYPE_CHECKING imports at the end mirror it for type
# checkers, which cannot run this (tests/test_exports.py checks the two agree).
_PARTS: dict[str, tuple[str, ...]] = {
    # the session and its settings
    "tunnelproof.session.live_session": ("LiveSession",),
    "tunnelproof.protocol.config": ("LiveConfig",),
    "tunnelproof.session.phases": ("SessionState",),
    "tunnelproof.session.metrics": ("SessionMetrics",),
    "tunnelproof.session.outbox": ("OutboxLimits", "SendResult"),
    "tunnelproof.session.policy": (
        "DEFAULT_POLICY",
        "DEFAULT_WATCHDOGS",
        "SEED_POLICY",
        "RetryPolicy",
        "Watchdogs",
    ),
    "tunnelproof.protocol.client_messages": ("FunctionResponse", "Turn"),
    # credentials and token sources
    "tunnelproof.session.credentials": (
        "Credential",
        "TokenAuthError",
        "TokenConfigError",
        "TokenOffline",
        "TokenRateLimited",
        "TokenSource",
        "TokenSourceError",
        "TokenUnavailable",
    ),
    "tunnelproof.tokens.client": ("TokenServiceSource",),
    "tunnelproof.tokens.direct": ("ApiKeyMintingSource",),
    # handle stores
    "tunnelproof.session.handle_store": ("HandleStore", "StoredSession"),
    "tunnelproof.session.stores": ("MemoryHandleStore", "RedisHandleStore", "SqliteHandleStore"),
    # app events
    "tunnelproof.session.app_events": (
        "AppEvent",
        "AudioChunk",
        "Closed",
        "ConfigMismatch",
        "Connected",
        "ContextReset",
        "Delivered",
        "Disconnected",
        "EventsDropped",
        "Failed",
        "GenerationComplete",
        "GoAwayReceived",
        "InputTranscript",
        "Interrupted",
        "OutputTranscript",
        "ProtocolViolation",
        "Reconnecting",
        "Resumed",
        "Rewound",
        "SendDropped",
        "TextDelta",
        "ToolCallCancelled",
        "ToolCallRequested",
        "TurnComplete",
        "TurnsRestored",
        "UnknownServerMessage",
        "Usage",
    ),
    # the answer as text (spoken answers are read from their transcript)
    "tunnelproof.session.answers": (
        "Answer",
        "AnswerClosed",
        "AnswerError",
        "AnswerFailed",
        "AnswerLost",
        "AnswerTimeout",
        "ToolCallsPending",
        "collect_answer",
    ),
    # a local Live API for development and tests
    "tunnelproof.emulator.server": ("EmulatorServer",),
}

# name -> the module that defines it, for the loader.
_EXPORTS: dict[str, str] = {name: module for module, names in _PARTS.items() for name in names}

__all__ = sorted(_EXPORTS)  # star imports; type checkers read the ``X as X`` imports below


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tunnelproof' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # what type checkers and IDEs see; ``X as X`` marks each as re-exported
    from tunnelproof.emulator.server import EmulatorServer as EmulatorServer
    from tunnelproof.protocol.client_messages import FunctionResponse as FunctionResponse
    from tunnelproof.protocol.client_messages import Turn as Turn
    from tunnelproof.protocol.config import LiveConfig as LiveConfig
    from tunnelproof.session.answers import Answer as Answer
    from tunnelproof.session.answers import AnswerClosed as AnswerClosed
    from tunnelproof.session.answers import AnswerError as AnswerError
    from tunnelproof.session.answers import AnswerFailed as AnswerFailed
    from tunnelproof.session.answers import AnswerLost as AnswerLost
    from tunnelproof.session.answers import AnswerTimeout as AnswerTimeout
    from tunnelproof.session.answers import ToolCallsPending as ToolCallsPending
    from tunnelproof.session.answers import collect_answer as collect_answer
    from tunnelproof.session.app_events import AppEvent as AppEvent
    from tunnelproof.session.app_events import AudioChunk as AudioChunk
    from tunnelproof.session.app_events import Closed as Closed
    from tunnelproof.session.app_events import ConfigMismatch as ConfigMismatch
    from tunnelproof.session.app_events import Connected as Connected
    from tunnelproof.session.app_events import ContextReset as ContextReset
    from tunnelproof.session.app_events import Delivered as Delivered
    from tunnelproof.session.app_events import Disconnected as Disconnected
    from tunnelproof.session.app_events import EventsDropped as EventsDropped
    from tunnelproof.session.app_events import Failed as Failed
    from tunnelproof.session.app_events import GenerationComplete as GenerationComplete
    from tunnelproof.session.app_events import GoAwayReceived as GoAwayReceived
    from tunnelproof.session.app_events import InputTranscript as InputTranscript
    from tunnelproof.session.app_events import Interrupted as Interrupted
    from tunnelproof.session.app_events import OutputTranscript as OutputTranscript
    from tunnelproof.session.app_events import ProtocolViolation as ProtocolViolation
    from tunnelproof.session.app_events import Reconnecting as Reconnecting
    from tunnelproof.session.app_events import Resumed as Resumed
    from tunnelproof.session.app_events import Rewound as Rewound
    from tunnelproof.session.app_events import SendDropped as SendDropped
    from tunnelproof.session.app_events import TextDelta as TextDelta
    from tunnelproof.session.app_events import ToolCallCancelled as ToolCallCancelled
    from tunnelproof.session.app_events import ToolCallRequested as ToolCallRequested
    from tunnelproof.session.app_events import TurnComplete as TurnComplete
    from tunnelproof.session.app_events import TurnsRestored as TurnsRestored
    from tunnelproof.session.app_events import UnknownServerMessage as UnknownServerMessage
    from tunnelproof.session.app_events import Usage as Usage
    from tunnelproof.session.credentials import Credential as Credential
    from tunnelproof.session.credentials import TokenAuthError as TokenAuthError
    from tunnelproof.session.credentials import TokenConfigError as TokenConfigError
    from tunnelproof.session.credentials import TokenOffline as TokenOffline
    from tunnelproof.session.credentials import TokenRateLimited as TokenRateLimited
    from tunnelproof.session.credentials import TokenSource as TokenSource
    from tunnelproof.session.credentials import TokenSourceError as TokenSourceError
    from tunnelproof.session.credentials import TokenUnavailable as TokenUnavailable
    from tunnelproof.session.handle_store import HandleStore as HandleStore
    from tunnelproof.session.handle_store import StoredSession as StoredSession
    from tunnelproof.session.live_session import LiveSession as LiveSession
    from tunnelproof.session.metrics import SessionMetrics as SessionMetrics
    from tunnelproof.session.outbox import OutboxLimits as OutboxLimits
    from tunnelproof.session.outbox import SendResult as SendResult
    from tunnelproof.session.phases import SessionState as SessionState
    from tunnelproof.session.policy import DEFAULT_POLICY as DEFAULT_POLICY
    from tunnelproof.session.policy import DEFAULT_WATCHDOGS as DEFAULT_WATCHDOGS
    from tunnelproof.session.policy import SEED_POLICY as SEED_POLICY
    from tunnelproof.session.policy import RetryPolicy as RetryPolicy
    from tunnelproof.session.policy import Watchdogs as Watchdogs
    from tunnelproof.session.stores import MemoryHandleStore as MemoryHandleStore
    from tunnelproof.session.stores import RedisHandleStore as RedisHandleStore
    from tunnelproof.session.stores import SqliteHandleStore as SqliteHandleStore
    from tunnelproof.tokens.client import TokenServiceSource as TokenServiceSource
    from tunnelproof.tokens.direct import ApiKeyMintingSource as ApiKeyMintingSource
