"""What reaches upstream, and whether the minted token really opens a Live session."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import websockets

from tunnelproof.protocol.config import LiveConfig
from tunnelproof.session.credentials import TokenConfigError, TokenOffline
from tunnelproof.testing.tokens_fixtures import running_token_service
from tunnelproof.tokens import ApiKeyMintingSource, ApiKeySource, TokenServiceSource

from .helpers import ALICE, EMULATOR_KEY, closed_port_url, misbehaving_upstream, settings_for


async def test_ledger_shows_uses_1_and_the_livecfg_constraints(emu: Any) -> None:
    settings = settings_for(
        emu.http_base, system_instruction="Answer in French.", voice_name="Kore"
    )
    async with running_token_service(settings) as svc:
        source = TokenServiceSource(svc.token_url, lambda: ALICE["Authorization"])
        credential = await source()
    entries = [e for e in emu.controls.token_ledger() if e["name"] == credential.secret]
    assert len(entries) == 1
    entry = entries[0]
    setup, mask = settings.live_config().token_constraints()
    assert entry["uses"] == 1
    assert entry["bidiGenerateContentSetup"] == setup
    assert ",".join(entry["fieldMask"]) == mask
    assert "sessionResumption" not in entry["fieldMask"]
    assert abs(entry["expire_at"] - (time.time() + 1800)) < 10
    assert abs(entry["new_session_expire_at"] - (time.time() + 60)) < 10


async def test_key_goes_in_a_header_and_body_is_the_flat_auth_token() -> None:
    async with (
        misbehaving_upstream("error") as upstream,
        running_token_service(settings_for(upstream.base)) as svc,
    ):
        import httpx

        async with httpx.AsyncClient(timeout=20) as http:
            # a 500 upstream is a transient failure: 503 + Retry-After
            assert (await http.post(svc.token_url, headers=ALICE)).status_code == 503
    assert len(upstream.requests) == 1
    seen = upstream.requests[0]
    assert seen["path"] == "/v1alpha/auth_tokens"
    assert seen["query"] == ""  # never ?key=
    assert seen["headers"]["x-goog-api-key"] == EMULATOR_KEY
    body = json.loads(seen["body"])
    setup, mask = LiveConfig().token_constraints()
    assert body["uses"] == 1
    assert body["bidiGenerateContentSetup"] == setup
    assert body["fieldMask"] == mask
    assert set(body) == {
        "uses",
        "expireTime",
        "newSessionExpireTime",
        "bidiGenerateContentSetup",
        "fieldMask",
    }


async def test_minted_token_opens_a_session_once(emu: Any) -> None:
    config = LiveConfig(system_instruction="Be brief.")
    settings = settings_for(emu.http_base, emu.ws_base, system_instruction="Be brief.")
    async with running_token_service(settings) as svc:
        credential = await TokenServiceSource(svc.token_url, lambda: ALICE["Authorization"])()
    endpoint = credential.endpoint()
    async with websockets.connect(endpoint.url, additional_headers=endpoint.headers) as ws:
        await ws.send(json.dumps(config.to_setup()))
        first = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert "setupComplete" in first or "setup_complete" in first

    # uses: 1 — a second *new* session with the same token is refused.
    # The emulator refuses at the HTTP upgrade or closes the socket with a code.
    async def second_new_session() -> None:
        async with websockets.connect(endpoint.url, additional_headers=endpoint.headers) as ws:
            await ws.send(json.dumps(config.to_setup()))
            await asyncio.wait_for(ws.recv(), timeout=10)

    with pytest.raises((websockets.InvalidStatus, websockets.ConnectionClosed)):
        await second_new_session()
    [entry] = [e for e in emu.controls.token_ledger() if e["name"] == credential.secret]
    assert entry["usesConsumed"] == 1


async def test_api_key_minting_source(emu: Any) -> None:
    async with ApiKeyMintingSource(
        EMULATOR_KEY, LiveConfig(), http_base=emu.http_base, ws_base=emu.ws_base
    ) as source:
        credential = await source()
    assert credential.kind == "ephemeral_token"
    assert credential.secret.startswith("auth_tokens/")
    assert credential.ws_base == emu.ws_base
    assert EMULATOR_KEY not in repr(source)

    async with ApiKeyMintingSource("wrong-key", http_base=emu.http_base) as bad:
        with pytest.raises(TokenConfigError):
            await bad()
    async with ApiKeyMintingSource(EMULATOR_KEY, http_base=closed_port_url()) as down:
        with pytest.raises(TokenOffline):
            await down()


async def test_api_key_source_sends_the_key_in_a_header() -> None:
    source = ApiKeySource("server-side-key", ws_base="wss://example.test")
    credential = await source()
    endpoint = credential.endpoint()
    assert "server-side-key" not in endpoint.url
    assert endpoint.headers == {"x-goog-api-key": "server-side-key"}
    assert "server-side-key" not in repr(source)
