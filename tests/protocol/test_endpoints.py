"""Endpoint URLs and the four auth forms."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from tunnelproof.protocol import (
    API_VERSIONS,
    AuthForm,
    Method,
    api_key_endpoint,
    auth_tokens_url,
    live_url,
    redact_url,
    token_endpoint,
)


@pytest.mark.parametrize("version", API_VERSIONS)
@pytest.mark.parametrize("method", list(Method))
def test_live_url_for_every_version_and_method(version: str, method: Method) -> None:
    url = live_url("wss://generativelanguage.googleapis.com", version=version, method=method)  # type: ignore[arg-type]
    assert url == (
        "wss://generativelanguage.googleapis.com/ws/google.ai.generativelanguage."
        f"{version}.GenerativeService.{method.value}"
    )


def test_http_bases_become_ws_and_trailing_slash_is_not_doubled() -> None:
    assert live_url("http://127.0.0.1:9/", version="v1beta", method=Method.BIDI).startswith(
        "ws://127.0.0.1:9/ws/"
    )
    assert live_url("https://h/", version="v1beta", method=Method.BIDI).startswith("wss://h/ws/")


def test_api_key_goes_in_header_by_default_never_the_url() -> None:
    ep = api_key_endpoint("wss://h", "SECRET-KEY")
    assert "SECRET-KEY" not in ep.url
    assert ep.headers == {"x-goog-api-key": "SECRET-KEY"}
    assert ep.url.endswith("GenerativeService.BidiGenerateContent")


def test_api_key_query_form_for_browsers() -> None:
    ep = api_key_endpoint("wss://h", "K", form=AuthForm.KEY_QUERY)
    assert parse_qs(urlsplit(ep.url).query) == {"key": ["K"]}
    assert ep.headers == {}


def test_token_query_form_is_url_encoded_on_constrained_v1alpha() -> None:
    ep = token_endpoint("wss://h", "auth_tokens/abc+/=")
    assert ".v1alpha.GenerativeService.BidiGenerateContentConstrained?" in ep.url
    assert "access_token=auth_tokens%2Fabc%2B%2F%3D" in ep.url
    assert parse_qs(urlsplit(ep.url).query)["access_token"] == ["auth_tokens/abc+/="]


def test_token_header_form() -> None:
    ep = token_endpoint("wss://h", "auth_tokens/xyz", form=AuthForm.TOKEN_HEADER)
    assert ep.headers == {"Authorization": "Token auth_tokens/xyz"}
    assert "auth_tokens" not in ep.url


def test_wrong_form_for_credential_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="not an API-key auth form"):
        api_key_endpoint("wss://h", "K", form=AuthForm.TOKEN_QUERY)
    with pytest.raises(ValueError, match="not a token auth form"):
        token_endpoint("wss://h", "T", form=AuthForm.KEY_HEADER)
    with pytest.raises(ValueError, match="empty"):
        token_endpoint("wss://h", "")


def test_redact_url_hides_credentials_only() -> None:
    url = "wss://h/ws/x?access_token=auth_tokens%2Fsecret&alt=1"
    red = redact_url(url)
    assert "secret" not in red
    assert "alt=1" in red
    assert redact_url("wss://h/ws/x?key=SECRET") == "wss://h/ws/x?key=REDACTED"
    assert redact_url("wss://h/ws/x") == "wss://h/ws/x"
    assert (
        token_endpoint("wss://h", "auth_tokens/s3").redacted_url().endswith("access_token=REDACTED")
    )


def test_auth_tokens_url() -> None:
    assert auth_tokens_url("https://h/", "v1alpha") == "https://h/v1alpha/auth_tokens"
