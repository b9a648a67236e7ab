"""One set-up connection as both sides of its conversation see it.

:class:`~tunnelproof.emulator.listening.Listening` (the user's side) and
:class:`~tunnelproof.emulator.answering.Answering` (the model's side) act on the same
session, setup and socket; this is what they share, made once at setup.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from tunnelproof.emulator.hub import Hub
from tunnelproof.emulator.messages import SetupInfo
from tunnelproof.emulator.outbound import Outbound
from tunnelproof.emulator.sessions import Session


@dataclass(frozen=True, slots=True)
class Conversation:
    """The connection's id, the emulator's hub, the session and setup, and the send side."""

    connection_id: str
    hub: Hub
    session: Session
    info: SetupInfo
    out: Outbound
    spawn: Callable[[Coroutine[Any, Any, Any]], object]
    """Run a task the connection cancels when it ends."""

    def emit(self, kind: str, **data: Any) -> None:
        """Record an emulator event about this connection."""
        self.hub.events.emit(kind, connection=self.connection_id, **data)
