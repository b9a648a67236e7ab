"""The --real plumbing at the TLS level: dial the tunnel, verify the certificate by name.

The emulator's test CA stands in for the public CAs; "localhost" is in its certificate,
"wrong-name.test" is not. Traffic goes to 127.0.0.1 only (the tunnel), whatever the name.
"""

from __future__ import annotations

import asyncio

import pytest

from tunnelproof.emulator.tls import client_context
from tunnelproof.protocol import LiveConfig
from tunnelproof.session import Connected, LiveSession, Reconnecting
from tunnelproof.session.credentials import Credential
from tunnelproof.testing.tunnel import TunnelProxy

pytestmark = pytest.mark.e2e


async def first_outcome(emulator_tls, name: str) -> object:
    emu = emulator_tls
    # The demo's own modality: audio answers with their transcript (what --real uses).
    config = LiveConfig(response_modalities=("AUDIO",), output_audio_transcription=True)

    async def key_source() -> Credential:
        return Credential(kind="api_key", secret=emu.api_key, ws_base=f"wss://{name}:{emu.port}")

    async with TunnelProxy(emu.host, emu.port) as proxy:
        session = LiveSession(
            config,
            key_source,
            ssl=client_context(emu.ca_file),
            connect_kwargs={"host": proxy.listen_host, "port": proxy.port, "proxy": None},
        )
        async with session:
            async with asyncio.timeout(20):
                async for event in session:
                    if isinstance(event, Connected | Reconnecting):
                        outcome = event
                        break
        assert proxy.stats.connections_accepted >= 1  # it really went through the tunnel
        return outcome


async def test_real_host_name_verified_through_the_tunnel(emulator_tls) -> None:
    assert isinstance(await first_outcome(emulator_tls, "localhost"), Connected)


async def test_a_name_the_certificate_lacks_is_refused(emulator_tls) -> None:
    outcome = await first_outcome(emulator_tls, "wrong-name.test")
    assert isinstance(outcome, Reconnecting)
    reason = outcome.reason.lower()
    assert "certificate" in reason or "ssl" in reason or "hostname" in reason, outcome
