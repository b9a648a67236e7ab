"""Each auth mode against the running service, including forged and expired tokens.

The JWKS is served over loopback by aiohttp (helpers.jwks); RS256 keys come from
cryptography. Minting goes to the emulator so a 200 is a real token.

The JWKS server runs in the same event loop as the in-process service, so these tests also
show the JWKS fetch does not block the loop: if it did, the JWKS server could not answer,
the fetch would time out and every "good token" case would get 503 instead of 200.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from pydantic import SecretStr
from starlette.requests import Request

from tunnelproof.testing.tokens_fixtures import running_token_service
from tunnelproof.tokens import (
    AuthenticationFailed,
    JwksAuthenticator,
    Principal,
    TokenService,
    from_callable,
)

from .helpers import AUDIENCE, ISSUER, Jwks, closed_port_url, settings_for


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def jwks_settings(emu: Any, jwks_url: str, **extra: Any) -> Any:
    return settings_for(
        emu.http_base,
        auth_mode="jwks",
        jwks_url=jwks_url,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        **extra,
    )


async def test_jwks_mode_accepts_good_tokens_and_refuses_bad_ones(
    emu: Any, jwks: Jwks, rsa_keys: Any
) -> None:
    attacker = rsa_keys[1]
    public_pem = jwks.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    bad = {
        "forged signature": jwks.token(key=attacker),
        "expired": jwks.token(exp=now - 120, iat=now - 600),
        "wrong audience": jwks.token(aud="someone-else"),
        "wrong issuer": jwks.token(iss="https://evil.example"),
        "no exp": jwks.token(exp=None),
        "no sub": jwks.token(sub=None),
        "alg none": jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now + 60}, None, algorithm="none"
        ),
        # alg confusion: the IdP's *public* key used as an HMAC secret
        "HS256 with public key": _hs256_with_key(public_pem, now),
        "garbage": "not.a.jwt",
        "tampered": _tamper(jwks.token()),
    }
    async with (
        running_token_service(jwks_settings(emu, jwks.url)) as svc,
        httpx.AsyncClient(timeout=20) as http,
    ):
        ok = await http.post(svc.token_url, headers=_bearer(jwks.token()))
        assert ok.status_code == 200, ok.text
        assert ok.json()["token"].startswith("auth_tokens/")
        results = {
            name: await http.post(svc.token_url, headers=_bearer(tok)) for name, tok in bad.items()
        }
        basic = await http.post(svc.token_url, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    for name, response in results.items():
        assert response.status_code == 401, name
        assert response.json() == {"error": "Unauthorized"}, name
        assert response.headers["www-authenticate"].startswith("Bearer"), name
    assert basic.status_code == 401


def _hs256_with_key(secret: bytes, now: int) -> str:
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    payload = b64(
        json.dumps({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now + 60}).encode()
    )
    signing_input = f"{header}.{payload}".encode()
    return f"{header}.{payload}.{b64(hmac.new(secret, signing_input, hashlib.sha256).digest())}"


def _tamper(token: str) -> str:
    import base64
    import json

    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def test_unknown_key_ids_do_not_hammer_the_identity_provider(emu: Any, jwks: Jwks) -> None:
    async with (
        running_token_service(jwks_settings(emu, jwks.url)) as svc,
        httpx.AsyncClient(timeout=20) as http,
    ):
        assert (await http.post(svc.token_url, headers=_bearer(jwks.token()))).status_code == 200
        fetches_after_first = len(jwks.hits)
        for i in range(20):
            r = await http.post(svc.token_url, headers=_bearer(jwks.token(kid=f"made-up-{i}")))
            assert r.status_code == 401
    assert fetches_after_first == 1
    assert len(jwks.hits) == 1  # within min_refresh_seconds: no refetch per made-up kid


async def test_jwks_unreachable_is_503_not_401(emu: Any, jwks: Jwks) -> None:
    # A 401 would tell the client its user must sign in again; the IdP being down is ours.
    async with (
        running_token_service(jwks_settings(emu, closed_port_url() + "/jwks.json")) as svc,
        httpx.AsyncClient(timeout=20) as http,
    ):
        r = await http.post(svc.token_url, headers=_bearer(jwks.token()))
    assert r.status_code == 503
    assert "retry-after" in r.headers


async def test_jwt_from_cookie_needs_an_allowed_origin(emu: Any, jwks: Jwks) -> None:
    settings = jwks_settings(
        emu, jwks.url, jwt_cookie="session", allowed_origins=["https://app.example"]
    )
    async with running_token_service(settings) as svc, httpx.AsyncClient(timeout=20) as http:
        cookie = {"Cookie": f"session={jwks.token()}"}
        same_site = await http.post(
            svc.token_url, headers={**cookie, "Origin": "https://app.example"}
        )
        cross_site = await http.post(
            svc.token_url, headers={**cookie, "Origin": "https://evil.example"}
        )
    assert same_site.status_code == 200
    assert cross_site.status_code == 403
    assert "token" not in cross_site.json()


async def test_shared_secret_mode(emu: Any, jwks: Jwks) -> None:
    secret = "s" * 16 + "-shared-secret-for-tests"
    settings = settings_for(
        emu.http_base,
        auth_mode="jwt_secret",
        jwt_secret=SecretStr(secret),
        jwt_algorithms=["HS256"],
        jwt_audience=AUDIENCE,
    )
    now = int(time.time())
    good = jwt.encode({"sub": "u1", "aud": AUDIENCE, "exp": now + 60}, secret, algorithm="HS256")
    wrong_secret = jwt.encode(
        {"sub": "u1", "aud": AUDIENCE, "exp": now + 60}, "x" * 40, algorithm="HS256"
    )
    expired = jwt.encode(
        {"sub": "u1", "aud": AUDIENCE, "exp": now - 300}, secret, algorithm="HS256"
    )
    async with running_token_service(settings) as svc, httpx.AsyncClient(timeout=20) as http:
        assert (await http.post(svc.token_url, headers=_bearer(good))).status_code == 200
        assert (await http.post(svc.token_url, headers=_bearer(wrong_secret))).status_code == 401
        assert (await http.post(svc.token_url, headers=_bearer(expired))).status_code == 401
        assert (await http.post(svc.token_url, headers=_bearer(jwks.token()))).status_code == 401


async def test_callable_authenticator(emu: Any) -> None:
    def by_header(request: Request) -> Principal | str | None:
        if request.headers.get("x-app-session") == "valid-session":
            return "session-user"
        if request.headers.get("x-app-session") == "explode":
            raise AuthenticationFailed("revoked session")
        return None

    service = TokenService(settings_for(emu.http_base), authenticator=from_callable(by_header))
    async with running_token_service(service=service) as svc, httpx.AsyncClient(timeout=20) as http:
        ok = await http.post(svc.token_url, headers={"x-app-session": "valid-session"})
        missing = await http.post(svc.token_url)
        revoked = await http.post(svc.token_url, headers={"x-app-session": "explode"})
    assert ok.status_code == 200
    assert missing.status_code == 401
    assert revoked.status_code == 401


async def test_idp_outage_keeps_known_keys_working(emu: Any, jwks: Jwks) -> None:
    authenticator = JwksAuthenticator(
        jwks.url, issuer=ISSUER, audience=AUDIENCE, cache_seconds=0.2, min_refresh_seconds=0
    )
    service = TokenService(settings_for(emu.http_base), authenticator=authenticator)
    async with running_token_service(service=service) as svc, httpx.AsyncClient(timeout=20) as http:
        assert (await http.post(svc.token_url, headers=_bearer(jwks.token()))).status_code == 200
        jwks.down = True
        await asyncio.sleep(0.4)  # the cache is now stale: the next request tries a refresh
        stale_ok = await http.post(svc.token_url, headers=_bearer(jwks.token()))
        unknown = await http.post(svc.token_url, headers=_bearer(jwks.token(kid="rotated")))
    assert len(jwks.hits) >= 2  # a refresh was attempted and failed
    assert stale_ok.status_code == 200
    assert unknown.status_code == 503
