"""How a chaos soak is set up: how big and how long (:class:`ChaosConfig`), and what its
sessions run with (``CHAOS_*``: config, watchdogs, retry policy, outbox bounds). Pure data."""

from __future__ import annotations

from dataclasses import dataclass

from tunnelproof.protocol.config import FunctionDeclaration, LiveConfig
from tunnelproof.session.outbox import OutboxLimits
from tunnelproof.session.policy import RetryPolicy, Watchdogs
from tunnelproof.testing.chaos.schedule import PER_SESSION_FAULTS, Fault

TOOL_NAME = "check_the_weather"
CHAOS_CONFIG = LiveConfig(tools=(FunctionDeclaration(TOOL_NAME, "Reports the weather."),))
"""What every chaos session runs (and what the token service locks its tokens to): the
default model and the default AUDIO answers, as with Google; the answer checks read the
output transcript."""

CHAOS_WATCHDOGS = Watchdogs(
    setup_timeout=6.0,
    reply_timeout=6.0,
    close_timeout=1.0,
    go_away_margin=0.5,
)
"""The default watchdogs, with the setup and reply watchdogs shortened so a blackhole is
found in soak time. Token and connect budgets stay at their defaults: under a herd on a
loaded two-core box, shorter ones turn slowness into a storm of abandoned attempts."""

CHAOS_POLICY = RetryPolicy(
    max_delay=5.0,
    max_attempts_per_outage=40,
    max_attempts_per_session=None,
    stable_after=5.0,
)
"""The default policy with shorter backoff ceilings (the soak has no time for 30 s waits)."""

CHAOS_LIMITS = OutboxLimits(max_messages=16)
"""The default outbox bounds, but 16 queued messages instead of 256: the token-stall steps
send a burst while reconnecting, so the soak reaches the bound and checks it holds."""


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
