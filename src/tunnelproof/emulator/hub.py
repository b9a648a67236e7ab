"""Shared state of one emulator: policy, clock, tokens, sessions, connections, events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunnelproof.emulator.events import EventLog
from tunnelproof.emulator.policy import EmulatorPolicy
from tunnelproof.emulator.sessions import SessionStore
from tunnelproof.emulator.tokens import TokenLedger

if TYPE_CHECKING:
    from tunnelproof.emulator.connection import LiveConnection


@dataclass(slots=True)
class ResumeRefusals:
    """The "refuse the next N resumes" fault."""

    remaining: int = 0
    code: int | None = None
    reason: str | None = None


@dataclass(slots=True)
class Hub:
    """Everything the server shell, the connections and the controls share."""

    policy: EmulatorPolicy
    api_key: str
    clock: Callable[[], float]
    ledger: TokenLedger
    store: SessionStore
    events: EventLog
    connections: dict[str, LiveConnection] = field(default_factory=dict)
    refusals: ResumeRefusals = field(default_factory=ResumeRefusals)
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

    def update_policy(self, changes: dict[str, Any]) -> None:
        """Change policy fields and wake every connection's timers."""
        self.policy.update(changes)
        self.events.emit("policy_changed", changes=dict(changes))
        self.wake_timers()

    def wake_timers(self) -> None:
        """Make every connection recompute its deadlines."""
        self.policy_changed.set()
        self.policy_changed = asyncio.Event()
