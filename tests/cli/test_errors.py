"""Errors a user can meet: one clear sentence saying what to do, no traceback, non-zero exit."""

from __future__ import annotations

import asyncio
import socket
import sys

import pytest
from pydantic import SecretStr

from tunnelproof.testing.tokens_fixtures import DEV_BEARER_KEY, DEV_USER, running_token_service
from tunnelproof.tokens.settings import TokenServiceSettings

from .helpers import cli_env, one_clear_sentence, run_cli, run_in_process


@pytest.mark.parametrize("command", ["demo", "chat"])
def test_real_without_key(command: str) -> None:
    proc = run_in_process(command, "--real")
    assert proc.returncode == 2
    line = one_clear_sentence(proc.stderr, f"tunnelproof {command}: ")
    assert "GEMINI_API_KEY" in line


@pytest.mark.parametrize("command", ["demo", "chat"])
def test_retired_model(command: str) -> None:
    # A real process once (the traceback-free guarantee is about the real entry point) ...
    run = run_cli if command == "demo" else run_in_process
    proc = run(command, "--model", "gemini-2.0-flash-live-001")
    assert proc.returncode == 2
    line = one_clear_sentence(proc.stderr, f"tunnelproof {command}: ")
    assert "retired" in line
    assert "--model gemini-3.8-live" in line


def test_retired_model_from_the_environment() -> None:
    proc = run_in_process("chat", TUNNELPROOF_MODEL="gemini-live-2.5-flash-preview")
    assert proc.returncode == 2
    assert "retired" in one_clear_sentence(proc.stderr, "tunnelproof chat: ")


def test_unknown_model_refused_by_the_server() -> None:
    # Not in our retired table: the server's 1008 "not found" becomes the sentence. In this
    # process (the stack's token service is still a child): test_retired_model runs the
    # real entry point, and a CLI process costs seconds of start-up.
    proc = run_in_process("demo", "--json", "--speed", "8", "--model", "gemini-9-imaginary")
    assert proc.returncode == 2
    line = one_clear_sentence(proc.stderr, "tunnelproof demo: ")
    assert "gemini-9-imaginary" in line
    assert "gemini-3.8-live" in line


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_token_service_unreachable() -> None:
    url = f"http://127.0.0.1:{_free_port()}/api/live/token"
    proc = run_in_process("chat", "--token-url", url)
    assert proc.returncode == 2
    line = one_clear_sentence(proc.stderr, "tunnelproof chat: ")
    assert "cannot reach the token service" in line
    assert "tunnelproof serve" in line


def test_token_url_malformed() -> None:
    proc = run_in_process("chat", "--token-url", "localhost:8080")
    assert proc.returncode == 2
    assert "http" in one_clear_sentence(proc.stderr, "tunnelproof chat: ")


def test_audio_without_sounddevice() -> None:
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError):
        pass
    else:
        pytest.skip("sounddevice is installed here")
    proc = run_in_process("chat", "--audio")
    assert proc.returncode == 2
    assert "pip install 'tunnelproof[audio]'" in one_clear_sentence(
        proc.stderr, "tunnelproof chat: "
    )


async def _chat_against(url: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tunnelproof",
        "chat",
        "--token-url",
        url,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
    )
    _out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


@pytest.mark.e2e
async def test_token_service_401_and_500() -> None:
    settings = TokenServiceSettings(
        api_key=SecretStr("unused-key"),
        auth_mode="static",
        static_keys=[SecretStr(f"{DEV_USER}:{DEV_BEARER_KEY}")],
        upstream_base_url=f"http://127.0.0.1:{_free_port()}",
    )
    async with running_token_service(settings) as service:
        code, err = await _chat_against(service.token_url, "--bearer", "wrong-key")
        assert code == 2
        line = one_clear_sentence(err, "tunnelproof chat: ")
        assert "refused the user (HTTP 401)" in line
        assert "--bearer" in line
        # No bearer at all: the same sentence. (In this process from here on: the real
        # entry point was run above, and each CLI process costs seconds of start-up. In a
        # thread, because the CLI runs its own event loop and this one serves the service.)
        proc = await asyncio.to_thread(run_in_process, "chat", "--token-url", service.token_url)
        assert proc.returncode == 2
        assert "HTTP 401" in one_clear_sentence(proc.stderr, "tunnelproof chat: ")
    # A service whose upstream is down answers 503 upstream_unavailable: say what to check.
    async with running_token_service(settings) as service:
        proc = await asyncio.to_thread(
            run_in_process, "chat", "--token-url", service.token_url, "--bearer", DEV_BEARER_KEY
        )
        assert proc.returncode == 2
        line = one_clear_sentence(proc.stderr, "tunnelproof chat: ")
        assert "could not mint a token upstream (HTTP 503)" in line
        assert "GEMINI_API_KEY" in line


@pytest.mark.parametrize("target", [("--real",), ("--token-url", "http://127.0.0.1:9/t")])
def test_emulator_speed_is_refused_without_the_local_emulator(target: tuple[str, ...]) -> None:
    proc = run_in_process("chat", "--emulator-speed", "4", *target)
    assert proc.returncode == 2
    assert "--emulator-speed" in one_clear_sentence(proc.stderr, "tunnelproof chat: ")
