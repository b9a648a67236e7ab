"""The machine's timers: their names as an enum, and the bookkeeping of which one is live.

The machine never waits; it asks the driver for ``SetTimer(name, serial, at)`` and later
gets ``TimerFired(name, serial)``. A timer set again replaces the old one, so a late fire
of the old one carries an old serial and is ignored: :meth:`Timers.fired` answers that.
"""

from __future__ import annotations

from enum import StrEnum

from tunnelproof.session.actions import CancelTimer, SetTimer


class Timer(StrEnum):
    """What each timer bounds. Values are the names the driver sees (``TimerFired.name``)."""

    TOKEN = "token"  # the token source must answer
    CONNECT = "connect"  # TCP + TLS + WebSocket upgrade
    SETUP = "setup"  # setupComplete must arrive
    REPLY = "reply"  # some server message while a reply is owed or output flows
    STABLE = "stable"  # the connection stayed up long enough to reset the failure count
    RETRY = "retry"  # backoff or probe wait before the next attempt
    GOAWAY = "goaway"  # latest moment of a goAway handover (timeLeft - margin)
    HANDLE_GRACE = "handle_grace"  # at that moment, a short wait for the last turn's handle
    CLOSE = "close"  # our graceful close must finish
    LINK = "link"  # a link check must find evidence of life (a pong, any frame)
    PREFETCH = "prefetch"  # fetch the handover's token again after a failed prefetch


CONNECTION_TIMERS = (
    Timer.CONNECT,
    Timer.SETUP,
    Timer.REPLY,
    Timer.STABLE,
    Timer.GOAWAY,
    Timer.HANDLE_GRACE,
    Timer.CLOSE,
    Timer.LINK,
    Timer.PREFETCH,
)
"""Timers that belong to one socket: all cancelled when it is gone."""


class Timers:
    """Which timers run, with the serial of each, so stale fires are recognised."""

    __slots__ = ("_due", "_live", "_serial")

    def __init__(self) -> None:
        self._serial = 0
        self._live: dict[Timer, int] = {}
        self._due: dict[Timer, float] = {}

    def __contains__(self, name: Timer) -> bool:
        return name in self._live

    def running(self) -> tuple[Timer, ...]:
        """The timers set and not yet fired or cancelled."""
        return tuple(self._live)

    def set_by(self, name: Timer, at: float) -> SetTimer:
        """Start ``name`` to fire at ``at``, or by its earlier deadline if it is running."""
        due = self._due[name] if name in self._live else at
        return self.set(name, min(due, at))

    def set(self, name: Timer, at: float) -> SetTimer:
        """Start (or restart) ``name`` to fire at monotonic ``at``."""
        self._serial += 1
        self._live[name] = self._serial
        self._due[name] = at
        return SetTimer(name, self._serial, at)

    def cancel(self, name: Timer) -> CancelTimer | None:
        """Stop ``name``; ``None`` when it was not running (nothing to tell the driver)."""
        if self._live.pop(name, None) is None:
            return None
        return CancelTimer(name)

    def fired(self, name: str, serial: int) -> Timer | None:
        """The timer that fired, or ``None`` for a fire of a cancelled or replaced timer."""
        try:
            timer = Timer(name)
        except ValueError:
            return None
        if self._live.get(timer) != serial:
            return None
        del self._live[timer]
        return timer
