"""Counters of one session (contract point 9), updated by the state machine.

All durations are seconds of the machine's monotonic clock. Read them through
``LiveSession.metrics``, which returns a copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(slots=True)
class SessionMetrics:
    """What happened to a session's connection so far."""

    connect_attempts: int = 0
    connections: int = 0  # setupComplete received
    reconnects: int = 0  # connections after the first
    resumes_attempted: int = 0
    resumes_succeeded: int = 0
    fresh_session_fallbacks: int = 0
    go_aways: int = 0
    planned_handovers: int = 0
    dead_links_detected: int = 0
    offline_failures: int = 0
    server_failures: int = 0
    tokens_fetched: int = 0
    tokens_reused: int = 0
    downtime_total: float = 0.0
    last_gap: float | None = None
    gaps: list[float] = field(default_factory=list)
    messages_replayed: int = 0
    messages_dropped: int = 0
    audio_ms_replayed: float = 0.0
    audio_ms_dropped: float = 0.0
    protocol_errors: int = 0
    link_checks: int = 0  # a reply was overdue and the link was checked, not torn down
    immediate_reconnects: int = 0  # abrupt drops of healthy connections, retried at once
    shed_waits: int = 0  # waits on a Retry-After that did not count as failures

    @property
    def resume_success_rate(self) -> float | None:
        """Resumes that reached ``setupComplete`` / resumes attempted (``None`` before any)."""
        if self.resumes_attempted == 0:
            return None
        return self.resumes_succeeded / self.resumes_attempted

    def record_gap(self, gap: float) -> None:
        """A reconnect ended a gap of ``gap`` seconds (the newest 500-1000 are kept)."""
        self.downtime_total += gap
        self.last_gap = gap
        self.gaps.append(gap)
        if len(self.gaps) > 1000:
            del self.gaps[:500]

    def copy(self) -> SessionMetrics:
        """A snapshot the caller may keep."""
        return replace(self, gaps=list(self.gaps[-100:]))
