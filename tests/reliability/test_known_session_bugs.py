"""Bugs the chaos soak found in the session layer, as deterministic reproductions.

Each test is the minimal event order the soak stumbled on, replayed on the sans-I/O
machine through the session tests' harness. Fixed bugs keep their test as a regression
test; while a bug is open its test is ``xfail(strict=True)``, so the fix turns it into an
XPASS failure and whoever fixed it removes the marker.
"""

from __future__ import annotations

import orjson

from tests.session.session_harness import Harness
from tunnelproof.protocol.client_messages import realtime_text
from tunnelproof.session import app_events as ev


def _reconnect(h: Harness) -> None:
    """Wait out the retry timer, then connect the next attempt (bounded: five steps)."""
    for _ in range(5):
        if h.m.phase.value == "waiting":
            h.retry()
        elif h.m.phase.value in ("fetching", "opening"):
            h.connect()
            break


def _retry(h: Harness) -> None:
    """Let a backoff run out; after an abrupt drop the first attempt goes at once."""
    if h.m.phase.value == "waiting":
        h.retry()


def _texts_sent_on(h: Harness, attempt: int) -> list[str]:
    return [
        f["realtimeInput"]["text"]
        for f in h.frames(attempt)
        if "realtimeInput" in f and "text" in f["realtimeInput"]
    ]


def test_a_handle_issued_before_a_text_arrived_does_not_confirm_it() -> None:
    """Soak: 'text lost without a report'. A resumable handle the server issued before it
    read a text the client had just sent used to confirm that text; a resume from it then
    lacked the text and nothing replayed it."""
    h = Harness()
    h.start()
    h.connect()
    h.handle_update("h1")  # the server's handle right after setupComplete: empty history
    # The app sends at once (state is CONNECTED), and the server, which issued "h2" for
    # the resumed connection before reading the text, sends that handle next. Nothing the
    # server said since the text shows it has it: no output, the reply is still due.
    result = h.send(realtime_text("hello"))
    assert result.sent
    h.handle_update("h2")
    h.closed(1006)  # the link drops before any answer
    _retry(h)
    h.connect()
    assert h.setup_handle() == "h2"
    resumed = h.of(ev.Resumed)[-1]
    # "h2" does not contain "hello": it must be replayed, or reported dropped.
    dropped = [s for e in h.of(ev.SendDropped) for s in e.seqs]
    assert _texts_sent_on(h, h.attempt) == ["hello"] or result.seq in dropped, (
        resumed,
        orjson.dumps(h.frames()).decode(),
    )


def test_a_replayed_question_survives_a_second_drop() -> None:
    """After a resume the client replays the unanswered question right after setupComplete;
    the handle the server sends right after setupComplete (issued before it read the
    replay) used to confirm it, so a second drop before the answer lost it silently."""
    h = Harness()
    h.start()
    h.connect()
    h.handle_update("h1")
    result = h.send(realtime_text("hello"))
    h.server(sessionResumptionUpdate={"resumable": False})  # generating
    h.closed(1006)  # first drop, mid-answer
    _retry(h)
    h.connect()  # resumed from h1: "hello" is replayed right after setupComplete
    assert _texts_sent_on(h, h.attempt) == ["hello"]
    h.handle_update("h2")  # issued by the server right after setupComplete: no "hello"
    h.closed(1006)  # second drop, before the answer
    _retry(h)
    h.connect()
    assert h.setup_handle() == "h2"
    dropped = [s for e in h.of(ev.SendDropped) for s in e.seqs]
    assert _texts_sent_on(h, h.attempt) == ["hello"] or result.seq in dropped


def test_a_handle_after_the_answer_still_confirms() -> None:
    """The fix keeps only unanswered sends: once output came, a handle confirms again."""
    h = Harness()
    h.start()
    h.connect()
    h.send(realtime_text("hello"))
    h.server(serverContent={"modelTurn": {"parts": [{"text": "hi"}]}, "turnComplete": True})
    h.handle_update("h2")  # after the answer: it holds "hello"
    h.closed(1006)
    _retry(h)
    h.connect()
    assert _texts_sent_on(h, h.attempt) == []  # no duplicate


def test_a_reseeded_session_keeps_its_seed_through_a_drop() -> None:
    """Soak: a conversation lost its context. After a ContextReset the transcript seed is
    sent right after setupComplete; the handle the fresh session sent right after
    setupComplete predates the seed, and a drop before any answer used to resume into an
    empty session without re-seeding. Now that drop starts a fresh session again."""
    h = Harness()
    h.start()
    h.connect()
    h.handle_update("h1")
    h.send(realtime_text("first"))
    h.server(serverContent={"modelTurn": {"parts": [{"text": "ok"}]}, "turnComplete": True})
    h.handle_update("h2")
    h.closed(1006)
    _retry(h)
    h.give_token()
    h.opened()
    h.closed(1007, "Request contains an invalid argument.")  # the resume is refused
    assert h.of(ev.ContextReset) or h.m.phase.value in ("fetching", "opening", "waiting")
    _reconnect(h)  # on to the next connection
    seed = [f for f in h.frames() if "clientContent" in f]
    assert seed, "the fresh session was seeded"
    h.handle_update("h3")  # issued by the fresh session before it read the seed
    resets = len(h.of(ev.ContextReset))
    h.closed(1006)
    _reconnect(h)  # on to the next connection
    resent = [orjson.dumps(f).decode() for f in h.frames() if "clientContent" in f]
    assert any("first" in f for f in resent), h.frames()
    assert h.setup_handle() is None  # not "h3": a fresh session, re-seeded and told so
    assert len(h.of(ev.ContextReset)) == resets + 1


def test_a_reseeded_session_that_answered_resumes_normally() -> None:
    """Once the fresh session answered, its handles hold the seed: resume, no re-seed."""
    h = Harness()
    h.start()
    h.connect()
    h.send(realtime_text("first"))
    h.server(serverContent={"modelTurn": {"parts": [{"text": "ok"}]}, "turnComplete": True})
    h.handle_update("h2")
    h.closed(1006)
    _retry(h)
    h.give_token()
    h.opened()
    h.closed(1007, "Request contains an invalid argument.")
    _reconnect(h)  # on to the next connection
    h.handle_update("h3")
    h.send(realtime_text("second"))
    h.server(serverContent={"modelTurn": {"parts": [{"text": "ok"}]}, "turnComplete": True})
    h.handle_update("h4")
    h.closed(1006)
    _retry(h)
    h.connect()
    assert h.setup_handle() == "h4"
    assert not [f for f in h.frames() if "clientContent" in f]  # no second seed


def test_output_alone_does_not_prove_the_handle_holds_the_seed() -> None:
    """Soak, after the first fix: two conversations still lost their context. The fresh
    session's only handle was the one issued at setup (before the seed); the model then
    answered (so the server had read the seed) but the link dropped before a newer handle.
    Resuming with the setup-time handle restored an empty session."""
    h = Harness()
    h.start()
    h.connect()
    h.send(realtime_text("first"))
    h.server(serverContent={"modelTurn": {"parts": [{"text": "ok"}]}, "turnComplete": True})
    h.handle_update("h2")
    h.closed(1006)
    _retry(h)
    h.give_token()
    h.opened()
    h.closed(1007, "Request contains an invalid argument.")
    _reconnect(h)  # on to the next connection
    h.handle_update("h3")  # issued at setup, before the seed
    h.send(realtime_text("count to 40"))
    h.server(serverContent={"modelTurn": {"parts": [{"text": "1, 2"}]}})  # it read the seed
    h.server(sessionResumptionUpdate={"resumable": False})  # generating
    h.closed(1006)  # dropped mid-answer, before any handle that holds the seed
    _reconnect(h)  # on to the next connection
    assert h.setup_handle() is None  # not "h3"
    resent = [orjson.dumps(f).decode() for f in h.frames() if "clientContent" in f]
    assert any("first" in f for f in resent), h.frames()


def test_a_text_reported_dropped_is_not_reseeded() -> None:
    """Soak (bursts against a 16-message outbox): texts written on a link that died, then
    dropped when requeued over the outbox bound (and reported so), stayed in the
    transcript, and a fresh session re-seeded them: 'reported dropped but delivered'."""
    from tunnelproof.session.outbox import OutboxLimits

    h = Harness(limits=OutboxLimits(max_messages=4))
    h.start()
    h.connect()
    h.handle_update("h1")
    sent = {h.send(realtime_text(f"burst {k}")).seq: f"burst {k}" for k in range(8)}
    h.closed(1006)  # all eight were written, none confirmed: requeued over the bound
    dropped = {s for e in h.of(ev.SendDropped) for s in e.seqs}
    assert len(dropped) == 4
    _retry(h)
    h.give_token()
    h.opened()
    h.closed(1007, "Request contains an invalid argument.")  # resume refused: fresh
    _reconnect(h)  # on to the next connection
    seeded = " ".join(orjson.dumps(f).decode() for f in h.frames() if "clientContent" in f)
    asked = _texts_sent_on(h, h.attempt)  # unanswered questions are asked again after it
    for seq, text in sent.items():
        held = (f'"{text}"' in seeded) + asked.count(text)
        assert held == (0 if seq in dropped else 1), (text, seeded, asked)
