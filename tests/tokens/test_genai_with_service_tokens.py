"""google-genai, an independent client, with a token minted by our token service.

The path a browser or device app takes with the official SDK: POST the token route with
the user's bearer, then ``genai.Client(api_key=token, api_version="v1alpha")`` against
the (TLS) emulator. The token is single-use for new sessions, a resume with it is not a
use (reference section 2.2), and the SDK's own setup passes the emulator's checks.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors, types
from pydantic import SecretStr

from tunnelproof.emulator import EmulatorPolicy
from tunnelproof.testing.emulator_fixtures import EmulatorFactory
from tunnelproof.testing.tokens_fixtures import running_token_service

from .helpers import settings_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

CONFIG = types.LiveConnectConfig(  # what the service locks: AUDIO + both transcriptions
    response_modalities=[types.Modality.AUDIO],
    input_audio_transcription=types.AudioTranscriptionConfig(),
    output_audio_transcription=types.AudioTranscriptionConfig(),
    session_resumption=types.SessionResumptionConfig(),
    context_window_compression=types.ContextWindowCompressionConfig(
        trigger_tokens=25600, sliding_window=types.SlidingWindow(target_tokens=12800)
    ),
)


def _client(emu: Any, token: str) -> genai.Client:
    return genai.Client(
        api_key=token,
        http_options={
            "base_url": emu.http_base,
            "api_version": "v1alpha",
            "async_client_args": {"ssl": ssl.create_default_context(cafile=emu.ca_file)},
        },
    )


async def _turn(session: Any, text: str) -> tuple[str, int, str | None]:
    """Send ``text``; the transcript, the audio bytes and the handle after the turn."""
    await session.send_realtime_input(text=text)
    said: list[str] = []
    audio, done = 0, False
    for _ in range(50):  # receive() stops at turnComplete: the handle comes on the next one
        async for message in session.receive():
            content = message.server_content
            if content is not None and content.output_transcription is not None:
                said.append(content.output_transcription.text or "")
            audio += len(message.data or b"")
            update = message.session_resumption_update
            if done and update is not None and update.resumable and update.new_handle:
                return "".join(said).strip(), audio, update.new_handle
            if content is not None and content.turn_complete:
                done = True
    raise AssertionError(f"no handle after the turn; heard {''.join(said)!r}")


async def test_genai_with_a_service_token_talks_resumes_and_cannot_reuse_it(
    emulator_factory: EmulatorFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = await emulator_factory(EmulatorPolicy(generation_speed=0), tls=True)
    assert emu.ca_file is not None
    monkeypatch.setenv("SSL_CERT_FILE", emu.ca_file)  # the service mints over https
    settings = settings_for(emu.http_base, emu.ws_base, api_key=SecretStr(emu.api_key))
    async with running_token_service(settings) as svc:
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                svc.token_url, headers={"Authorization": "Bearer alice-key-0001"}
            )
        assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
        token = answer.json()["token"]
        assert answer.json()["wsUrl"].endswith(
            "v1alpha.GenerativeService.BidiGenerateContentConstrained"
        )

        client = _client(emu, token)
        async with client.aio.live.connect(model="gemini-3.8-live", config=CONFIG) as session:
            said, audio, handle = await _turn(session, "My name is Ada.")
        assert said == "Nice to meet you, Ada." and audio > 0

        resume = CONFIG.model_copy(
            update={"session_resumption": types.SessionResumptionConfig(handle=handle)}
        )
        async with client.aio.live.connect(model="gemini-3.8-live", config=resume) as session:
            said, _, _ = await _turn(session, "What is my name?")
        assert said == "Your name is Ada."  # a resume is not a use of the token

        async def new_session() -> None:
            async with client.aio.live.connect(model="gemini-3.8-live", config=CONFIG) as s:
                async for _ in s.receive():
                    pass

        with pytest.raises(errors.APIError) as refused:  # a second *new* session is refused
            await new_session()
        assert refused.value.code == 1008
