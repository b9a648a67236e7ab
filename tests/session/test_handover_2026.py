"""goAway handovers and the late-2026 protocol facts (reference §10, issue 12).

* ``interactionStatus`` comes with ``turnComplete``; on background-reasoning models a
  completed turn is not idle, so a turn-boundary handover waits for ``IDLE`` when the
  server sends the field, still bounded by the goAway deadline.
* The resumable handle arrives some 20-70 ms after ``turnComplete``: a handover forced by
  the deadline right after a turn waits a bounded moment for it rather than resume from an
  older handle (which would rewind the finished turn and replay its question).
"""

from __future__ import annotations

from tunnelproof.protocol.client_messages import realtime_text
from tunnelproof.protocol.server_messages import parse_server_frame
from tunnelproof.session import app_events as ev
from tunnelproof.session.actions import CloseSocket
from tunnelproof.session.machine import Phase
from tunnelproof.session.policy import Watchdogs

from .session_harness import Harness, frame

ANSWER = {"modelTurn": {"parts": [{"text": "answer"}]}}


def connected(**kwargs: object) -> Harness:
    h = Harness(**kwargs)  # type: ignore[arg-type]
    h.start()
    h.connect()
    h.handle_update("h1")
    return h


def test_the_parser_reads_interaction_status_and_still_tolerates_unknowns() -> None:
    (content,) = parse_server_frame(
        frame(serverContent={"turnComplete": True, "interactionStatus": "IN_PROGRESS", "new": 1})
    ).messages
    assert content.interaction_status == "IN_PROGRESS"  # type: ignore[union-attr]
    (snake,) = parse_server_frame(frame(server_content={"interaction_status": "IDLE"})).messages
    assert snake.interaction_status == "IDLE"  # type: ignore[union-attr]
    (absent,) = parse_server_frame(frame(serverContent={"turnComplete": True})).messages
    assert absent.interaction_status is None  # type: ignore[union-attr]


def test_a_turn_boundary_handover_waits_for_idle_when_the_server_says_in_progress() -> None:
    h = connected()
    h.send(realtime_text("think about it"))
    h.server(goAway={"timeLeft": "30s"})
    h.give_token()  # the prefetch: the handover leaves only with it in hand (issue 13)
    h.server(serverContent={**ANSWER, "turnComplete": True, "interactionStatus": "IN_PROGRESS"})
    h.handle_update("h2")
    assert not h.actions_of(CloseSocket), "turnComplete is not idle on this model"
    assert h.m.phase is Phase.CONNECTED
    h.server(serverContent={"interactionStatus": "IDLE"})
    assert len(h.actions_of(CloseSocket)) == 1
    h.closed(1000)
    h.opened()
    assert h.setup_handle() == "h2"


def test_waiting_for_idle_is_bounded_by_the_go_away_deadline() -> None:
    h = connected(watchdogs=Watchdogs(go_away_margin=5.0))
    h.send(realtime_text("think about it"))
    h.server(goAway={"timeLeft": "20s"})
    h.server(serverContent={**ANSWER, "turnComplete": True, "interactionStatus": "IN_PROGRESS"})
    h.handle_update("h2")
    h.advance(14.9)
    assert not h.actions_of(CloseSocket)
    h.advance(0.2)
    assert len(h.actions_of(CloseSocket)) == 1


def test_without_the_field_a_completed_turn_is_a_boundary_as_before() -> None:
    h = connected()
    h.send(realtime_text("q"))
    h.server(goAway={"timeLeft": "30s"})
    h.give_token()  # the prefetch: the handover leaves only with it in hand (issue 13)
    h.server(serverContent={**ANSWER, "turnComplete": True})
    h.handle_update("h2")
    assert len(h.actions_of(CloseSocket)) == 1


def test_the_deadline_right_after_a_turn_waits_briefly_for_its_handle() -> None:
    h = connected(watchdogs=Watchdogs(go_away_margin=5.0))
    h.send(realtime_text("q"))
    h.server(serverContent=ANSWER)
    h.server(goAway={"timeLeft": "5.2s"})  # the deadline is 0.2 s away
    h.advance(0.15)
    h.server(serverContent={"turnComplete": True})
    h.advance(0.07)  # past the deadline: the handle is due any moment
    assert not h.actions_of(CloseSocket), "a resume from h1 would rewind the finished turn"
    h.handle_update("h2")
    assert len(h.actions_of(CloseSocket)) == 1
    h.closed(1000)
    h.give_token()
    h.opened()
    assert h.setup_handle() == "h2"
    h.setup_complete()
    assert not h.of(ev.Rewound)
    assert realtime_text("q") not in h.frames(), "the answered question is not replayed"


def test_the_wait_for_a_late_handle_is_bounded() -> None:
    h = connected(watchdogs=Watchdogs(go_away_margin=5.0))
    h.send(realtime_text("q"))
    h.server(serverContent=ANSWER)
    h.server(goAway={"timeLeft": "5.2s"})
    h.advance(0.15)
    h.server(serverContent={"turnComplete": True})
    h.advance(0.05 + 0.25 + 0.01)  # the deadline plus the grace, and no handle came
    assert len(h.actions_of(CloseSocket)) == 1
    h.closed(1000)
    h.give_token()
    h.opened()
    assert h.setup_handle() == "h1", "the older handle is the best there is"


def test_the_deadline_mid_turn_hands_over_at_once() -> None:
    h = connected(watchdogs=Watchdogs(go_away_margin=5.0))
    h.send(realtime_text("q"))
    h.server(serverContent=ANSWER)  # still generating: no handle is coming soon
    h.server(goAway={"timeLeft": "5.2s"})
    h.advance(0.21)
    assert len(h.actions_of(CloseSocket)) == 1
