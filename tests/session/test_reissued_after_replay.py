"""A re-issued tool call keeps its ``reissued`` flag through the replayed turns before it.

Found by the impolite chaos soak (seed 2, session 16 of 60; the app's tool has a side
effect): texts typed over an answer were unconfirmed when the link dropped at a tool call.
After the resume the session replayed them with the tool's question; each replayed text
cut the turn before it (``interrupted`` + ``turnComplete``), and the first such
``turnComplete`` cleared the pending re-issue ("answered without calling the tool
again"). The model then called the tool again for the same question, unflagged, and the
app ran its side effect twice. A pending re-issue now ends only with a turn that answers
the cancelled call's question (or a later one) without calling the tool.
"""

from __future__ import annotations

from tunnelproof.protocol.client_messages import (
    FunctionResponse,
    realtime_audio,
    realtime_text,
    tool_response,
)
from tunnelproof.session import app_events as ev

from .session_harness import Harness

CALL_A = {"functionCalls": [{"id": "a", "name": "weather", "args": {}}]}
CALL_B = {"functionCalls": [{"id": "b", "name": "weather", "args": {}}]}
CUT = {"interrupted": True}


def dropped_at_the_tool_call() -> Harness:
    h = Harness()
    h.start()
    h.connect()
    h.handle_update("h0")
    h.send(realtime_text("note one"))
    h.send(realtime_text("note two"))
    h.send(realtime_text("check the weather"))
    h.server(serverContent=CUT)  # "note one" cut by "note two"
    h.server(serverContent={"turnComplete": True})
    h.server(serverContent=CUT)  # "note two" cut by the question
    h.server(serverContent={"turnComplete": True})
    h.server(toolCall=CALL_A)
    assert h.send(tool_response([FunctionResponse("a", "weather", {"r": 1})])).sent
    h.closed(1006)  # the link dies before any handle after "h0"
    h.advance(1)
    h.connect()
    assert h.setup_handle() == "h0"
    rewound = h.of(ev.Rewound)[-1]
    assert rewound.cancelled_tool_call_ids == ("a",)
    return h


def test_the_replayed_cut_turns_do_not_lose_the_reissued_flag() -> None:
    h = dropped_at_the_tool_call()
    # The replay: each text cuts the one before it, then the question gets its tool call.
    for _ in range(2):
        h.server(serverContent=CUT)
        h.server(serverContent={"turnComplete": True})
    h.server(toolCall=CALL_B)
    again = h.of(ev.ToolCallRequested)[-1]
    assert again.calls[0].id == "b" and again.reissued == ("a",)


def test_an_answer_to_the_question_without_the_tool_ends_the_reissue() -> None:
    h = dropped_at_the_tool_call()
    for _ in range(2):
        h.server(serverContent=CUT)
        h.server(serverContent={"turnComplete": True})
    # The model answers the question itself this time; a later call is a new request.
    h.server(serverContent={"modelTurn": {"parts": [{"text": "sunny"}]}, "turnComplete": True})
    h.send(realtime_text("and tomorrow?"))
    h.server(toolCall=CALL_B)
    assert h.of(ev.ToolCallRequested)[-1].reissued == ()


def test_a_spoken_answer_ends_the_reissue_so_a_new_request_is_not_flagged() -> None:
    # A false flag is as bad as a missing one: the app would answer a new request from
    # an old run. (Seen in the soak once cut turns kept the flag: a spoken turn, which
    # answers no numbered question, must still end it.)
    h = dropped_at_the_tool_call()
    for _ in range(3):  # the replayed notes and the question itself are all cut short
        h.server(serverContent=CUT)
        h.server(serverContent={"turnComplete": True})
    h.send(realtime_audio(b"\x10\x27" * 640))  # the user says something else
    h.server(serverContent={"outputTranscription": {"text": "it is sunny"}})
    h.server(serverContent={"turnComplete": True})
    h.server(toolCall=CALL_B)
    assert h.of(ev.ToolCallRequested)[-1].reissued == ()
