"""The pytest fixtures, used the way a user would: drop the link mid-answer, recover."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets

from tunnelproof.emulator import EmulatorServer
from tunnelproof.protocol.config import LiveConfig
from tunnelproof.protocol.endpoints import Method, live_path
from tunnelproof.testing.netns import NetnsTunnel
from tunnelproof.testing.tunnel import TunnelProxy
from tunnelproof.testing.tunnel_fixtures import TunnelFactory


async def echo_server() -> asyncio.Server:
    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(1024):
            w.write(data)
        w.close()

    return await asyncio.start_server(echo, "127.0.0.1", 0)


async def test_tunnel_factory_by_host_port_and_by_object(tunnel: TunnelFactory) -> None:
    server = await echo_server()
    port = int(server.sockets[0].getsockname()[1])

    class Target:
        host = "127.0.0.1"

    target = Target()
    target.port = port  # type: ignore[attr-defined]
    try:
        for link in (await tunnel("127.0.0.1", port), await tunnel(target)):
            assert link.url("ws") == f"ws://127.0.0.1:{link.port}"
            reader, writer = await asyncio.open_connection(*link.address)
            writer.write(b"x")
            assert await asyncio.wait_for(reader.readexactly(1), 10) == b"x"
            writer.close()
        with pytest.raises(TypeError, match="port"):
            await tunnel("127.0.0.1")
    finally:
        server.close()


async def test_netns_tunnel_fixture(netns_tunnel: NetnsTunnel) -> None:
    assert netns_tunnel.ns_address.startswith("10.213.")
    assert not netns_tunnel.blackholed


# -- the README story: drop the link mid-answer, check the conversation survives ----------


async def _recv(ws: Any) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 15))
    return value


async def _session(ws_base: str, emulator: EmulatorServer, handle: str | None) -> Any:
    url = f"{ws_base}{live_path('v1beta', Method.BIDI)}?key={emulator.api_key}"
    ws = await websockets.connect(url, ping_interval=None, open_timeout=15)
    resumption = {"handle": handle} if handle else {}
    # Audio-first, as Google's Live models are: the answer's text is its transcription.
    setup = LiveConfig().setup_body()
    setup["sessionResumption"] = resumption
    await ws.send(json.dumps({"setup": setup}))
    assert await _recv(ws) == {"setupComplete": {}}
    return ws


async def _ask(ws: Any, text: str) -> tuple[str, str | None]:
    turn = {"role": "user", "parts": [{"text": text}]}
    await ws.send(json.dumps({"clientContent": {"turns": [turn], "turnComplete": True}}))
    answer, handle = "", None
    for _ in range(1000):
        message = await _recv(ws)
        content = message.get("serverContent", {})
        answer += content.get("outputTranscription", {}).get("text", "")
        update = message.get("sessionResumptionUpdate", {})
        if update.get("resumable"):
            handle = update["newHandle"]
        if handle and message.get("sessionResumptionUpdate") and answer:
            return answer, handle
    raise AssertionError("no answer")


async def test_drop_the_link_mid_answer_and_recover(
    emulator: EmulatorServer, emulator_tunnel: TunnelProxy
) -> None:
    emulator.controls.update_policy(seconds_per_word=0.02, audio_chunk_duration=0.02)
    ws = await _session(emulator_tunnel.url("ws"), emulator, None)
    _, handle = await _ask(ws, "my name is Ada")
    [conn] = emulator.controls.connections()

    emulator.controls.set_generation_speed(0.2)  # a slow answer, so we cut into it
    await ws.send(
        json.dumps(
            {
                "clientContent": {
                    "turns": [{"role": "user", "parts": [{"text": "tell me a long story"}]}],
                    "turnComplete": True,
                }
            }
        )
    )
    # The answer has started (a step is a transcript then its audio: read through both)...
    for _ in range(50):
        if "modelTurn" in (await _recv(ws)).get("serverContent", {}):
            break
    emulator_tunnel.blackhole()  # ...and the train enters the tunnel
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), 1.0)  # silence, not a close: half-open
    ws.transport.abort()  # the app's watchdog gives up on the dead socket

    emulator_tunnel.restore()  # out of the tunnel; the damaged connection is reset
    await emulator.controls.wait_for_closed(conn["id"])
    emulator.controls.set_generation_speed(0)
    ws = await _session(emulator_tunnel.url("ws"), emulator, handle)
    answer, _ = await _ask(ws, "what did I say first?")
    assert "my name is Ada" in answer
    await ws.close()
    assert emulator_tunnel.stats.connections_accepted == 2
    assert emulator_tunnel.stats.bytes_dropped_down > 0
