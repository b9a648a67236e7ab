"""Shared state of one emulator: policy, clock, tokens, sessions, connections, events.

The hub knows connections only through :class:`ConnectionPeer`, the few things other parts
(the controls, a resume taking over an old socket, the server's shutdown) ask of one, so
``hub`` does not import ``connection`` and there is no import circle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tunnelproof.emulator.admission import ClientFaults, ClosedBy, ConnState, ResumeRefusals
from tunnelproof.emulator.events import EventLog
from tunnelproof.emulator.policy import EmulatorPolicy
from tunnelproof.emulator.sessions import Session, SessionStore
from tunnelproof.emulator.tokens import TokenLedger

__all__ = ["ConnectionPeer", "Hub", "ResumeRefusals"]


class ConnectionPeer(Protocol):
    """What the hub's users need from one live connection."""

    id: str
    state: ConnState
    session: Session | None
    finished: bool
    last_heard: float

    @property
    def is_open(self) -> bool:
        """True until the socket is closed or aborted."""

    @property
    def socket_closed(self) -> bool:
        """True once the WebSocket itself is closed."""

    def to_dict(self) -> dict[str, Any]:
        """JSON view for the controls."""

    async def close(self, code: int, reason: str, *, by: ClosedBy = ClosedBy.SERVER) -> None:
        """Close with a close frame."""

    def abort(self) -> None:
        """Drop the TCP connection with no close frame."""

    async def answers_probe(self, timeout: float) -> bool:
        """Ping the client; True if it is heard from within ``timeout`` seconds."""

    async def send_go_away(self, time_left: float) -> None:
        """Send ``goAway`` now; the connection ends ``time_left`` seconds later."""

    def set_pongs(self, *, delay: float | None, withhold: bool | None) -> None:
        """Per-connection pong fault (``None`` falls back to the policy)."""


@dataclass(slots=True)
class Hub:
    """Everything the server shell, the connections and the controls share."""

    policy: EmulatorPolicy
    api_key: str
    clock: Callable[[], float]
    ledger: TokenLedger
    store: SessionStore
    events: EventLog
    connections: dict[str, ConnectionPeer] = field(default_factory=dict)
    faults: ClientFaults = field(default_factory=lambda: ClientFaults(ResumeRefusals()))
    policy_changed: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def create(cls, policy: EmulatorPolicy, api_key: str, clock: Callable[[], float]) -> Hub:
        """A hub with empty ledgers."""
        return cls(
            policy=policy,
            api_key=api_key,
            clock=clock,
            ledger=TokenLedger(policy, clock),
            store=SessionStore(policy, clock),
            events=EventLog(clock),
        )

    @property
    def refusals(self) -> ResumeRefusals:
        """The "refuse the next N resumes" fault."""
        return self.faults.refusals

    def update_policy(self, changes: dict[str, Any]) -> None:
        """Change policy fields and wake every connection's timers."""
        self.policy.update(changes)
        self.events.emit("policy_changed", changes=dict(changes))
        self.wake_timers()

    def wake_timers(self) -> None:
        """Make every connection recompute its deadlines."""
        self.policy_changed.set()
        self.policy_changed = asyncio.Event()
