"""A question re-asked in a fresh session stays in the transcript that re-seeds the next one.

Found by the chaos soak ("texts: session N text [cN-k] lost without a report", since the
re-asking of cut-off questions): ``_prepare_fresh_session`` takes an owed question out of
the transcript so that it is asked again *after* the seeded history, but the re-ask is a
replay (``was_sent``), and ``_write`` only writes a first send to the transcript. The
question was then never written back: its answer was, so the next fresh session was seeded
with an answer to nothing, and the server's state lacked a text nobody reported dropped.
"""

from __future__ import annotations

from typing import Any

from tunnelproof.protocol.client_messages import realtime_text
from tunnelproof.session import app_events as ev

from .session_harness import Harness


def said(h: Harness, text: str, **extra: Any) -> None:
    h.server(serverContent={"modelTurn": {"parts": [{"text": text}]}, **extra})


def refused_resume_then_fresh(h: Harness) -> None:
    """The link drops, the handle is refused (1007), the next attempt is a fresh session."""
    h.closed(1006)
    h.advance(1)
    h.give_token()
    h.opened()
    h.closed(1007, "Request contains an invalid argument.")
    h.advance(1)
    h.connect()


def seeded_texts(h: Harness) -> list[tuple[str, str]]:
    (seed,) = [f for f in h.frames() if "clientContent" in f]
    return [
        (turn["role"], part["text"])
        for turn in seed["clientContent"]["turns"]
        for part in turn["parts"]
    ]


def test_a_reasked_question_is_in_the_next_fresh_sessions_seed_before_its_answer() -> None:
    h = Harness()
    h.start()
    h.connect()
    h.send(realtime_text("my colour is teal"))
    said(h, "ok", turnComplete=True)
    h.handle_update("h1")
    h.send(realtime_text("tell me a story"))
    said(h, "Once upon")
    refused_resume_then_fresh(h)
    assert len(h.of(ev.ContextReset)) == 1
    assert h.frames()[-1] == {"realtimeInput": {"text": "tell me a story"}}, "asked again"
    said(h, "Once upon a time.", turnComplete=True)
    h.handle_update("h2")
    refused_resume_then_fresh(h)
    assert len(h.of(ev.ContextReset)) == 2
    assert not h.of(ev.SendDropped)
    assert seeded_texts(h) == [
        ("user", "my colour is teal"),
        ("model", "ok"),
        ("user", "tell me a story"),
        ("model", "Once upon a time."),
    ]
