"""End to end with google-genai over wss: mint, Live session, resume with the handle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from google.genai import types

from tunnelproof.emulator import EmulatorServer
from tunnelproof.protocol.models import EMULATOR_TEXT_MODEL

from .emu_helpers import genai_client

MODEL = "gemini-3.8-live"


@dataclass
class Turn:
    """One answer as google-genai surfaces it."""

    said: str  # the output transcript
    audio_bytes: int
    handle: str | None


async def _hear(session: Any, text: str) -> Turn:
    """Send one user turn; return the spoken answer and the newest resumable handle."""
    await session.send_client_content(
        turns=types.Content(role="user", parts=[types.Part(text=text)]), turn_complete=True
    )
    said: list[str] = []
    audio = 0
    done = False
    # receive() stops at turnComplete; the handle after it arrives on the next receive().
    for _ in range(50):
        async for message in session.receive():
            content = message.server_content
            if content is not None and content.output_transcription is not None:
                said.append(content.output_transcription.text or "")
            if message.data:
                audio += len(message.data)
            update = message.session_resumption_update
            # Only a handle issued after this turn completed contains the turn.
            if done and update is not None and update.resumable and update.new_handle:
                return Turn(" ".join("".join(said).split()), audio, update.new_handle)
            if content is not None and content.turn_complete:
                done = True
    raise AssertionError(f"no handle after the turn; heard so far {''.join(said)!r}")


async def _turn(session: Any, text: str) -> tuple[str, str | None]:
    """The answer's transcript and the handle after it."""
    turn = await _hear(session, text)
    assert turn.audio_bytes > 0  # the answer is speech; the transcript is how text arrives
    return turn.said, turn.handle


def _config(handle: str | None) -> types.LiveConnectConfig:
    return types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        output_audio_transcription=types.AudioTranscriptionConfig(),
        session_resumption=types.SessionResumptionConfig(handle=handle),
    )


@pytest.mark.e2e
@pytest.mark.filterwarnings("ignore::google.genai.errors.ExperimentalWarning")
async def test_genai_token_session_resumes_with_context(emulator_tls: EmulatorServer) -> None:
    emu = emulator_tls
    minting = genai_client(emu, emu.api_key)
    token = await minting.aio.auth_tokens.create(
        config=types.CreateAuthTokenConfig(uses=1, http_options={"api_version": "v1alpha"})
    )
    assert token.name is not None and token.name.startswith("auth_tokens/")

    client = genai_client(emu, token.name)
    async with client.aio.live.connect(model=MODEL, config=_config(None)) as session:
        answer, handle = await _turn(session, "the password is swordfish")
        assert answer == 'You said: "the password is swordfish".'
    assert handle is not None
    await emu.controls.wait_for_open(0)

    # A new connection with the same single-use token: resuming is not a use.
    async with client.aio.live.connect(model=MODEL, config=_config(handle)) as session:
        answer, _ = await _turn(session, "what did I say first?")
    assert answer == 'You first said: "the password is swordfish".'

    (ledger,) = emu.controls.token_ledger()
    assert ledger["usesConsumed"] == 1
    assert [c["resume"] for c in ledger["connections"]] == [False, True]
    conns = emu.controls.connections()
    assert [c["method"] for c in conns] == ["BidiGenerateContentConstrained"] * 2
    assert conns[0]["session"] == conns[1]["session"]


@pytest.mark.e2e
@pytest.mark.filterwarnings("ignore::google.genai.errors.ExperimentalWarning")
async def test_genai_api_key_session_resumes_with_context(emulator_tls: EmulatorServer) -> None:
    emu = emulator_tls
    client = genai_client(emu, emu.api_key)
    async with client.aio.live.connect(model=MODEL, config=_config(None)) as session:
        await _turn(session, "my name is Grace")
        answer, handle = await _turn(session, "how many turns")
        assert answer == "You have taken 2 turns so far."
    assert handle is not None
    await emu.controls.wait_for_open(0)
    async with client.aio.live.connect(model=MODEL, config=_config(handle)) as session:
        answer, _ = await _turn(session, "what is my name")
    assert answer == "Your name is Grace."
    conns = emu.controls.connections()
    assert [c["auth_form"] for c in conns] == ["key_header", "key_header"]
    assert [c["resumed"] for c in conns] == [False, True]


@pytest.mark.e2e
async def test_genai_sees_close_codes_as_api_errors(emulator_tls: EmulatorServer) -> None:
    from google.genai import errors

    emu = emulator_tls
    bad = genai_client(emu, "wrong-key")
    with pytest.raises(errors.APIError) as info:
        async with bad.aio.live.connect(model=MODEL, config=_config(None)):
            pass
    assert info.value.code == 1007
    assert "API key not valid" in str(info.value)

    good = genai_client(emu, emu.api_key)
    with pytest.raises(errors.APIError) as info:
        async with good.aio.live.connect(
            model="gemini-live-2.5-flash-preview", config=_config(None)
        ):
            pass
    assert info.value.code == 1008
    assert "is not found for API version v1alpha" in str(info.value)


@pytest.mark.e2e
@pytest.mark.filterwarnings("ignore::google.genai.errors.ExperimentalWarning")
async def test_genai_unknown_token_is_refused_at_the_upgrade(emulator_tls: EmulatorServer) -> None:
    import websockets

    client = genai_client(emulator_tls, "auth_tokens/never-minted")
    with pytest.raises(websockets.InvalidStatus) as info:
        async with client.aio.live.connect(model=MODEL, config=_config(None)):
            pass
    assert info.value.response.status_code == 401


@pytest.mark.e2e
async def test_genai_sees_go_away_then_the_deadline_close(
    emulator_factory: object,
) -> None:
    from google.genai import errors

    from tunnelproof.emulator import EmulatorPolicy

    emu = await emulator_factory(  # type: ignore[operator]
        EmulatorPolicy(connection_lifetime=1.0, go_away_lead=0.5), tls=True
    )
    client = genai_client(emu, emu.api_key)
    seen: list[str | None] = []

    async def listen() -> None:
        async with client.aio.live.connect(model=MODEL, config=_config(None)) as session:
            for _ in range(20):
                async for message in session.receive():
                    if message.go_away is not None:
                        seen.append(message.go_away.time_left)

    with pytest.raises(errors.APIError) as info:
        await listen()
    assert seen == ["0.500s"]
    assert info.value.code == 1011
    assert "Deadline expired before operation could complete." in str(info.value)


@pytest.mark.e2e
@pytest.mark.filterwarnings("ignore::google.genai.errors.ExperimentalWarning")
@pytest.mark.parametrize("lock", [None, [], ["temperature", "top_k"]])
async def test_genai_locked_tokens_override_the_client_config(
    emulator_tls: EmulatorServer, lock: list[str] | None
) -> None:
    emu = emulator_tls
    minting = genai_client(emu, emu.api_key)
    token = await minting.aio.auth_tokens.create(
        config=types.CreateAuthTokenConfig(
            uses=1,
            live_connect_constraints=types.LiveConnectConstraints(
                model=MODEL,
                config=types.LiveConnectConfig(
                    response_modalities=[types.Modality.AUDIO],
                    output_audio_transcription=types.AudioTranscriptionConfig(),
                    temperature=0.25,
                ),
            ),
            lock_additional_fields=lock,
        )
    )
    assert token.name is not None
    client = genai_client(emu, token.name)
    # The client asks the emulator's text model for TEXT; the token's lock wins.
    wanted = types.LiveConnectConfig(
        response_modalities=[types.Modality.TEXT],
        temperature=0.9,
        session_resumption=types.SessionResumptionConfig(),
    )
    async with client.aio.live.connect(model=EMULATOR_TEXT_MODEL, config=wanted) as s:
        answer, _ = await _turn(s, "locked")
    # Every lock form pins the token's model, modality and temperature.
    assert answer == 'You said: "locked".'  # spoken, with a transcript: the lock won
    (session,) = emu.controls.sessions()
    assert session["model"] == MODEL
    assert session["setup"]["generationConfig"]["temperature"] == 0.25
    assert session["setup"]["generationConfig"]["responseModalities"] == ["AUDIO"]


@pytest.mark.e2e
async def test_genai_tool_call_round_trip_and_spoken_audio(
    emulator_factory: object,
) -> None:
    from tunnelproof.emulator import EmulatorPolicy, encode_speech, silence

    emu = await emulator_factory(  # type: ignore[operator]
        EmulatorPolicy(generation_speed=0, seconds_per_word=0.05), tls=True
    )
    client = genai_client(emu, emu.api_key)
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        input_audio_transcription=types.AudioTranscriptionConfig(),
        output_audio_transcription=types.AudioTranscriptionConfig(),
        tools=[types.Tool(function_declarations=[types.FunctionDeclaration(name="get_time")])],
    )
    heard: list[str] = []
    said: list[str] = []
    audio_bytes = 0
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        pcm = encode_speech("what time is it") + silence(0.8)
        await session.send_realtime_input(
            audio=types.Blob(data=pcm, mime_type="audio/pcm;rate=16000")
        )
        call = None
        for _ in range(50):
            async for message in session.receive():
                content = message.server_content
                if content is not None and content.input_transcription is not None:
                    heard.append(content.input_transcription.text or "")
                if message.tool_call is not None:
                    call = message.tool_call.function_calls[0]  # type: ignore[index]
                    break
            if call is not None:
                break
        assert call is not None and call.name == "get_time"
        await session.send_tool_response(
            function_responses=[
                types.FunctionResponse(id=call.id, name="get_time", response={"time": "07:15"})
            ]
        )
        async for message in session.receive():  # ends at turnComplete
            content = message.server_content
            if content is not None and content.output_transcription is not None:
                said.append(content.output_transcription.text or "")
            if message.data:
                audio_bytes += len(message.data)
    assert heard == ["what time is it"]
    assert "".join(said).split() == ["The", "get_time", "tool", "says:", "07:15."]
    assert audio_bytes == 2 * round(0.05 * 24_000) * 5
