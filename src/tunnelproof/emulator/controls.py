"""Fault controls from Python: the same powers as the HTTP control API.

Every method acts at once; the ``wait_for_*`` methods let a test wait for an event
instead of sleeping. Connection arguments accept a connection id, or ``None`` for the
most recently opened connection that is still open.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunnelproof.emulator.admission import ClosedBy
from tunnelproof.emulator.events import Event
from tunnelproof.emulator.hub import ConnectionPeer, Hub
from tunnelproof.emulator.sessions import Session
from tunnelproof.protocol.close_codes import REASON_INVALID_ARGUMENT
from tunnelproof.protocol.errors import CloseRefusal
from tunnelproof.protocol.types import JsonDict


class UnknownConnection(LookupError):
    """No connection with that id (or no open connection at all)."""


class UnknownSession(LookupError):
    """No session with that id."""


class EmulatorControls:
    """Inspect and break a running emulator."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    # -- inspection ----------------------------------------------------------------------

    def connections(self, *, open_only: bool = False) -> list[JsonDict]:
        """Every connection (oldest first) with its token, session and latest handle."""
        return [c.to_dict() for c in self._hub.connections.values() if c.is_open or not open_only]

    def sessions(self) -> list[JsonDict]:
        """Every session with its token, connections and handles."""
        return [s.to_dict() for s in self._hub.store.sessions.values()]

    def session(self, session_id: str | None = None) -> JsonDict:
        """One session (``None``: the newest)."""
        return self._session(session_id).to_dict()

    def history(self, session_id: str | None = None) -> list[JsonDict]:
        """The server-side history of a session (``None``: the newest session)."""
        return [e.to_dict() for e in self._session(session_id).history]

    def token_ledger(self) -> list[JsonDict]:
        """Every minted token, its uses and which connection presented it."""
        return self._hub.ledger.ledger()

    def policy(self) -> JsonDict:
        """The current policy."""
        return self._hub.policy.to_dict()

    def events(self, since: int = 0, kind: str | None = None) -> list[JsonDict]:
        """Recorded events after sequence number ``since``."""
        return [e.to_dict() for e in self._hub.events.since(since, kind)]

    # -- faults --------------------------------------------------------------------------

    async def close_connection(
        self, connection: str | None = None, *, code: int = 1011, reason: str = ""
    ) -> JsonDict:
        """Close a connection with any code and reason."""
        conn = self._connection(connection)
        await conn.close(code, reason, by=ClosedBy.CONTROL)
        return conn.to_dict()

    def abort_connection(self, connection: str | None = None) -> JsonDict:
        """Drop a connection without a close frame."""
        conn = self._connection(connection)
        conn.abort()
        return conn.to_dict()

    async def send_go_away(
        self, connection: str | None = None, *, time_left: float | None = None
    ) -> JsonDict:
        """Send ``goAway`` now; the connection then closes after ``time_left`` seconds."""
        conn = self._connection(connection)
        left = self._hub.policy.go_away_lead if time_left is None else time_left
        await conn.send_go_away(left)
        return conn.to_dict()

    def set_pongs(
        self,
        *,
        delay: float | None = None,
        withhold: bool | None = None,
        connection: str | None = None,
    ) -> None:
        """Delay or withhold pongs for one connection, or for all (via the policy)."""
        if connection is not None:
            self._connection(connection).set_pongs(delay=delay, withhold=withhold)
            return
        changes: JsonDict = {}
        if delay is not None:
            changes["pong_delay"] = delay
        if withhold is not None:
            changes["withhold_pongs"] = withhold
        self._hub.update_policy(changes)

    def refuse_resumes(
        self, count: int, *, code: int | None = None, reason: str | None = None
    ) -> None:
        """Refuse the next ``count`` resumes (valid handles) with ``code``/``reason``."""
        self._hub.refusals.remaining = count
        self._hub.refusals.code = code
        self._hub.refusals.reason = reason

    def forget_resumes(self, count: int = 1) -> None:
        """Accept the next ``count`` resumes but restore no history (the "greets afresh" fault)."""
        self._hub.faults.forget_resumes = count

    def reject_next_client_message(
        self, code: int = 1007, reason: str = REASON_INVALID_ARGUMENT
    ) -> None:
        """Close the connection that sends the next ``clientContent``/``realtimeInput``/
        ``toolResponse`` with ``code``/``reason``, without applying that message."""
        self._hub.faults.reject_next = CloseRefusal(code, reason)

    def think_next_turn(self, seconds: float, session_id: str | None = None) -> str:
        """Make the model think ``seconds`` before its next answer in one session.

        Only that session's next turn is slow (``think_delay`` slows every turn of every
        session). Returns the session id; ``UnknownSession`` if there is none.
        """
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        session = self._session(session_id)
        self._hub.faults.thinking[session.id] = float(seconds)
        return session.id

    def update_policy(self, changes: Mapping[str, Any] | None = None, **fields: Any) -> JsonDict:
        """Change policy fields live (``KeyError`` for an unknown name)."""
        merged = {**(changes or {}), **fields}
        self._hub.update_policy(merged)
        return self._hub.policy.to_dict()

    def set_generation_speed(self, speed: float) -> None:
        """Pacing factor of answers (2.0 = twice real time; 0 = as fast as possible)."""
        self._hub.update_policy({"generation_speed": speed})

    # -- waiting -------------------------------------------------------------------------

    async def wait_for_event(
        self, kind: str, *, count: int = 1, timeout: float = 10.0, **match: Any
    ) -> JsonDict:
        """Wait until ``count`` events of ``kind`` (matching ``match``) have happened."""
        event: Event = await self._hub.events.wait_for(kind, count=count, timeout=timeout, **match)
        return event.to_dict()

    async def wait_for_connections(self, n: int, *, timeout: float = 10.0) -> list[JsonDict]:
        """Wait until at least ``n`` connections have completed setup since the start.

        Resumed connections count, so after a drop ``wait_for_connections(2)`` waits for
        the client's reconnect. Returns every connection.
        """

        def ready() -> bool:
            return self._hub.events.count("setup_complete") >= n

        await self._hub.events.wait_until(ready, timeout)
        return self.connections()

    async def wait_for_open(self, n: int, *, timeout: float = 10.0) -> list[JsonDict]:
        """Wait until exactly ``n`` set-up connections are open; returns them.

        ``n=0`` waits until every connection has been fully closed server-side (its
        session detached, so a resume is no longer "while the old socket is open").
        """

        def ready() -> bool:
            return self._open_count() == n

        await self._hub.events.wait_until(ready, timeout)
        return self.connections(open_only=True)

    async def wait_for_closed(self, connection: str, *, timeout: float = 10.0) -> JsonDict:
        """Wait until ``connection`` has closed; returns its final view."""
        await self._hub.events.wait_for("connection_closed", timeout=timeout, connection=connection)
        return self._hub.connections[connection].to_dict()

    def _open_count(self) -> int:
        return sum(
            1 for c in self._hub.connections.values() if c.session is not None and not c.finished
        )

    # -- lookups -------------------------------------------------------------------------

    def _connection(self, connection: str | None) -> ConnectionPeer:
        hub = self._hub
        if connection is None:
            open_ = [c for c in hub.connections.values() if c.is_open]
            if not open_:
                raise UnknownConnection("no open connection")
            return open_[-1]
        conn = hub.connections.get(connection)
        if conn is None:
            raise UnknownConnection(connection)
        return conn

    def _session(self, session_id: str | None) -> Session:
        store = self._hub.store
        if session_id is None:
            if not store.sessions:
                raise UnknownSession("no session yet")
            return list(store.sessions.values())[-1]
        session = store.sessions.get(session_id)
        if session is None:
            raise UnknownSession(session_id)
        return session
