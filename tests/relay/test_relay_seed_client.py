"""The issue's baseline: the seed's client, asked to count to 300, put through a 3 s tunnel
after about 40 numbers. Directly against Gemini it resumes but loses the rest of the
answer; through the relay it receives all 300, once, in order."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pytest

from tunnelproof.testing.tunnel import TunnelProxy

from .relay_helpers import AUDIO_CONFIG, SeedStyleClient, fetch_ticket, relay_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

QUESTION = "Please count to 300."


async def _tunnel_after(client: SeedStyleClient, tunnel: TunnelProxy, numbers: int) -> None:
    for _ in range(2000):
        if len(client.numbers()) >= numbers:
            break
        await asyncio.sleep(0.005)
    tunnel.blackhole(drop=True)
    await asyncio.sleep(3.0)
    tunnel.restore()  # resets the connections that lost bytes, as a real TCP would


async def test_seed_client_through_the_relay_gets_all_300_numbers_once_in_order() -> None:
    async with relay_stack() as stack:
        ws_url = stack.relay.ws_url("v1alpha", constrained=True).replace(
            stack.relay.ws_base, stack.device_ws_base
        )

        async def get_url() -> str:  # getToken() per connect, as the seed does
            return f"{ws_url}?access_token={quote(await fetch_ticket(stack.ticket_url))}"

        client = SeedStyleClient(get_url, AUDIO_CONFIG.setup_body())
        cut = asyncio.create_task(_tunnel_after(client, stack.tunnel, 40))
        await client.run_until_turn_complete(QUESTION, timeout=40)
        await cut
        assert client.connects >= 2, "the tunnel must have cut the device's connection"
        assert client.numbers() == list(range(1, 301))
        assert client.text_frames == 0, "binary frames, as Google sends"
        stats = stack.relay.stats()
        assert stats["device_resumes"] >= 1 and stats["replayed_frames"] > 0
        assert stats["lost_to_bounds"] == 0
        # one upstream session, never cut by the device's tunnel
        assert len(stack.emu.controls.connections()) == 1


async def test_seed_client_directly_against_the_server_loses_the_answer() -> None:
    """The baseline the relay fixes (same client, same tunnel, no relay)."""
    async with relay_stack() as stack, TunnelProxy("127.0.0.1", stack.emu.port) as tunnel:
        emu = stack.emu
        ws_url = f"ws://127.0.0.1:{tunnel.port}/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained"

        async def get_url() -> str:
            import httpx

            async with httpx.AsyncClient() as http:
                r = await http.post(
                    f"{emu.http_base}/v1alpha/auth_tokens",
                    headers={"x-goog-api-key": emu.api_key},
                    json={"uses": 1},
                )
            return f"{ws_url}?access_token={quote(r.json()['name'])}"

        client = SeedStyleClient(get_url, AUDIO_CONFIG.setup_body())
        cut = asyncio.create_task(_tunnel_after(client, tunnel, 40))
        with pytest.raises(TimeoutError):
            # the cut turn never completes: the resumed session does not continue it,
            # the resumed socket stays silent
            await client.run_until_turn_complete(QUESTION, timeout=15, quiet=1.5)
        await cut
        got = client.numbers()
        assert client.connects >= 2
        print(f"direct: {len(got)} of 300 numbers")
        assert 30 <= len(got) < 100, got
        assert got == list(range(1, len(got) + 1))


async def test_a_buffer_bound_hit_while_the_device_is_away_is_counted() -> None:
    from tunnelproof.relay import BufferLimits, RelaySettings

    # ~6 one-word audio frames fit; the tunnel lasts far longer than that.
    settings = RelaySettings(grace_period=30.0, buffer=BufferLimits(max_bytes=100_000))
    async with relay_stack(settings=settings) as stack:
        ws_url = stack.relay.ws_url("v1alpha", constrained=True).replace(
            stack.relay.ws_base, stack.device_ws_base
        )

        async def get_url() -> str:
            return f"{ws_url}?access_token={quote(await fetch_ticket(stack.ticket_url))}"

        client = SeedStyleClient(get_url, AUDIO_CONFIG.setup_body())

        async def cut() -> None:
            for _ in range(2000):
                if len(client.numbers()) >= 20:
                    break
                await asyncio.sleep(0.005)
            stack.tunnel.blackhole(drop=True)
            await asyncio.sleep(2.0)
            stack.tunnel.restore()

        cutter = asyncio.create_task(cut())
        await client.run_until_turn_complete("Please count to 100.", timeout=30)
        await cutter
        got = client.numbers()
        assert got == sorted(set(got)) and got[-1] == 100  # in order, no duplicate, the end
        missing = 100 - len(got)
        assert missing > 0
        # every frame the device needed but the bound evicted is counted (audio frames
        # carry one number each, transcription frames a second frame per number)
        assert stack.relay.stats()["lost_to_bounds"] >= missing
