"""The app's event queue: bounded by content bytes, never drops lifecycle, reports drops."""

from __future__ import annotations

import asyncio

import pytest

from tunnelproof.protocol.close_codes import CloseClass, CloseVerdict
from tunnelproof.session import app_events as ev
from tunnelproof.session.event_buffer import EventBuffer

FAILED = ev.Failed(CloseVerdict(CloseClass.FATAL_AUTH, None, "401", "sign in"))


async def drain(buffer: EventBuffer) -> list[ev.AppEvent]:
    buffer.end()
    out: list[ev.AppEvent] = []
    while (event := await buffer.get()) is not None:
        out.append(event)
    return out


async def test_events_come_out_in_order() -> None:
    buffer = EventBuffer()
    events: list[ev.AppEvent] = [ev.Connected(1, True), ev.TextDelta("a"), ev.TurnComplete(None)]
    for event in events:
        buffer.put(event)
    assert await drain(buffer) == events


async def test_over_the_bound_the_oldest_content_goes_and_is_reported() -> None:
    buffer = EventBuffer(max_content_bytes=1000)
    buffer.put(ev.Connected(1, True))
    for k in range(10):
        buffer.put(ev.AudioChunk(bytes([k]) * 200, "audio/pcm;rate=24000"))
    buffer.put(ev.TextDelta("hello"))
    buffer.put(FAILED)  # a lifecycle event is kept whatever its place
    assert buffer.content_bytes <= 1000
    out = await drain(buffer)
    report = out[0]
    assert isinstance(report, ev.EventsDropped)
    assert report.events == 6 and report.audio_bytes == 1200 and report.text_bytes == 0
    assert isinstance(out[1], ev.Connected), "lifecycle events are never dropped"
    audio = [e for e in out if isinstance(e, ev.AudioChunk)]
    assert [a.pcm[0] for a in audio] == [6, 7, 8, 9], "the newest audio survives"
    assert isinstance(out[-2], ev.TextDelta) and isinstance(out[-1], ev.Failed)


async def test_drops_before_the_app_reads_again_are_merged_into_one_report() -> None:
    buffer = EventBuffer(max_content_bytes=10)
    for text in ("aaaaaaaa", "bbbbbbbb", "cccccccc"):
        buffer.put(ev.TextDelta(text))
    out = await drain(buffer)
    assert out == [ev.EventsDropped(2, 0, 16), ev.TextDelta("cccccccc")]


async def test_a_reader_waits_for_the_next_event_and_ends_at_the_end() -> None:
    buffer = EventBuffer()
    reader = asyncio.create_task(buffer.get())
    await asyncio.sleep(0)
    assert not reader.done()
    buffer.put(ev.Closed())
    assert await asyncio.wait_for(reader, 1) == ev.Closed()
    buffer.end()
    assert await asyncio.wait_for(buffer.get(), 1) is None


def test_the_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        EventBuffer(0)
