"""Did the promise hold? The demo's verdict, from what the client saw and the server kept.

Three checks, all must pass for exit code 0:

* **context survived**: asked "what did I say first?" at the end, the assistant quotes the
  first thing the user said, minutes and a dozen reconnects later;
* **every drop recovered**: each tunnel, handover, crash and cut ended with a usable
  session again;
* **nothing lost**: every user utterance was delivered exactly once, or its loss was
  reported to the app (``SendDropped``). With the emulator "exactly once" is checked on
  the server's own history (the newest session): a message that was replayed after a
  resume must appear once, not twice and not zero times. Against Google the server
  cannot be asked, so every utterance must have been answered or reported.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tunnelproof.demo.journey import Journey
from tunnelproof.demo.model import DemoState
from tunnelproof.demo.runner import normalise


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the verdict."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """All checks and the figures the summary shows."""

    checks: tuple[Check, ...]
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(c.ok for c in self.checks)

    def check(self, name: str) -> Check:
        """The check called ``name``."""
        return next(c for c in self.checks if c.name == name)


def judge(
    state: DemoState,
    journey: Journey,
    server_user_turns: list[str] | None,
    *,
    paraphrase_ok: bool = False,
) -> Verdict:
    """The verdict of one run. ``server_user_turns`` is ``None`` against Google.

    ``paraphrase_ok`` (Google): a real model rarely quotes verbatim, so the answer passes
    when it names what only the first utterance said (the user's name and destination).
    """
    checks = [
        _context(state, journey, paraphrase_ok),
        _recovered(state),
        _nothing_lost(state, server_user_turns),
        Check(
            "session never gave up",
            state.failed is None,
            "no Failed event" if state.failed is None else state.failed,
        ),
    ]
    return Verdict(tuple(checks), figures(state))


def _context(state: DemoState, journey: Journey, paraphrase_ok: bool) -> Check:
    first = journey.utterances[0] if journey.utterances else ""
    last = state.utterances[-1] if state.utterances else None
    if last is None or last.answer == "":
        return Check("context survived", False, "the last question got no answer")
    answer = normalise(last.answer)
    ok = normalise(first) in answer
    if not ok and paraphrase_ok:
        words = set(answer.split())
        ok = "ada" in words and bool(words & {"zurich", "train"})
    detail = f"asked {last.text!r}, the assistant answered {last.answer!r}"
    return Check("context survived", ok, detail)


def _recovered(state: DemoState) -> Check:
    missing = [d.label for d in state.disruptions if d.recovered is None]
    if missing:
        return Check("every drop recovered", False, "not recovered: " + ", ".join(missing))
    return Check(
        "every drop recovered",
        True,
        f"{len(state.disruptions)} disruptions, {state.reconnects} reconnects, all recovered",
    )


def _nothing_lost(state: DemoState, server_user_turns: list[str] | None) -> Check:
    problems: list[str] = []
    reported = [u for u in state.utterances if u.status == "dropped"]
    delivered = [u for u in state.utterances if u.status != "dropped"]
    if server_user_turns is not None:
        counts = Counter(normalise(t) for t in server_user_turns)
        for u in delivered:
            n = counts.get(normalise(u.text), 0)
            if n != 1:
                problems.append(f"{u.text!r} reached the server {n} times")
    for u in delivered:
        if u.status != "answered":
            problems.append(f"{u.text!r} was never answered ({u.status})")
    if problems:
        return Check("nothing lost", False, "; ".join(problems))
    where = "in the server's history" if server_user_turns is not None else "answered"
    detail = f"{len(delivered)} utterances delivered exactly once ({where})"
    if reported:
        detail += f", {len(reported)} reported dropped"
    return Check("nothing lost", True, detail)


def figures(state: DemoState) -> dict[str, Any]:
    """The numbers of the run, for the summary table and ``--json``."""
    recoveries = [d.recovery for d in state.disruptions if d.recovery is not None]
    gaps = [d.gap for d in state.disruptions if d.gap is not None and d.how != "link held"]
    tunnels = [d for d in state.disruptions if d.kind == "tunnel"]
    tunnel_recovery = [d.recovery for d in tunnels if d.recovery is not None]

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    return {
        "duration": r(state.elapsed),
        "disruptions": len(state.disruptions),
        "reconnects": state.reconnects,
        "connections": state.connections,
        "contextResets": state.context_resets,
        "maxRecoveryAfterFault": r(max(recoveries)) if recoveries else None,
        "meanRecoveryAfterFault": r(statistics.fmean(recoveries)) if recoveries else None,
        "maxTunnelRecovery": r(max(tunnel_recovery)) if tunnel_recovery else None,
        "maxGap": r(max(gaps)) if gaps else None,
        "tokensFetched": state.tokens_fetched,
        "tokensMinted": state.tokens_minted,
        "handlesSeen": state.handles_seen,
        "messagesReplayed": state.messages_replayed,
        "messagesDropped": state.messages_dropped,
        "audioSentSeconds": r(state.audio_sent_s),
        "audioReceivedSeconds": r(state.audio_received_s),
        "audioReplayedMs": r(state.audio_ms_replayed),
        "audioDroppedMs": r(state.audio_ms_dropped),
    }


def result_json(state: DemoState, verdict: Verdict, stack_info: dict[str, Any]) -> dict[str, Any]:
    """The ``--json`` document."""
    return {
        "ok": verdict.ok,
        "verdict": {c.name: {"ok": c.ok, "detail": c.detail} for c in verdict.checks},
        "figures": verdict.figures,
        "disruptions": [d.to_json() for d in state.disruptions],
        "utterances": [u.to_json() for u in state.utterances],
        "speed": state.speed,
        "audio": state.audio,
        "configMismatches": list(state.config_mismatches),
        "stack": stack_info,
    }
