"""`tunnelproof chat` driven like a person would, through a pseudo-terminal (pexpect)."""

from __future__ import annotations

import sys
import wave

import pexpect
import pytest

from tunnelproof.emulator.audio import encode_speech, silence

from .helpers import cli_env

pytestmark = pytest.mark.e2e


# The local emulator speaks its answers 4x real time: the tests read what is said (and
# how the session survives), not how long saying it takes.
FAST = ("--emulator-speed", "4")


def spawn(*args: str) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "tunnelproof", "chat", *FAST, *args],
        encoding="utf-8",
        timeout=30,
        dimensions=(30, 120),
        env=cli_env(),
    )
    return child


def test_chat_survives_a_tunnel_and_remembers() -> None:
    chat = spawn()
    try:
        chat.expect("local emulator")
        chat.expect("· connected")
        chat.expect("connected \\|")  # the status line is drawn
        chat.sendline("My name is Ada")
        chat.expect("assistant › Nice to meet you, Ada.")

        chat.sendline("/tunnel 2")
        chat.expect("entering a tunnel for 2 s")
        chat.expect("IN TUNNEL")  # the status line counts the tunnel down
        # Typed inside the tunnel: lost on the wire, replayed after the resume.
        chat.sendline("Are you still there?")
        chat.expect("out of the tunnel")
        # 1 replayed: the message typed in the tunnel. 2: the tunnel began inside the 20-70 ms
        # before the first turn's handle (typed at once after the answer), so the resume
        # comes from the older state and "My name is Ada" is replayed too: nothing is lost.
        chat.expect("resumed after [0-9.]+ s, [12] message\\(s\\) replayed")
        chat.expect('assistant › You said: "Are you still there\\?".')

        chat.sendline("What did I say first?")
        chat.expect('assistant › You first said: "My name is Ada".')
        chat.sendline("/status")
        chat.expect("reconnects 1")
        # Answers came as audio (the emulator's default model answers in audio only); the
        # lines above are their transcript.
        chat.expect(r"spoken answers [1-9][0-9]*\.[0-9] s")
        chat.sendline("/quit")
        chat.expect("bye")
        chat.expect(pexpect.EOF)
    finally:
        chat.close(force=True)
    assert chat.exitstatus == 0


def test_chat_sends_a_wav(tmp_path) -> None:
    path = tmp_path / "hello.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16_000)
        wav.writeframes(encode_speech("My name is Grace") + silence(0.2))
    chat = spawn("--wav", str(path))
    try:
        chat.expect("sending hello.wav")
        chat.expect("assistant › Nice to meet you, Grace.")
        chat.sendline("What is my name?")
        chat.expect("assistant › Your name is Grace.")
        chat.sendline("/quit")
        chat.expect(pexpect.EOF)
    finally:
        chat.close(force=True)
    assert chat.exitstatus == 0


def test_chat_reads_a_piped_script() -> None:
    from .helpers import run_cli

    proc = run_cli("chat", *FAST, stdin="hello there\n/tunnel 1\nWhat did I say first?\n")
    assert proc.returncode == 0, proc.stderr
    assert 'You first said: "hello there"' in proc.stdout
    assert "Traceback" not in proc.stderr
    # Piped: no prompt noise ("› › assistant ›"), and the first line waits for the first
    # connection instead of saying "queued" (the script was read before the link was up).
    assert "queued" not in proc.stdout, proc.stdout
    lines = proc.stdout.splitlines()
    assert not [line for line in lines if line.startswith("›")], proc.stdout
    assert 'assistant › You said: "hello there".' in lines, proc.stdout
    assert lines.index("· connected") < lines.index('assistant › You said: "hello there".')
    assert "Answers are spoken (audio); you read their transcript." in lines[1]


def test_chat_audio_with_microphone_and_speaker(tmp_path) -> None:
    # A fake sounddevice (tests/cli/fake_audio) plays the part of PortAudio.
    from pathlib import Path

    log = tmp_path / "speaker.log"
    fake = Path(__file__).parent / "fake_audio"
    chat = pexpect.spawn(
        sys.executable,
        ["-m", "tunnelproof", "chat", *FAST, "--audio"],
        encoding="utf-8",
        timeout=30,
        dimensions=(30, 120),
        env=cli_env(
            PYTHONPATH=str(fake), FAKE_MIC_SAYS="My name is Ada", FAKE_SPEAKER_LOG=str(log)
        ),
    )
    try:
        chat.expect("microphone on")
        chat.expect("assistant › Nice to meet you, Ada.")  # the spoken answer's transcript
        chat.sendline("/quit")
        chat.expect(pexpect.EOF)
    finally:
        chat.close(force=True)
    assert chat.exitstatus == 0
    played = sum(int(n) for n in log.read_text().split())
    assert played > 24_000  # over half a second of 24 kHz speech reached the speaker


@pytest.mark.e2e
async def test_chat_through_a_token_service(emulator) -> None:
    # The app's own backend: a token service minting from the emulator, a dev bearer key.
    import asyncio

    from pydantic import SecretStr

    from tunnelproof.testing.tokens_fixtures import DEV_BEARER_KEY, DEV_USER, running_token_service
    from tunnelproof.tokens.settings import TokenServiceSettings

    emulator.controls.set_generation_speed(4)  # as FAST above
    settings = TokenServiceSettings(
        api_key=SecretStr(emulator.api_key),
        auth_mode="static",
        static_keys=[SecretStr(f"{DEV_USER}:{DEV_BEARER_KEY}")],
        upstream_base_url=emulator.http_base,
        rate_limit="100/minute",
    )
    async with running_token_service(settings) as service:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tunnelproof",
            "chat",
            "--token-url",
            service.token_url,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # Copied from a curl line, with its "Bearer " prefix: the key is meant, and used.
            env=cli_env(TUNNELPROOF_BEARER=f"Bearer {DEV_BEARER_KEY}"),
        )
        script = b"My name is Ada\n/tunnel 1\nWhat did I say first?\n"
        out, err = await asyncio.wait_for(proc.communicate(script), 60)
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    assert "token service http://" in text
    # Spoken answers (the service's default modality), shown through their transcription.
    assert "assistant › Nice to meet you, Ada." in text
    assert 'assistant › You first said: "My name is Ada".' in text
    assert len(emulator.controls.token_ledger()) >= 1


def test_read_wav_mixes_stereo_and_refuses_8_bit(tmp_path) -> None:
    from array import array

    from tunnelproof.cli.chat import ChatError, read_wav

    stereo = tmp_path / "stereo.wav"
    with wave.open(str(stereo), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(24_000)
        wav.writeframes(array("h", [100, 300, -200, -400]).tobytes())
    pcm, rate = read_wav(stereo)
    assert rate == 24_000
    assert array("h", pcm).tolist() == [200, -300]

    narrow = tmp_path / "narrow.wav"
    with wave.open(str(narrow), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(1)
        wav.setframerate(8_000)
        wav.writeframes(b"\x80\x80")
    with pytest.raises(ChatError, match="16-bit"):
        read_wav(narrow)
    with pytest.raises(ChatError, match="WAV"):
        read_wav(tmp_path / "missing.wav")


async def test_chat_asks_for_audio_answers_with_their_transcript() -> None:
    from tunnelproof.cli.chat import resolve_target

    target = await resolve_target(
        real=False, token_url=None, bearer=None, model=None, modality=None, ca_file=None
    )
    try:
        assert target.config.response_modalities == ("AUDIO",)
        assert target.config.output_audio_transcription is True
    finally:
        for step in reversed(target.cleanup):
            await step()
