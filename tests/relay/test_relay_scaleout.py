"""Scale-out: two relay processes, a real redis-server, one owner per conversation.

A device that moves to the other process gets its conversation handed over with nothing
lost; a process killed mid-turn is replaced once its lease expires. Never two upstream
sockets for one conversation (checked on the emulator's own event log)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tunnelproof.benchmarks.procs import Proc, json_process
from tunnelproof.emulator import EmulatorPolicy, EmulatorServer
from tunnelproof.testing.redis_server import RedisServer, RedisServerUnavailable

from .relay_helpers import AUDIO_CONFIG, FAST_AUDIO, NUMBER

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

KEY = "dana-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}


@asynccontextmanager
async def two_relays(
    **policy: Any,
) -> AsyncIterator[tuple[EmulatorServer, Proc, Proc]]:
    try:
        redis = RedisServer()
        await redis.start_async()
    except RedisServerUnavailable as exc:  # pragma: no cover - depends on the machine
        pytest.skip(str(exc))
    try:
        async with (
            EmulatorServer(policy=EmulatorPolicy(**{**FAST_AUDIO, **policy})) as emu,
            AsyncExitStack() as stack,
        ):
            env = {
                "GEMINI_API_KEY": emu.api_key,
                "TUNNELPROOF_RELAY_STATIC_KEYS": f"dana:{KEY}",
                "TUNNELPROOF_RELAY_SECRET": "shared-relay-secret-0123456789abcdef",
                "TUNNELPROOF_API_KEY": "",
            }
            argv = [
                sys.executable,
                "-m",
                "tunnelproof",
                "relay",
                "--upstream",
                emu.ws_base,
                "--redis-url",
                redis.url,
                "--lease",
                "1.0",
                "--log-level",
                "info",
            ]
            a, b = await asyncio.gather(  # start both at once: they are independent
                stack.enter_async_context(json_process(argv, env=env)),
                stack.enter_async_context(json_process(argv, env=env)),
            )
            yield emu, a, b
    finally:
        redis.stop()


class Device:
    """A raw Live API device: newest handle, transcript, turn ends."""

    def __init__(self) -> None:
        self.handle: str | None = None
        self.transcript: list[str] = []
        self.turns = 0
        self.ws: Any = None

    def numbers(self) -> list[int]:
        return [int(n) for n in NUMBER.findall("".join(self.transcript))]

    async def connect(self, relay: Proc) -> None:
        self.ws = await connect(
            relay.ready["wsUrl"], additional_headers=HEADERS, ping_interval=None
        )
        setup = dict(AUDIO_CONFIG.setup_body())
        setup["sessionResumption"] = {"handle": self.handle} if self.handle else {}
        await self.ws.send(orjson.dumps({"setup": setup}).decode())
        first = orjson.loads(await asyncio.wait_for(self.ws.recv(), 20))
        assert "setupComplete" in first, first

    async def say(self, text: str) -> None:
        await self.ws.send(orjson.dumps({"realtimeInput": {"text": text}}).decode())

    async def read(self, *, until_numbers: int | None = None, timeout: float = 20) -> None:
        """Read until a turn ends (or ``until_numbers`` numbers were heard)."""
        async with asyncio.timeout(timeout):
            async for raw in self.ws:
                msg = orjson.loads(raw)
                update = msg.get("sessionResumptionUpdate")
                if update and update.get("resumable"):
                    self.handle = update["newHandle"]
                content = msg.get("serverContent") or {}
                if content.get("outputTranscription"):
                    self.transcript.append(content["outputTranscription"]["text"])
                if content.get("turnComplete"):
                    self.turns += 1
                    return
                if until_numbers is not None and len(self.numbers()) >= until_numbers:
                    return

    async def ask(self, text: str) -> str:
        mark = len(self.transcript)
        await self.say(text)
        await self.read()
        return "".join(self.transcript[mark:])


def max_open_upstreams(emu: EmulatorServer) -> int:
    """The most emulator connections open at once, from its ordered event log."""
    open_now = peak = 0
    for event in emu.controls.events():
        if event["kind"] == "connection_opened":
            open_now += 1
            peak = max(peak, open_now)
        elif event["kind"] == "connection_closed":
            open_now -= 1
    return peak


async def test_a_device_moving_to_another_process_gets_the_conversation_handed_over() -> None:
    async with two_relays() as (emu, a, b):
        device = Device()
        await device.connect(a)
        assert "teal" in await device.ask("My favourite colour is teal.")
        device.transcript.clear()
        await device.say("Please count to 100.")
        await device.read(until_numbers=15)
        await device.ws.close()  # the load balancer sends the device's next connect to B
        await device.connect(b)
        await device.read()
        assert device.numbers() == list(range(1, 101))
        assert "teal" in await device.ask("What did I say first?")
        await device.ws.close()
        assert max_open_upstreams(emu) == 1
        assert not emu.controls.events(kind="resume_refused")
        async with httpx.AsyncClient() as http:
            stats = (await http.get(b.ready["stats"])).json()
        assert stats["process_takeovers"] == 1 and stats["lost_to_bounds"] == 0
        conns = emu.controls.connections()
        assert len(conns) == 2 and conns[1]["resumed"] is True


async def test_a_relay_killed_mid_turn_is_replaced_and_the_conversation_goes_on() -> None:
    async with two_relays() as (emu, a, b):
        device = Device()
        await device.connect(a)
        assert "teal" in await device.ask("My favourite colour is teal.")
        device.transcript.clear()
        await device.say("Please count to 200.")
        await device.read(until_numbers=20)
        os.kill(a.pid, signal.SIGKILL)  # this process, by its pid
        with pytest.raises((ConnectionClosed, TimeoutError)):
            await device.read(timeout=5)
        await device.connect(b)  # waits for A's lease to expire, then takes over
        await device.read()  # what A buffered after our position, then the cut turn's end
        got = device.numbers()
        assert got == list(range(1, len(got) + 1)) and 20 <= len(got) < 200
        assert device.turns == 2  # the cut turn was ended for the device
        assert "teal" in await device.ask("What did I say first?")
        await device.ws.close()
        assert max_open_upstreams(emu) == 1


async def test_a_relay_killed_before_the_turns_handle_loses_no_context() -> None:
    # The handle that holds a turn comes after turnComplete (Google: 20-70 ms; here 2 s):
    # A dies after the turn ended but before any handle held it. B resumes from the older
    # handle; what A relayed (flushed every 50 ms) is sent again, its answer not re-heard.
    async with two_relays(handle_delay=2.0) as (emu, a, b):
        device = Device()
        await device.connect(a)
        assert "teal" in await device.ask("My favourite colour is teal.")
        await asyncio.sleep(0.3)  # a few flushes, still well inside the handle delay
        os.kill(a.pid, signal.SIGKILL)  # this process, by its pid
        with pytest.raises((ConnectionClosed, TimeoutError)):
            await device.read(timeout=5)
        await device.connect(b)
        assert "teal" in await device.ask("What did I say first?")
        assert "".join(device.transcript).count("You said:") == 1  # teal answered once
        await device.ws.close()
        assert max_open_upstreams(emu) == 1
        conns = emu.controls.connections()
        assert len(conns) == 2 and conns[1]["resumed"] is True


async def test_a_devices_replay_after_a_killed_owners_takeover_reaches_gemini_once() -> None:
    # The device's link goes dark right after it says "teal" and asks for a count (it reads
    # nothing more, so its newest handle predates both). A answers "teal" (a handle holds
    # it), starts counting, and is killed mid-count. The device lands on B and replays both
    # messages, as a tunnelproof client does with sends no handle of its own confirmed.
    # B's duplicate check is shared through Redis: it drops both replays. "teal" is in the
    # upstream handle B resumes from: it reaches Gemini once. The count is not (Google is
    # not resumable mid-turn): B sends it again itself, its re-answer withheld.
    async with two_relays() as (emu, a, b):
        device = Device()
        await device.connect(a)
        assert "Hello" in await device.ask("Hello there.")
        teal = "My favourite colour is teal."
        count = "Please count to 100."  # its hidden re-answer is short
        await device.say(teal)  # the link goes dark now: the device reads nothing more
        for _ in range(500):  # until teal's answer is complete (bounded: 10 s)
            session = emu.controls.session()
            history = session["history"]
            if len(history) >= 2 and history[-2]["text"] == teal and not session["generating"]:
                break
            await asyncio.sleep(0.02)
        # the handle that holds it comes 20-70 ms later; A flushes its record, stores it
        await asyncio.sleep(0.4)
        started = len(emu.controls.events(kind="generation_started"))
        await device.say(count)
        await emu.controls.wait_for_event("generation_started", count=started + 1, timeout=10)
        await asyncio.sleep(0.3)  # mid-count; a few flushes of the record
        os.kill(a.pid, signal.SIGKILL)  # this process, by its pid
        device.ws.transport.abort()  # the device's dead link (no close handshake to wait for)
        await device.connect(b)  # with its old handle
        await device.say(teal)  # the replay
        await device.say(count)
        mark = len(device.transcript)
        await device.read()  # what A buffered: teal's answer,
        await device.read()  # the count so far, then the cut turn's end
        heard = "".join(device.transcript[mark:])
        assert heard.count("teal") == 1, heard
        numbers = [int(n) for n in NUMBER.findall(heard)]
        assert numbers == list(range(1, len(numbers) + 1)) and 0 < len(numbers) < 100
        # hello, teal, the count, this: each once in the context B resumed
        assert "4 turns" in await device.ask("How many turns have I taken?")
        await device.ws.close()
        async with httpx.AsyncClient() as http:
            stats = (await http.get(b.ready["stats"])).json()
        assert stats["duplicates_dropped"] == 2, stats
        said = [e["text"] for e in emu.controls.events(kind="user_text")]
        assert said.count(teal) == 1, said  # never twice, on any connection
        history = [e["text"] for e in emu.controls.history() if e["role"] == "user"]
        assert history.count(teal) == 1 and history.count(count) == 1, history
        assert max_open_upstreams(emu) == 1
