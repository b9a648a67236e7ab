"""Direct tests of ``Outbox``: bounds, time to live, replay record and confirmation."""

from __future__ import annotations

from tunnelproof.protocol.client_messages import FunctionResponse
from tunnelproof.session.outbox import Outbox, OutboxLimits
from tunnelproof.session.outgoing import ClientMessage, MessageKind, Outgoing

PCM_100MS = b"\x00\x00" * 1600  # 100 ms at 16 kHz


def text(seq: int, body: str = "hi", at: float = 0.0) -> Outgoing:
    return Outgoing.of(seq, ClientMessage.text(body), at)


def audio(seq: int, at: float = 0.0, pcm: bytes = PCM_100MS) -> Outgoing:
    return Outgoing.of(seq, ClientMessage.audio(pcm), at)


def tool(seq: int, *ids: str) -> Outgoing:
    return Outgoing.of(
        seq, ClientMessage.tool_response([FunctionResponse(i, "f", {"ok": 1}) for i in ids]), 0.0
    )


def test_text_is_refused_beyond_the_message_count_and_byte_bounds() -> None:
    box = Outbox(OutboxLimits(max_messages=2, max_bytes=10_000))
    assert [box.enqueue(text(i), 0.0)[0].status for i in (1, 2, 3)] == [
        "queued",
        "queued",
        "dropped",
    ]
    small = Outbox(OutboxLimits(max_bytes=len(text(1, "x" * 40).wire) + 5))
    assert small.enqueue(text(1, "x" * 40), 0.0)[0].queued
    refused, _ = small.enqueue(text(2, "y"), 0.0)
    assert refused.dropped and refused.reason == "outbox full"
    assert small.within_bounds()


def test_audio_beyond_its_duration_bound_drops_the_oldest_audio_not_text() -> None:
    box = Outbox(OutboxLimits(max_audio_ms=250))
    box.enqueue(audio(1), 0.0)
    box.enqueue(text(2), 0.0)
    box.enqueue(audio(3), 0.0)
    result, dropped = box.enqueue(audio(4), 0.0)
    assert result.queued
    assert [i.seq for i in dropped] == [1]
    assert [i.seq for i in box.pending] == [2, 3, 4]
    assert box.pending_audio_ms() == 200.0


def test_an_audio_chunk_longer_than_the_whole_bound_is_refused() -> None:
    box = Outbox(OutboxLimits(max_audio_ms=50))
    result, dropped = box.enqueue(audio(1), 0.0)
    assert result.dropped and "longer than the outbox" in (result.reason or "")
    assert dropped == [] and not box.pending


def test_stale_audio_expires_but_text_of_the_same_age_stays() -> None:
    box = Outbox(OutboxLimits(audio_ttl=5.0))
    box.enqueue(audio(1, at=0.0), 0.0)
    box.enqueue(text(2, at=0.0), 0.0)
    box.enqueue(audio(3, at=4.0), 4.0)
    items, stale = box.take_all(6.0)
    assert [i.seq for i in stale] == [1]
    assert [i.seq for i in items] == [2, 3]
    assert not box.pending


def test_mark_sent_keeps_a_bounded_replay_record() -> None:
    box = Outbox(OutboxLimits(max_audio_ms=150, max_unconfirmed_messages=3))
    evicted = [box.mark_sent(audio(seq)) for seq in (1, 2)]
    assert evicted[1] == [1], "audio beyond max_audio_ms leaves the record"
    for seq in (3, 4, 5):
        box.mark_sent(text(seq))
    assert [i.seq for i in box.unconfirmed] == [3, 4, 5]
    assert all(i.was_sent for i in box.unconfirmed)
    assert box.within_bounds()


def test_confirm_returns_what_it_confirms_and_keeps_the_newest_unanswered() -> None:
    box = Outbox()
    for seq in (1, 2, 3, 4):
        box.mark_sent(text(seq))
    confirmed = box.confirm(keep_last=2)
    assert confirmed == [1, 2]
    assert [i.seq for i in box.unconfirmed] == [3, 4]
    assert box.confirm() == [3, 4]
    assert box.confirm() == [], "nothing is confirmed twice"


def test_requeue_puts_unconfirmed_sends_in_front_as_replays() -> None:
    box = Outbox()
    box.mark_sent(text(1))
    box.mark_sent(audio(2, at=9.0))
    box.enqueue(text(3, at=9.5), 9.5)
    dropped = box.requeue_unconfirmed(10.0)
    assert dropped == []
    assert [(i.seq, i.was_sent) for i in box.pending] == [(1, True), (2, True), (3, False)]
    assert not box.unconfirmed
    assert box.within_bounds()


def test_requeue_over_the_bounds_drops_the_newest_first() -> None:
    # As a full outbox refuses a new send: the oldest replays (the conversation's start)
    # stay, what the server gets is a prefix of what the app sent.
    box = Outbox(OutboxLimits(max_messages=2))
    box.mark_sent(text(1))
    box.mark_sent(text(2))
    box.enqueue(text(3), 0.0)
    dropped = box.requeue_unconfirmed(0.0)
    assert [i.seq for i in dropped] == [3]
    assert [i.seq for i in box.pending] == [1, 2]


def test_answers_to_cancelled_tool_calls_are_stripped_or_dropped() -> None:
    box = Outbox()
    box.enqueue(tool(1, "a", "b"), 0.0)
    box.mark_sent(tool(2, "a"))
    dropped = box.drop_tool_answers({"a"})
    assert [i.seq for i in dropped] == [2]
    (left,) = box.pending
    assert left.tool_ids == ("b",)
    assert '"a"' not in left.wire and '"b"' in left.wire


def test_remove_where_and_clear() -> None:
    box = Outbox()
    box.mark_sent(text(1))
    box.enqueue(audio(2), 0.0)
    box.enqueue(text(3), 0.0)
    removed = box.remove_where(lambda i: i.kind is MessageKind.TEXT)
    assert sorted(i.seq for i in removed) == [1, 3]
    assert [i.seq for i in box.clear()] == [2]
    assert not box.pending and not box.unconfirmed
    assert box.within_bounds()
