"""The machine's phases and the public session states derived from them.

The transitions between phases are all in :mod:`tunnelproof.session.machine` (its module
docstring has the table); this module only names them, so the helpers can ask "which
phase" without importing the machine.
"""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    """The machine's phase (see the table in :mod:`tunnelproof.session.machine`)."""

    IDLE = "idle"
    FETCHING = "fetching"  # waiting for a credential
    OPENING = "opening"  # WebSocket handshake in progress
    SETUP = "setup"  # setup sent, waiting for setupComplete
    CONNECTED = "connected"
    HANDING_OVER = "handing_over"  # closing the old socket for a goAway handover
    CLOSING = "closing"  # closing for good: the app asked
    WAITING = "waiting"  # backoff / probe timer running
    FAILED = "failed"
    CLOSED = "closed"


class SessionState(StrEnum):
    """The public state of a session (``LiveSession.state``)."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    CLOSING = "closing"
    CLOSED = "closed"


_FIXED_STATES = {
    Phase.IDLE: SessionState.IDLE,
    Phase.CONNECTED: SessionState.CONNECTED,
    Phase.FAILED: SessionState.FAILED,
    Phase.CLOSING: SessionState.CLOSING,
    Phase.CLOSED: SessionState.CLOSED,
}


def public_state(phase: Phase, *, ever_connected: bool) -> SessionState:
    """The public state of ``phase`` (between connections: connecting or reconnecting)."""
    fixed = _FIXED_STATES.get(phase)
    if fixed is not None:
        return fixed
    return SessionState.RECONNECTING if ever_connected else SessionState.CONNECTING
