"""Delivery confirmation (client contract 3): ``Delivered`` names the sends a handle holds.

Decided in one place (``SessionMachine._confirm_delivery``): a resumable handle holds what
was sent before it, except the sends still awaiting their answer.
"""

from __future__ import annotations

from tunnelproof.protocol.client_messages import realtime_audio, realtime_text
from tunnelproof.session import app_events as ev

from .session_harness import Harness

PCM_100MS = b"\x00\x00" * 1600
ANSWER = {"modelTurn": {"parts": [{"text": "ok"}]}, "turnComplete": True}


def connected() -> Harness:
    h = Harness()
    h.start()
    h.connect()
    return h


def delivered(h: Harness) -> list[int]:
    return [seq for event in h.of(ev.Delivered) for seq in event.seqs]


def test_an_answered_send_is_delivered_by_the_next_resumable_handle() -> None:
    h = connected()
    seq = h.send(realtime_text("hello")).seq
    h.server(serverContent=ANSWER)
    assert delivered(h) == [], "an answer alone is not evidence the state holds it"
    h.handle_update("h1")
    assert delivered(h) == [seq]
    h.handle_update("h2")
    assert delivered(h) == [seq], "confirmed once"


def test_a_handle_issued_before_the_answer_does_not_deliver_the_question() -> None:
    h = connected()
    audio = h.send(realtime_audio(PCM_100MS)).seq
    question = h.send(realtime_text("what time is it")).seq
    later = h.send(realtime_audio(PCM_100MS)).seq
    h.handle_update("h1")  # the server may have issued it before it read the question
    # ... or before it heard the audio: no turn has consumed it yet (see
    # test_audio_confirmation.py), so the handle holds none of the three.
    assert delivered(h) == []
    h.server(serverContent=ANSWER)
    h.handle_update("h2")
    # The answer consumed the audio and the question; the audio after the question is
    # held once a turn consumes it too.
    assert delivered(h) == [audio, question]
    h.server(serverContent=ANSWER)
    h.handle_update("h3")
    assert delivered(h) == [audio, question, later]


def test_non_resumable_updates_deliver_nothing() -> None:
    h = connected()
    h.send(realtime_text("hello"))
    h.server(serverContent=ANSWER)
    h.handle_update("h1", resumable=False)
    h.handle_update(None, resumable=True)
    assert delivered(h) == []


def test_a_replayed_send_is_delivered_once_after_the_resume() -> None:
    h = connected()
    h.handle_update("h1")
    seq = h.send(realtime_text("lost in the tunnel")).seq
    h.closed(1006)
    h.advance(1)
    h.connect()
    assert h.of(ev.Resumed)[-1].replayed == 1
    h.server(serverContent=ANSWER)
    h.handle_update("h2")
    assert delivered(h) == [seq]
    assert not any(seq in e.seqs for e in h.of(ev.SendDropped))


def test_queued_sends_are_not_delivered_before_they_are_sent() -> None:
    h = Harness()
    h.start()
    seq = h.send(realtime_text("early")).seq  # queued: not connected yet
    h.connect()
    assert delivered(h) == []
    h.server(serverContent=ANSWER)
    h.handle_update("h1")
    assert delivered(h) == [seq]
