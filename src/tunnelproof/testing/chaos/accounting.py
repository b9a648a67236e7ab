"""What survived: the client's records checked against the emulator's own view. Pure.

The client can say what it sent; only the server can say what arrived. So delivery is
judged on the emulator's server-side history (``GET /_emulator/sessions``), and socket
overlap on the emulator's connection events, never on the client's own counters:

* a **text** (every one carries a unique marker such as ``[c7-3]``) is delivered exactly
  once when it appears once among the user entries of the conversation's *final* server
  session. Re-seeding a fresh session from the client's transcript carries earlier texts
  forward, so the final session must hold every delivered text whatever happened before;
* a **tool response** is judged by call id across every server session of the
  conversation (tool calls belong to the session that issued them and are not re-seeded);
* **sockets at once**: the intervals from ``setup_complete`` to ``connection_closed`` of
  the connections whose token was minted for the conversation, maximum overlap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunnelproof.protocol.types import JsonDict

USER_TEXT_SOURCES = frozenset({"realtimeText", "clientContent"})


def marker(conversation: int, step: int | str) -> str:
    """The unique tag of one text: ``[c<conversation>-<step>]``."""
    return f"[c{conversation}-{step}]"


def conversation_tag(conversation: int) -> str:
    """The prefix every marker of a conversation starts with."""
    return f"[c{conversation}-"


@dataclass(slots=True)
class Tally:
    """Sent vs delivered for one kind of message."""

    sent: int = 0
    delivered_exactly_once: int = 0
    reported_dropped: int = 0
    duplicated: int = 0
    lost_silently: int = 0
    dropped_but_delivered: int = 0
    problems: list[str] = field(default_factory=list)

    def judge(self, what: str, count: int, dropped: bool) -> None:
        """Record one message seen ``count`` times server-side (``dropped``: reported so)."""
        self.sent += 1
        if count > 1:
            self.duplicated += 1
            self._problem(f"{what} delivered {count} times")
        elif dropped:
            self.reported_dropped += 1
            if count == 1:
                # Reported lost but the server has it: the app would resend a duplicate.
                self.dropped_but_delivered += 1
                self._problem(f"{what} reported dropped but delivered")
        elif count == 1:
            self.delivered_exactly_once += 1
        else:
            self.lost_silently += 1
            self._problem(f"{what} lost without a report")

    @property
    def ok(self) -> bool:
        """Every message delivered exactly once or reported dropped (and not delivered)."""
        return self.duplicated == 0 and self.lost_silently == 0 and self.dropped_but_delivered == 0

    def _problem(self, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(text)

    def to_dict(self) -> JsonDict:
        """JSON view."""
        return {
            "sent": self.sent,
            "delivered_exactly_once": self.delivered_exactly_once,
            "reported_dropped": self.reported_dropped,
            "duplicated": self.duplicated,
            "lost_silently": self.lost_silently,
            "dropped_but_delivered": self.dropped_but_delivered,
            "problems": list(self.problems),
        }


def user_texts(history: Iterable[Mapping[str, Any]]) -> list[str]:
    """The user texts of a server history (typed or seeded, not audio or tool entries)."""
    return [
        str(e.get("text", ""))
        for e in history
        if e.get("role") == "user" and e.get("source") in USER_TEXT_SOURCES
    ]


def count_marker(texts: Iterable[str], tag: str) -> int:
    """How many texts carry ``tag``."""
    return sum(1 for t in texts if tag in t)


def sessions_of(sessions: Iterable[Mapping[str, Any]], conversation: int) -> list[JsonDict]:
    """Server sessions holding any text of ``conversation``, oldest first."""
    tag = conversation_tag(conversation)
    found = [dict(s) for s in sessions if any(tag in t for t in user_texts(s.get("history") or []))]
    return sorted(found, key=lambda s: float(s.get("created_at") or 0.0))


def final_session(sessions: Sequence[Mapping[str, Any]], final_tag: str) -> JsonDict | None:
    """The newest session whose history holds the conversation's final question."""
    holding = [s for s in sessions if count_marker(user_texts(s.get("history") or []), final_tag)]
    if not holding:
        return None
    newest: Mapping[str, Any] = max(holding, key=lambda s: float(s.get("created_at") or 0.0))
    return dict(newest)


def tool_response_count(sessions: Iterable[Mapping[str, Any]], call_id: str) -> int:
    """``toolResponse`` entries answering ``call_id`` in the sessions' current histories."""
    return sum(
        1
        for s in sessions
        for e in s.get("history") or []
        if e.get("source") == "toolResponse" and (e.get("data") or {}).get("id") == call_id
    )


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The largest number of ``(start, end)`` intervals open at one instant.

    An interval ending exactly when another starts does not overlap it.
    """
    points: list[tuple[float, int]] = []
    for start, end in intervals:
        points.append((start, 1))
        points.append((max(start, end), -1))
    points.sort(key=lambda p: (p[0], p[1]))  # ends before starts at the same instant
    best = current = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best


@dataclass(slots=True)
class ConnectionSpan:
    """One set-up connection as the emulator saw it."""

    connection: str
    token: str | None
    start: float
    end: float | None = None


def spans_from_events(
    events: Iterable[Mapping[str, Any]], *, restarts: Sequence[float] = ()
) -> dict[str, ConnectionSpan]:
    """Connection spans from ``setup_complete`` / ``connection_closed`` events (a span
    also ends at a ``resume_takeover`` naming it as the old connection).

    A connection still open at an emulator restart ended with the process (its close
    event died with the old process's event log): it is closed at the restart time.
    """
    spans: dict[str, ConnectionSpan] = {}
    for e in events:
        kind = e.get("kind")
        conn = str(e.get("connection"))
        if kind == "setup_complete":
            spans[conn] = ConnectionSpan(conn, e.get("token"), float(e["at"]))
        elif kind == "connection_closed" and conn in spans:
            spans[conn].end = min(float(e["at"]), spans[conn].end or float("inf"))
        elif kind == "resume_takeover" and str(e.get("old")) in spans:
            # The old socket was aborted right then, before the new one's setupComplete;
            # its close event is logged later, when its receive loop ends.
            old = spans[str(e.get("old"))]
            old.end = min(float(e["at"]), old.end or float("inf"))
    for span in spans.values():
        if span.end is None:
            later = [r for r in restarts if r >= span.start]
            if later:
                span.end = min(later)
    return spans
