"""The compact replay record (issue 15): audio chunks kept as plain values, same semantics.

The outbox keeps what was sent since the newest resumable handle for replay. Audio is kept
as (seq, wire text, duration, creation time) in deques, not as objects the garbage
collector tracks; these tests hold it to the behaviour of the object record it replaced:
the same wire text replayed in order, the same time to live, the same eviction and the
same accounting of durations.
"""

from __future__ import annotations

import gc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunnelproof.protocol import client_messages as cm
from tunnelproof.protocol.client_messages import FunctionResponse
from tunnelproof.session.outbox import Outbox, OutboxLimits
from tunnelproof.session.outgoing import ClientMessage, MessageKind, Outgoing


def audio(seq: int, ms: int = 20, at: float = 0.0) -> Outgoing:
    """``ms`` of 16 kHz PCM whose samples say ``seq``: every chunk's wire text differs."""
    return Outgoing.of(seq, ClientMessage.audio(bytes([seq % 251, seq // 251]) * 16 * ms), at)


def text(seq: int, at: float = 0.0) -> Outgoing:
    return Outgoing.of(seq, ClientMessage.text(f"question {seq}"), at)


def test_a_replay_after_a_drop_sends_the_same_items_and_wire_text_in_order() -> None:
    box = Outbox()
    sent = [
        audio(1, at=1.0),
        text(2, at=1.1),
        audio(3, 30, at=1.2),
        audio(4, 100, at=1.3),
        Outgoing.of(5, ClientMessage.tool_response([FunctionResponse("t1", "f", {"ok": 1})]), 1.4),
        audio(6, at=1.5),
    ]
    for item in sent:
        box.mark_sent(item)
    later = text(7, at=1.6)
    box.enqueue(later, 1.6)
    assert box.requeue_unconfirmed(2.0) == []
    # Equal as dataclasses: seq, kind, body, duration, wire, creation time, was_sent.
    assert list(box.pending) == [*sent, later]
    assert [i.wire for i in box.pending] == [i.wire for i in [*sent, later]]
    assert [i.was_sent for i in box.pending] == [True] * 6 + [False]
    assert not box.unconfirmed and box.unconfirmed.audio_ms == 0.0
    assert box.within_bounds()


def test_audio_in_the_record_past_its_time_to_live_is_dropped_at_replay_text_stays() -> None:
    box = Outbox(OutboxLimits(audio_ttl=5.0))
    for item in (audio(1, at=0.0), text(2, at=0.0), audio(3, 30, at=0.5), audio(4, at=3.0)):
        box.mark_sent(item)
    dropped = box.requeue_unconfirmed(5.6)
    assert [(i.seq, i.kind, i.audio_ms) for i in dropped] == [
        (1, MessageKind.AUDIO, 20.0),
        (3, MessageKind.AUDIO, 30.0),
    ]
    assert [i.seq for i in box.pending] == [2, 4]
    assert box.within_bounds()


def test_removal_and_trimmed_tool_answers_keep_the_order_and_the_audio_total() -> None:
    box = Outbox()
    box.mark_sent(audio(1))
    two_answers = [FunctionResponse("a", "f", {}), FunctionResponse("b", "f", {})]
    box.mark_sent(Outgoing.of(2, ClientMessage.tool_response(two_answers), 0.0))
    box.mark_sent(audio(3, 100))
    box.mark_sent(text(4))
    assert box.drop_tool_answers({"a"}) == []
    assert [i.seq for i in box.unconfirmed] == [1, 2, 3, 4]
    (trimmed,) = [i for i in box.unconfirmed if i.seq == 2]
    assert trimmed.tool_ids == ("b",) and trimmed.was_sent and '"a"' not in trimmed.wire
    removed = box.remove_where(lambda i: i.seq in (1, 4))
    assert [i.seq for i in removed] == [1, 4]
    assert [i.seq for i in box.unconfirmed] == [2, 3]
    assert box.unconfirmed.audio_ms == 100.0
    assert box.within_bounds()


def test_remove_where_among_seqs_considers_only_those_in_both_queues() -> None:
    box = Outbox()
    for item in (audio(1), text(2), audio(3), text(4)):
        box.mark_sent(item)
    box.enqueue(text(5), 0.0)
    box.enqueue(audio(6), 0.0)
    seen: list[int] = []

    def predicate(item: Outgoing) -> bool:
        seen.append(item.seq)
        return item.seq != 4

    removed = box.remove_where(predicate, among={3, 4, 6})
    assert seen == [3, 4, 6], "only the items among the seqs are looked at"
    assert [(i.seq, i.was_sent) for i in removed] == [(3, True), (6, False)]
    assert [i.seq for i in box.unconfirmed] == [1, 2, 4]
    assert [i.seq for i in box.pending] == [5]
    assert box.unconfirmed.audio_ms == 20.0
    # The record's parallel entries stay aligned: a replay sends each item's own text.
    originals = {1: audio(1), 2: text(2), 4: text(4)}
    assert box.requeue_unconfirmed(0.0) == []
    assert [(i.seq, i.wire) for i in box.pending][:3] == [(s, originals[s].wire) for s in (1, 2, 4)]


def test_the_record_gives_the_same_object_for_an_entry_every_time() -> None:
    """As the deque of items it replaced: a caller may pick items in one pass and remove
    them by identity in another."""
    box = Outbox()
    for item in (audio(1), text(2), audio(3), audio(4)):
        box.mark_sent(item)
    first = list(box.unconfirmed)
    assert [id(i) for i in box.unconfirmed] == [id(i) for i in first]
    taken = {id(first[0]), id(first[2])}
    removed = box.remove_where(lambda i: id(i) in taken)
    assert [i.seq for i in removed] == [1, 3]
    assert [i.seq for i in box.unconfirmed] == [2, 4]
    box.mark_sent(audio(5))
    box.confirm(keep_last=1)
    assert [i.seq for i in box.unconfirmed] == [5]


def test_an_item_put_in_front_is_the_oldest_and_counts() -> None:
    box = Outbox()
    box.mark_sent(audio(5))
    box.mark_sent(text(6))
    front = Outgoing.of(4, ClientMessage.content([{"role": "user", "parts": [{"text": "x"}]}]), 0.0)
    box.unconfirmed.appendleft(front)
    box.unconfirmed.appendleft(audio(3, 30))
    assert [i.seq for i in box.unconfirmed] == [3, 4, 5, 6]
    assert [i.seq for i in box.unconfirmed.others()] == [4, 6]
    assert box.unconfirmed.audio_ms == 50.0 and box.within_bounds()
    assert box.confirm(keep_last=2) == [3, 4]


def test_a_queued_item_is_removed_by_identity_not_by_its_seq() -> None:
    """A restore message takes the seq of the last send it stands for (restore.py), so a
    queued item and a recorded one may share a seq: removing one leaves the other."""
    box = Outbox()
    box.mark_sent(text(3))
    queued = text(3, at=1.0)
    box.enqueue(queued, 1.0)
    assert box.remove_where(lambda i: i is queued) == [queued]
    assert [i.seq for i in box.unconfirmed] == [3] and not box.pending


def test_only_a_non_audio_entry_can_be_replaced_by_its_trimmed_copy() -> None:
    box = Outbox()
    box.mark_sent(audio(1))
    with pytest.raises(ValueError, match="no non-audio entry 1"):
        box.unconfirmed.set_other(text(1))
    with pytest.raises(ValueError, match="no non-audio entry 2"):
        box.unconfirmed.set_other(text(2))


def test_streamed_audio_in_the_record_holds_no_object_the_collector_tracks() -> None:
    """The point of the compact record: 1,000 chunks kept for replay add (almost) nothing
    to what a full collection walks. The object record added five per chunk."""
    box = Outbox(OutboxLimits(max_audio_ms=60_000.0, max_unconfirmed_messages=2_000))
    gc.collect()
    before = len(gc.get_objects())
    for seq in range(1, 1001):
        box.mark_sent(audio(seq))
    gc.collect()
    grown = len(gc.get_objects()) - before
    assert len(box.unconfirmed) == 1000
    assert grown < 100, grown


# -- a list model of the record the compact one replaced ------------------------------------


class ListModel:
    """The object record's rules, written plainly over a list (the reference)."""

    def __init__(self, limits: OutboxLimits) -> None:
        self.limits = limits
        # (seq, is_audio, ms, tool ids it answers)
        self.unconfirmed: list[tuple[int, bool, float, tuple[str, ...]]] = []
        self.unverified: list[tuple[int, float]] = []

    def total(self) -> float:
        return sum(e[2] for e in self.unconfirmed)

    def mark_sent(self, seq: int, is_audio: bool, ms: float, ids: tuple[str, ...]) -> list[int]:
        self.unconfirmed.append((seq, is_audio, ms, ids))
        evicted: list[int] = []
        while self.total() > self.limits.max_audio_ms + 1e-6:
            index = next(i for i, e in enumerate(self.unconfirmed) if e[1])
            old_seq, _, old_ms, _ = self.unconfirmed.pop(index)
            evicted.append(old_seq)
            self.unverified.append((old_seq, old_ms))
        while len(self.unconfirmed) > self.limits.max_unconfirmed_messages:
            old_seq, old_audio, old_ms, _ = self.unconfirmed.pop(0)
            evicted.append(old_seq)
            if old_audio:
                self.unverified.append((old_seq, old_ms))
        return evicted

    def confirm(self, keep_last: int) -> list[int]:
        cut = max(0, len(self.unconfirmed) - keep_last)
        taken, self.unconfirmed = self.unconfirmed[:cut], self.unconfirmed[cut:]
        return [e[0] for e in taken]

    def take_unverified(self, before: int | None) -> list[tuple[int, float]]:
        cut = len(self.unverified)
        if before is not None:
            cut = next((i for i, (s, _) in enumerate(self.unverified) if s >= before), cut)
        taken, self.unverified = self.unverified[:cut], self.unverified[cut:]
        return taken

    def remove(self, among: set[int]) -> list[int]:
        removed = [e[0] for e in self.unconfirmed if e[0] in among]
        self.unconfirmed = [e for e in self.unconfirmed if e[0] not in among]
        return removed

    def drop_tool_answers(self, ids: set[str]) -> list[int]:
        dropped: list[int] = []
        kept = []
        for seq, is_audio, ms, answers in self.unconfirmed:
            left = tuple(i for i in answers if i not in ids)
            if answers and not left:
                dropped.append(seq)
            else:
                kept.append((seq, is_audio, ms, left))
        self.unconfirmed = kept
        return dropped


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("audio"), st.sampled_from([20, 30, 100])),
        st.tuples(st.just("text"), st.just(0)),
        st.tuples(st.just("tool"), st.integers(1, 3)),
        st.tuples(st.just("confirm"), st.integers(0, 4)),
        st.tuples(st.just("unverified"), st.integers(-1, 40)),
        st.tuples(st.just("remove"), st.integers(0, 40)),
        st.tuples(st.just("drop_tool"), st.integers(1, 3)),
    ),
    max_size=60,
)
TOOL_IDS = {1: ("a",), 2: ("a", "b"), 3: ("b",)}


@settings(max_examples=300, deadline=None, derandomize=True)
@given(OPS, st.sampled_from([60.0, 150.0, 400.0]), st.integers(2, 8))
def test_the_record_matches_a_list_model_of_the_object_record(
    ops: list[tuple[str, int]], max_audio_ms: float, max_messages: int
) -> None:
    """Eviction, confirmation, unverified durations, removal and trimmed tool answers."""
    limits = OutboxLimits(max_audio_ms=max_audio_ms, max_unconfirmed_messages=max_messages)
    box, model = Outbox(limits), ListModel(limits)
    seq = 0
    for op, arg in ops:
        if op in ("audio", "text", "tool"):
            seq += 1
            ids: tuple[str, ...] = TOOL_IDS[arg] if op == "tool" else ()
            if op == "audio":
                item = audio(seq, arg)
            elif op == "text":
                item = text(seq)
            else:
                answers = [FunctionResponse(i, "f", {"n": seq}) for i in ids]
                item = Outgoing.of(seq, ClientMessage.tool_response(answers), 0.0)
            ms = float(arg) if op == "audio" else 0.0
            assert box.mark_sent(item) == model.mark_sent(seq, op == "audio", ms, ids)
        elif op == "confirm":
            assert box.confirm(keep_last=arg) == model.confirm(arg)
        elif op == "unverified":
            before = None if arg < 0 else arg
            taken = [(a.seq, a.audio_ms) for a in box.take_unverified(before=before)]
            assert taken == model.take_unverified(before)
        elif op == "remove":
            among = {arg, arg + 1, arg + 3}
            removed = [i.seq for i in box.remove_where(lambda i: i.was_sent, among=among)]
            assert removed == model.remove(among)
        else:
            drop = set(TOOL_IDS[arg])
            assert [i.seq for i in box.drop_tool_answers(drop)] == model.drop_tool_answers(drop)
        held = [
            (i.seq, i.kind is MessageKind.AUDIO, i.audio_ms, i.tool_ids) for i in box.unconfirmed
        ]
        assert held == model.unconfirmed
        assert [(a.seq, a.audio_ms) for a in box.unverified] == model.unverified
        assert box.unconfirmed.audio_ms == model.total()
        assert box.within_bounds()
    # Whatever happened, a replay sends each held item's own wire text, in order.
    held_wires = [i.wire for i in box.unconfirmed]
    box.requeue_unconfirmed(0.0)
    assert [i.wire for i in box.pending] == held_wires
    for item in box.pending:
        assert item.wire == cm.encode_client_message(item.message.body)
