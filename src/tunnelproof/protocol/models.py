"""Live model IDs, the retired ones, and how to migrate.

Preview Live models are retired without long overlaps (``gemini-2.0-flash-live-001`` and
``gemini-live-2.5-flash-preview`` were shut down on 2025-12-09). A retired ID makes the
server close the socket with 1008 "... not found for API version ...", which a client must
treat as a configuration error, not something to retry.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# The stable Live model at the time of writing (Sep 2026 release). Override per session
# with ``LiveConfig.model`` or process-wide with ``TUNNELPROOF_MODEL``.
DEFAULT_LIVE_MODEL = "gemini-3.8-live"
MODEL_ENV_VAR = "TUNNELPROOF_MODEL"

# Models the Live API serves (Gemini Developer API), as far as the reference knows.
LIVE_MODELS: frozenset[str] = frozenset(
    {
        "gemini-3.8-live",
        "gemini-3.8-live-extended-thinking",
        "gemini-3.1-flash-live-preview",
        "gemini-2.5-flash-native-audio-preview-12-2025",
        "gemini-2.5-flash-native-audio-latest",
    }
)

# Every current Live model answers in AUDIO only (reference sections 6 and 10): the
# half-cascade models that answered in TEXT are shut down. Text reaches an app through
# ``outputAudioTranscription``.
AUDIO_ONLY: frozenset[str] = frozenset({"AUDIO"})

# Not a Google model: the tunnelproof emulator's only model that answers in TEXT, for tests
# about text mode itself. Google would refuse this id (1008 "not found").
EMULATOR_TEXT_MODEL = "tunnelproof-emulator-text"


def response_modalities(model: str) -> frozenset[str]:
    """The response modalities ``model`` can answer in.

    Every known Live model: AUDIO only. The emulator's text model: TEXT or AUDIO. A model
    this table does not know: both (only the server can say).
    """
    bare = bare_model_id(model)
    if bare in LIVE_MODELS:
        return AUDIO_ONLY
    return frozenset({"AUDIO", "TEXT"})


@dataclass(frozen=True, slots=True)
class Retirement:
    """Why a model ID no longer works and what replaces it."""

    replacement: str
    why: str


RETIRED_MODELS: Mapping[str, Retirement] = {
    "gemini-2.0-flash-exp": Retirement(
        DEFAULT_LIVE_MODEL, "the 2024 experimental Multimodal Live model, now rejected with 1008"
    ),
    "gemini-2.0-flash-live-001": Retirement(
        DEFAULT_LIVE_MODEL,
        "shut down on 2025-12-09 (Google's documented successor was "
        "gemini-2.5-flash-native-audio-preview-12-2025)",
    ),
    "gemini-live-2.5-flash-preview": Retirement(
        DEFAULT_LIVE_MODEL, "the half-cascade preview, shut down on 2025-12-09"
    ),
    "gemini-2.0-flash": Retirement(
        DEFAULT_LIVE_MODEL, "not a Live model: it does not support bidiGenerateContent"
    ),
    "gemini-2.5-flash": Retirement(
        DEFAULT_LIVE_MODEL, "not a Live model: it does not support bidiGenerateContent"
    ),
    "gemini-2.5-flash-preview-native-audio-dialog": Retirement(
        DEFAULT_LIVE_MODEL, "an early 2025 native-audio preview, superseded"
    ),
    "gemini-2.5-flash-exp-native-audio-thinking-dialog": Retirement(
        DEFAULT_LIVE_MODEL, "an early 2025 native-audio preview, superseded"
    ),
    "gemini-2.5-flash-native-audio-preview-09-2025": Retirement(
        DEFAULT_LIVE_MODEL, "the September 2025 native-audio preview, superseded by 12-2025"
    ),
}


def bare_model_id(model: str) -> str:
    """``models/gemini-3.8-live`` -> ``gemini-3.8-live``."""
    return model.strip().removeprefix("models/")


def resource_name(model: str) -> str:
    """The ``models/{id}`` form the setup message wants."""
    return f"models/{bare_model_id(model)}"


def default_model(env: Mapping[str, str] | None = None) -> str:
    """The model to use when the app names none: ``$TUNNELPROOF_MODEL`` or the default."""
    source = os.environ if env is None else env
    value = source.get(MODEL_ENV_VAR, "").strip()
    return bare_model_id(value) if value else DEFAULT_LIVE_MODEL


@dataclass(frozen=True, slots=True)
class ModelMigration:
    """The result of :func:`migrate_model`."""

    original: str
    model: str
    changed: bool
    explanation: str


def migrate_model(model: str) -> ModelMigration:
    """Map a possibly retired model ID to one that works, and say what changed.

    An empty ID migrates to the default. Unknown IDs are returned unchanged (they may be
    newer than this table); only the server can say whether they exist.
    """
    bare = bare_model_id(model)
    if not bare:
        return ModelMigration(model, DEFAULT_LIVE_MODEL, True, "No model given; using the default.")
    retired = RETIRED_MODELS.get(bare)
    if retired is not None:
        return ModelMigration(
            model,
            retired.replacement,
            True,
            f"{bare} is retired ({retired.why}); use {retired.replacement} instead.",
        )
    return ModelMigration(model, bare, False, f"{bare} is not known to be retired.")
