"""TokenServiceSource against the real service: Credentials and the typed errors."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tunnelproof.protocol.endpoints import Method, live_url
from tunnelproof.protocol.locked import LockedConfig
from tunnelproof.session.credentials import (
    TokenAuthError,
    TokenConfigError,
    TokenOffline,
    TokenRateLimited,
    TokenUnavailable,
)
from tunnelproof.testing.tokens_fixtures import running_token_service
from tunnelproof.tokens import TokenServiceSource

from .helpers import AUDIENCE, ISSUER, Jwks, closed_port_url, misbehaving_upstream, settings_for


async def test_fresh_credential_per_call(emu: Any) -> None:
    calls: list[int] = []

    async def get_credential() -> str:
        calls.append(1)
        return "Bearer alice-key-0001"

    async with running_token_service(settings_for(emu.http_base, emu.ws_base)) as svc:
        source = TokenServiceSource(svc.token_url, get_credential, timeout=10)
        first = await source()
        second = await source()
    assert len(calls) == 2  # the user's credential is asked for on every fetch
    assert first.kind == "ephemeral_token"
    assert first.secret.startswith("auth_tokens/")
    assert first.secret != second.secret
    assert first.api_version == "v1alpha"
    assert first.model == settings_for(emu.http_base).model
    assert first.expires_at is not None
    assert first.new_session_expires_at is not None
    assert time.time() + 1700 < first.expires_at < time.time() + 1900
    assert first.usable_for_new_session(time.time())
    endpoint = first.endpoint()
    assert endpoint.url.startswith(
        live_url(emu.ws_base, version="v1alpha", method=Method.CONSTRAINED) + "?access_token="
    )
    assert first.secret not in repr(first)
    # The service said what it locked; the credential carries it for the session to compare.
    assert first.locked == LockedConfig.of(settings_for(emu.http_base).live_config())
    assert first.locked is not None and first.locked.response_modalities == ("AUDIO",)


async def test_sync_header_mapping_credential(emu: Any) -> None:
    async with running_token_service(settings_for(emu.http_base)) as svc:
        source = TokenServiceSource(
            svc.token_url, lambda: {"Authorization": "Bearer bob-key-0002"}, timeout=10
        )
        assert (await source()).secret.startswith("auth_tokens/")


async def test_auth_failure_is_token_auth_error(emu: Any) -> None:
    async with running_token_service(settings_for(emu.http_base)) as svc:
        with pytest.raises(TokenAuthError) as caught:
            await TokenServiceSource(svc.token_url, lambda: "Bearer wrong", timeout=10)()
        assert caught.value.status == 401
        with pytest.raises(TokenAuthError) as forbidden:
            await TokenServiceSource(
                svc.token_url,
                lambda: {"Authorization": "Bearer bob-key-0002", "Origin": "https://evil.example"},
                timeout=10,
            )()
        assert forbidden.value.status == 403


async def test_rate_limit_is_token_rate_limited_with_retry_after(emu: Any) -> None:
    async with running_token_service(settings_for(emu.http_base, rate_limit="1/minute")) as svc:
        source = TokenServiceSource(svc.token_url, lambda: "Bearer alice-key-0001", timeout=10)
        await source()
        with pytest.raises(TokenRateLimited) as caught:
            await source()
    assert caught.value.retry_after is not None
    assert 1 <= caught.value.retry_after <= 60


async def test_upstream_down_is_token_unavailable_with_a_wait() -> None:
    # The service's upstream is down: 503 + Retry-After, which the session takes as a wait.
    async with running_token_service(settings_for(closed_port_url())) as svc:
        with pytest.raises(TokenUnavailable) as caught:
            await TokenServiceSource(svc.token_url, lambda: "Bearer alice-key-0001", timeout=10)()
    assert caught.value.status == 503
    assert caught.value.code == "upstream_unavailable"
    assert caught.value.retry_after is not None and caught.value.retry_after >= 1


async def test_service_down_is_token_offline() -> None:
    with pytest.raises(TokenOffline):
        await TokenServiceSource(closed_port_url() + "/api/live/token", timeout=5)()


async def test_service_hanging_is_token_unavailable() -> None:
    async with misbehaving_upstream("hang") as upstream:
        started = time.monotonic()
        with pytest.raises(TokenUnavailable):
            await TokenServiceSource(upstream.base + "/api/live/token", timeout=0.5)()
    assert time.monotonic() - started < 5


async def test_bad_answer_is_token_unavailable() -> None:
    async with misbehaving_upstream("garbage") as upstream:
        with pytest.raises(TokenUnavailable):
            await TokenServiceSource(upstream.base + "/api/live/token", timeout=5)()


async def test_wrong_url_is_token_config_error(emu: Any) -> None:
    async with running_token_service(settings_for(emu.http_base)) as svc:
        with pytest.raises(TokenConfigError):
            await TokenServiceSource(svc.url + "/no/such/route", lambda: "Bearer x", timeout=5)()


async def test_misconfigured_service_is_token_config_error(emu: Any) -> None:
    # The service's own 500 says "misconfigured" machine-readably: fatal, with a sentence.
    async with running_token_service(settings_for(emu.http_base, api_key=None)) as svc:
        with pytest.raises(TokenConfigError) as caught:
            await TokenServiceSource(svc.token_url, lambda: "Bearer alice-key-0001", timeout=5)()
    message = str(caught.value)
    assert "misconfigured" in message
    assert "no Gemini API key configured" in message
    assert "HTTP 500" in message


async def test_other_500s_are_still_transient() -> None:
    # A 500 without the service's "misconfigured" code (a proxy, a crash) is retried.
    async with misbehaving_upstream("error") as upstream:
        with pytest.raises(TokenUnavailable) as caught:
            await TokenServiceSource(upstream.base + "/api/live/token", timeout=5)()
    assert caught.value.status == 500

    def answer(status: int, body: bytes) -> httpx.MockTransport:
        return httpx.MockTransport(lambda request: httpx.Response(status, content=body))

    for status, body in [
        (500, b"<html>Internal Server Error</html>"),
        (503, b'{"error": "Busy, retry shortly"}'),
        (502, b'{"code": "upstream"}'),
        (500, b'["misconfigured"]'),
    ]:
        source = TokenServiceSource(
            "http://tokens.test/api/live/token", transport=answer(status, body)
        )
        with pytest.raises(TokenUnavailable):
            await source()


def test_errors_are_distinct_classes() -> None:
    # The reconnecting client dispatches on the class; none may be a subclass of another.
    classes = [TokenAuthError, TokenRateLimited, TokenUnavailable, TokenOffline, TokenConfigError]
    for a in classes:
        for b in classes:
            assert a is b or not issubclass(a, b)


async def test_transport_errors_map_without_a_server() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("dns failure", request=request)

    source = TokenServiceSource(
        "https://tokens.invalid/api/live/token", transport=httpx.MockTransport(refuse)
    )
    with pytest.raises(TokenOffline):
        await source()


async def test_503_keeps_its_retry_after(emu: Any, jwks: Jwks) -> None:
    # The IdP's JWKS is unreachable: the service answers 503 + Retry-After, not 401.
    settings = settings_for(
        emu.http_base,
        auth_mode="jwks",
        jwks_url=closed_port_url() + "/jwks.json",
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
    )
    async with running_token_service(settings) as svc:
        source = TokenServiceSource(svc.token_url, lambda: f"Bearer {jwks.token()}", timeout=10)
        with pytest.raises(TokenUnavailable) as caught:
            await source()
    assert caught.value.status == 503
    assert caught.value.retry_after == 5.0


async def test_tls_context_is_built_once_not_per_fetch(
    emu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh httpx client per fetch must not rebuild the TLS context each time (CPU in a herd)."""
    import ssl

    built: list[int] = []
    real = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        built.append(1)
        return real(*args, **kwargs)

    async with running_token_service(settings_for(emu.http_base, emu.ws_base)) as svc:
        source = TokenServiceSource(svc.token_url, lambda: "Bearer alice-key-0001", timeout=10)
        monkeypatch.setattr(ssl, "create_default_context", counting)
        for _ in range(3):
            credential = await source()
            assert credential.secret.startswith("auth_tokens/")
    assert built == []


@pytest.mark.parametrize(
    "credential",
    [
        "Bearer alice-key-0001\n",  # a key read from a file, newline and all
        "Bearer alice-key-0001\r\nX-Injected: 1",
        "Bearer alicé",
        {"Cookie": "session=a\x00b"},
    ],
)
async def test_a_credential_that_is_no_header_value_is_a_config_error_at_once(
    emu: Any, credential: Any
) -> None:
    # It was TokenUnavailable ("connection failed: LocalProtocolError", whose text held
    # the secret): the session retried it for minutes and then blamed the service.
    async with running_token_service(settings_for(emu.http_base)) as svc:
        source = TokenServiceSource(svc.token_url, lambda: credential, timeout=10)
        with pytest.raises(TokenConfigError, match="not a valid HTTP header value") as info:
            await source()
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert "alice" not in str(info.value) and "session=" not in str(info.value)


async def test_a_session_with_such_a_credential_fails_once_with_the_reason(emu: Any) -> None:
    from tunnelproof import Failed, LiveConfig, LiveSession

    async with running_token_service(settings_for(emu.http_base, emu.ws_base)) as svc:
        source = TokenServiceSource(svc.token_url, lambda: "Bearer alice-key-0001\n", timeout=10)
        async with LiveSession(LiveConfig(), source) as session:
            events = [event async for event in session]  # ends after Failed
    assert isinstance(events[-1], Failed), events
    assert "not a valid HTTP header value" in events[-1].verdict.reason
    assert session.metrics.connect_attempts <= 1


@pytest.mark.parametrize(("status", "error"), [(503, TokenUnavailable), (429, TokenRateLimited)])
async def test_a_shed_answer_is_read_to_the_millisecond(
    status: int, error: type[TokenUnavailable] | type[TokenRateLimited]
) -> None:
    # The service's own slot for this caller: retry-after-ms before the whole seconds.
    def shed(request: httpx.Request) -> httpx.Response:
        headers = {"Retry-After": "1", "retry-after-ms": "312"}
        return httpx.Response(status, headers=headers, json={"code": "upstream_unavailable"})

    source = TokenServiceSource(
        "http://tokens.test/api/live/token", transport=httpx.MockTransport(shed)
    )
    with pytest.raises(error) as caught:
        await source()
    assert caught.value.retry_after == pytest.approx(0.312)


async def test_a_shed_answer_without_a_sane_ms_hint_keeps_retry_after() -> None:
    def shed(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": "2", "retry-after-ms": "9e9"})

    source = TokenServiceSource(
        "http://tokens.test/api/live/token", transport=httpx.MockTransport(shed)
    )
    with pytest.raises(TokenUnavailable) as caught:
        await source()
    assert caught.value.retry_after == 2.0
