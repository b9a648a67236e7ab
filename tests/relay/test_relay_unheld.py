"""Units: device input no upstream handle holds, and withholding re-answers the device has."""

from __future__ import annotations

from typing import Any

import orjson

from tunnelproof.relay.unheld import UnheldInput
from tunnelproof.session import app_events as ev


def _text(text: str) -> dict[str, Any]:
    return {"realtimeInput": {"text": text}}


def _answer(words: str, *, interrupted: bool = False) -> list[ev.AppEvent]:
    out: list[ev.AppEvent] = [ev.AudioChunk(b"\0\0", "audio/pcm;rate=24000")]
    out.append(ev.OutputTranscript(words, False))
    out.append(ev.Interrupted() if interrupted else ev.GenerationComplete())
    out.append(ev.TurnComplete())
    return out


def test_a_replayed_answered_question_is_withheld_and_the_cut_one_is_answered() -> None:
    u = UnheldInput()
    u.forwarded(_text("My name is Ada."), 1, 0)
    u.turn_ended()  # its answer reached the device
    u.forwarded(_text("Please count to 100."), 2, 1)  # asked before a handle held Ada
    # the upstream dropped mid-count; the device got `interrupted` only (turn still open)
    u.replayed()
    assert u.hiding == 1
    assert all(u.hide(e) for e in _answer("Nice to meet you, Ada.", interrupted=True))
    assert not any(u.hide(e) for e in _answer("1, 2, 3."))  # the count: the device's turn
    assert u.hidden_turns == 1
    assert not u.hide(ev.Usage(1, 2, 3))  # not part of a turn


def test_messages_a_handle_holds_are_not_replayed_so_nothing_is_withheld() -> None:
    u = UnheldInput()
    u.forwarded(_text("My name is Ada."), 1, 0)
    u.turn_ended()
    u.held((1,))  # Delivered: a handle holds it
    u.replayed()
    assert u.hiding == 0 and u.entries == []
    assert not u.hide(ev.TurnComplete())


def test_a_takeover_carries_the_snapshot_and_its_cut_turn_end_closes_the_last() -> None:
    old = UnheldInput()
    old.forwarded(_text("My favourite colour is teal."), 1, 0)
    old.turn_ended()
    old.forwarded(_text("Please count to 200."), 2, 1)  # the owner dies mid-count
    snapshot = orjson.loads(orjson.dumps(old.snapshot()))  # through Redis
    new = UnheldInput()
    new.carry(snapshot)
    assert [e.message for e in new.pending_carried()] == [item[0] for item in snapshot]
    assert [e.index for e in new.pending_carried()] == [0, 1]
    new.turn_ended()  # report_cut_turn told the device the count ended
    for seq, entry in enumerate(new.pending_carried(), start=1):
        new.sent_carried(entry, seq)
    new.context_reset()  # even a fresh upstream session gets the carried messages
    assert len(new.entries) == 2
    new.replayed()
    assert new.hiding == 2  # teal's re-answer and the re-count: both turns the device ended
    events = _answer("You said teal.", interrupted=True) + _answer("1, 2", interrupted=True)
    assert all(new.hide(e) for e in events)
    assert not new.hide(ev.OutputTranscript("You first said teal.", False))


def test_a_fresh_session_seeded_with_what_was_sent_hides_nothing() -> None:
    u = UnheldInput()
    u.forwarded(_text("Hello."), 1, 0)
    u.turn_ended()
    u.context_reset()  # the session re-seeded the text as history: no replay
    u.replayed()
    assert u.hiding == 0 and u.entries == []


def test_the_bounds_forget_the_oldest_and_count_them() -> None:
    u = UnheldInput(max_records=3, max_bytes=10_000)
    for i in range(5):
        u.forwarded(_text(f"m{i}"), i, i)
    assert [e.seq for e in u.entries] == [2, 3, 4] and u.forgotten == 2
    big = UnheldInput(max_records=100, max_bytes=100)
    big.forwarded(_text("x" * 60), 1, 0)
    big.forwarded(_text("y" * 60), 2, 1)
    assert [e.seq for e in big.entries] == [2] and big.forgotten == 1


def _chunk(n: int = 640) -> dict[str, Any]:
    return {"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": "A" * n}}}


def test_contiguous_audio_is_one_record_bounded_by_bytes_not_by_chunk_count() -> None:
    u = UnheldInput()
    for i in range(600):  # 12 s of 20 ms chunks, no handle, no turn end
        u.forwarded(_chunk(), i + 1, i)
    assert u.records == 1 and len(u.entries) == 600 and u.forgotten == 0
    # a typed message ends the run; the next chunk starts a new record
    u.forwarded(_text("stop"), 601, 600)
    u.forwarded(_chunk(), 602, 601)
    assert u.records == 3
    # so does a turn end the device saw, and a gap in the device's numbering
    u.turn_ended()
    u.forwarded(_chunk(), 603, 602)
    u.forwarded(_chunk(), 604, 604)
    assert u.records == 5
    # a handle holding the first half of the run leaves the rest one record
    u.held(tuple(range(1, 301)))
    assert len(u.entries) == 304 and u.records == 5
    u.held(tuple(range(301, 601)))
    assert u.records == 4


def test_speech_over_the_byte_bound_forgets_the_oldest_chunks() -> None:
    u = UnheldInput(max_bytes=100_000)
    size = len(orjson.dumps(_chunk()))
    for i in range(300):
        u.forwarded(_chunk(), i + 1, i)
    kept = 100_000 // size
    assert len(u.entries) == kept and u.forgotten == 300 - kept and u.records == 1
    assert u.entries[0].index == 300 - kept  # the oldest went first
    assert u.size_bytes <= 100_000


def test_typed_messages_still_count_one_record_each_and_tiny_chunks_hit_the_entry_cap() -> None:
    u = UnheldInput()
    for i in range(300):
        u.forwarded(_text(f"m{i}"), i + 1, i)
    assert u.records == 256 and u.forgotten == 300 - 256
    flood = UnheldInput(max_entries=100)
    for i in range(150):
        flood.forwarded(_chunk(1), i + 1, i)
    assert len(flood.entries) == 100 and flood.forgotten == 50 and flood.records == 1


def test_records_survive_eviction_of_a_runs_head_and_of_a_whole_run() -> None:
    u = UnheldInput(max_records=2)
    u.forwarded(_text("a"), 1, 0)
    for i in range(1, 4):
        u.forwarded(_chunk(), i + 1, i)  # one run: records a, run
    assert u.records == 2 and u.forgotten == 0
    u.forwarded(_text("b"), 5, 4)  # three records: "a" goes
    assert u.records == 2 and [e.index for e in u.entries] == [1, 2, 3, 4]
    u.forwarded(_text("c"), 6, 5)  # the whole run goes, chunk by chunk
    assert u.records == 2 and [e.index for e in u.entries] == [4, 5]
    assert u.forgotten == 4


def test_a_refused_carried_message_is_forgotten() -> None:
    u = UnheldInput()
    u.carry([[_text("a"), None]])
    (entry,) = u.pending_carried()
    u.sent_carried(entry, None)
    assert u.entries == [] and u.pending_carried() == []


async def test_a_new_owner_resends_carried_input_first_and_drops_the_devices_replay_of_it() -> None:
    from tunnelproof.protocol.config import LiveConfig
    from tunnelproof.relay.conversation import Conversation
    from tunnelproof.relay.handles import HandleCodec, RelayHandle
    from tunnelproof.relay.settings import RelaySettings
    from tunnelproof.session.stores import MemoryHandleStore

    from .test_relay_units import _FakeUpstream, _Sink

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
    # the dead owner had received 3 messages; a handle held the first only
    conv.received = 3
    conv.carry([[_text("teal"), 1], [_text("count"), None]])
    conv.report_cut_turn()  # the count's answer was cut by the death
    sink = _Sink()
    # the device's newest handle says the relay had 2 messages: it replays "count", then asks
    conv.attach(sink, position=RelayHandle("c1", "alice", 0, 2), wants_handles=False)
    await conv.open_upstream()
    await conv.from_device("realtimeInput", {"text": "count"})
    await conv.from_device("realtimeInput", {"text": "first?"})
    upstream = conv.upstream
    assert isinstance(upstream, _FakeUpstream)
    assert [m["realtimeInput"]["text"] for m in upstream.sent] == ["teal", "count", "first?"]
    assert conv.stats.duplicates_dropped == 1
    conv.unheld.replayed()  # the upstream resumed: both carried turns were ended for the device
    assert conv.unheld.hiding == 2
    assert conv.unheld.snapshot() == [
        [_text("teal"), 1 - 1_000_000_000, 1],
        [_text("count"), 1, 2],
        [_text("first?"), None, 3],
    ]
    # what the Redis mirror writes besides each body once: three runs, a few bytes
    assert conv.unheld.runs() == [[1, 1, 1 - 1_000_000_000], [2, 2, 1], [3, 3, None]]
    await conv.close()


def test_the_run_length_index_stays_one_run_while_audio_streams_in() -> None:
    u = UnheldInput()
    u.forwarded(_text("hello"), 1, 0)
    u.turn_ended()
    for i in range(1, 200):  # 8 s of 40 ms microphone chunks, no turn end yet
        u.forwarded({"realtimeInput": {"audio": {"data": "AAAA"}}}, i + 1, i)
    assert u.runs() == [[0, 0, 1], [1, 199, None]]
    u.held(tuple(range(1, 101)))  # a handle held the first 100 sends
    assert u.runs() == [[100, 199, None]]
    assert sorted(u.bodies()) == list(range(100, 200))


def test_the_runs_and_indices_kept_up_to_date_match_a_recount() -> None:
    # The mirror reads them every flush; they are kept incrementally (no pass over up to
    # 4096 entries): after any mix of additions, evictions, holds and turn ends they must
    # equal what a recount from the entries gives.
    import random

    rng = random.Random(7)
    u = UnheldInput(max_records=5, max_entries=50)
    seq = 0
    for step in range(2000):
        roll = rng.random()
        if roll < 0.6:
            seq += 1
            u.forwarded(_chunk() if rng.random() < 0.7 else _text("x"), seq, seq)
        elif roll < 0.7:
            u.turn_ended()
        elif roll < 0.8 and u.entries:
            u.held(tuple(e.seq for e in u.entries[: rng.randint(1, 3)] if e.seq is not None))
        kept = u.runs()
        u._runs = None  # recount
        assert u.runs() == kept, step
        assert u.indices == {e.index for e in u.entries}, step
        newest = [(e.index, e.message) for e in u.entries if e.index > seq - 2]
        assert u.messages_after(seq - 2) == newest, step
