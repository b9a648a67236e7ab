"""`tunnelproof tunnel` as a process: one JSON ready line, HTTP control, clean stop."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

CLI = [sys.executable, "-c", "from tunnelproof.cli import main; main()", "tunnel"]


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except OSError:
            pass
        w.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    server.close()


async def read_event(proc: asyncio.subprocess.Process) -> dict[str, object]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line, "the CLI exited without a JSON line"
    event: dict[str, object] = orjson.loads(line)
    return event


async def test_cli_ready_line_control_and_stop(echo_port: int) -> None:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "--upstream",
        f"127.0.0.1:{echo_port}",
        "--schedule",
        "0:latency 1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        ready = await read_event(proc)
        assert ready["event"] == "ready"
        assert ready["upstream"] == f"127.0.0.1:{echo_port}"
        port = ready["port"]
        assert isinstance(port, int)
        assert ready["listen"] == f"127.0.0.1:{port}"
        control = ready["control"]
        assert isinstance(control, str)
        assert control.startswith("http://127.0.0.1:")
        assert (await read_event(proc))["action"] == "latency 1 0"

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"through the cli")
        assert await asyncio.wait_for(reader.readexactly(15), 10) == b"through the cli"

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            async with http.post(f"{control}/blackhole") as resp:
                assert resp.status == 200
                state = await resp.json()
                assert state["faults"]["blackhole"] == "drop"
            assert (await read_event(proc))["action"] == "blackhole drop"
            writer.write(b"lost")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(1), 0.5)
            async with http.post(f"{control}/action", data="restore") as resp:
                assert resp.status == 200
            async with http.post(f"{control}/latency?ms=oops") as resp:
                assert resp.status == 400
            async with http.get(f"{control}/stats") as resp:
                stats = (await resp.json())["stats"]
                assert stats["connections_accepted"] == 1
                assert stats["bytes_up"] == 15
                assert stats["bytes_dropped_up"] == 4
        writer.close()

        proc.send_signal(signal.SIGTERM)
        events = [await read_event(proc)]
        while events[-1]["event"] != "stopped":
            events.append(await read_event(proc))
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_cli_rejects_a_bad_schedule() -> None:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "--upstream",
        "127.0.0.1:9",
        "--schedule",
        "5:explode",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"unknown tunnel action" in err
