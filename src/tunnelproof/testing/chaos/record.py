"""What one chaos session did and was told: the record the audit reads. Pure data.

:class:`~tunnelproof.testing.chaos.driver.ChaosSession` (the conversation) and
:class:`~tunnelproof.testing.chaos.faults.FaultInjection` (its faults) write it; the
report (:mod:`~tunnelproof.testing.chaos.verdict`, :mod:`~tunnelproof.testing.chaos.audit`)
checks it against the emulator's own view afterwards.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from tunnelproof.session.metrics import SessionMetrics
from tunnelproof.session.outbox import SendResult
from tunnelproof.testing.chaos.ledger import SentItem, ToolEffects


@dataclass(slots=True)
class SessionRecord:
    """What one chaos session did and was told."""

    index: int
    first_text: str
    final_tag: str
    expected_answer: str
    final_answer: str | None = None
    sends: dict[int, SentItem] = field(default_factory=dict)  # seq -> what the app sent
    dropped_seqs: set[int] = field(default_factory=set)  # refused at once or SendDropped
    delivered_seqs: set[int] = field(default_factory=set)  # named by Delivered events
    delivered_twice: int = 0  # seqs a Delivered event named again
    tool_effects: ToolEffects = field(default_factory=ToolEffects)
    goaway_loops: list[tuple[float, int]] = field(default_factory=list)  # (seconds, connects)
    slow_model_turns: list[tuple[float, float, int]] = field(default_factory=list)
    """(wall start, wall end, disconnects seen) of each thinking-model turn."""
    latency_ms: float = 0.0
    kernel_path: bool = False
    duration_s: float = 0.0
    step_seconds: list[tuple[str, float]] = field(default_factory=list)  # (fault, seconds)
    audio_ms_sent: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    turn_timeouts: int = 0
    timeouts_by_turn: Counter[str] = field(default_factory=Counter)
    replies_lost_to_reset: int = 0
    audio_drop_reports: int = 0
    spoken_turns_cut_by_audio_drops: int = 0
    timeout_notes: list[str] = field(default_factory=list)
    cut_notes: list[str] = field(default_factory=list)
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    metrics: SessionMetrics | None = None
    errors: list[str] = field(default_factory=list)
    finished: bool = False

    def note_send(self, result: SendResult, item: SentItem) -> None:
        """One app send and its immediate result (a refusal is a report of a drop)."""
        self.sends[result.seq] = item
        if result.dropped:
            self.dropped_seqs.add(result.seq)

    @property
    def context_survived(self) -> bool:
        """The assistant quoted the first thing said, word for word."""
        return self.final_answer == self.expected_answer
