"""A handle issued before the server heard an utterance must not confirm its audio.

Found by the impolite chaos soak (seed 1, sessions 23 and 25 of 30, a goAway loop on a
100-500 ms link): the user speaks right after a resume; the resumable handle the server
sent with ``setupComplete`` (before it read any of the speech) arrives a latency later and
confirmed every chunk sent by then with ``Delivered``. The next handover resumed from that
handle, whose state holds no part of the utterance (an unfinished utterance is not a turn
yet), and the chunks, "delivered", were never replayed: the question was never heard or
answered, and the app had been told it was safe (3.4 s of speech in one 30-session run).

Audio has no question of its own, so the server's state holds it only once a turn has
consumed it (the model's answer to the utterance started): until then a handle leaves the
audio unconfirmed, like a question still owed its answer.
"""

from __future__ import annotations

from tunnelproof.protocol.client_messages import realtime_audio, realtime_text
from tunnelproof.session import app_events as ev

from .session_harness import Harness

SPEECH_40MS = b"\x10\x27" * 640


def delivered(h: Harness) -> set[int]:
    return {seq for e in h.of(ev.Delivered) for seq in e.seqs}


def test_a_handle_before_the_answer_does_not_confirm_the_speech() -> None:
    h = Harness()
    h.start()
    h.connect()
    chunks = [h.send(realtime_audio(SPEECH_40MS)) for _ in range(5)]
    assert all(c.sent for c in chunks)
    h.handle_update("h1")  # issued with setupComplete, arriving after the first words
    assert not delivered(h) & {c.seq for c in chunks}
    h.closed(1006)  # a handover or a drop before the utterance ends
    h.advance(1)
    h.connect()
    assert h.setup_handle() == "h1"
    replayed = [f for f in h.frames()[1:] if "realtimeInput" in f]
    assert len(replayed) == 5  # the whole utterance again: the resumed state lacks it
    assert not h.of(ev.SendDropped)
    # The server hears it and answers; the handle after that answer holds the speech.
    h.server(serverContent={"outputTranscription": {"text": "You said"}})
    h.server(serverContent={"turnComplete": True})
    h.handle_update("h2")
    assert delivered(h) >= {c.seq for c in chunks}


def test_speech_answered_before_the_handle_is_confirmed_by_it() -> None:
    # Unchanged: the usual order (utterance, answer, handle) confirms the chunks at once.
    h = Harness()
    h.start()
    h.connect()
    h.handle_update("h0")
    chunks = [h.send(realtime_audio(SPEECH_40MS)) for _ in range(3)]
    h.server(serverContent={"outputTranscription": {"text": "You said"}})
    h.server(serverContent={"turnComplete": True})
    h.handle_update("h1")
    assert delivered(h) >= {c.seq for c in chunks}
    # Text behind the speech keeps its own rule: confirmed only after its own answer.
    question = h.send(realtime_text("and one more thing"))
    tail = h.send(realtime_audio(SPEECH_40MS))
    h.handle_update("h2")
    assert question.seq not in delivered(h) and tail.seq not in delivered(h)
