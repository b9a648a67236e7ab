"""Units: the output buffer, device handles, wire mapping, tickets, duplicate check."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from tunnelproof.protocol.config import LiveConfig
from tunnelproof.relay import wire
from tunnelproof.relay.buffer import BufferLimits, OutputBuffer
from tunnelproof.relay.conversation import Conversation
from tunnelproof.relay.handles import HandleCodec, HandleInvalid, RelayHandle
from tunnelproof.relay.settings import RelaySettings
from tunnelproof.session import app_events as ev
from tunnelproof.session.outbox import SendResult
from tunnelproof.session.stores import MemoryHandleStore
from tunnelproof.tokens.tickets import TicketInvalid, TicketLedger, TicketSigner


def test_buffer_replays_after_a_position_and_counts_what_a_bound_evicted() -> None:
    now = [0.0]
    buf = OutputBuffer(BufferLimits(max_bytes=30, max_age=10.0), clock=lambda: now[0])
    for i in range(5):
        assert buf.append(b"x" * 10) == i + 1  # 10 bytes each: only 3 fit
    replay = buf.since(1)
    assert [seq for seq, _ in replay.frames] == [3, 4, 5]
    assert replay.missing == 1  # seq 2 was needed and is gone
    assert buf.since(4).missing == 0 and [s for s, _ in buf.since(4).frames] == [5]
    assert buf.since(5).frames == ()
    now[0] = 11.0  # older than max_age
    assert buf.since(3).missing == 2 and buf.since(3).frames == ()
    buf.forget_through(5)
    assert len(buf) == 0


def test_handles_are_signed_and_carry_a_position() -> None:
    codec = HandleCodec(b"k" * 32)
    handle = RelayHandle("conv-1", "alice", 42, 7)
    text = codec.encode(handle)
    assert codec.decode(text) == handle
    with pytest.raises(HandleInvalid):
        HandleCodec(b"j" * 32).decode(text)  # another relay's secret
    sig = text.rsplit(".", 1)[1]
    forged = codec.encode(RelayHandle("conv-1", "bob", 42, 7)).split(".")[1]
    with pytest.raises(HandleInvalid):
        codec.decode(f"rh1.{forged}.{sig}")
    with pytest.raises(HandleInvalid):
        codec.decode("not-a-handle")


def test_tickets_expire_are_single_use_and_cannot_be_forged() -> None:
    now = [1000.0]
    signer = TicketSigner("s" * 32, ttl=60, clock=lambda: now[0])
    text, ticket = signer.mint("alice", "conv-9")
    assert text.startswith("auth_tokens/relay.")
    assert signer.verify(text) == ticket
    with pytest.raises(TicketInvalid):
        TicketSigner("t" * 32).verify(text)
    with pytest.raises(TicketInvalid):
        signer.verify(text[:-2] + "AA")
    ledger = TicketLedger(clock=lambda: now[0])
    assert asyncio.run(ledger.consume(ticket)) is True
    assert asyncio.run(ledger.consume(ticket)) is False
    now[0] += 61
    with pytest.raises(TicketInvalid):
        signer.verify(text)
    with pytest.raises(ValueError):
        TicketSigner("short")


def test_config_from_setup_keeps_what_the_device_asked_for() -> None:
    setup = {
        "model": "models/gemini-3.8-live",
        "generation_config": {"response_modalities": ["AUDIO"], "temperature": 0.2},
        "output_audio_transcription": {},
        "session_resumption": {"handle": "x"},
    }
    config = wire.config_from_setup(setup, "default")
    assert config.model == "gemini-3.8-live" and config.modality == "AUDIO"
    body = config.setup_body()
    assert body["generationConfig"]["temperature"] == 0.2
    assert "outputAudioTranscription" in body and "sessionResumption" not in body
    # Nothing the device did not ask for is added (LiveConfig's own default has both on).
    assert "inputAudioTranscription" not in body
    with pytest.raises(wire.WireError):
        wire.config_from_setup({"generationConfig": {"responseModalities": ["VIDEO"]}}, "m")


def test_wire_frames_and_events() -> None:
    assert wire.parse_device_frame(b'{"realtime_input": {"text": "hi"}}') == (
        "realtimeInput",
        {"text": "hi"},
    )
    for bad in (
        b"[]",
        b"{}",
        b'{"nope": {}}',
        b"not json",
        b'{"a": 1, "b": 2}',
        b'{"realtimeInput": {}}',
        b'{"realtimeInput": {"text": "a", "audioStreamEnd": true}}',
    ):
        with pytest.raises(wire.WireError) as caught:
            wire.parse_device_frame(bad)
        assert caught.value.code == 1007
    audio = wire.server_messages(ev.AudioChunk(b"\x01\x02", "audio/pcm;rate=24000"))
    assert audio[0]["serverContent"]["modelTurn"]["parts"][0]["inlineData"]["data"] == "AQI="
    # the upstream session asks the question again: the fresh answer's turnComplete ends it
    cut = wire.server_messages(ev.Rewound("1, 2", False, ("call-1",), reasked=True))
    assert cut == [
        {"toolCallCancellation": {"ids": ["call-1"]}},
        {"serverContent": {"interrupted": True}},
    ]
    # the answer will not come (reply_lost): the cut turn ends here
    lost = wire.server_messages(ev.Rewound("1, 2", True, (), ("count to 10",)))
    assert lost == [
        {"serverContent": {"interrupted": True}},
        {"serverContent": {"turnComplete": True}},
    ]
    assert wire.server_messages(ev.Reconnecting(1.0, 1, "x", "offline")) == []


class _FakeUpstream:
    """Stands in for Google's side of the upstream LiveSession (records what it is sent)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sent: list[dict[str, Any]] = []

    async def start(self) -> None:
        return None

    async def send_raw(self, message: dict[str, Any]) -> SendResult:
        self.sent.append(message)
        return SendResult("sent", len(self.sent))

    async def events(self) -> Any:
        await asyncio.Event().wait()
        yield  # pragma: no cover

    def __aiter__(self) -> Any:
        return self.events()

    async def close(self) -> None:
        return None


class _Sink:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    def push(self, data: bytes) -> bool:
        self.frames.append(orjson.loads(data))
        return True

    def kick(self, code: int, reason: str) -> None:
        self.frames.append({"kicked": code})


async def test_a_replayed_tail_is_dropped_once_and_new_messages_pass() -> None:
    codec = HandleCodec(b"k" * 32)
    conv = Conversation(
        id="c1",
        user_id="alice",
        config=LiveConfig(),
        settings=RelaySettings(),
        codec=codec,
        token_source=None,  # type: ignore[arg-type]
        handle_store=MemoryHandleStore(),
        session_factory=_FakeUpstream,  # type: ignore[arg-type]
    )
    await conv.open_upstream()
    first = _Sink()
    conv.attach(first, position=None, wants_handles=True)
    texts = [{"text": f"m{i}"} for i in range(4)]
    await conv.from_device("realtimeInput", texts[0])
    conv._publish(b'{"serverContent":{"turnComplete":true}}')
    handle_at_1 = codec.decode(first.frames[-1]["sessionResumptionUpdate"]["newHandle"])
    assert handle_at_1.received == 1 and handle_at_1.seq == 1
    for body in texts[1:3]:  # reached the relay; the device never saw a handle after them
        await conv.from_device("realtimeInput", body)
    conv.detach(first, reason="tunnel")
    second = _Sink()
    conv.attach(second, position=handle_at_1, wants_handles=True)
    # the device replays m1, m2 (unconfirmed) then sends m3 (new)
    for body in texts[1:4]:
        await conv.from_device("realtimeInput", body)
    upstream = conv.upstream
    assert isinstance(upstream, _FakeUpstream)
    assert [m["realtimeInput"]["text"] for m in upstream.sent] == ["m0", "m1", "m2", "m3"]
    assert conv.stats.duplicates_dropped == 2
    # a later identical message is not a duplicate any more: the replay is over
    await conv.from_device("realtimeInput", texts[1])
    assert len(upstream.sent) == 5
    await conv.close()


async def test_the_token_app_serves_relay_tickets_only_when_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import httpx
    from pydantic import SecretStr

    from tunnelproof.tokens.app import create_app
    from tunnelproof.tokens.settings import TokenServiceSettings

    settings = TokenServiceSettings(
        auth_mode="static", static_keys=[SecretStr("alice:k1")], rate_limit="100/minute"
    )
    headers = {"Authorization": "Bearer k1"}
    monkeypatch.delenv("TUNNELPROOF_RELAY_TICKET_SECRET", raising=False)
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        assert (await c.post("/api/live/relay-ticket", headers=headers)).status_code in (404, 405)
    monkeypatch.setenv("TUNNELPROOF_RELAY_TICKET_SECRET", "x" * 32)
    monkeypatch.setenv("TUNNELPROOF_RELAY_WS_URL", "wss://relay.example.com")
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        ok = await c.post("/api/live/relay-ticket", headers=headers, json={"conversation": "c"})
        unauthorised = await c.post("/api/live/relay-ticket")
        too_big = await c.post("/api/live/relay-ticket", headers=headers, content=b"x" * 2000)
        handle = HandleCodec(b"r" * 32).encode(RelayHandle("conv-7", "alice", 3, 1))
        by_handle = await c.post("/api/live/relay-ticket", headers=headers, json={"handle": handle})
        bad_handle = await c.post("/api/live/relay-ticket", headers=headers, json={"handle": "x"})
    assert ok.status_code == 200 and ok.headers["cache-control"] == "no-store"
    body = ok.json()
    assert body["wsUrl"].startswith("wss://relay.example.com/ws/google.ai.generativelanguage.")
    ticket = TicketSigner("x" * 32).verify(body["token"])
    assert ticket.user_id == "alice" and ticket.conversation == "c"
    assert unauthorised.status_code == 401 and too_big.status_code == 413
    bound = TicketSigner("x" * 32).verify(by_handle.json()["token"])
    assert bound.conversation == "conv-7" and bad_handle.status_code == 400
