"""LockChecker: each difference between the token's lock and the client's config, once."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from tunnelproof.protocol.config import LiveConfig
from tunnelproof.protocol.locked import LockedConfig
from tunnelproof.session.app_events import ConfigMismatch
from tunnelproof.session.config_check import LockChecker
from tunnelproof.session.credentials import Credential

TEXT_CLIENT = LiveConfig(model="tunnelproof-emulator-text", response_modalities=("TEXT",))
AUDIO_LOCK = LockedConfig.of(LiveConfig(model="gemini-3.8-live"))


def credential(locked: LockedConfig | None) -> Credential:
    return Credential(kind="ephemeral_token", secret="auth_tokens/x", locked=locked)


def test_each_difference_is_reported_once_with_a_warning_naming_both_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tunnelproof.session")
    checker = LockChecker(TEXT_CLIENT, "conv-9")
    first = checker.check(credential(AUDIO_LOCK))
    assert first == [
        ConfigMismatch("model", "tunnelproof-emulator-text", "gemini-3.8-live"),
        ConfigMismatch("response_modalities", "TEXT", "AUDIO"),
    ]
    assert checker.check(credential(AUDIO_LOCK)) == [], "every reconnect fetches a token"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all("conv-9" in line for line in lines)
    assert "response_modalities=AUDIO" in lines[1] and "response_modalities=TEXT" in lines[1]
    # The service changes its lock later: that is new, and said again.
    other = replace(AUDIO_LOCK, model="gemini-3.1-flash-live-preview")
    assert [m.locked_value for m in checker.check(credential(other))] == [
        "gemini-3.1-flash-live-preview"
    ]


def test_a_matching_or_unknown_lock_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tunnelproof.session")
    assert LockChecker(LiveConfig(), "c").check(credential(AUDIO_LOCK)) == []
    assert LockChecker(TEXT_CLIENT, "c").check(credential(None)) == []
    assert not caplog.records
