"""Model IDs and migration."""

from __future__ import annotations

import pytest

from tunnelproof.protocol import (
    DEFAULT_LIVE_MODEL,
    LIVE_MODELS,
    RETIRED_MODELS,
    default_model,
    migrate_model,
)
from tunnelproof.protocol.models import resource_name


@pytest.mark.parametrize(
    "retired",
    [
        "gemini-2.0-flash-exp",
        "gemini-2.0-flash-live-001",
        "gemini-live-2.5-flash-preview",
        "gemini-2.0-flash",
    ],
)
def test_retired_models_migrate_to_a_live_model_and_say_why(retired: str) -> None:
    m = migrate_model(f"models/{retired}")
    assert m.changed
    assert m.model in LIVE_MODELS
    assert retired in m.explanation and m.model in m.explanation


def test_every_retired_replacement_is_a_served_live_model() -> None:
    assert all(r.replacement in LIVE_MODELS for r in RETIRED_MODELS.values())
    assert not set(RETIRED_MODELS) & LIVE_MODELS


def test_current_models_are_unchanged() -> None:
    m = migrate_model(DEFAULT_LIVE_MODEL)
    assert not m.changed and m.model == DEFAULT_LIVE_MODEL
    assert not migrate_model("gemini-9-live-future").changed


def test_empty_model_migrates_to_default() -> None:
    assert migrate_model("").model == DEFAULT_LIVE_MODEL


def test_default_model_is_overridable_by_env() -> None:
    assert default_model({}) == DEFAULT_LIVE_MODEL
    assert (
        default_model({"TUNNELPROOF_MODEL": "models/gemini-3.1-flash-live-preview"})
        == "gemini-3.1-flash-live-preview"
    )
    assert default_model({"TUNNELPROOF_MODEL": "  "}) == DEFAULT_LIVE_MODEL


def test_resource_name() -> None:
    assert resource_name("gemini-3.8-live") == "models/gemini-3.8-live"
    assert resource_name("models/gemini-3.8-live") == "models/gemini-3.8-live"
