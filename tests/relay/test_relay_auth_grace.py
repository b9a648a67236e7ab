"""Admission (tickets, bearer keys) and the grace period, over real sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
import trustme
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tunnelproof.emulator import EmulatorPolicy, EmulatorServer
from tunnelproof.relay import RelaySettings

from .relay_helpers import ALICE_KEY, AUDIO_CONFIG, BOB_KEY, FAST_AUDIO, fetch_ticket, relay_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


async def _ask(ws: Any, text: str) -> tuple[str, str | None]:
    """Send one text turn; the transcript and the newest handle until turnComplete."""
    await ws.send(orjson.dumps({"realtimeInput": {"text": text}}).decode())
    heard: list[str] = []
    handle = None
    async with asyncio.timeout(15):
        async for raw in ws:
            msg = orjson.loads(raw)
            update = msg.get("sessionResumptionUpdate")
            if update and update.get("resumable"):
                handle = update["newHandle"]
            content = msg.get("serverContent") or {}
            if content.get("outputTranscription"):
                heard.append(content["outputTranscription"]["text"])
            if content.get("turnComplete"):
                return "".join(heard), handle
    raise AssertionError("no turnComplete")


async def _open(url: str, handle: str | None = None, **kw: Any) -> Any:
    ws = await connect(url, ping_interval=None, **kw)
    setup = dict(AUDIO_CONFIG.setup_body())
    setup["sessionResumption"] = {"handle": handle} if handle else {}
    await ws.send(orjson.dumps({"setup": setup}).decode())
    first = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
    assert "setupComplete" in first, first
    return ws


async def test_tickets_are_single_use_and_bearer_keys_and_handles_are_per_user() -> None:
    async with relay_stack() as stack:
        url = stack.relay.ws_url("v1alpha", constrained=True)
        ticket = await fetch_ticket(stack.ticket_url)
        ws = await _open(f"{url}?access_token={quote(ticket)}")
        answer, handle = await _ask(ws, "My name is Ada.")
        assert "Ada" in answer and handle is not None
        await ws.close()
        with pytest.raises(InvalidStatus) as reused:
            await connect(f"{url}?access_token={quote(ticket)}")
        assert reused.value.response.status_code == 401
        for bad in ("auth_tokens/relay.forged.sig", "auth_tokens/x"):
            with pytest.raises(InvalidStatus):
                await connect(f"{url}?access_token={quote(bad)}")
        with pytest.raises(InvalidStatus):
            await connect(url)  # no credential at all
        async with httpx.AsyncClient() as http:
            refused = await http.post(stack.ticket_url)
        assert refused.status_code == 401 and refused.headers["cache-control"] == "no-store"

        # Bob (a bearer key, as a server-side device would use) cannot resume Alice's talk.
        bob = await connect(url, additional_headers={"Authorization": f"Bearer {BOB_KEY}"})
        setup = dict(AUDIO_CONFIG.setup_body(), sessionResumption={"handle": handle})
        await bob.send(orjson.dumps({"setup": setup}).decode())
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(bob.recv(), 10)
        assert bob.close_code == 1007

        # A ticket bound to another conversation cannot resume this one.
        bound = await fetch_ticket(stack.ticket_url, body={"conversation": "someone-else"})
        other = await connect(f"{url}?access_token={quote(bound)}")
        await other.send(orjson.dumps({"setup": setup}).decode())
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(other.recv(), 10)
        assert other.close_code == 1007

        # Alice resumes with her bearer key: same conversation, context kept.
        alice = await _open(
            url, handle, additional_headers={"Authorization": f"Bearer {ALICE_KEY}"}
        )
        answer, _ = await _ask(alice, "What is my name?")
        assert answer.strip().startswith("Your name is Ada")
        await alice.close()


async def test_a_user_cannot_open_more_upstream_sessions_than_allowed() -> None:
    async with relay_stack(settings=RelaySettings(max_upstreams_per_user=1)) as stack:
        url = stack.relay.ws_url("v1alpha", constrained=True)
        first = await _open(f"{url}?access_token={quote(await fetch_ticket(stack.ticket_url))}")
        second = await connect(f"{url}?access_token={quote(await fetch_ticket(stack.ticket_url))}")
        await second.send(orjson.dumps({"setup": AUDIO_CONFIG.setup_body()}).decode())
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(second.recv(), 10)
        assert second.close_code == 1013
        assert len(stack.emu.controls.connections()) == 1
        bob = await _open(url, additional_headers={"Authorization": f"Bearer {BOB_KEY}"})
        await bob.close()  # another user is not affected
        await first.close()


async def test_after_the_grace_period_upstream_closes_and_a_later_resume_keeps_context() -> None:
    async with relay_stack(settings=RelaySettings(grace_period=0.3)) as stack:
        url = stack.relay.ws_url("v1alpha", constrained=True)
        ws = await _open(f"{url}?access_token={quote(await fetch_ticket(stack.ticket_url))}")
        _, handle = await _ask(ws, "My favourite colour is teal.")
        await ws.close()
        async with asyncio.timeout(10):
            while stack.relay.stats()["upstreams_open"]:
                await asyncio.sleep(0.05)
        await stack.emu.controls.wait_for_open(0)
        assert stack.relay.stats()["parked"] == 1
        ws = await _open(
            f"{url}?access_token={quote(await fetch_ticket(stack.ticket_url))}", handle
        )
        answer, _ = await _ask(ws, "What did I say first?")
        assert "teal" in answer
        await ws.close()
        conns = stack.emu.controls.connections()
        assert len(conns) == 2 and conns[1]["resumed"] is True  # Gemini's context resumed


async def test_cli_relay_prints_a_ready_line_and_serves_devices_over_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    leaf.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "relay.pem"))
    async with EmulatorServer(policy=EmulatorPolicy(**FAST_AUDIO)) as emu:
        env = dict(
            os.environ,
            GEMINI_API_KEY=emu.api_key,
            TUNNELPROOF_RELAY_STATIC_KEYS="carol:carol-key",
            TUNNELPROOF_API_KEY="",
        )
        argv = [sys.executable, "-m", "tunnelproof", "relay", "--upstream", emu.ws_base]
        proc = subprocess.Popen(
            [*argv, "--certfile", str(tmp_path / "relay.pem")], stdout=subprocess.PIPE, env=env
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
            ready = orjson.loads(line)
            assert ready["event"] == "ready" and ready["wsUrl"].startswith("wss://127.0.0.1:")
            assert emu.api_key not in line.decode()
            client_tls = ssl.create_default_context()
            ca.configure_trust(client_tls)
            ws = await _open(
                ready["wsUrl"],
                additional_headers={"Authorization": "Bearer carol-key"},
                ssl=client_tls,
            )
            answer, handle = await _ask(ws, "Hello there.")
            assert answer and handle is not None
            await ws.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


async def test_the_relay_mounts_in_an_existing_aiohttp_app_next_to_its_routes() -> None:
    from aiohttp import web

    from tunnelproof.relay import DeviceAuthenticator, RelayServer
    from tunnelproof.tokens.auth import StaticKeyAuthenticator
    from tunnelproof.tokens.direct import ApiKeySource

    async with EmulatorServer(policy=EmulatorPolicy(**FAST_AUDIO)) as emu:
        relay = RelayServer(
            ApiKeySource(emu.api_key, ws_base=emu.ws_base),
            DeviceAuthenticator(
                signer=None, consume=None, authenticator=StaticKeyAuthenticator({"k": "erin"})
            ),
        )
        app = web.Application()

        async def hello(request: web.Request) -> web.Response:
            return web.Response(text="app route")

        app.router.add_get("/hello", hello)
        relay.add_routes(app)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        await relay.start_background()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            async with httpx.AsyncClient() as http:
                assert (await http.get(f"http://127.0.0.1:{port}/hello")).text == "app route"
            for slashes in ("/", "//"):
                url = (
                    f"ws://127.0.0.1:{port}{slashes}ws/google.ai.generativelanguage.v1beta."
                    "GenerativeService.BidiGenerateContent"
                )
                ws = await _open(url, additional_headers={"Authorization": "Bearer k"})
                answer, handle = await _ask(ws, "Hello there.")
                assert answer and handle is not None
                await ws.close()
        finally:
            await relay.shutdown()
            await runner.cleanup()
