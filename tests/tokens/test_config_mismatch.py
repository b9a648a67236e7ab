"""A client whose LiveConfig differs from what `tunnelproof serve` locks is told, loudly.

Google applies a token's locked fields over the client's setup without a word, so a TEXT
client behind a default service (which locks AUDIO) would just wait for text that never
comes. The route says what it locked; the session compares at the first connect.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from tunnelproof.protocol.config import LiveConfig
from tunnelproof.session import ConfigMismatch, LiveSession
from tunnelproof.session import app_events as ev
from tunnelproof.tokens import TokenServiceSource

from .helpers import serve_subprocess, static_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

TEXT_CLIENT = LiveConfig(model="tunnelproof-emulator-text", response_modalities=("TEXT",))


async def _first_events(session: LiveSession) -> list[ev.AppEvent]:
    """Events up to the first Connected (bounded by the test timeout)."""
    seen: list[ev.AppEvent] = []
    async for event in session:
        seen.append(event)
        if isinstance(event, ev.Connected | ev.Failed):
            return seen
    return seen


async def test_a_text_client_behind_a_default_serve_is_told(
    emu: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tunnelproof.session")
    emu.controls.set_generation_speed(0)  # answers unpaced: what they are is the point
    async with serve_subprocess(tmp_path, static_env(emu.http_base)) as svc:
        tokens = TokenServiceSource(svc.token_url, lambda: "Bearer alice-key-0001")
        async with LiveSession(TEXT_CLIENT, tokens) as session:
            first = await _first_events(session)
            mismatches = [e for e in first if isinstance(e, ConfigMismatch)]
            assert mismatches == [
                ConfigMismatch("model", "tunnelproof-emulator-text", "gemini-3.8-live"),
                ConfigMismatch("response_modalities", "TEXT", "AUDIO"),
            ]
            assert isinstance(first[-1], ev.Connected), first
            assert first.index(mismatches[0]) < len(first) - 1, "said before connecting"
            # And it is true: the server uses the lock, so the answer is spoken, not text.
            await session.send_text("Hello there.")
            answer: list[ev.AppEvent] = []
            async for event in session:
                answer.append(event)
                if isinstance(event, ev.TurnComplete):
                    break
            assert any(isinstance(e, ev.AudioChunk) for e in answer)
            assert not any(isinstance(e, ev.TextDelta) for e in answer)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "response_modalities=AUDIO" in m and "response_modalities=TEXT" in m for m in warnings
    ), warnings


async def test_a_default_client_behind_a_default_serve_hears_no_warning(
    emu: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tunnelproof.session")
    emu.controls.set_generation_speed(0)  # answers unpaced: what they are is the point
    async with serve_subprocess(tmp_path, static_env(emu.http_base)) as svc:
        tokens = TokenServiceSource(svc.token_url, lambda: "Bearer alice-key-0001")
        async with LiveSession(LiveConfig(), tokens) as session:
            first = await _first_events(session)
            assert isinstance(first[-1], ev.Connected), first
            assert not [e for e in first if isinstance(e, ConfigMismatch)]
            answer = await session.ask("My favourite colour is teal.", timeout=30)
            assert "teal" in answer.text and answer.audio
    assert not [r for r in caplog.records if "mismatch" in r.getMessage()]
