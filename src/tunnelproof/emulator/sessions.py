"""Sessions, history, resumption handles and lifetimes, as data. No I/O, injected clock.

A *session* is the server-side conversation; a *connection* is one WebSocket. A session
outlives its connections through resumption handles:

* ``sessionResumptionUpdate`` is sent only when setup carried ``sessionResumption``.
* While the model is generating or a tool call is pending, the update is
  ``{"resumable": false}`` with no handle; at each settled point a new handle is issued.
* A handle is a snapshot: resuming restores the history as it was when the handle was
  issued, so an interrupted generation is never continued.
* Handles stay valid while the session has an open connection and for
  ``handle_validity`` seconds after its last connection ended (2 h by default).
* A resume while the session's previous connection is still open is refused (1011).
* Without context-window compression a session is limited to 15 min (2 min once video
  was sent); the limit counts from the session's start, across resumes.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from tunnelproof.emulator.policy import EmulatorPolicy
from tunnelproof.protocol.casing import get_field, has_field
from tunnelproof.protocol.types import JsonDict

Clock = Callable[[], float]

Role = Literal["user", "model"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One item of server-side history.

    ``source`` says how it arrived: ``clientContent``, ``realtimeText``, ``audio``,
    ``model``, ``toolCall`` or ``toolResponse``. ``data`` holds call ids, names and results.
    """

    role: Role
    text: str
    source: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> JsonDict:
        """JSON view."""
        return {
            "role": self.role,
            "text": self.text,
            "source": self.source,
            "data": dict(self.data),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Entry:
        """Inverse of :meth:`to_dict`."""
        return cls(data["role"], data["text"], data["source"], dict(data.get("data", {})))


@dataclass(frozen=True, slots=True)
class HandleRecord:
    """What a resumption handle restores."""

    handle: str
    session_id: str
    issued_at: float
    history: tuple[Entry, ...]

    def to_dict(self) -> JsonDict:
        """JSON view."""
        return {
            "handle": self.handle,
            "session": self.session_id,
            "issued_at": self.issued_at,
            "history": [e.to_dict() for e in self.history],
        }


class HandleProblem(StrEnum):
    """Why a resume is refused."""

    UNKNOWN = "unknown"
    EXPIRED = "expired"
    STILL_OPEN = "still_open"


class HandleRefused(Exception):
    """A resume cannot proceed."""

    def __init__(self, problem: HandleProblem, session_id: str | None = None) -> None:
        super().__init__(problem.value)
        self.problem = problem
        self.session_id = session_id


@dataclass(slots=True)
class Session:
    """A conversation on the server."""

    id: str
    created_at: float
    setup: JsonDict
    model: str
    wants_updates: bool
    compression: bool
    token_name: str | None
    history: list[Entry] = field(default_factory=list)
    video_seen: bool = False
    generating: bool = False
    background: bool = False  # reasoning on after turnComplete (interactionStatus IN_PROGRESS)
    pending_calls: dict[str, str] = field(default_factory=dict)  # call id -> function name
    connection_id: str | None = None
    last_disconnect: float | None = None
    ended: bool = False
    handles: list[str] = field(default_factory=list)
    connections: list[str] = field(default_factory=list)

    @property
    def settled(self) -> bool:
        """True when a handle may be issued (nothing generating or reasoning, no call pending)."""
        return not self.generating and not self.background and not self.pending_calls

    def to_dict(self) -> JsonDict:
        """JSON view (for the control API and the state file)."""
        return {
            "id": self.id,
            "created_at": self.created_at,
            "setup": self.setup,
            "model": self.model,
            "wants_updates": self.wants_updates,
            "compression": self.compression,
            "token": self.token_name,
            "history": [e.to_dict() for e in self.history],
            "video_seen": self.video_seen,
            "generating": self.generating,
            "background": self.background,
            "pending_calls": dict(self.pending_calls),
            "connection": self.connection_id,
            "last_disconnect": self.last_disconnect,
            "ended": self.ended,
            "handles": list(self.handles),
            "latest_handle": self.handles[-1] if self.handles else None,
            "connections": list(self.connections),
        }


class SessionStore:
    """All sessions and handles of one emulator."""

    def __init__(self, policy: EmulatorPolicy, clock: Clock) -> None:
        self.policy = policy
        self.clock = clock
        self.sessions: dict[str, Session] = {}
        self.handles: dict[str, HandleRecord] = {}

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, setup: Mapping[str, Any], model: str, token_name: str | None) -> Session:
        """A new session for a setup without a handle."""
        session = Session(
            id="session-" + secrets.token_hex(8),
            created_at=self.clock(),
            setup=dict(setup),
            model=model,
            wants_updates=has_field(setup, "sessionResumption"),
            compression=has_field(setup, "contextWindowCompression"),
            token_name=token_name,
        )
        self.sessions[session.id] = session
        return session

    def resolve(self, handle: str, *, allow_open: bool = False) -> tuple[Session, HandleRecord]:
        """The session and snapshot a handle points at, or :class:`HandleRefused`.

        ``allow_open`` skips the "old socket still open" refusal (for a takeover).
        """
        record = self.handles.get(handle)
        if record is None:
            raise HandleRefused(HandleProblem.UNKNOWN)
        session = self.sessions.get(record.session_id)
        if session is None:
            raise HandleRefused(HandleProblem.UNKNOWN)
        if self.handle_expired(session):
            raise HandleRefused(HandleProblem.EXPIRED, session.id)
        if session.connection_id is not None and not allow_open:
            raise HandleRefused(HandleProblem.STILL_OPEN, session.id)
        return session, record

    def handle_session(self, handle: str) -> Session | None:
        """The session a handle belongs to, whatever its state."""
        record = self.handles.get(handle)
        return self.sessions.get(record.session_id) if record is not None else None

    def handle_expired(self, session: Session) -> bool:
        """True when the session's handles can no longer be used."""
        if session.ended:
            return True
        if session.connection_id is not None or session.last_disconnect is None:
            return False
        return self.clock() >= session.last_disconnect + self.policy.handle_validity

    def resume(
        self,
        session: Session,
        record: HandleRecord,
        setup: Mapping[str, Any],
        *,
        forget: bool = False,
    ) -> None:
        """Restore ``session`` to the snapshot; the new setup replaces the config.

        The docs allow config changes (except the model) on resume. Whatever was in flight
        when the snapshot was taken is gone, so generation and tool calls restart clean.
        ``forget`` is the "accepted but restores nothing" fault: the history starts empty.
        """
        session.history = [] if forget else list(record.history)
        session.generating = False
        session.background = False
        session.pending_calls.clear()
        session.setup = dict(setup)
        session.wants_updates = has_field(setup, "sessionResumption")
        session.compression = has_field(setup, "contextWindowCompression")

    def attach(self, session: Session, connection_id: str) -> None:
        """``connection_id`` now carries ``session``."""
        session.connection_id = connection_id
        session.connections.append(connection_id)

    def detach(self, session: Session, connection_id: str) -> None:
        """The connection ended: whatever was generating is abandoned."""
        if session.connection_id != connection_id:
            return
        session.connection_id = None
        session.last_disconnect = self.clock()
        session.generating = False
        session.background = False
        # A pending tool call dies with the connection: the snapshot before it is what
        # a resume gets, so the call id is unknown to the resumed session.
        session.pending_calls.clear()

    # -- handles -------------------------------------------------------------------------

    def resumption_update(self, session: Session) -> JsonDict | None:
        """The ``sessionResumptionUpdate`` to send now, or ``None`` when not asked for."""
        if not session.wants_updates:
            return None
        if not session.settled:
            return {"resumable": False}
        return {"newHandle": self.issue_handle(session).handle, "resumable": True}

    def issue_handle(self, session: Session) -> HandleRecord:
        """A new handle for the session as it is now."""
        record = HandleRecord(
            handle=secrets.token_urlsafe(24),
            session_id=session.id,
            issued_at=self.clock(),
            history=tuple(session.history),
        )
        self.handles[record.handle] = record
        session.handles.append(record.handle)
        return record

    # -- limits --------------------------------------------------------------------------

    def session_deadline(self, session: Session) -> float | None:
        """When the session must end (clock time), or ``None`` with compression."""
        if session.compression:
            return None
        limit = (
            self.policy.session_limit_video
            if session.video_seen
            else self.policy.session_limit_audio
        )
        return session.created_at + limit

    def end(self, session: Session) -> None:
        """The session hit a limit: its handles stop working."""
        session.ended = True

    # -- state file ----------------------------------------------------------------------

    def dump(self) -> JsonDict:
        """Everything, JSON-friendly (connections are not persisted)."""
        return {
            "sessions": [s.to_dict() for s in self.sessions.values()],
            "handles": [h.to_dict() for h in self.handles.values()],
        }

    def load(self, data: Mapping[str, Any]) -> None:
        """Restore :meth:`dump` output; every session comes back disconnected."""
        now = self.clock()
        for raw in data.get("sessions", []):
            session = Session(
                id=raw["id"],
                created_at=float(raw["created_at"]),
                setup=dict(raw["setup"]),
                model=raw["model"],
                wants_updates=bool(raw["wants_updates"]),
                compression=bool(raw["compression"]),
                token_name=raw.get("token"),
                history=[Entry.from_dict(e) for e in raw.get("history", [])],
                video_seen=bool(raw.get("video_seen", False)),
                last_disconnect=raw.get("last_disconnect") or now,
                ended=bool(raw.get("ended", False)),
                handles=list(raw.get("handles", [])),
                connections=list(raw.get("connections", [])),
            )
            if raw.get("connection") is not None:
                session.last_disconnect = now
            self.sessions[session.id] = session
        for raw in data.get("handles", []):
            record = HandleRecord(
                handle=raw["handle"],
                session_id=raw["session"],
                issued_at=float(raw["issued_at"]),
                history=tuple(Entry.from_dict(e) for e in raw.get("history", [])),
            )
            self.handles[record.handle] = record


def setup_handle(setup: Mapping[str, Any]) -> str | None:
    """The handle a setup resumes from, or ``None`` for a new session."""
    resumption = get_field(setup, "sessionResumption")
    if not isinstance(resumption, Mapping):
        return None
    handle = get_field(resumption, "handle")
    return handle if isinstance(handle, str) and handle else None
