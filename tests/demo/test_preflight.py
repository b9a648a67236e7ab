"""Start-up problems become one sentence at once, not a minute of retries."""

from __future__ import annotations

import socket
import time

import pytest

from tunnelproof.demo.app import DemoError, DemoOptions, run_demo
from tunnelproof.demo.preflight import FirstThen, PreflightError, first_credential
from tunnelproof.demo.stack import StackOptions
from tunnelproof.session.credentials import (
    Credential,
    TokenAuthError,
    TokenConfigError,
    TokenOffline,
    TokenRateLimited,
    TokenUnavailable,
)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.e2e
async def test_real_demo_with_google_unreachable_fails_fast() -> None:
    # Google stands at a closed loopback port: the token service's mint fails (503).
    port = closed_port()
    options = StackOptions(
        real=True,
        api_key="not-a-real-key",
        upstream_host="127.0.0.1",
        upstream_port=port,
        upstream_http_base=f"http://127.0.0.1:{port}",
    )
    started = time.monotonic()
    with pytest.raises(DemoError) as info:
        await run_demo(DemoOptions(real=True, json=True), stack_options=options)
    assert "the demo's token service could not mint a token upstream" in str(info.value)
    assert "GEMINI_API_KEY" in str(info.value)
    assert time.monotonic() - started < 25


@pytest.mark.parametrize(
    ("error", "kind", "expected"),
    [
        (TokenAuthError("no", status=401), "service", "refused the user (HTTP 401)"),
        (TokenOffline("gone"), "service", "cannot reach the token service"),
        (TokenOffline("gone"), "google", "cannot reach Google"),
        (
            TokenRateLimited("slow", retry_after=7),
            "service",
            "rate limiting token requests for 7 s",
        ),
        (TokenUnavailable("boom", status=500), "service", "check its logs"),
        (TokenUnavailable("bad gateway", status=502), "service", "could not mint a token upstream"),
        (
            TokenUnavailable("down", status=503, retry_after=3, code="upstream_unavailable"),
            "service",
            "could not mint a token upstream (HTTP 503)",
        ),
        (TokenUnavailable("timeout"), "google", "no token could be minted from Google"),
        (TokenConfigError("refused key"), "google", "check GEMINI_API_KEY"),
    ],
)
async def test_each_token_failure_has_its_sentence(
    error: Exception, kind: str, expected: str
) -> None:
    async def source() -> Credential:
        raise error

    with pytest.raises(PreflightError) as info:
        await first_credential(source, where="the token service at http://svc", kind=kind)  # type: ignore[arg-type]
    assert expected in str(info.value)


async def test_first_then_hands_the_prefetched_token_first() -> None:
    calls = 0

    async def source() -> Credential:
        nonlocal calls
        calls += 1
        return Credential(kind="ephemeral_token", secret=f"auth_tokens/{calls}")

    first = await first_credential(source, where="x", kind="service")
    chained = FirstThen(source, first)
    assert (await chained()).secret == "auth_tokens/1"
    assert (await chained()).secret == "auth_tokens/2"
    assert calls == 2


def test_a_failure_names_what_the_server_said() -> None:
    from tunnelproof.demo.preflight import failure_sentence
    from tunnelproof.protocol.close_codes import classify_close

    reason = "Invalid argument: models/gemini-3.8-live supports response modality AUDIO only."
    verdict = classify_close(1007, reason)
    sentence = failure_sentence(verdict)
    assert sentence.startswith(verdict.advice)
    assert sentence.endswith(f"(the server said: 1007 {reason})")
    # An advice that already carries the reason is not repeated.
    bare = classify_close(1008, "")
    assert failure_sentence(bare) == bare.advice
