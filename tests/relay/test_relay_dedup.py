"""Units: the duplicate check (names and content) and the name on a device frame."""

from __future__ import annotations

from tunnelproof.protocol.relay_setup import named, split_name
from tunnelproof.relay import dedup
from tunnelproof.relay.dedup import DuplicateCheck, content_digest, name_digest


def test_a_name_is_put_first_and_split_off_exactly() -> None:
    frame = named('{"realtimeInput":{"text":"yes"}}', "3f9a02c1:17")
    assert frame == '{"tunnelproofName":"3f9a02c1:17","realtimeInput":{"text":"yes"}}'
    assert split_name(frame) == ("3f9a02c1:17", '{"realtimeInput":{"text":"yes"}}')
    assert split_name(frame.encode()) == ("3f9a02c1:17", b'{"realtimeInput":{"text":"yes"}}')
    assert split_name('{"realtimeInput":{}}') == (None, '{"realtimeInput":{}}')
    # malformed (no end within the bound): left as is, so the frame is refused as bad JSON
    bad = '{"tunnelproofName":"' + "x" * 100
    assert split_name(bad) == (None, bad)


def test_a_named_replay_is_known_wherever_it_falls_and_new_names_are_new() -> None:
    check = DuplicateCheck()
    for index, name in enumerate(["a:1", "a:2", "a:3"]):
        check.remember(index, name_digest(name))
    check.arm(3)  # the device's handle counted all three: the content window is empty
    assert check.named_replay(name_digest("a:1"))  # before the handle: still known
    assert not check.named_replay(name_digest("a:4"))
    assert not check.named_replay(name_digest("b:1"))  # a restarted client names afresh


def test_content_replays_match_the_window_in_order_and_a_new_message_ends_it() -> None:
    yes, no = content_digest({"t": "yes"}), content_digest({"t": "no"})
    check = DuplicateCheck()
    for index, digest in enumerate([yes, no, yes]):
        check.remember(index, digest)
    check.arm(1)  # window: no, yes
    assert check.content_replay(no) and check.content_replay(yes)
    assert not check.window and not check.content_replay(yes)  # no window: new


def test_the_ring_forgets_the_oldest_names_and_keeps_its_index_in_step() -> None:
    check = DuplicateCheck()
    for index in range(dedup.RING + 10):
        check.remember(index, name_digest(f"a:{index}"))
    assert len(check.ring) == dedup.RING
    assert not check.named_replay(name_digest("a:0"))  # evicted
    assert check.named_replay(name_digest(f"a:{dedup.RING + 9}"))
    assert [i for i, _ in check.after(dedup.RING + 7)] == [dedup.RING + 8, dedup.RING + 9]
    # the same digest twice in the ring is forgotten only when both are gone
    twice = DuplicateCheck()
    twice.remember(0, content_digest({"t": "yes"}))
    twice.remember(1, content_digest({"t": "yes"}))
    for index in range(2, dedup.RING + 1):
        twice.remember(index, name_digest(f"a:{index}"))
    assert twice.named_replay(content_digest({"t": "yes"}))  # index 1 still in the ring
    twice.remember(dedup.RING + 1, name_digest("a:last"))
    assert not twice.named_replay(content_digest({"t": "yes"}))
