"""The soak's audit of every send, and the impolite part of its report. Pure: records and
the emulator's data in, JSON and invariants out.

:func:`judge_sends` judges each send once, both ways (see
:mod:`~tunnelproof.testing.chaos.ledger`); :func:`impolite_report` adds tool effects, goAway
loops and thinking models to the unaccounted sends.
"""

from __future__ import annotations

from collections.abc import Sequence

from tunnelproof.protocol.types import JsonDict
from tunnelproof.testing.chaos.accounting import (
    count_marker,
    final_session,
    sessions_of,
    tool_response_count,
    user_texts,
)
from tunnelproof.testing.chaos.config import CHAOS_POLICY
from tunnelproof.testing.chaos.ledger import SendAudit, SentItem, ToolEffects
from tunnelproof.testing.chaos.record import SessionRecord


def goaway_loop_bound(seconds: float, handover_budget: int) -> int:
    """Most connections a session may open in a ``seconds`` goAway loop.

    The budget's quick handovers, the connection the loop started on, and after that at
    most two a second (backed off; a hot loop opened hundreds a second).
    """
    return handover_budget + 2 + int(2 * seconds + 0.999)


def judge_sends(records: Sequence[SessionRecord], sessions_data: Sequence[JsonDict]) -> SendAudit:
    """Every send of every session judged once: what the client was told of it, and how
    many copies of it the server's history holds (see
    :mod:`~tunnelproof.testing.chaos.ledger` and :mod:`~tunnelproof.testing.chaos.accounting`).
    """
    audit = SendAudit()
    for rec in records:
        mine = sessions_of(sessions_data, rec.index)
        final = final_session(mine, rec.final_tag)
        final_history = (final.get("history") or []) if final is not None else []
        final_texts = user_texts(final_history)

        def copies(
            item: SentItem,
            reported: bool,
            mine: list[JsonDict] = mine,
            final: JsonDict | None = final,
            texts: list[str] = final_texts,
        ) -> int:
            if item.kind == "text":
                # Re-seeding carries earlier texts forward: the final session holds them all.
                return count_marker(texts, item.what)
            if item.kind == "tool":
                if reported and final is not None:
                    # An answer that reached a server session the conversation then left (a
                    # fresh-session fallback) is lost to the conversation: "dropped" is right.
                    return tool_response_count([final], item.what)
                return tool_response_count(mine, item.what)
            return 0  # a chunk of audio leaves no trace of its own in the history

        audit.judge(rec.index, rec.sends, rec.delivered_seqs, rec.dropped_seqs, copies)
        heard_texts = [str(e.get("text", "")) for e in final_history if e.get("role") == "user"]

        def heard(tag: str, texts: list[str] = heard_texts) -> bool:
            return count_marker(texts, tag) >= 1

        audit.judge_utterances(rec.index, rec.sends, rec.delivered_seqs, rec.dropped_seqs, heard)
    return audit


def impolite_report(
    records: Sequence[SessionRecord], audit: SendAudit, restarts: Sequence[float]
) -> tuple[JsonDict, dict[str, bool]]:
    """The report's ``unaccounted`` / ``impolite`` sections and their invariants, from the
    records and their sends judged (:func:`judge_sends`)."""
    tools: JsonDict = {}
    ToolEffects().merge_into(tools)  # every figure present, zero when no tool ran
    loops: list[JsonDict] = []
    loops_over: list[str] = []
    slow_turns = slow_alarms = slow_during_restart = 0
    slow_samples: list[str] = []
    delivered_twice = 0
    budget = CHAOS_POLICY.handover_budget
    for rec in records:
        rec.tool_effects.merge_into(tools)
        delivered_twice += rec.delivered_twice
        for seconds, connects in rec.goaway_loops:
            bound = goaway_loop_bound(seconds, budget)
            loops.append({"seconds": round(seconds, 1), "connections": connects, "bound": bound})
            if connects > bound:
                loops_over.append(f"session {rec.index}: {connects} connections in {seconds:.1f} s")
        for start, end, disconnects in rec.slow_model_turns:
            slow_turns += 1
            if any(start <= r <= end for r in restarts):
                slow_during_restart += 1  # the restart closed the link, not a false alarm
            elif disconnects:
                slow_alarms += 1
                slow_samples.append(f"session {rec.index}: {disconnects} disconnects")
    unaccounted = audit.unaccounted()
    latencies = [r.latency_ms for r in records if r.latency_ms > 0]
    sends = audit.to_dict()
    del sends["unaccounted"]  # the headline, at the top of the report
    section: JsonDict = {
        "unaccounted": unaccounted,
        "sends": sends,
        "tool_side_effects": tools,
        "goaway_loops": {
            "loops": len(loops),
            "max_connections": max((lp["connections"] for lp in loops), default=0),
            "over_bound": loops_over[:20],
            "handover_budget": budget,
        },
        "slow_model": {
            "turns": slow_turns,
            "turns_with_a_disconnect": slow_alarms,
            "turns_cut_by_an_emulator_restart": slow_during_restart,
            "samples": slow_samples[:20],
        },
        "link_latency_ms": {
            "min": round(min(latencies)) if latencies else None,
            "max": round(max(latencies)) if latencies else None,
        },
        "kernel_path_sessions": sum(1 for r in records if r.kernel_path),
        "slowest_sessions": [
            {"session": r.index, "seconds": r.duration_s, "steps": r.step_seconds}
            for r in sorted(records, key=lambda r: -r.duration_s)[:5]
        ],
        "delivered_named_twice": delivered_twice,
    }
    invariants = {
        "no_text_unaccounted": unaccounted["texts"] == 0,
        "no_tool_response_unaccounted": unaccounted["tool_responses"] == 0,
        "no_audio_ms_unaccounted": unaccounted["audio_ms"] == 0,
        "confirmed_audio_was_heard": audit.kinds["audio"].confirmed_not_heard == 0,
        "nothing_both_delivered_and_reported_dropped": audit.contradictions() == 0
        and delivered_twice == 0,
        "no_tool_run_twice_without_reissued": int(tools.get("silent_double_executions", 0)) == 0,
        "goaway_loops_bounded_by_the_handover_budget": not loops_over,
        "a_thinking_model_is_not_a_dead_link": slow_alarms == 0,
    }
    return section, invariants
