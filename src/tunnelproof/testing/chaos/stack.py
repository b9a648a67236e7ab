"""What a chaos session driver needs from the running stack, as a Protocol.

``runner.ChaosStack`` implements it; ``driver`` depends only on this module, so the driver
and the runner do not import each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from tunnelproof.testing.chaos.gate import TokenGate


class FaultStack(Protocol):
    """The token gate and the emulator controls one session's driver injects faults with."""

    gate: TokenGate
    gate_url: str
    refused_url: str
    """A token service URL whose port refuses every connection (a service that is down)."""

    def caller(self, index: int) -> str:
        """The ``Authorization`` header of session ``index``'s user."""
        ...

    async def connection_of(self, index: int) -> str | None:
        """The emulator connection currently carrying session ``index``."""
        ...

    async def emulator_close(self, conn: str, code: int, reason: str) -> bool:
        """Close ``conn`` with ``code``/``reason``; ``False`` if it could not be done."""
        ...

    async def emulator_go_away(self, conn: str, time_left: float) -> bool:
        """Send ``goAway`` on ``conn``."""
        ...

    async def think_next_turn(self, index: int, seconds: float) -> bool:
        """Make session ``index``'s model think ``seconds`` before its next answer."""
        ...

    async def refuse_next_resume(
        self, code: int, reason: str, provoke: Callable[[], None], timeout: float = 15.0
    ) -> bool:
        """Arm "refuse the next resume" and ``provoke`` one; True once a refusal happened."""
        ...
