"""The service over loopback (uvicorn on a real port) minting from a running emulator."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx
import pytest

from tunnelproof.protocol.endpoints import Method, live_url
from tunnelproof.testing.tokens_fixtures import running_token_service

from .helpers import ALICE, BOB, settings_for


def _ts(value: str) -> float:
    assert value.endswith("Z")
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def test_mints_a_token_from_the_emulator(emu: Any) -> None:
    settings = settings_for(emu.http_base, emu.ws_base, system_instruction="Be brief.")
    async with running_token_service(settings) as svc, httpx.AsyncClient() as http:
        before = time.time()
        r = await http.post(svc.token_url, headers=ALICE)
        assert r.status_code == 200, r.text
        body = r.json()
    assert set(body) == {
        "token",
        "expiresAt",
        "newSessionExpiresAt",
        "model",
        "wsUrl",
        "responseModalities",
        "inputAudioTranscription",
        "outputAudioTranscription",
    }
    assert body["token"].startswith("auth_tokens/")
    assert body["model"] == settings.model
    # What the token locks, so a client with another LiveConfig can say so (default: audio).
    assert body["responseModalities"] == ["AUDIO"]
    assert body["inputAudioTranscription"] is True
    assert body["outputAudioTranscription"] is True
    assert body["wsUrl"] == live_url(emu.ws_base, version="v1alpha", method=Method.CONSTRAINED)
    assert "access_token" not in body["wsUrl"]
    # Expiry is ours: 30 min and 60 s from now (whole-second precision, generous bounds).
    assert before + 1800 - 2 <= _ts(body["expiresAt"]) <= time.time() + 1800 + 1
    assert before + 60 - 2 <= _ts(body["newSessionExpiresAt"]) <= time.time() + 60 + 1
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["pragma"] == "no-cache"


async def test_two_calls_give_two_different_single_use_tokens(emu: Any) -> None:
    async with (
        running_token_service(settings_for(emu.http_base)) as svc,
        httpx.AsyncClient() as http,
    ):
        first = (await http.post(svc.token_url, headers=ALICE)).json()["token"]
        second = (await http.post(svc.token_url, headers=BOB)).json()["token"]
    assert first != second


async def test_errors_also_carry_no_store_and_say_nothing_more(emu: Any) -> None:
    async with (
        running_token_service(settings_for(emu.http_base)) as svc,
        httpx.AsyncClient() as http,
    ):
        cases = [
            (await http.post(svc.token_url), 401),
            (await http.post(svc.token_url, headers={"Authorization": "Bearer nope"}), 401),
            (
                await http.post(svc.token_url, headers={**ALICE, "Origin": "https://evil.example"}),
                403,
            ),
        ]
    for response, status in cases:
        assert response.status_code == status
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["pragma"] == "no-cache"
        assert set(response.json()) == {"error"}
    assert cases[0][0].headers["www-authenticate"] == 'Bearer realm="tunnelproof"'
    assert 'error="invalid_token"' in cases[1][0].headers["www-authenticate"]
    # Missing and wrong credentials look the same to the caller.
    assert cases[0][0].json() == cases[1][0].json()


@pytest.mark.parametrize(
    ("headers", "content", "status"),
    [
        ({"Content-Type": "application/json"}, b"x" * 5000, 413),
        ({"Content-Type": "text/plain"}, b"hello", 415),
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"a=b", 415),
        ({"Content-Type": "application/json"}, b"[1, 2]", 400),
        ({"Content-Type": "application/json"}, b"{not json", 400),
        ({"Content-Type": "application/json"}, b"{}", 200),
        ({}, b"", 200),
    ],
)
async def test_body_guard(emu: Any, headers: dict[str, str], content: bytes, status: int) -> None:
    async with (
        running_token_service(settings_for(emu.http_base)) as svc,
        httpx.AsyncClient() as http,
    ):
        r = await http.post(svc.token_url, headers={**ALICE, **headers}, content=content)
    assert r.status_code == status, r.text
    assert r.headers["cache-control"] == "no-store"


async def test_oversized_chunked_body_is_refused_without_content_length(emu: Any) -> None:
    async def chunks() -> Any:
        for _ in range(100):  # 100 KiB, streamed without a Content-Length
            yield b"{" + b" " * 1023

    async with (
        running_token_service(settings_for(emu.http_base)) as svc,
        httpx.AsyncClient() as http,
    ):
        r = await http.post(
            svc.token_url, headers={**ALICE, "Content-Type": "application/json"}, content=chunks()
        )
    assert r.status_code == 413


async def test_healthz_and_metrics_count_what_happened(emu: Any) -> None:
    async with (
        running_token_service(settings_for(emu.http_base, rate_limit="2/minute")) as svc,
        httpx.AsyncClient() as http,
    ):
        assert (await http.get(svc.url + "/healthz")).json() == {"status": "ok"}
        assert (await http.post(svc.token_url, headers=ALICE)).status_code == 200
        assert (await http.post(svc.token_url, headers=ALICE)).status_code == 200
        assert (await http.post(svc.token_url, headers=ALICE)).status_code == 429
        assert (await http.post(svc.token_url)).status_code == 401
        assert (
            await http.post(svc.token_url, headers={"Origin": "https://evil.example"})
        ).status_code == 403
        metrics = (await http.get(svc.url + "/metrics")).text
    assert "tunnelproof_tokens_issued_total 2.0" in metrics
    assert 'tunnelproof_token_auth_failures_total{kind="unauthenticated"} 1.0' in metrics
    assert 'tunnelproof_token_auth_failures_total{kind="origin"} 1.0' in metrics
    assert 'tunnelproof_token_rate_limited_total{reason="user"} 1.0' in metrics
    assert "tunnelproof_token_upstream_latency_seconds_count 2.0" in metrics


async def test_two_apps_in_one_process_keep_separate_metrics(emu: Any) -> None:
    async with (
        running_token_service(settings_for(emu.http_base)) as one,
        running_token_service(settings_for(emu.http_base)) as two,
        httpx.AsyncClient() as http,
    ):
        assert (await http.post(one.token_url, headers=ALICE)).status_code == 200
        m1 = (await http.get(one.url + "/metrics")).text
        m2 = (await http.get(two.url + "/metrics")).text
    assert "tunnelproof_tokens_issued_total 1.0" in m1
    assert "tunnelproof_tokens_issued_total 0.0" in m2


async def test_custom_path(emu: Any) -> None:
    async with (
        running_token_service(settings_for(emu.http_base, path="/v2/voice-token")) as svc,
        httpx.AsyncClient() as http,
    ):
        assert (await http.post(svc.url + "/v2/voice-token", headers=ALICE)).status_code == 200
        assert (await http.post(svc.url + "/api/live/token", headers=ALICE)).status_code == 404
