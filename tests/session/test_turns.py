"""Direct tests of ``TurnTracker``: replies owed, turn boundaries, sends awaiting answers."""

from __future__ import annotations

from tunnelproof.session.turns import TurnTracker


def test_a_send_that_asks_for_an_answer_makes_a_reply_due() -> None:
    t = TurnTracker()
    t.sent(1, expects_reply=False)  # e.g. audio: nothing owed yet
    assert not t.reply_due and t.awaiting_answer == ()
    t.sent(2, expects_reply=True)
    t.sent(3, expects_reply=False)
    t.sent(4, expects_reply=True)
    assert t.reply_due and t.owed and t.busy
    assert t.awaiting_answer == (2, 3, 4), "from the oldest unanswered send on"


def test_output_answers_and_streams_until_generation_complete() -> None:
    t = TurnTracker()
    t.sent(1, expects_reply=True)
    t.output_arrived()
    assert t.awaiting_answer == () and not t.reply_due
    assert t.generating and t.streaming and t.owed
    t.generation_completed()
    assert not t.owed, "waiting for playback is not a debt"
    assert t.busy, "the turn is not over until turnComplete"
    t.turn_completed()
    assert not t.busy and not t.owed


def test_a_follow_up_during_the_answer_is_answered_by_the_next_turn() -> None:
    t = TurnTracker()
    t.sent(1, expects_reply=True)
    t.output_arrived()
    assert t.answering == 1
    t.sent(2, expects_reply=True)
    t.output_arrived()  # more of answer 1: it answers nothing new
    assert t.awaiting_answer == (2,)
    t.turn_completed()
    assert t.awaiting_answer == (2,), "turn 1 answered question 1 only (FIFO)"
    assert t.reply_due
    t.output_arrived()  # turn 2 starts: it answers question 2
    assert t.answering == 2 and t.awaiting_answer == ()


def test_a_tool_call_answers_and_the_tool_response_is_the_next_question() -> None:
    t = TurnTracker()
    t.sent(1, expects_reply=True)
    t.tool_call_arrived()
    assert not t.reply_due and not t.streaming and t.awaiting_answer == ()
    t.sent(2, expects_reply=True)  # the tool response
    assert t.awaiting_answer == (2,)
    t.output_arrived()
    assert t.answering == 2


def test_interrupted_ends_the_turn_but_keeps_a_due_reply() -> None:
    t = TurnTracker()
    t.output_arrived()
    t.sent(2, expects_reply=True)
    t.interrupted()
    assert not t.generating and not t.streaming
    assert t.reply_due and t.awaiting_answer == (2,)


def test_connection_lost_reports_what_was_cut_and_what_waited() -> None:
    t = TurnTracker()
    assert not t.connection_lost().owed
    t.sent(1, expects_reply=True)
    lost = t.connection_lost()
    assert lost.owed and lost.waiting == (1,) and lost.cut is None
    assert not t.busy and t.awaiting_answer == ()
    t.sent(2, expects_reply=True)
    t.output_arrived()
    t.sent(3, expects_reply=True)
    lost = t.connection_lost()
    assert lost.owed and lost.cut == 2 and lost.waiting == (3,), "a cut-off answer"


def test_an_interrupted_turn_without_output_still_consumed_its_question() -> None:
    t = TurnTracker()
    t.sent(1, expects_reply=True)
    t.sent(2, expects_reply=True)  # read while turn 1 was starting: it interrupts it
    t.interrupted()
    t.turn_completed()
    assert t.awaiting_answer == (2,)
    t.output_arrived()
    assert t.answering == 2


def test_a_long_audio_stream_keeps_the_record_small_and_the_answers_exact() -> None:
    # Audio flows 50 chunks a second through an answer; the questions asked of the tracker
    # on every frame (reply_due, owed, busy) must not scan it, and sends that nothing can
    # ask about (no question before them) are not kept.
    t = TurnTracker()
    t.sent(1, expects_reply=True)
    t.output_arrived()  # the answer to 1 streams
    for seq in range(2, 20_002):
        t.sent(seq, expects_reply=False)
        assert t.owed and not t.reply_due
    assert t.awaiting_answer == ()
    assert len(t._unread) == 0, "audio with no question before it is not recorded"
    t.sent(20_002, expects_reply=True)
    t.sent(20_003, expects_reply=False)
    assert t.reply_due and t.awaiting_answer == (20_002, 20_003)
    t.turn_completed()
    t.output_arrived()  # the next turn answers 20_002 and reads what came before it
    assert t.answering == 20_002 and not t.reply_due and t.awaiting_answer == ()
    lost = t.connection_lost()
    assert lost.cut == 20_002 and lost.waiting == ()
