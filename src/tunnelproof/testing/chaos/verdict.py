"""The soak's verdict: every session's record checked against the emulator's own view.

:func:`build_report` is pure: the records, what the stack observed and the emulator's
data in, the JSON report (figures, samples and the invariants that must all hold) out.
Delivery is judged on the server's side (:mod:`~tunnelproof.testing.chaos.accounting`),
every send once (:mod:`~tunnelproof.testing.chaos.audit`).
"""

from __future__ import annotations

import os
import platform
import sys
from collections import Counter

from tunnelproof.protocol.types import JsonDict
from tunnelproof.testing.chaos.accounting import max_overlap, spans_from_events
from tunnelproof.testing.chaos.audit import impolite_report, judge_sends
from tunnelproof.testing.chaos.config import CHAOS_LIMITS, ChaosConfig, planned_sessions
from tunnelproof.testing.chaos.observed import Observed, peak_rss_kb
from tunnelproof.testing.chaos.record import SessionRecord
from tunnelproof.testing.chaos.schedule import Fault


def build_report(
    config: ChaosConfig,
    records: list[SessionRecord],
    observed: Observed,
    sessions_data: list[JsonDict],
    ledger: list[JsonDict],
    token_owner: dict[str, int],
    gate_answers: dict[str, int],
    duration: float,
) -> JsonDict:
    """Check every record against the emulator's view; the soak's JSON result."""
    audit = judge_sends(records, sessions_data)
    texts, tools = audit.kinds["text"].copies, audit.kinds["tool"].copies
    faults: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    events: Counter[str] = Counter()
    survived = 0
    context_failures: list[str] = []
    harness_errors: list[str] = []
    turn_timeouts = 0
    timeouts_by_turn: Counter[str] = Counter()
    timeout_notes: list[str] = []
    audio_sent = audio_replayed = audio_dropped = 0.0
    metrics_sum: Counter[str] = Counter()
    gaps: list[float] = []

    # Sockets at once, from the emulator's connection events.
    spans = spans_from_events(observed.events, restarts=observed.restarts)
    per_session_spans: dict[int, list[tuple[float, float]]] = {}
    for span in spans.values():
        owner = token_owner.get(span.token or "")
        if owner is None:
            continue
        end = span.end if span.end is not None else float("inf")
        per_session_spans.setdefault(owner, []).append((span.start, end))
    overlaps = {i: max_overlap(s) for i, s in per_session_spans.items()}

    for rec in records:
        faults.update(rec.faults)
        skipped.update(rec.skipped)
        events.update(rec.events)
        turn_timeouts += rec.turn_timeouts
        timeouts_by_turn.update(rec.timeouts_by_turn)
        timeout_notes.extend(f"session {rec.index}: {n}" for n in rec.timeout_notes)
        harness_errors.extend(f"session {rec.index}: {e}" for e in rec.errors)
        if rec.context_survived:
            survived += 1
        else:
            context_failures.append(f"session {rec.index}: {rec.final_answer!r}")
        audio_sent += rec.audio_ms_sent
        if rec.metrics is not None:
            m = rec.metrics
            audio_replayed += m.audio_ms_replayed
            audio_dropped += m.audio_ms_dropped
            gaps.extend(m.gaps)
            for name in (
                "connect_attempts",
                "connections",
                "reconnects",
                "resumes_attempted",
                "resumes_succeeded",
                "fresh_session_fallbacks",
                "go_aways",
                "planned_handovers",
                "dead_links_detected",
                "offline_failures",
                "server_failures",
                "tokens_fetched",
                "tokens_reused",
                "messages_replayed",
                "messages_dropped",
                "protocol_errors",
            ):
                metrics_sum[name] += int(getattr(m, name))

    faults[Fault.EMULATOR_RESTART.value] = len(observed.restarts)
    # A kernel blackhole kills the client's socket in the client's kernel only: the
    # emulator holds its end half-open (as Google would) until it hears nothing for long
    # enough, so its view overlaps a dead socket with the client's next one. For those
    # sessions the client's own view (sampled) is the measure; the emulator's is shown.
    kernel_sessions = {r.index for r in records if r.kernel_path}
    max_sockets = max((n for i, n in overlaps.items() if i not in kernel_sessions), default=0)
    kernel_overlap = max((n for i, n in overlaps.items() if i in kernel_sessions), default=0)
    minted = len(ledger)
    # Contract 1: a token whose handshake completed is never presented again.
    reused_after_handshake = sum(1 for t in ledger if len(t.get("connections") or []) > 1)
    limits = CHAOS_LIMITS
    peak = observed.outbox_peak
    invariants = {
        "context_survived_everywhere": survived == len(records) == planned_sessions(config),
        "texts_exactly_once_or_reported_dropped": texts.ok,
        "tool_responses_exactly_once_or_reported_dropped": tools.ok,
        "max_one_socket_per_session": max_sockets <= 1 and observed.client_sockets_peak <= 1,
        "no_unhandled_exceptions": not observed.unhandled,
        "no_harness_errors": not harness_errors,
        "outbox_within_bounds": observed.outbox_violations == 0,
        "no_token_used_after_its_handshake": reused_after_handshake == 0,
    }
    impolite, impolite_invariants = impolite_report(records, audit, observed.restarts)
    invariants.update(impolite_invariants)
    sorted_gaps = sorted(gaps)
    report: JsonDict = {
        "ok": all(invariants.values()),
        "invariants": invariants,
        "run": {
            "sessions": config.sessions,
            "steps_per_session": config.steps,
            "seed": config.seed,
            "time_scale": config.time_scale,
            "reply_timeout_s": config.reply_timeout,
            "fault_kinds": [f.value for f in config.faults],
            "duration_s": round(duration, 1),
            "emulator_restarts": len(observed.restarts),
            "host": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": sys.platform,
            },
        },
        "faults_injected": dict(sorted(faults.items())),
        "faults_total": sum(faults.values()),
        "faults_not_landed": dict(sorted(skipped.items())),
        "conversations": {
            "total": len(records),
            "context_survived": survived,
            "context_resets": events.get("ContextReset", 0),
            "failures": context_failures[:20],
            "turn_timeouts": turn_timeouts,
            "turn_timeouts_by_kind": dict(sorted(timeouts_by_turn.items())),
            "turn_timeout_notes": timeout_notes[:20],
            "replies_lost_to_a_context_reset": sum(r.replies_lost_to_reset for r in records),
            "spoken_turns_cut_by_reported_audio_drops": sum(
                r.spoken_turns_cut_by_audio_drops for r in records
            ),
            "spoken_turn_cut_notes": [
                f"session {r.index}: {note}" for r in records for note in r.cut_notes
            ][:20],
            "failed_events_then_resumed": events.get("Failed", 0),
        },
        "unaccounted": impolite.pop("unaccounted"),
        "impolite": impolite,
        "texts": texts.to_dict(),
        "tool_responses": tools.to_dict(),
        "audio": {
            "ms_sent": round(audio_sent),
            "ms_replayed": round(audio_replayed),
            "ms_dropped": round(audio_dropped),
        },
        "tokens": {
            "minted": minted,
            "fetched_by_clients": metrics_sum["tokens_fetched"],
            "reused_unspent_by_clients": metrics_sum["tokens_reused"],
            "presented_on_more_than_one_connection": reused_after_handshake,
            "gate_answers": dict(sorted(gate_answers.items())),
        },
        "sockets": {
            "max_open_per_session_at_once": max_sockets,
            "sessions_over_one": sorted(
                i for i, n in overlaps.items() if n > 1 and i not in kernel_sessions
            ),
            "client_view_max_open_per_session": observed.client_sockets_peak,
            "kernel_path_sessions_max_open_emulator_view": kernel_overlap,
            "kernel_path_note": (
                "after a kernel blackhole the emulator holds the dead socket half-open "
                "until it is silent long enough; the client's own view is the measure there"
            ),
            "measured_from": "emulator events: setup_complete .. connection_closed, by token",
            "connections_set_up": len(spans),
        },
        "reconnects": {
            **{k: metrics_sum[k] for k in sorted(metrics_sum)},
            "gap_p50_s": _pct(sorted_gaps, 0.5),
            "gap_p95_s": _pct(sorted_gaps, 0.95),
            "gap_max_s": round(sorted_gaps[-1], 3) if sorted_gaps else None,
        },
        "unhandled_exceptions": len(observed.unhandled),
        "unhandled_samples": observed.unhandled[:10],
        "proxy_callback_errors_py311": len(observed.harness_unhandled),
        "harness_errors": harness_errors[:20],
        "outbox": {
            "peak_pending_messages": int(peak.get("pending_messages", 0)),
            "bound_pending_messages": limits.max_messages,
            "peak_pending_bytes": int(peak.get("pending_bytes", 0)),
            "bound_pending_bytes": limits.max_bytes,
            "peak_pending_audio_ms": round(peak.get("pending_audio_ms", 0.0)),
            "bound_pending_audio_ms": limits.max_audio_ms,
            "peak_unconfirmed_messages": int(peak.get("unconfirmed_messages", 0)),
            "bound_unconfirmed_messages": limits.max_unconfirmed_messages,
            "samples_over_bound": observed.outbox_violations,
        },
        "memory": {
            "client_peak_rss_mb": round(peak_rss_kb() / 1024, 1),
            "emulator_peak_rss_mb": round(observed.emulator_peak_rss_kb / 1024, 1),
        },
        "emulator_control_errors": observed.emulator_errors,
        "timeline": {
            "connected_sessions": [(round(t, 1), n) for t, n in observed.connected_samples],
            "client_rss_mb": [(round(t, 1), round(m, 1)) for t, m in observed.rss_samples],
        },
    }
    return report


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * len(values)))], 3)
