"""Hypothesis explores event orders nobody thought of and checks the machine's invariants.

A small model of the server sits behind the harness: it keeps, per connection, the
conversation state (user texts and tool calls it has seen), snapshots it whenever it
issues a resumable handle, and restores the snapshot when a setup resumes with that
handle. Invariants checked after every step:

* at most one socket per session at any time (the harness);
* never a token reused after its handshake completed (the harness);
* never a non-resumable handle in a setup;
* the outbox never over its bounds (the harness);
* no user text twice in a server state; no tool answer into a state without its call;
* a send reported ``Delivered`` is in the state of the handle that confirmed it, is
  confirmed once, and is never also reported dropped;
* a question whose answer the client got complete is never asked again, on any connection
  (a drop before the turn's handle restores the turn as history: nothing is told twice);
* at the end, once the session is healthy again, every user text is in the server's state
  exactly once or was reported dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from tunnelproof.protocol.client_messages import (
    FunctionResponse,
    Turn,
    client_content,
    realtime_audio,
    realtime_text,
    tool_response,
)
from tunnelproof.session import app_events as ev
from tunnelproof.session.actions import SendFrame
from tunnelproof.session.events import CloseRequested, OpenFailure, ResumeRequested, TokenFailure
from tunnelproof.session.machine import Phase
from tunnelproof.session.outbox import OutboxLimits

from .session_harness import Harness


@dataclass
class ServerState:
    texts: list[str] = field(default_factory=list)
    calls: set[str] = field(default_factory=set)
    # Questions read and not answered yet, and whether a turn is running: the server is
    # not resumable then (it issues resumable handles only when it owes nothing), and it
    # answers questions in the order it read them (FIFO), one turn each.
    owed: int = 0
    in_turn: bool = False
    # The questions read and not answered, oldest first (None: no text, a tool response),
    # and the one the running turn answers.
    queue: list[str | None] = field(default_factory=list)
    answering: str | None = None

    def copy(self) -> ServerState:
        return ServerState(list(self.texts), set(self.calls))

    def turn_starts(self) -> None:
        if not self.in_turn:
            self.owed = max(0, self.owed - 1)
            self.in_turn = True
            self.answering = self.queue.pop(0) if self.queue else None


class SessionModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(limits=OutboxLimits(max_messages=8, max_audio_ms=400, audio_ttl=5.0))
        self.h.start()
        self.conns: dict[int, ServerState] = {}
        self.resuming: dict[int, bool] = {}
        self.snapshots: dict[str, ServerState] = {}
        self.non_resumable: set[str] = set()
        self.read = 0
        self.n_handles = 0
        self.n_texts = 0
        self.n_calls = 0
        self.sent_texts: dict[int, str] = {}  # seq -> text
        self.refused: set[int] = set()  # seqs refused at send time
        self.closed_by_app = False
        self.delivered: set[int] = set()
        self.deliveries_checked = 0
        self.answered: set[str] = set()  # questions whose complete answer the client got

    # -- the server model ---------------------------------------------------------------

    def sync(self) -> None:
        log = self.h.log
        while self.read < len(log):
            action = log[self.read]
            self.read += 1
            if not isinstance(action, SendFrame):
                continue
            msg: dict[str, Any] = orjson.loads(action.text)
            if "setup" in msg:
                handle = msg["setup"].get("sessionResumption", {}).get("handle")
                assert handle not in self.non_resumable, "a non-resumable handle was used"
                if handle is None:
                    self.conns[action.attempt] = ServerState()
                else:
                    assert handle in self.snapshots, f"unknown handle {handle}"
                    self.conns[action.attempt] = self.snapshots[handle].copy()
                self.resuming[action.attempt] = handle is not None
                continue
            state = self.conns[action.attempt]
            if "clientContent" in msg:
                users = []
                for turn in msg["clientContent"]["turns"]:
                    text = turn["parts"][0]["text"]
                    if turn["role"] == "user" and text.startswith("u"):
                        state.texts.append(text)
                        users.append(text)
                if msg["clientContent"].get("turnComplete"):
                    self.asked(state, users[-1] if users else None)
            elif "realtimeInput" in msg and "text" in msg["realtimeInput"]:
                state.texts.append(msg["realtimeInput"]["text"])
                self.asked(state, msg["realtimeInput"]["text"])
            elif "toolResponse" in msg:
                for response in msg["toolResponse"]["functionResponses"]:
                    assert response["id"] in state.calls, "answer into a session without the call"
                self.asked(state, None)

    def asked(self, state: ServerState, question: str | None) -> None:
        assert question not in self.answered, f"{question} was answered, and asked again"
        state.owed += 1
        state.queue.append(question)

    def conn(self) -> ServerState:
        return self.conns[self.h.attempt]

    def live(self) -> bool:
        return self.h.m.phase in (Phase.SETUP, Phase.CONNECTED) and self.h.attempt in self.conns

    def step(self) -> None:
        self.sync()

    # -- rules: token source and network ----------------------------------------------

    @precondition(lambda self: self.h.pending_request() is not None)
    @rule()
    def token_ok(self) -> None:
        self.h.give_token()
        self.step()

    @precondition(lambda self: self.h.pending_request() is not None)
    @rule(
        kind=st.sampled_from(
            [TokenFailure.OFFLINE, TokenFailure.UNAVAILABLE, TokenFailure.RATE_LIMITED]
        )
    )
    def token_fails(self, kind: TokenFailure) -> None:
        self.h.fail_token(kind, "model", retry_after=1.0 if kind == "rate_limited" else None)
        self.step()

    @precondition(lambda self: self.h.m.phase is Phase.OPENING)
    @rule()
    def socket_opens(self) -> None:
        self.h.opened()
        self.step()

    @precondition(lambda self: self.h.m.phase is Phase.OPENING)
    @rule(status=st.sampled_from([None, 503, 429]))
    def socket_open_fails(self, status: int | None) -> None:
        if status is None:
            self.h.open_failed(OpenFailure.OFFLINE)
        else:
            self.h.open_failed(OpenFailure.HANDSHAKE, status=status, retry_after=1.0)
        self.step()

    @precondition(lambda self: self.h.m.phase is Phase.SETUP and self.live())
    @rule()
    def setup_complete(self) -> None:
        self.h.setup_complete()
        self.step()

    @precondition(lambda self: self.live())
    @rule(code=st.sampled_from([None, 1006, 1011, 1000, 1008]))
    def server_closes(self, code: int | None) -> None:
        reason = "Internal error occurred." if code == 1011 else ""
        if code == 1008:
            reason = "Operation is not implemented, or supported, or enabled."
        self.h.closed(code, reason)
        self.step()

    @precondition(
        lambda self: (
            self.live() and self.h.m.phase is Phase.SETUP and self.resuming.get(self.h.attempt)
        )
    )
    @rule()
    def server_refuses_resume(self) -> None:
        self.h.closed(1007, "Request contains an invalid argument.")
        self.step()

    @precondition(lambda self: self.h.m.phase in (Phase.HANDING_OVER, Phase.CLOSING))
    @rule()
    def close_completes(self) -> None:
        self.h.closed(1000)
        self.step()

    @rule(seconds=st.sampled_from([0.1, 0.5, 1.0, 3.0, 12.0, 30.0]))
    def time_passes(self, seconds: float) -> None:
        self.h.advance(seconds)
        self.step()

    # -- rules: the server talks ---------------------------------------------------------

    @precondition(lambda self: self.live() and self.h.m.phase is Phase.CONNECTED)
    @rule(resumable=st.booleans())
    def handle_update(self, resumable: bool) -> None:
        self.n_handles += 1
        name = f"h{self.n_handles}"
        state = self.conn()
        if state.owed or state.in_turn:
            resumable = False  # the server owes an answer: it is not resumable now
        if resumable:
            self.snapshots[name] = self.conn().copy()
        else:
            self.non_resumable.add(name)
        self.h.server(sessionResumptionUpdate={"newHandle": name, "resumable": resumable})
        self.step()
        for event in self.h.of(ev.Delivered)[self.deliveries_checked :]:
            assert resumable, "only a resumable handle is evidence of delivery"
            for seq in event.seqs:
                assert seq not in self.delivered, f"seq {seq} confirmed twice"
                self.delivered.add(seq)
                text = self.sent_texts.get(seq)
                if text is not None:
                    assert text in self.snapshots[name].texts, (text, name)
        self.deliveries_checked = len(self.h.of(ev.Delivered))

    @precondition(lambda self: self.live() and self.h.m.phase is Phase.CONNECTED)
    @rule(complete=st.booleans())
    def model_speaks(self, complete: bool) -> None:
        state = self.conn()
        state.turn_starts()
        if complete:
            state.in_turn = False
        self.h.server(
            serverContent={"modelTurn": {"parts": [{"text": "m"}]}, "turnComplete": complete}
        )
        if complete and state.answering is not None:
            self.answered.add(state.answering)  # the client saw this answer complete
            state.answering = None
        self.step()

    @precondition(lambda self: self.live() and self.h.m.phase is Phase.CONNECTED)
    @rule()
    def the_tunnel_starts_as_the_answer_ends(self) -> None:
        # The app asks, a complete answer comes, and the link is gone before the handle
        # that holds it (Google sends it 20-70 ms after turnComplete): the window a
        # hostile tester aims for.
        self.app_sends_text()
        self.model_speaks(True)
        self.server_closes(1006)

    @precondition(lambda self: self.live() and self.h.m.phase is Phase.CONNECTED)
    @rule()
    def model_calls_tool(self) -> None:
        self.n_calls += 1
        call_id = f"c{self.n_calls}"
        self.conn().turn_starts()
        self.conn().in_turn = False  # the model waits for the app's answer
        self.conn().calls.add(call_id)
        self.h.server(toolCall={"functionCalls": [{"id": call_id, "name": "f", "args": {}}]})
        self.step()

    @precondition(lambda self: self.live() and self.h.m.phase is Phase.CONNECTED)
    @rule(left=st.sampled_from(["0s", "5s", "30s"]))
    def go_away(self, left: str) -> None:
        self.h.server(goAway={"timeLeft": left})
        self.step()

    # -- rules: the app --------------------------------------------------------------------

    @rule()
    def app_sends_text(self) -> None:
        self.n_texts += 1
        text = f"u{self.n_texts}"
        result = self.h.send(realtime_text(text))
        self.sent_texts[result.seq] = text
        if result.dropped:
            self.refused.add(result.seq)
        self.step()

    @rule(complete=st.booleans())
    def app_sends_client_content(self, complete: bool) -> None:
        self.n_texts += 1
        text = f"u{self.n_texts}"
        result = self.h.send(client_content([Turn("user", text)], turn_complete=complete))
        self.sent_texts[result.seq] = text
        if result.dropped:
            self.refused.add(result.seq)
        self.step()

    @rule()
    def app_sends_audio(self) -> None:
        self.h.send(realtime_audio(b"\x00\x00" * 1600))
        self.step()

    @precondition(lambda self: bool(self.h.of(ev.ToolCallRequested)))
    @rule(data=st.data())
    def app_answers_tool(self, data: st.DataObject) -> None:
        calls = [c.id for e in self.h.of(ev.ToolCallRequested) for c in e.calls]
        call_id = data.draw(st.sampled_from(calls))
        self.h.send(tool_response([FunctionResponse(call_id, "f", {"ok": 1})]))
        self.step()

    @precondition(lambda self: self.h.m.phase is Phase.FAILED)
    @rule()
    def app_resumes(self) -> None:
        self.h.feed(ResumeRequested())
        self.step()

    @precondition(lambda self: not self.closed_by_app)
    @rule()
    def app_closes(self) -> None:
        self.closed_by_app = True
        self.h.feed(CloseRequested())
        self.step()

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def no_duplicate_text_in_the_server_state(self) -> None:
        state = self.conns.get(self.h.attempt)
        if state is not None:
            user_texts = [t for t in state.texts if t.startswith("u")]
            assert len(user_texts) == len(set(user_texts)), user_texts

    @invariant()
    def delivered_sends_are_never_reported_dropped(self) -> None:
        dropped = {seq for event in self.h.of(ev.SendDropped) for seq in event.seqs}
        assert not dropped & self.delivered, dropped & self.delivered

    @invariant()
    def at_most_one_socket(self) -> None:
        assert len(self.h.live_sockets) <= 1
        assert self.h.m.outbox.within_bounds()

    def teardown(self) -> None:
        # Heal the world, then every text is delivered exactly once or reported dropped.
        h = self.h
        for _ in range(200):
            phase = h.m.phase
            if phase is Phase.CLOSED:
                break
            if phase is Phase.CONNECTED and not h.m.outbox.pending:
                break
            if phase is Phase.FAILED:
                h.feed(ResumeRequested())
            elif phase in (Phase.HANDING_OVER, Phase.CLOSING):
                h.closed(1000)
            else:
                _reconnect_step(h)
            self.sync()
        self.sync()
        if h.m.phase is not Phase.CLOSED:
            assert h.m.phase is Phase.CONNECTED, h.m.phase
        dropped = set(self.refused)
        for event in h.of(ev.SendDropped):
            dropped.update(event.seqs)
        state = self.conns.get(h.attempt, ServerState())
        for seq, text in self.sent_texts.items():
            count = state.texts.count(text)
            if h.m.phase is Phase.CLOSED:
                assert count <= 1
                continue
            if seq in dropped:
                assert count <= 1, (text, count)
            else:
                assert count == 1, (text, count, state.texts)


SessionModel.TestCase.settings = settings(
    max_examples=250,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSessionModel = SessionModel.TestCase


class TurnWindowModel(SessionModel):
    """The same model and invariants, aimed at the window between ``turnComplete`` and its
    handle: connected with a handle from the start, and a link that comes back whole, so
    drops right after an answer are followed by resumes (a plain walk rarely gets there)."""

    @initialize()
    def connected_with_a_handle(self) -> None:
        self.link_comes_back()
        self.handle_update(True)

    @precondition(
        lambda self: self.h.m.phase in (Phase.WAITING, Phase.FETCHING, Phase.OPENING, Phase.SETUP)
    )
    @rule()
    def link_comes_back(self) -> None:
        h = self.h
        for _ in range(50):  # bounded: a few timers at most
            if not _reconnect_step(h):
                break
            self.step()


def _reconnect_step(h: Harness) -> bool:
    """One step of a reconnect the world lets through (a token, the socket, setup, the
    retry timer); ``False`` when the session is not reconnecting."""
    phase = h.m.phase
    if phase is Phase.FETCHING:
        if h.pending_request() is None:
            h.advance(0.1)
        else:
            h.give_token()
    elif phase is Phase.OPENING:
        h.opened()
    elif phase is Phase.SETUP:
        h.setup_complete()
    elif phase is Phase.WAITING:
        h.retry()
    else:
        return False
    return True


TurnWindowModel.TestCase.settings = settings(
    max_examples=120,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestTurnWindowModel = TurnWindowModel.TestCase
