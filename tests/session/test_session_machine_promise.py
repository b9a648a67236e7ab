"""Deterministic tests of the rules behind issue 13 (the promise) and issue 15 (a drop
costs the floor), one or more per symptom. Time is the harness's clock; nothing sleeps."""

from __future__ import annotations

from typing import Any

import pytest

from tunnelproof.protocol.client_messages import (
    FunctionResponse,
    realtime_audio,
    realtime_text,
    tool_response,
)
from tunnelproof.session import app_events as ev
from tunnelproof.session.actions import AbortSocket, CheckLink, CloseSocket, DeleteHandle
from tunnelproof.session.events import LinkChecked, OpenFailure, TokenFailure
from tunnelproof.session.policy import RetryPolicy, Watchdogs

from .session_harness import Harness

PCM_20MS = b"\x00\x00" * 320  # 20 ms at 16 kHz


def connected(**kwargs: Any) -> Harness:
    h = Harness(**kwargs)
    h.start()
    h.connect()
    return h


def said(h: Harness, text: str, **extra: Any) -> None:
    h.server(serverContent={"modelTurn": {"parts": [{"text": text}]}, **extra})


def texts_sent(h: Harness, attempt: int | None = None) -> list[str]:
    return [
        f["realtimeInput"]["text"]
        for f in h.frames(attempt)
        if "realtimeInput" in f and "text" in f["realtimeInput"]
    ]


# -- symptom 1: a follow-up sent while an answer arrives ---------------------------------


def test_follow_up_sent_during_an_answer_is_answered_by_the_next_turn_and_replayed() -> None:
    h = connected()
    h.handle_update("h0")
    q1 = h.send(realtime_text("count to 3"))
    said(h, "1, 2")
    q2 = h.send(realtime_text("tell me a story"))  # while answer 1 arrives
    said(h, ", 3.", turnComplete=True)
    h.handle_update("h1")  # issued after answer 1: holds question 1, not question 2
    delivered = {s for e in h.of(ev.Delivered) for s in e.seqs}
    assert q1.seq in delivered and q2.seq not in delivered
    h.closed(1006)
    h.advance(1)
    h.connect()
    assert h.setup_handle() == "h1"
    assert texts_sent(h) == ["tell me a story"], "question 2 is replayed"
    assert not [e for e in h.of(ev.SendDropped) if q2.seq in e.seqs]


def test_the_next_turn_answers_the_follow_up_and_a_handle_after_it_delivers_it() -> None:
    h = connected()
    h.send(realtime_text("count to 3"))
    said(h, "1, 2")
    q2 = h.send(realtime_text("tell me a story"))
    said(h, ", 3.", turnComplete=True)
    h.handle_update("h1")
    said(h, "Once upon a time", turnComplete=True)  # turn 2 answers question 2
    h.handle_update("h2")
    assert q2.seq in {s for e in h.of(ev.Delivered) for s in e.seqs}
    h.closed(1006)
    h.advance(1)
    h.connect()
    assert texts_sent(h) == [], "nothing to replay: h2 holds both questions"


def test_ten_sends_through_drops_each_end_delivered_or_replayed() -> None:
    h = connected()
    h.handle_update("h0")
    seqs = []
    for n in range(10):
        seqs.append(h.send(realtime_text(f"q{n}")).seq)
        said(h, f"a{n - 1}", turnComplete=True)  # answers lag one question behind
        h.handle_update(f"h{n + 1}")
        if n % 3 == 2:
            h.closed(1006)
            h.advance(1)
            h.connect()
    said(h, "a9", turnComplete=True)
    h.handle_update("last")
    said(h, "a10", turnComplete=True)
    h.handle_update("final")
    delivered = {s for e in h.of(ev.Delivered) for s in e.seqs}
    dropped = {s for e in h.of(ev.SendDropped) for s in e.seqs}
    assert set(seqs) <= delivered | dropped


# -- symptom 2: a slow token service while offline ------------------------------------------


def test_offline_token_fetch_lets_a_slow_backend_answer() -> None:
    w = Watchdogs(token_timeout=10.0, probe_connect_timeout=3.0)
    h = Harness(watchdogs=w)
    h.start()
    h.now += 3.5  # the first token took 3.5 s
    h.connect()
    h.handle_update("h1")
    h.advance(1.0)
    h.closed(1006)
    h.advance(0.01)
    h.fail_token(TokenFailure.OFFLINE)  # in the tunnel
    h.retry()
    token_timer = h.timers["token"][1] - h.now
    assert token_timer >= 7.0, "twice the backend's observed time"
    h.advance(5.0)
    h.give_token()  # 5 s later: answered, not cancelled
    assert h.m.phase.value == "opening"


def test_offline_token_timeouts_grow_until_the_backend_answers() -> None:
    w = Watchdogs(token_timeout=10.0, probe_connect_timeout=2.0)
    h = Harness(watchdogs=w)
    h.start()
    h.connect()
    h.advance(1.0)
    h.closed(1006)
    h.fail_token(TokenFailure.OFFLINE)
    allowances = []
    for _ in range(4):
        h.retry()
        allowances.append(round(h.timers["token"][1] - h.now, 3))
        h.fire("token")
    assert allowances[0] >= 2.0
    assert allowances == sorted(allowances) and allowances[-1] == 10.0


# -- symptom 3: silence is not a dead link --------------------------------------------------


def test_reply_silence_checks_the_link_instead_of_tearing_it_down() -> None:
    w = Watchdogs(reply_timeout=20.0, link_check_timeout=30.0)
    h = connected(watchdogs=w)
    h.send(realtime_text("think hard"))
    for _ in range(6):  # two minutes of thinking; every check finds the link alive
        before = len(h.actions_of(CheckLink))
        h.advance(20.0)
        checks = h.actions_of(CheckLink)
        assert len(checks) == before + 1 and checks[-1].attempt == h.attempt
        h.advance(1.0)  # the pong takes a second
        h.feed(LinkChecked(h.attempt, alive=True, detail="pong"))
    assert not h.actions_of(AbortSocket), "a healthy link is never torn down on silence"
    assert not h.of(ev.Disconnected)
    said(h, "done", turnComplete=True)
    assert h.m.metrics.dead_links_detected == 0


def test_a_link_check_without_evidence_of_life_finds_the_dead_link() -> None:
    w = Watchdogs(reply_timeout=4.0, link_check_timeout=2.0)
    h = connected(watchdogs=w)
    h.send(realtime_text("hello?"))
    h.advance(6.5)
    assert h.actions_of(AbortSocket)
    assert h.m.metrics.dead_links_detected == 1


def test_asking_again_into_a_silent_link_does_not_postpone_its_check() -> None:
    """Ten tasks sending through a blackhole (e2e): each question used to restart the reply
    watchdog, so questions under ``reply_timeout`` apart kept a dead link alive forever."""
    h = connected(watchdogs=Watchdogs(reply_timeout=4.0, link_check_timeout=2.0))
    h.send(realtime_text("hello?"))
    for n in range(5):  # a question every second, the server silent all along
        h.advance(1.0)
        h.send(realtime_text(f"hello again {n}?"))
    checks = h.actions_of(CheckLink)
    assert len(checks) == 1 and checks[0].attempt == h.attempt, "checked 4 s after the first"
    h.advance(1.5)
    assert h.actions_of(AbortSocket), "no sign of life 2 s after the check: the link is dead"
    assert h.m.metrics.dead_links_detected == 1


def test_the_kernel_saying_dead_ends_the_link_at_once() -> None:
    h = connected(watchdogs=Watchdogs(reply_timeout=4.0))
    h.send(realtime_text("hello?"))
    h.advance(4.0)
    h.feed(LinkChecked(h.attempt, alive=False, detail="unacknowledged for 4 s"))
    assert h.actions_of(AbortSocket)


# -- symptom 4: audio accounted for, one report per outage ----------------------------------


def test_audio_dropped_during_an_outage_is_reported_once_with_its_duration() -> None:
    h = connected()
    h.handle_update("h1")
    h.advance(1.0)
    h.closed(1006)
    h.fail_token(TokenFailure.OFFLINE)
    seqs = []
    for _ in range(500):  # 10 s of speech into a 10 s outage; the outbox keeps 5 s
        seqs.append(h.send(realtime_audio(PCM_20MS)).seq)
        h.advance(0.02)
        if h.m.phase.value == "fetching" and h.pending_request() is not None:
            h.fail_token(TokenFailure.OFFLINE)
    if h.m.phase.value == "waiting":
        h.retry()
    h.connect()
    drops = [e for e in h.of(ev.SendDropped) if e.kind == "audio"]
    assert len(drops) == 1, f"{len(drops)} events for one outage"
    assert drops[0].audio_ms == pytest.approx(20.0 * len(drops[0].seqs))
    replayed = h.m.metrics.audio_ms_replayed + 20.0 * sum(
        1 for f in h.frames() if "realtimeInput" in f and "audio" in f["realtimeInput"]
    )
    assert replayed > 0


def test_audio_evicted_from_the_replay_window_of_a_dead_link_is_reported() -> None:
    h = connected()
    h.handle_update("h1")
    seqs = [h.send(realtime_audio(PCM_20MS)).seq for _ in range(400)]  # 8 s, link dead
    h.closed(1006)
    h.advance(0.5)
    h.connect()
    reported = {s for e in h.of(ev.SendDropped) for s in e.seqs}
    replayed = 0
    for f in h.frames():
        if "realtimeInput" in f and "audio" in f["realtimeInput"]:
            replayed += 1
    assert len(reported) + replayed == len(seqs), "every chunk replayed or reported"


# -- symptom 5: a message rejected with 1007 after a resume ---------------------------------


def test_1007_after_setup_complete_on_a_resume_rejects_the_message_not_the_handle() -> None:
    h = connected()
    h.handle_update("h1")
    h.closed(1006)
    h.advance(1)
    h.connect()  # resumed with h1
    bad = h.send({"realtimeInput": {"mediaChunks": [{"mimeType": "audio/pcm", "data": ""}]}})
    assert bad.sent
    h.closed(1007, "Request contains an invalid argument.")
    assert not h.actions_of(DeleteHandle)
    assert not h.of(ev.ContextReset) and not h.of(ev.Failed)
    dropped = [e for e in h.of(ev.SendDropped) if bad.seq in e.seqs]
    assert dropped and "invalid argument" in dropped[0].reason
    h.advance(1)
    h.connect()
    assert h.setup_handle() == "h1"
    assert not any("mediaChunks" in str(f) for f in h.frames()), "not replayed"


def test_1007_during_the_resumed_setup_is_still_a_bad_handle() -> None:
    h = connected()
    h.handle_update("h1")
    h.closed(1006)
    h.advance(1)
    h.give_token()
    h.opened()
    h.closed(1007, "Request contains an invalid argument.")
    assert h.actions_of(DeleteHandle)


def test_a_message_rejected_again_and_again_does_not_loop() -> None:
    h = connected()
    h.handle_update("h1")
    for _ in range(20):
        h.send(realtime_text("poison"))
        h.closed(1007, "Request contains an invalid argument.")
        if h.m.phase.value in ("failed", "closed"):
            break
        h.advance(60)
        h.connect()
    assert len(h.opens) <= 20


# -- symptoms 6 and 9: goAway handovers -------------------------------------------------------


def test_go_away_handover_waits_for_the_prefetched_token_while_the_deadline_allows() -> None:
    h = connected(watchdogs=Watchdogs(go_away_margin=5.0))
    h.handle_update("h1")
    h.server(goAway={"timeLeft": "30s"})
    assert h.pending_request() is not None and h.pending_request().prefetch
    assert not h.actions_of(CloseSocket), "no token in hand yet"
    h.advance(2.0)
    h.fail_token(TokenFailure.UNAVAILABLE, "503")  # the blip
    assert not h.actions_of(CloseSocket)
    h.advance(3.0)
    h.give_token()
    assert h.actions_of(CloseSocket), "handover with the token in hand"
    h.closed(1000)
    h.opened()
    h.setup_complete()
    assert h.of(ev.Resumed)[-1].gap < 0.1


def test_go_away_deadline_wins_over_a_token_that_never_comes() -> None:
    h = connected(watchdogs=Watchdogs(go_away_margin=5.0))
    h.handle_update("h1")
    h.server(goAway={"timeLeft": "10s"})
    h.advance(4.9)
    assert not h.actions_of(CloseSocket)
    h.advance(0.2)
    assert h.actions_of(CloseSocket), "the deadline forces the handover"


def test_go_away_on_every_connection_has_a_handover_budget() -> None:
    h = connected(policy=RetryPolicy(handover_budget=3))
    h.handle_update("h1")
    start = h.now
    for _ in range(200):
        if h.now - start > 60:
            break
        h.server(goAway={"timeLeft": "1s"})
        if h.pending_request() is not None:
            h.give_token()
        h.advance(0.01)
        if h.actions_of(CloseSocket) and h.m.phase.value == "handing_over":
            h.closed(1000)
        h.advance(0.05)
        if h.m.phase.value == "waiting":
            h.retry()
        if h.m.phase.value == "fetching":
            h.give_token()
        if h.m.phase.value == "opening":
            h.opened()
            h.setup_complete()
            h.handle_update("h1")
        h.log.clear()
    assert h.m.metrics.connections <= 40, h.m.metrics.connections


def test_a_server_that_closes_at_once_after_every_go_away_is_no_hot_loop() -> None:
    """goAway with no time left and the deadline close right after it, on every connection:
    the server's close counts against the handover budget like our own handover (it used
    not to, so every reconnect went at once: hundreds of connections in seconds)."""
    h = connected(policy=RetryPolicy(handover_budget=3))
    h.handle_update("h1")
    start = h.now
    for _ in range(400):
        if h.now - start > 60:
            break
        if h.m.phase.value == "connected":
            h.server(goAway={"timeLeft": "0s"})
            h.closed(1011, "Deadline expired before operation could complete.")
        if h.m.phase.value == "waiting":
            h.retry()
        if h.m.phase.value == "fetching":
            h.give_token()
        if h.m.phase.value == "opening":
            h.opened()
            h.setup_complete()
            h.handle_update("h1")
        h.advance(0.01)
        h.log.clear()
    assert not h.of(ev.Failed)
    assert h.m.metrics.connections <= 40, h.m.metrics.connections
    assert h.now - start > 30, "the loop ran out of steps: connections came too fast"


def test_past_the_handover_budget_the_session_stays_until_the_server_closes() -> None:
    """goAway with timeLeft at the margin: past the budget the session no longer leaves at
    once (it left right after flushing each question, forever) but stays for the answer."""
    h = connected(policy=RetryPolicy(handover_budget=0), watchdogs=Watchdogs(go_away_margin=1.0))
    h.handle_update("h1")
    h.send(realtime_text("what did I say first?"))
    h.server(goAway={"timeLeft": "1s"})
    h.give_token()
    h.advance(0.9)
    assert not h.actions_of(CloseSocket), "left before the server's deadline"
    said(h, "You said teal.")
    h.server(serverContent={"turnComplete": True})
    h.handle_update("h2")
    assert not h.actions_of(CloseSocket) and h.of(ev.TurnComplete)
    h.advance(5.0)  # the server never closed: the backstop hands over
    assert h.actions_of(CloseSocket)


# -- symptom 7: reply_lost means one thing ----------------------------------------------------


def test_reply_lost_is_false_when_the_question_is_replayed() -> None:
    h = connected()
    h.handle_update("h1")
    h.send(realtime_text("tell me a story"))
    said(h, "Once upon")
    h.handle_update(None, resumable=False)
    h.closed(1006)
    rewound = h.of(ev.Rewound)[-1]
    assert rewound.partial_text == "Once upon" and rewound.reply_lost is False
    h.advance(1)
    h.connect()
    assert texts_sent(h) == ["tell me a story"]


def test_after_a_context_reset_the_unanswered_question_is_asked_again() -> None:
    h = connected()
    h.send(realtime_text("my colour is teal"))
    said(h, "ok", turnComplete=True)
    h.handle_update("h1")
    h.send(realtime_text("tell me a story"))
    said(h, "Once upon")
    h.closed(1006)
    h.advance(1)
    h.give_token()
    h.opened()
    h.closed(1007, "Request contains an invalid argument.")  # bad handle
    h.advance(1)
    h.connect()
    assert h.of(ev.ContextReset)
    frames = h.frames()
    seed = [f for f in frames if "clientContent" in f]
    assert seed, "the fresh session is re-seeded"
    asked = [f for f in frames if "story" in str(f)]
    assert asked, "the cut-off question is asked again"
    last = frames[-1]
    assert "story" in str(last), "asked after the history"
    complete = last.get("clientContent", {}).get("turnComplete") or "realtimeInput" in last
    assert complete, "and asked so that the model answers"


# -- symptom 8: a resume refused because of a stale socket ------------------------------------


def test_a_resume_refused_with_1011_is_waited_out_not_given_up_at_once() -> None:
    h = connected()
    h.handle_update("h1")
    h.closed(1006)
    start = h.now
    for _ in range(3):
        h.advance(0.01)
        if h.m.phase.value == "waiting":
            h.retry()
        h.give_token()
        h.opened()
        h.closed(1011, "Internal error encountered.")
    assert not h.actions_of(DeleteHandle), "the handle is kept while the refusal lasts"
    h.retry()
    h.connect()
    assert h.setup_handle() == "h1" and h.of(ev.Resumed)
    assert h.now - start < 30


# -- symptom 10: re-issued tool calls ---------------------------------------------------------


def test_a_tool_call_issued_again_after_a_reconnect_is_marked_reissued() -> None:
    h = connected()
    h.handle_update("h1")
    h.send(realtime_text("lights on"))
    h.server(toolCall={"functionCalls": [{"id": "c1", "name": "lights", "args": {}}]})
    first = h.of(ev.ToolCallRequested)[-1]
    assert first.reissued == ()
    h.closed(1006)
    h.advance(1)
    h.connect()
    h.server(toolCall={"functionCalls": [{"id": "c2", "name": "lights", "args": {}}]})
    again = h.of(ev.ToolCallRequested)[-1]
    assert again.calls[0].id == "c2" and again.reissued == ("c1",)
    assert h.send(tool_response([FunctionResponse("c2", "lights", {"ok": 1})])).sent


# -- issue 15: a single drop costs the floor --------------------------------------------------


@pytest.mark.parametrize("code", [1006, None])
def test_first_attempt_after_an_abrupt_drop_goes_at_once(code: int | None) -> None:
    h = connected()
    h.handle_update("h1")
    h.advance(1.0)
    h.closed(code)
    reconnecting = h.of(ev.Reconnecting)[-1]
    assert reconnecting.delay == 0.0
    assert h.pending_request() is not None, "the token is fetched at once"


def test_a_healthy_reconnect_does_not_leave_the_next_drop_escalated() -> None:
    h = connected()
    h.handle_update("h1")
    for _ in range(8):
        h.advance(1.0)
        h.closed(1006)
        assert h.of(ev.Reconnecting)[-1].delay == 0.0
        h.connect()
    assert not h.of(ev.Failed)


def test_a_server_that_drops_every_connection_at_once_still_backs_off() -> None:
    h = connected()
    delays = []
    for _ in range(12):
        h.closed(1006)  # dropped right after setupComplete: not a healthy connection
        delays.append(h.of(ev.Reconnecting)[-1].delay)
        if h.m.phase.value == "waiting":
            h.retry()
        h.connect()
    assert max(delays) > 0.0


def test_backoff_starts_only_when_the_server_answers_with_an_error() -> None:
    h = connected()
    h.handle_update("h1")
    h.advance(1.0)
    h.closed(1006)
    assert h.of(ev.Reconnecting)[-1].delay == 0.0
    h.give_token()
    h.open_failed(OpenFailure.HANDSHAKE, status=503)
    assert h.of(ev.Reconnecting)[-1].kind == "server"


def test_shed_answers_with_retry_after_are_waits_not_failures() -> None:
    h = connected(policy=RetryPolicy(max_attempts_per_outage=3))
    h.handle_update("h1")
    h.advance(1.0)
    h.closed(1006)
    for _ in range(10):
        h.fail_token(TokenFailure.RATE_LIMITED, "429", retry_after=2.0)
        delay = h.of(ev.Reconnecting)[-1].delay
        assert delay >= 2.0
        h.retry()
    assert not h.of(ev.Failed), "ten shed answers in a row are not ten failures"
    h.connect()
    assert h.of(ev.Resumed)
