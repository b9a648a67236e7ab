"""The scale-out record in a real redis-server: the shared duplicate check, and device input
a killed owner received but never recorded (counted, never silent)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tunnelproof.protocol.config import LiveConfig
from tunnelproof.relay import DeviceAuthenticator, RelayServer, RelaySettings
from tunnelproof.relay.conversation import Conversation
from tunnelproof.relay.handles import HandleCodec, RelayHandle
from tunnelproof.relay.scaleout import RedisCoordinator
from tunnelproof.session.stores import MemoryHandleStore
from tunnelproof.testing.redis_server import RedisServer, RedisServerUnavailable
from tunnelproof.tokens.auth import StaticKeyAuthenticator
from tunnelproof.tokens.direct import ApiKeySource

from .test_relay_units import _FakeUpstream

pytestmark = [pytest.mark.timeout(30)]

SECRET = b"r" * 32
CONFIG = LiveConfig(model="gemini-3.8-live", response_modalities=("AUDIO",))


@asynccontextmanager
async def redis_url() -> AsyncIterator[str]:
    try:
        server = RedisServer()
        await server.start_async()
    except RedisServerUnavailable as exc:  # pragma: no cover - depends on the machine
        pytest.skip(str(exc))
    try:
        yield server.url
    finally:
        server.stop()


def _owner_conversation() -> Conversation:
    return Conversation(
        id="c1",
        user_id="alice",
        config=CONFIG,
        settings=RelaySettings(secret=SECRET),
        codec=HandleCodec(SECRET),
        token_source=None,  # type: ignore[arg-type]
        handle_store=MemoryHandleStore(),
        session_factory=_FakeUpstream,  # type: ignore[arg-type]
        setup=dict(CONFIG.setup_body()),
    )


def _relay(coordinator: RedisCoordinator) -> RelayServer:
    """A relay process on ``coordinator`` (its upstream is never dialled here)."""
    return RelayServer(
        ApiKeySource("unused", ws_base="ws://127.0.0.1:9"),
        DeviceAuthenticator(
            signer=None, consume=None, authenticator=StaticKeyAuthenticator({"k": "alice"})
        ),
        settings=RelaySettings(secret=SECRET),
        coordinator=coordinator,
    )


def _text(text: str) -> dict[str, Any]:
    return {"text": text}


async def test_a_new_owner_counts_the_input_a_killed_owner_never_recorded() -> None:
    async with redis_url() as url:
        dead = RedisCoordinator(url, lease=0.3)  # no loops: it "dies" after its last flush
        heir = RedisCoordinator(url, lease=0.3)
        relay = _relay(heir)
        try:
            conv = _owner_conversation()
            assert await dead.try_acquire("c1")
            dead.track("c1", conv)
            await conv.open_upstream()
            await conv.from_device("realtimeInput", _text("one"))
            await conv.from_device("realtimeInput", _text("two"))
            conv.unheld.held((1,))  # a handle holds "one": only its digest stays recorded
            await dead.flush("c1")
            await conv.from_device("realtimeInput", _text("three"))  # never flushed: killed
            # The device's newest handle says the relay had all three (it will not replay
            # "three"); the heir takes over once the dead owner's lease has expired.
            taken = await relay._take_over(RelayHandle("c1", "alice", 0, 3))
            assert [index for index, _ in taken.digests_after(-1)] == [0, 1]
            assert [e.message for e in taken.unheld.pending_carried()] == [
                {"realtimeInput": {"text": "two"}}
            ]
            assert taken.received == 3
            assert taken.stats.input_lost_to_owner_death == 1
            assert relay.stats()["input_lost_to_owner_death"] == 1
            # A device that replays from "one" on: both recorded ones are dropped, a new one
            # passes (numbered after what the device was told).
            sink_frames: list[bytes] = []

            class Sink:
                def push(self, data: bytes) -> bool:
                    sink_frames.append(data)
                    return True

                def kick(self, code: int, reason: str) -> None:
                    return None

            taken.session_factory = _FakeUpstream
            taken.attach(Sink(), position=RelayHandle("c1", "alice", 0, 0), wants_handles=False)
            await taken.open_upstream()
            for text in ("one", "two", "four"):
                await taken.from_device("realtimeInput", _text(text))
            upstream = taken.upstream
            assert isinstance(upstream, _FakeUpstream)
            # "two" once, sent by the heir itself (unheld, carried); "one" never (held)
            assert [m["realtimeInput"]["text"] for m in upstream.sent] == ["two", "four"]
            assert taken.stats.duplicates_dropped == 2
            await taken.close()
            await asyncio.gather(*relay._background)  # its record deleted (the end)
            await conv.close()
        finally:
            await relay.shutdown()
            await dead.redis.aclose()  # type: ignore[attr-defined]


async def test_a_new_owner_knows_a_named_replay_from_the_shared_record() -> None:
    # A tunnelproof client names its messages: the names' digests are the shared record, so
    # the heir drops the device's replay of "yes" (even one its handle already counted)
    # and forwards the same bytes under a new name.
    async with redis_url() as url:
        dead = RedisCoordinator(url, lease=0.3)
        heir = RedisCoordinator(url, lease=0.3)
        relay = _relay(heir)
        try:
            conv = _owner_conversation()
            assert await dead.try_acquire("c1")
            dead.track("c1", conv)
            await conv.open_upstream()
            await conv.from_device("realtimeInput", _text("hello"), name="d1:1")
            await conv.from_device("realtimeInput", _text("yes"), name="d1:2")
            conv.unheld.held((1, 2))  # a handle holds both
            await dead.flush("c1")
            taken = await relay._take_over(RelayHandle("c1", "alice", 0, 2))
            taken.session_factory = _FakeUpstream
            await taken.open_upstream()
            await taken.from_device("realtimeInput", _text("yes"), name="d1:2")  # a replay
            await taken.from_device("realtimeInput", _text("yes"), name="d1:3")  # said again
            upstream = taken.upstream
            assert isinstance(upstream, _FakeUpstream)
            assert [m["realtimeInput"]["text"] for m in upstream.sent] == ["yes"]
            assert taken.stats.duplicates_dropped == 1 and taken.received == 3
            await taken.close()
            await asyncio.gather(*relay._background)
            await conv.close()
        finally:
            await relay.shutdown()
            await dead.redis.aclose()  # type: ignore[attr-defined]


async def test_a_flush_writes_only_what_changed_and_nothing_when_idle() -> None:
    async with redis_url() as url:
        coord = RedisCoordinator(url)
        try:
            conv = _owner_conversation()
            coord.track("c1", conv)
            await conv.open_upstream()
            await conv.from_device("realtimeInput", _text("hello"))
            await coord.flush("c1")
            before = (await coord.redis.info("stats"))["total_commands_processed"]
            await coord.flush("c1")  # nothing changed
            await coord.flush("c1")
            idle = (await coord.redis.info("stats"))["total_commands_processed"] - before - 1
            assert idle == 0
            chunk = {"audio": {"mimeType": "audio/pcm;rate=16000", "data": "A" * 1700}}
            await conv.from_device("realtimeInput", chunk)
            before_bytes = (await coord.redis.info("stats"))["total_net_input_bytes"]
            await coord.flush("c1")
            written = (await coord.redis.info("stats"))["total_net_input_bytes"] - before_bytes
            # the new chunk once (plus keys and a few small fields), not the whole record
            assert 1700 < written < 1700 + 600, written
            loaded = await coord.load("c1")
            assert loaded is not None and loaded.received == 2
            assert [item[2] for item in loaded.unheld] == [0, 1]
            assert [i for i, _ in loaded.digests] == [0, 1]
            await conv.close()
        finally:
            await coord.redis.aclose()  # type: ignore[attr-defined]
            await asyncio.sleep(0)


async def test_audio_streaming_past_the_unheld_bound_is_counted_and_warned_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conv = _owner_conversation()
    conv.unheld.max_bytes = 200_000  # the bound in bytes (2 MB by default: ~47 s of speech)
    await conv.open_upstream()
    # 40 ms of 16 kHz s16le audio as base64
    chunk = {"audio": {"mimeType": "audio/pcm;rate=16000", "data": "A" * 1708}}
    with caplog.at_level("WARNING", logger="tunnelproof.relay"):
        for _ in range(300):  # 12 s of 40 ms chunks and no handle: over the byte bound
            await conv.from_device("realtimeInput", chunk)
    assert 0 < conv.stats.unheld_forgotten == conv.unheld.forgotten < 300
    assert conv.unheld.size_bytes <= 200_000 and conv.unheld.records == 1
    warned = [r for r in caplog.records if "over its bound" in r.getMessage()]
    assert len(warned) == 1, len(warned)  # not one line per chunk
    await conv.close()


async def test_typed_input_is_recorded_at_once_and_audio_with_the_next_flush() -> None:
    async with redis_url() as url:
        coord = RedisCoordinator(url, flush_interval=60.0)  # no loop runs: flushes by hand
        try:
            conv = _owner_conversation()
            conv.record = coord.flush  # what the server wires up with a coordinator
            coord.track("c1", conv)
            await conv.open_upstream()
            await conv.from_device("realtimeInput", _text("my name is Ada"))
            loaded = await coord.load("c1")  # no flush was asked for: recorded on receipt
            assert loaded is not None and loaded.received == 1
            assert loaded.unheld[0][0] == {"realtimeInput": {"text": "my name is Ada"}}
            chunk = {"audio": {"mimeType": "audio/pcm;rate=16000", "data": "AAAA"}}
            await conv.from_device("realtimeInput", chunk)  # batched: not a round trip each
            loaded = await coord.load("c1")
            assert loaded is not None and loaded.received == 1
            await coord.flush("c1")
            loaded = await coord.load("c1")
            assert loaded is not None and loaded.received == 2
            await conv.close()
        finally:
            await coord.redis.aclose()  # type: ignore[attr-defined]


async def test_after_a_failed_flush_the_next_one_rewrites_the_record_whole() -> None:
    async with redis_url() as url:
        coord = RedisCoordinator(url, flush_interval=60.0)
        try:
            conv = _owner_conversation()
            coord.track("c1", conv)
            await conv.open_upstream()
            conv._publish(b'{"serverContent":{"n":1}}')
            await conv.from_device("realtimeInput", _text("one"))
            await coord.flush("c1")
            conv._publish(b'{"serverContent":{"n":2}}')
            await conv.from_device("realtimeInput", _text("two"))
            real = coord.redis.pipeline

            def broken(*args: Any, **kwargs: Any) -> Any:
                pipe = real(*args, **kwargs)

                async def fail() -> None:
                    raise ConnectionError("redis went away")

                pipe.execute = fail
                return pipe

            coord.redis.pipeline = broken  # type: ignore[method-assign]
            with pytest.raises(ConnectionError):
                await coord.flush("c1")  # frame 2 and "two" were staged, never written
            coord.redis.pipeline = real  # type: ignore[method-assign]
            conv._publish(b'{"serverContent":{"n":3}}')
            await coord.flush("c1")
            loaded = await coord.load("c1")
            assert loaded is not None
            assert [seq for seq, _ in loaded.frames] == [1, 2, 3]
            assert [i for i, _ in loaded.digests] == [0, 1] and loaded.received == 2
            assert [item[2] for item in loaded.unheld] == [0, 1]
            await conv.close()
        finally:
            await coord.redis.aclose()  # type: ignore[attr-defined]
