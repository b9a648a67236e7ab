"""How big and how long a chaos soak is: :class:`ChaosConfig`. Pure data."""

from __future__ import annotations

from dataclasses import dataclass

from tunnelproof.testing.chaos.schedule import PER_SESSION_FAULTS, Fault


@dataclass(slots=True)
class ChaosConfig:
    """How big and how long a soak is.

    ``time_scale`` shrinks the 1-60 s blackholes; ``restarts`` emulator restarts are
    spread over ``expected_duration`` seconds (only those that fall inside the run
    happen); session starts are spread over ``start_spread`` seconds.
    """

    sessions: int = 120
    steps: int = 14
    seed: int = 1
    time_scale: float = 0.1
    restarts: int = 2
    expected_duration: float = 150.0
    start_spread: float = 8.0
    deadline: float = 780.0
    only: tuple[int, ...] = ()
    """Run only these session indices (each keeps its seeded plan): to replay one failure."""
    faults: tuple[Fault, ...] = PER_SESSION_FAULTS
    """The per-session fault kinds dealt (the tiny soak deals the impolite ones only)."""
    reply_timeout: float = 6.0
    """The client's reply watchdog; a thinking model stays silent longer than this."""
    latency: bool = True
    """Give every session's link its seeded 100-500 ms latency."""
    kernel_every: int = 10
    """Every ``kernel_every``-th session's link crosses a network namespace (0: none)."""
    fault_rate: float = 0.8
    """Chance of a fault on a step after a session's walk of every kind."""


def planned_sessions(config: ChaosConfig) -> int:
    """How many sessions the run must finish (all, or those picked with ``only``)."""
    if not config.only:
        return config.sessions
    return len({i for i in config.only if 0 <= i < config.sessions})
