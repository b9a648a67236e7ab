"""The replay bound must not cut the start of a conversation the app has already seen.

Found by the chaos soak (sessions 47, 59, 83 of seed 1 answered 'You first said: "Burst
note 4."'): on an AUDIO model the resumable handle arrives ~40 ms after ``turnComplete``,
so a drop right after the first answer resumes a state without that first exchange, and
the first text is replayed. When the app sent more than ``max_messages`` texts into the
dying link before the drop was seen, ``Outbox.requeue_unconfirmed`` trims the replay to the
bound by dropping the OLDEST replays: the first text, whose answer the app already shows,
is reported dropped and forgotten from the transcript (which keeps its answer), so neither
the resumed state nor a later re-seeded one holds what was said first. Now the newest
are dropped, as a full outbox refuses a new send.
"""

from __future__ import annotations

from tunnelproof.protocol.client_messages import realtime_text
from tunnelproof.session import app_events as ev
from tunnelproof.session.outbox import OutboxLimits

from .session_harness import Harness


def test_an_answered_first_text_survives_a_replay_over_the_bound() -> None:
    h = Harness(limits=OutboxLimits(max_messages=3))
    h.start()
    h.connect()
    h.handle_update("h0")  # the state before anything was said
    first = h.send(realtime_text("my code word is teal"))
    h.server(serverContent={"modelTurn": {"parts": [{"text": "noted"}]}, "turnComplete": True})
    # The link dies before the handle covering that turn arrives; the app keeps typing
    # into it before the drop is noticed (all three go out on the wire: "sent").
    later = [h.send(realtime_text(f"burst {k}")) for k in range(3)]
    assert first.sent and all(r.sent for r in later)
    h.closed(1006)
    h.advance(1)
    h.connect()
    assert h.setup_handle() == "h0"
    dropped = {seq for e in h.of(ev.SendDropped) for seq in e.seqs}
    # Something must give (4 replays, bound 3), and it is reported either way; but the
    # answered first text is what the conversation is built on.
    assert len(dropped) == 1
    assert first.seq not in dropped
    # The answered first text goes first, restored with its answer as history (restore.py:
    # the app already has that answer, so it is not asked again).
    assert h.frames()[1] == {
        "clientContent": {
            "turns": [
                {"role": "user", "parts": [{"text": "my code word is teal"}]},
                {"role": "model", "parts": [{"text": "noted"}]},
            ],
            "turnComplete": False,
        }
    }
