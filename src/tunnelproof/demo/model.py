"""What the demo knows while it runs: the state the view draws and the verdict judges.

Plain mutable dataclasses, updated by the runner only (one asyncio task at a time), read
by the view on its refresh tick. Times are seconds since the journey started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

UtteranceStatus = Literal["sent", "queued", "dropped", "answered", "cut", "unanswered"]
DisruptionKind = Literal["tunnel", "station", "crash", "drop"]


@dataclass(slots=True)
class Utterance:
    """One thing the user said and what became of it."""

    text: str
    at: float
    audio: bool = False
    seq: int | None = None
    status: UtteranceStatus = "sent"
    answer: str = ""
    answered_at: float | None = None
    cut_partial: str = ""  # what the model had said when its answer was cut off
    dropped_reason: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "text": self.text,
            "at": round(self.at, 3),
            "audio": self.audio,
            "status": self.status,
            "answer": self.answer,
            "answeredAt": None if self.answered_at is None else round(self.answered_at, 3),
            "cutPartial": self.cut_partial,
            "droppedReason": self.dropped_reason,
        }


@dataclass(slots=True)
class Disruption:
    """One thing that broke the link, and how the session came back.

    ``started``/``ended`` bound the fault itself (a tunnel's blackhole; for instant faults
    both are the moment it happened). ``recovered`` is when the session was usable again
    (``Resumed``/``Connected``), ``None`` while it is not. ``recovery`` is measured from
    ``ended``: how long after the network came back the conversation was back too.
    """

    kind: DisruptionKind
    label: str
    started: float
    ended: float | None = None
    recovered: float | None = None
    how: str = ""  # "resumed", "handover", "fresh session", "link held"
    gap: float | None = None  # the client's own measure (Resumed.gap)
    replayed: int = 0
    reconnects: int = 0
    cut_words: int = 0

    @property
    def recovery(self) -> float | None:
        """Seconds from the end of the fault to a usable session again."""
        if self.recovered is None or self.ended is None:
            return None
        return max(0.0, self.recovered - self.ended)

    def to_json(self) -> dict[str, Any]:
        """JSON view."""

        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 3)

        return {
            "kind": self.kind,
            "label": self.label,
            "started": r(self.started),
            "ended": r(self.ended),
            "recovered": r(self.recovered),
            "recoveryAfterFault": r(self.recovery),
            "gap": r(self.gap),
            "how": self.how,
            "replayed": self.replayed,
            "reconnects": self.reconnects,
            "cutWords": self.cut_words,
        }


@dataclass(slots=True)
class LogLine:
    """One line of the event log."""

    at: float
    text: str
    style: str = ""


@dataclass(slots=True)
class DemoState:
    """Everything the view shows."""

    mode: str = "emulator"  # or "google"
    speed: float = 1.0
    audio: bool = False
    length: float = 60.0
    elapsed: float = 0.0
    session_state: str = "starting"
    step_index: int = -1
    step_labels: list[tuple[float, str, str]] = field(default_factory=list)  # (at, kind, label)
    tunnel_open: bool = False
    utterances: list[Utterance] = field(default_factory=list)
    disruptions: list[Disruption] = field(default_factory=list)
    log: list[LogLine] = field(default_factory=list)
    connections: int = 0
    reconnects: int = 0
    tokens_fetched: int = 0
    tokens_minted: int | None = None
    handles_seen: int = 0
    last_handle: str = ""
    audio_received_s: float = 0.0
    audio_sent_s: float = 0.0
    audio_ms_replayed: float = 0.0
    audio_ms_dropped: float = 0.0
    messages_replayed: int = 0
    messages_dropped: int = 0
    failed: str | None = None
    last_problem: str = ""  # the newest reason a connection attempt failed
    context_resets: int = 0
    config_mismatches: list[str] = field(default_factory=list)  # ConfigMismatch advice
    finished: bool = False

    def note(self, text: str, style: str = "") -> None:
        """Add a log line (the view shows the newest)."""
        self.log.append(LogLine(self.elapsed, text, style))
        del self.log[:-200]

    def open_disruption(self) -> Disruption | None:
        """The newest disruption the session has not recovered from yet."""
        for item in reversed(self.disruptions):
            if item.recovered is None:
                return item
        return None
