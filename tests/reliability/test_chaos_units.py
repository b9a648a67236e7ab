"""The soak's pure parts: fault plans and the delivery audit."""

from __future__ import annotations

from tunnelproof.testing.chaos.accounting import (
    Tally,
    count_marker,
    final_session,
    marker,
    max_overlap,
    sessions_of,
    spans_from_events,
    tool_response_count,
)
from tunnelproof.testing.chaos.runner import is_proxy_callback_noise
from tunnelproof.testing.chaos.schedule import (
    IMPOLITE_FAULTS,
    PER_SESSION_FAULTS,
    Fault,
    plan_session,
    restart_times,
)


def test_plans_are_seeded_and_deal_every_kind() -> None:
    a = plan_session(3, seed=1, steps=14, time_scale=0.1)
    assert a == plan_session(3, seed=1, steps=14, time_scale=0.1)
    assert a != plan_session(3, seed=2, steps=14, time_scale=0.1)
    kinds = {
        s.fault
        for i in range(12)
        for s in plan_session(i, seed=1, steps=3, time_scale=1, kernel=i == 0)
    }
    assert kinds >= set(PER_SESSION_FAULTS)
    # Only a session whose link crosses a namespace gets a kernel blackhole, first.
    plain = [s.fault for i in range(40) for s in plan_session(i, seed=2, steps=14, time_scale=1)]
    assert Fault.KERNEL_BLACKHOLE not in plain
    kernel = plan_session(5, seed=2, steps=14, time_scale=1, kernel=True)
    assert len(kernel) == 14 and kernel[0].fault is Fault.KERNEL_BLACKHOLE
    assert kernel[0].turn == "audio"


def test_few_sessions_cover_every_impolite_kind() -> None:
    # The tiny soak in make test: eight sessions of two steps, the first with a kernel link.
    plans = [
        plan_session(i, seed=3, steps=2, time_scale=0.05, kinds=IMPOLITE_FAULTS, kernel=i == 0)
        for i in range(8)
    ]
    assert {s.fault for plan in plans for s in plan} >= set(IMPOLITE_FAULTS)


def test_plan_parameters_follow_the_fault() -> None:
    steps = [s for i in range(40) for s in plan_session(i, seed=5, steps=14, time_scale=0.1)]
    for step in steps:
        if step.fault is Fault.BLACKHOLE:
            assert 0.1 <= step.param <= 6.0  # 1-60 s at time scale 0.1
        if step.fault in (Fault.DROP_MID_GENERATION, Fault.GOAWAY_MID_TURN):
            assert step.turn == "long"
        if step.fault is Fault.DROP_MID_TOOL_CALL:
            assert step.turn == "tool"
        if step.fault is Fault.OVERLAPPING_TURNS:
            assert step.turn == "long" and 1 <= step.param <= 3
        if step.fault is Fault.SLOW_MODEL:
            assert 6.0 < step.param <= 30.0  # longer than the 6 s reply watchdog
        if step.fault is Fault.GOAWAY_LOOP:
            assert 2.0 <= step.param <= 6.0
        if step.fault is Fault.TOKEN_REFUSED:
            assert 1.0 <= step.param <= 6.0
    assert restart_times(100, 2) == [100 / 3, 200 / 3]
    assert restart_times(100, 0) == []


def test_max_overlap() -> None:
    assert max_overlap([]) == 0
    assert max_overlap([(0, 1), (1, 2), (2, 3)]) == 1  # back to back is not overlap
    assert max_overlap([(0, 2), (1, 3)]) == 2
    assert max_overlap([(0, float("inf")), (5, 6)]) == 2


def test_spans_close_at_a_restart_when_the_close_event_was_lost() -> None:
    events = [
        {"kind": "setup_complete", "connection": "a", "token": "t1", "at": 1.0},
        {"kind": "connection_closed", "connection": "a", "at": 2.0},
        {"kind": "setup_complete", "connection": "b", "token": "t2", "at": 3.0},
        {"kind": "setup_complete", "connection": "c", "token": "t3", "at": 9.0},
    ]
    spans = spans_from_events(events, restarts=[5.0])
    assert (spans["a"].end, spans["b"].end, spans["c"].end) == (2.0, 5.0, None)


def test_tally_judges_each_outcome() -> None:
    t = Tally()
    t.judge("once", 1, False)
    t.judge("dropped", 0, True)
    t.judge("twice", 2, False)
    t.judge("lost", 0, False)
    t.judge("false drop", 1, True)
    assert (t.sent, t.delivered_exactly_once, t.reported_dropped) == (5, 1, 2)
    assert (t.duplicated, t.lost_silently, t.dropped_but_delivered) == (1, 1, 1)
    assert not t.ok
    ok = Tally()
    ok.judge("once", 1, False)
    ok.judge("dropped", 0, True)
    assert ok.ok


def test_history_search_uses_markers_and_final_session() -> None:
    def user(text: str, source: str = "realtimeText") -> dict[str, object]:
        return {"role": "user", "text": text, "source": source}

    old = {"created_at": 1.0, "history": [user(f"{marker(1, 0)} hi"), user(f"{marker(1, 1)} a")]}
    # A fresh session re-seeded from the transcript: earlier texts arrive as clientContent.
    new = {
        "created_at": 2.0,
        "history": [
            user(f"{marker(1, 0)} hi", "clientContent"),
            {"role": "model", "text": f'You said: "{marker(1, 1)} a"', "source": "model"},
            user(f"{marker(1, 1)} a", "clientContent"),
            user(f"{marker(1, 'final')} first?"),
            {"role": "user", "text": "", "source": "toolResponse", "data": {"id": "c1"}},
        ],
    }
    other = {"created_at": 3.0, "history": [user(f"{marker(10, 0)} hi")]}
    mine = sessions_of([other, new, old], 1)
    assert [s["created_at"] for s in mine] == [1.0, 2.0]  # [c10- is not [c1-
    final = final_session(mine, marker(1, "final"))
    assert final is not None and final["created_at"] == 2.0
    texts = [e["text"] for e in final["history"] if e["role"] == "user"]
    assert count_marker(texts, marker(1, 1)) == 1  # the model's quote is not counted
    assert tool_response_count(mine, "c1") == 1


def test_only_the_proxy_callback_error_is_set_apart() -> None:
    import asyncio

    noise = {
        "message": "Exception in callback StreamReaderProtocol.connection_made.<locals>.callback"
        "(<Task cancelled coro=<TunnelProxy._handle() at tunnel.py:447>>)",
        "exception": asyncio.CancelledError(),
    }
    assert is_proxy_callback_noise(noise)
    assert not is_proxy_callback_noise({"message": "boom", "exception": RuntimeError()})
    assert not is_proxy_callback_noise({**noise, "exception": RuntimeError()})


def test_every_send_is_delivered_reported_or_unaccounted() -> None:
    from tunnelproof.testing.chaos.ledger import SendAudit, SentItem

    sends = {
        1: SentItem("text", "[c1-1]"),  # confirmed by Delivered
        2: SentItem("text", "[c1-2]"),  # re-seeded: only the server's history shows it
        3: SentItem("text", "[c1-3]"),  # nothing at all: unaccounted
        4: SentItem("tool", "call-a"),  # reported dropped
        5: SentItem("audio", "[c1-4]", 40.0),  # confirmed
        6: SentItem("audio", "[c1-4]", 40.0),  # reported dropped
        7: SentItem("audio", "[c1-4]", 20.0),  # unaccounted
        8: SentItem("audio", "[c1-4]", 40.0),  # both: a contradiction
    }
    audit = SendAudit()
    audit.judge(1, sends, {1, 5, 8}, {4, 6, 8}, lambda item, _r: int(item.what == "[c1-2]"))
    assert audit.unaccounted() == {"texts": 1, "tool_responses": 0, "audio_ms": 20}
    text, tool, audio = (audit.kinds[k] for k in ("text", "tool", "audio"))
    assert (text.delivered_confirmed, text.delivered_by_server_evidence) == (1, 1)
    assert (tool.reported_dropped, tool.unaccounted) == (1, 0)
    assert (audio.ms_sent, audio.ms_delivered, audio.ms_reported_dropped) == (140, 40, 80)
    assert audit.contradictions() == 1
    assert "neither delivered nor reported" in text.samples[0]
    clean = SendAudit()
    clean.judge(2, {1: SentItem("text", "x")}, {1}, set(), lambda _item, _r: 0)
    assert clean.unaccounted() == {"texts": 0, "tool_responses": 0, "audio_ms": 0}


def test_one_pass_judges_the_clients_verdict_and_the_servers_copies() -> None:
    from tunnelproof.testing.chaos.ledger import SendAudit, SentItem

    sends = {
        1: SentItem("text", "[c1-1]"),  # confirmed, one copy
        2: SentItem("text", "[c1-2]"),  # confirmed, but the server holds two copies
        3: SentItem("tool", "call-a"),  # reported dropped, not held
        4: SentItem("tool", "call-b"),  # reported dropped, yet the server holds it
        5: SentItem("audio", "[c1-3]", 40.0),  # audio: no copies of its own to count
    }
    held = {"[c1-1]": 1, "[c1-2]": 2, "call-b": 1}
    asked: list[tuple[str, bool]] = []

    def copies(item: SentItem, reported: bool) -> int:
        asked.append((item.what, reported))
        return held.get(item.what, 0)

    audit = SendAudit()
    audit.judge(1, sends, {1, 2, 5}, {3, 4}, copies)
    text, tool, audio = (audit.kinds[k] for k in ("text", "tool", "audio"))
    assert asked == [(s.what, seq in {3, 4}) for seq, s in sends.items()]
    assert (text.delivered_confirmed, text.unaccounted) == (2, 0)
    assert (text.copies.sent, text.copies.delivered_exactly_once, text.copies.duplicated) == (
        2,
        1,
        1,
    )
    assert text.copies.problems == ["session 1 text [c1-2] delivered 2 times"]
    assert (tool.reported_dropped, tool.copies.reported_dropped) == (2, 2)
    assert tool.copies.dropped_but_delivered == 1
    assert tool.copies.problems == ["session 1 tool answer call-b reported dropped but delivered"]
    assert not text.copies.ok and not tool.copies.ok
    assert audio.copies.sent == 0 and audio.delivered_confirmed == 1


def test_judge_sends_reads_a_dropped_tool_answer_in_the_final_session_only() -> None:
    from tunnelproof.testing.chaos.audit import judge_sends
    from tunnelproof.testing.chaos.ledger import SentItem
    from tunnelproof.testing.chaos.record import SessionRecord

    def user(text: str) -> dict[str, object]:
        return {"role": "user", "text": text, "source": "realtimeText"}

    def tool(call_id: str) -> dict[str, object]:
        return {"role": "user", "text": "", "source": "toolResponse", "data": {"id": call_id}}

    # A fresh-session fallback: the answers reached the old session, the conversation left it.
    old = {"created_at": 1.0, "history": [user(f"{marker(1, 0)} hi"), tool("x"), tool("y")]}
    new = {
        "created_at": 2.0,
        "history": [user(f"{marker(1, 0)} hi"), user(f"{marker(1, 'final')} ?")],
    }
    rec = SessionRecord(1, f"{marker(1, 0)} hi", marker(1, "final"), expected_answer="")
    rec.sends = {
        1: SentItem("text", marker(1, 0)),
        2: SentItem("tool", "x"),
        3: SentItem("tool", "y"),
    }
    rec.delivered_seqs, rec.dropped_seqs = {1}, {2}
    audit = judge_sends([rec], [new, old])
    text, answers = audit.kinds["text"], audit.kinds["tool"]
    assert (text.copies.delivered_exactly_once, text.delivered_confirmed) == (1, 1)
    # x: reported dropped, not in the final session: the report was right.
    # y: not reported, held by a session of the conversation: delivered, by the server's word.
    assert (answers.copies.reported_dropped, answers.copies.delivered_exactly_once) == (1, 1)
    assert answers.copies.ok and answers.copies.dropped_but_delivered == 0
    assert (answers.reported_dropped, answers.delivered_by_server_evidence) == (1, 1)


def test_a_tool_runs_once_per_request_unless_re_issued_without_the_flag() -> None:
    from tunnelproof.testing.chaos.ledger import ToolEffects

    tool = ToolEffects()
    first = tool.call("c1", "[c1-2]", ())
    # Re-issued after a reconnect, flagged: answered from the first run, not run again.
    assert tool.call("c2", "[c1-5]", ("c1",)) == first
    assert tool.executions["[c1-2]"] == 1 and tool.answered_from_earlier_run == 1
    tool.call("c3", "[c1-3]", ())
    assert not tool.double_executions
    # The same request asked for again without the flag: the effect runs twice.
    tool.call("c4", "[c1-3]", ())
    assert tool.double_executions == ["[c1-3]: run 2 times (call c4 not flagged reissued)"]
    total: dict[str, object] = {}
    tool.merge_into(total)
    assert (total["calls"], total["executed"], total["silent_double_executions"]) == (4, 3, 1)


def test_goaway_loop_bound_and_link_latency() -> None:
    from tunnelproof.testing.chaos.audit import goaway_loop_bound
    from tunnelproof.testing.chaos.schedule import link_latency_ms

    assert goaway_loop_bound(2.0, 3) == 9
    assert goaway_loop_bound(2.1, 3) == 10
    latencies = [link_latency_ms(i, seed=1) for i in range(50)]
    assert all(100 <= ms <= 500 and jitter == ms / 10 for ms, jitter in latencies)
    assert latencies == [link_latency_ms(i, seed=1) for i in range(50)]


def test_audio_confirmed_delivered_must_have_been_heard() -> None:
    from tunnelproof.testing.chaos.ledger import SendAudit, SentItem

    sends = {
        1: SentItem("audio", "[c1-1]", 40.0),
        2: SentItem("audio", "[c1-1]", 40.0),  # utterance 1: confirmed, heard
        3: SentItem("audio", "[c1-2]", 40.0),
        4: SentItem("audio", "[c1-2]", 40.0),  # utterance 2: confirmed, never heard
        5: SentItem("audio", "[c1-3]", 40.0),
        6: SentItem("audio", "[c1-3]", 40.0),  # utterance 3: half reported dropped
    }
    audit = SendAudit()
    audit.judge_utterances(1, sends, {1, 2, 3, 4, 5}, {6}, lambda tag: tag == "[c1-1]")
    audio = audit.kinds["audio"]
    assert (audio.utterances_confirmed, audio.confirmed_not_heard) == (2, 1)
    assert audio.ms_confirmed_not_heard == 80.0
    assert "[c1-2]" in audio.samples[0]


def test_a_taken_over_connection_ends_at_the_takeover() -> None:
    # The emulator logs the old socket's close when its receive loop ends, after the new
    # connection's setup_complete: the takeover event is when it really ended.
    events = [
        {"kind": "setup_complete", "connection": "a", "token": "t1", "at": 1.0},
        {"kind": "resume_takeover", "connection": "b", "old": "a", "at": 5.0},
        {"kind": "setup_complete", "connection": "b", "token": "t2", "at": 5.1},
        {"kind": "connection_closed", "connection": "a", "at": 5.3},
    ]
    spans = spans_from_events(events)
    assert (spans["a"].end, spans["b"].end) == (5.0, None)
    assert max_overlap([(s.start, s.end or float("inf")) for s in spans.values()]) == 1
