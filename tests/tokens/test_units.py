"""Pure pieces: settings, origin policy, Retry-After parsing, authenticator guards."""

from __future__ import annotations

import email.utils
import time

import pytest

from tunnelproof.session.credentials import TokenConfigError
from tunnelproof.tokens import (
    JwksAuthenticator,
    OriginPolicy,
    SharedSecretJwtAuthenticator,
    TokenServiceSettings,
    TokenServiceSource,
)
from tunnelproof.tokens.client import parse_retry_after
from tunnelproof.tokens.minting import iso_utc


def test_settings_read_env_and_split_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "k-from-gemini-env")
    monkeypatch.setenv("TUNNELPROOF_ALLOWED_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("TUNNELPROOF_STATIC_KEYS", "alice:k1,bob:k2")
    monkeypatch.setenv("TUNNELPROOF_RATE_LIMIT", "3/second")
    monkeypatch.setenv("TUNNELPROOF_MODEL", "models/gemini-3.8-live")
    s = TokenServiceSettings()
    assert s.api_key_value() == "k-from-gemini-env"
    assert s.allowed_origins == ["https://a.example", "https://b.example"]
    assert s.static_key_map() == {"k1": "alice", "k2": "bob"}
    assert s.rate_limit == "3/second"
    assert s.model == "gemini-3.8-live"
    assert s.path == "/api/live/token"
    # The key never shows in a repr (settings objects end up in tracebacks and logs).
    assert "k-from-gemini-env" not in repr(s)
    assert "k1" not in repr(s.static_keys)


def test_tunnelproof_api_key_wins_and_blank_key_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNNELPROOF_API_KEY", "tp-key")
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    assert TokenServiceSettings().api_key_value() == "tp-key"
    monkeypatch.setenv("TUNNELPROOF_API_KEY", "   ")
    assert TokenServiceSettings().api_key_value() is None


def test_settings_refuse_alg_none_and_relative_path() -> None:
    with pytest.raises(ValueError, match="never 'none'"):
        TokenServiceSettings(jwt_algorithms=["none"])
    with pytest.raises(ValueError, match="start with"):
        TokenServiceSettings(path="api/token")


def test_token_constraints_leave_session_resumption_unlocked() -> None:
    setup, mask = TokenServiceSettings(system_instruction="hi").live_config().token_constraints()
    assert "sessionResumption" not in setup
    assert "sessionResumption" not in mask
    assert mask.split(",")[0] == "model"
    assert "systemInstruction" in mask.split(",")


def test_origin_policy() -> None:
    policy = OriginPolicy(["https://app.example/", "HTTPS://Other.example"])
    assert policy.permits(None)  # server-to-server: no Origin, no cookies to abuse
    assert policy.permits("https://app.example")
    assert policy.permits("https://other.example")
    assert not policy.permits("https://evil.example")
    assert not policy.permits("null")
    assert not policy.permits("https://app.example.evil.example")
    closed = OriginPolicy([])
    assert closed.permits(None)
    assert not closed.permits("https://app.example")
    assert closed.cors_origins() == []
    assert OriginPolicy(["*"]).permits("https://anything.example")


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    value = parse_retry_after(future)
    assert value is not None
    assert 20 <= value <= 31


def test_iso_utc_format() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    moment = datetime(2026, 1, 1, 1, 30, tzinfo=timezone(timedelta(hours=1)))
    assert iso_utc(moment) == "2026-01-01T00:30:00Z"
    assert iso_utc(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00Z"


def test_authenticator_guards() -> None:
    with pytest.raises(ValueError, match="32"):
        SharedSecretJwtAuthenticator("short")
    with pytest.raises(ValueError, match="HS"):
        SharedSecretJwtAuthenticator("x" * 40, algorithms=("RS256",))
    with pytest.raises(ValueError, match="asymmetric"):
        JwksAuthenticator(
            "http://127.0.0.1:1/jwks", issuer="i", audience="a", algorithms=("HS256",)
        )
    with pytest.raises(ValueError, match="issuer and audience"):
        JwksAuthenticator("http://127.0.0.1:1/jwks", issuer=None, audience="a")


def test_token_service_source_rejects_bad_urls() -> None:
    with pytest.raises(TokenConfigError):
        TokenServiceSource("127.0.0.1:8080/api/live/token")
    with pytest.raises(TokenConfigError):
        TokenServiceSource("ftp://host/x")


def test_the_api_key_source_does_not_load_google_genai() -> None:
    """``tokens.direct`` imports ``tokens.minting``; google-genai (and pydantic) load only
    when a ``Minter`` is built: a client process does not pay ~0.4 s of imports and ~75k
    objects its garbage collector walks in every full collection."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from tunnelproof.tokens.direct import ApiKeySource\n"
        "heavy = [m for m in ('google.genai', 'pydantic', 'httpx') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
