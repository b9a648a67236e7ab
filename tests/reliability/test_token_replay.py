"""Token abuse the token-service tests do not cover: a minted token replayed end to end.

``tests/tokens`` covers forged/expired/wrong-audience JWTs, oversized bodies, wrong content
types and bursts at the HTTP level, and a raw second WebSocket with a spent token. Here
the replay goes the whole way: a token from the real token service opens a session
through ``LiveSession``; a second ``LiveSession`` whose token source keeps handing out
that same token (a replaying app, or an attacker holding a captured token) is refused
and stops with a clear auth failure instead of retrying forever.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from pydantic import SecretStr

from tunnelproof.emulator import EmulatorServer
from tunnelproof.protocol.close_codes import CloseClass
from tunnelproof.protocol.config import LiveConfig
from tunnelproof.session import LiveSession
from tunnelproof.session import app_events as ev
from tunnelproof.session.credentials import Credential
from tunnelproof.testing.tokens_fixtures import running_token_service
from tunnelproof.tokens.client import TokenServiceSource
from tunnelproof.tokens.settings import TokenServiceSettings

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

CONFIG = LiveConfig()


async def _first(session: LiveSession, *kinds: type) -> ev.AppEvent:
    async with asyncio.timeout(20):
        async for event in session:
            if isinstance(event, kinds):
                return event
    raise AssertionError("the event stream ended")


async def test_a_replayed_token_opens_no_second_session() -> None:
    async with EmulatorServer(api_key="emu-key") as emu:
        settings = TokenServiceSettings(
            api_key=SecretStr("emu-key"),
            upstream_base_url=emu.http_base,
            ws_base_url=emu.ws_base,
            auth_mode="static",
            static_keys=[SecretStr("alice:alice-key")],
            rate_limit="100/minute",
            model=CONFIG.model,
        )
        async with running_token_service(settings) as svc:
            source = TokenServiceSource(svc.token_url, lambda: "Bearer alice-key")
            captured = await source()
            calls = 0

            async def replaying() -> Credential:
                nonlocal calls
                calls += 1
                return captured

            async with LiveSession(CONFIG, replaying, rng=random.Random(1)) as first:
                assert isinstance(await _first(first, ev.Connected, ev.Failed), ev.Connected)
                async with LiveSession(CONFIG, replaying, rng=random.Random(2)) as second:
                    failed = await _first(second, ev.Connected, ev.Failed)
                    assert isinstance(failed, ev.Failed), failed
                    assert failed.verdict.kind is CloseClass.FATAL_AUTH, failed.verdict
                    assert failed.advice
                    # One try, plus at most the one fresh try a possibly-spent token earns.
                    assert second.metrics.connect_attempts <= 2
                    await asyncio.sleep(1.0)  # and it does not keep trying by itself
                    assert second.metrics.connect_attempts <= 2
                    assert second.state.value == "failed"
            [entry] = [t for t in emu.controls.token_ledger() if t["name"] == captured.secret]
            assert entry["usesConsumed"] == 1
            assert len(entry["connections"]) == 1  # only the first session got in
