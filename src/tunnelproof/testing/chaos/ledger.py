"""The soak's "unaccounted" audit and its tool side-effect ledger. Pure: no I/O.

Issue 13's promise is that nothing the app sends disappears without a word. For every
send the driver notes its ``SendResult.seq``, its kind (text, tool response, audio chunk)
and, for audio, its milliseconds; the session's events then say what became of it:

* **delivered**: a ``Delivered`` event named the seq (a resumable handle issued after the
  server read it), or, where the session cannot confirm by design (text re-seeded into a
  fresh session after a ``ContextReset``), the server's own history holds it (the caller
  passes that evidence);
* **reported**: ``SendResult.dropped`` at once, or a later ``SendDropped`` naming the seq;
* **unaccounted**: neither. The soak fails on any.

A seq both confirmed delivered and reported dropped is a contradiction (the app would
resend something the server has): counted apart, and the soak fails on it too.

The same pass reads the other side of each text and tool response: how many copies of it
the server holds (:class:`~tunnelproof.testing.chaos.accounting.Tally`: exactly once,
reported dropped, duplicated, lost silently, dropped but delivered). One send, judged once,
both views in its kind's :class:`KindAudit`.

:class:`ToolEffects` is the app's tool with a side effect: it counts executions per
request. A call flagged ``ToolCallRequested.reissued`` that names a call already run is
answered from that run; an unflagged second call for the same request runs the effect
again, and that is what the audit counts as a silent double execution.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from tunnelproof.protocol.types import JsonDict
from tunnelproof.testing.chaos.accounting import Tally

SendKind = Literal["text", "tool", "audio"]
SEND_KINDS: tuple[SendKind, ...] = ("text", "tool", "audio")


@dataclass(frozen=True, slots=True)
class SentItem:
    """One app send: its kind, what it carried (a text marker or tool call ids), audio ms."""

    kind: SendKind
    what: str
    audio_ms: float = 0.0


COPIED_KINDS: dict[SendKind, str] = {"text": "text", "tool": "tool answer"}
"""The kinds whose copies the server's history shows (a chunk of audio leaves no trace of
its own), and how a problem with one is named."""


@dataclass(slots=True)
class KindAudit:
    """The verdicts of one kind of send: the client's (``ms`` fields are audio
    milliseconds) and, in ``copies``, the server's copies (texts and tool responses)."""

    sent: int = 0
    delivered_confirmed: int = 0
    delivered_by_server_evidence: int = 0
    reported_dropped: int = 0
    unaccounted: int = 0
    contradictions: int = 0
    ms_sent: float = 0.0
    ms_delivered: float = 0.0
    ms_reported_dropped: float = 0.0
    ms_unaccounted: float = 0.0
    utterances_confirmed: int = 0
    confirmed_not_heard: int = 0
    ms_confirmed_not_heard: float = 0.0
    samples: list[str] = field(default_factory=list)
    copies: Tally = field(default_factory=Tally)

    def to_dict(self, *, audio: bool) -> JsonDict:
        """JSON view (the millisecond figures only for audio)."""
        out: JsonDict = {
            "sent": self.sent,
            "delivered_confirmed": self.delivered_confirmed,
            "delivered_by_server_evidence": self.delivered_by_server_evidence,
            "reported_dropped": self.reported_dropped,
            "unaccounted": self.unaccounted,
            "delivered_and_reported_dropped": self.contradictions,
            "samples": list(self.samples[:20]),
        }
        if audio:
            out.update(
                ms_sent=round(self.ms_sent),
                ms_delivered=round(self.ms_delivered),
                ms_reported_dropped=round(self.ms_reported_dropped),
                ms_unaccounted=round(self.ms_unaccounted),
                utterances_all_confirmed=self.utterances_confirmed,
                utterances_confirmed_but_never_heard=self.confirmed_not_heard,
                ms_confirmed_but_never_heard=round(self.ms_confirmed_not_heard),
            )
        return out


@dataclass(slots=True)
class SendAudit:
    """Every send of a run judged delivered / reported / unaccounted (module docstring)."""

    kinds: dict[SendKind, KindAudit] = field(
        default_factory=lambda: {k: KindAudit() for k in SEND_KINDS}
    )

    def judge(
        self,
        session: int,
        sends: Mapping[int, SentItem],
        delivered: Iterable[int],
        dropped: Iterable[int],
        copies: Callable[[SentItem, bool], int],
    ) -> None:
        """Judge one session's ``sends`` (seq -> item) against what it was told and what
        the server holds.

        ``copies(item, reported_dropped)`` is how many copies of the send the server's
        history holds: the copies' verdict for a text or tool response, and the evidence
        for one the session could not confirm (one copy or more: delivered).
        """
        confirmed, reported = set(delivered), set(dropped)
        for seq, item in sorted(sends.items()):
            audit = self.kinds[item.kind]
            held = copies(item, seq in reported)
            if item.kind in COPIED_KINDS:
                name = f"session {session} {COPIED_KINDS[item.kind]} {item.what}"
                audit.copies.judge(name, held, seq in reported)
            audit.sent += 1
            audit.ms_sent += item.audio_ms
            what = f"session {session} {item.kind} seq {seq} ({item.what})"
            if seq in confirmed and seq in reported:
                audit.contradictions += 1
                audit.samples.append(f"{what}: Delivered and SendDropped both")
            if seq in reported:
                audit.reported_dropped += 1
                audit.ms_reported_dropped += item.audio_ms
            elif seq in confirmed:
                audit.delivered_confirmed += 1
                audit.ms_delivered += item.audio_ms
            elif held >= 1:
                audit.delivered_by_server_evidence += 1
                audit.ms_delivered += item.audio_ms
            else:
                audit.unaccounted += 1
                audit.ms_unaccounted += item.audio_ms
                audit.samples.append(f"{what}: neither delivered nor reported")

    def judge_utterances(
        self,
        session: int,
        sends: Mapping[int, SentItem],
        delivered: Iterable[int],
        dropped: Iterable[int],
        heard: Callable[[str], bool],
    ) -> None:
        """Audio confirmed delivered must have been heard: check it per utterance.

        A chunk has no trace of its own on the server, but an utterance does: its
        transcript in the history. An utterance every chunk of which a ``Delivered`` event
        confirmed (none reported dropped) must be in the server's history (``heard(tag)``);
        if not, the session confirmed audio the server's state never held (a resume lost
        it after the app was told it was safe).
        """
        confirmed, reported = set(delivered), set(dropped)
        chunks: dict[str, list[int]] = {}
        for seq, item in sends.items():
            if item.kind == "audio":
                chunks.setdefault(item.what, []).append(seq)
        audit = self.kinds["audio"]
        for tag, seqs in sorted(chunks.items()):
            if any(s in reported or s not in confirmed for s in seqs):
                continue
            audit.utterances_confirmed += 1
            if not heard(tag):
                audit.confirmed_not_heard += 1
                audit.ms_confirmed_not_heard += sum(sends[s].audio_ms for s in seqs)
                audit.samples.append(
                    f"session {session} utterance {tag}: every chunk confirmed delivered, "
                    "but the server's history never held it"
                )

    def unaccounted(self) -> JsonDict:
        """The three headline figures: texts, tool responses, audio milliseconds."""
        return {
            "texts": self.kinds["text"].unaccounted,
            "tool_responses": self.kinds["tool"].unaccounted,
            "audio_ms": round(self.kinds["audio"].ms_unaccounted),
        }

    def contradictions(self) -> int:
        """Sends both confirmed delivered and reported dropped, all kinds."""
        return sum(a.contradictions for a in self.kinds.values())

    def to_dict(self) -> JsonDict:
        """JSON view, per kind."""
        return {
            "unaccounted": self.unaccounted(),
            "texts": self.kinds["text"].to_dict(audio=False),
            "tool_responses": self.kinds["tool"].to_dict(audio=False),
            "audio": self.kinds["audio"].to_dict(audio=True),
        }


@dataclass(slots=True)
class ToolEffects:
    """An app tool with a side effect, and what became of each call (module docstring)."""

    executions: Counter[str] = field(default_factory=Counter)  # request tag -> runs
    request_of: dict[str, str] = field(default_factory=dict)  # call id -> request tag
    results: dict[str, str] = field(default_factory=dict)  # call id -> result it got
    calls: int = 0
    executed: int = 0
    answered_from_earlier_run: int = 0
    double_executions: list[str] = field(default_factory=list)

    def call(self, call_id: str, request: str, reissued: Iterable[str]) -> str:
        """The result for ``call_id``; runs the effect unless a re-issued call already ran.

        ``request`` is what the app believes the call is for (the question being asked);
        a call re-issuing an earlier one belongs to that one's request, whatever is being
        asked now.
        """
        self.calls += 1
        earlier = [r for r in reissued if r in self.request_of]
        if earlier:
            request = self.request_of[earlier[0]]
            ran = [r for r in earlier if r in self.results]
            if ran:
                self.answered_from_earlier_run += 1
                self.request_of[call_id] = request
                self.results[call_id] = self.results[ran[0]]
                return self.results[call_id]
        self.executions[request] += 1
        self.executed += 1
        runs = self.executions[request]
        if runs > 1:
            self.double_executions.append(
                f"{request}: run {runs} times (call {call_id} not flagged reissued)"
            )
        result = f"sunny {request} run {runs}"
        self.request_of[call_id] = request
        self.results[call_id] = result
        return result

    def merge_into(self, total: JsonDict) -> None:
        """Add this session's figures to the run's ``total`` dict."""
        total["calls"] = int(total.get("calls", 0)) + self.calls
        total["executed"] = int(total.get("executed", 0)) + self.executed
        total["answered_from_earlier_run"] = (
            int(total.get("answered_from_earlier_run", 0)) + self.answered_from_earlier_run
        )
        doubles = list(total.get("silent_double_executions_samples", []))
        doubles.extend(self.double_executions)
        total["silent_double_executions"] = int(total.get("silent_double_executions", 0)) + len(
            self.double_executions
        )
        total["silent_double_executions_samples"] = doubles[:20]
