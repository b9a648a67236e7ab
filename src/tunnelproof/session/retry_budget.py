"""The retry budget: failures in this outage and this session, and when to give up.

Client contract 5 in one place, as websockets' ``process_exception`` + ``backoff()``: every
failure asks :meth:`RetryBudget.after_server_failure` or
:meth:`RetryBudget.after_offline_failure`, which answers :class:`Retry` (wait this long) or
:class:`GiveUp` (why). The numbers come from :class:`~tunnelproof.session.policy.RetryPolicy`.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

from tunnelproof.protocol.close_codes import CloseClass, CloseVerdict
from tunnelproof.session.policy import RetryPolicy

# A resume refused while the server still holds the old socket is retried at most this
# far apart (the whole wait is bounded by ``Watchdogs.stale_socket_wait``).
REFUSAL_RETRY_CEILING = 2.0


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again after ``delay`` seconds; ``offline`` says which policy chose it.

    ``planned`` marks a goAway handover's reconnect (not a failure).
    """

    delay: float
    offline: bool
    planned: bool = False


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop retrying: ``reason`` says which cap was reached."""

    reason: str

    def verdict(self) -> CloseVerdict:
        """How the session reports it (``Failed``): retryable, after ``resume()``."""
        return CloseVerdict(
            CloseClass.RETRY,
            None,
            self.reason,
            f"Reconnecting {self.reason}; call resume() to try again.",
        )


class RetryBudget:
    """Counts failures and attempts; answers retry-or-give-up."""

    __slots__ = (
        "_quick_drops",
        "last_failure_offline",
        "offline_since",
        "outage_attempts",
        "outage_failures",
        "policy",
        "quick_handovers",
        "session_failures",
    )

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.outage_failures = 0
        """Server-side failures since the last stable connection."""
        self.session_failures = 0
        """Server-side failures over the whole session (until the app resumes)."""
        self.outage_attempts = 0
        """Attempts started in this outage (the ``attempt`` of ``Reconnecting``)."""
        self.offline_since: float | None = None
        """When the network was first found gone in this outage."""
        self.last_failure_offline = False
        """The last failure was the network being gone (probe with short timeouts)."""
        self.quick_handovers = 0
        """Planned handovers in a row of connections younger than ``stable_after``."""
        self._quick_drops: deque[float] = deque()  # quick drops retried at once (budget)

    @property
    def offline(self) -> bool:
        """The network is gone, as far as this outage knows."""
        return self.offline_since is not None

    @property
    def next_attempt(self) -> int:
        """The number of the next attempt in this outage, from 1."""
        return self.outage_attempts + 1

    def after_server_failure(
        self, reason: str, rng: random.Random, retry_after: float | None = None
    ) -> Retry | GiveUp:
        """The server answered with an error: back off, or give up at a cap."""
        self.last_failure_offline = False
        failures = self.outage_failures
        self.session_failures += 1
        cap = self.policy.max_attempts_per_outage
        if cap is not None and failures >= cap:
            return GiveUp(f"gave up after {failures + 1} failed attempts in a row ({reason})")
        session_cap = self.policy.max_attempts_per_session
        if session_cap is not None and self.session_failures > session_cap:
            return GiveUp(f"gave up after {session_cap} failed attempts this session ({reason})")
        delay = self.policy.server_delay(failures, rng, retry_after)
        self.outage_failures = failures + 1
        return Retry(delay, offline=False)

    def after_offline_failure(self, reason: str, now: float, rng: random.Random) -> Retry | GiveUp:
        """The network is gone: probe at the steady interval (or back off, seed policy)."""
        if not self.policy.probe_offline:
            return self.after_server_failure(reason, rng)
        self.last_failure_offline = True
        if self.offline_since is None:
            self.offline_since = now
        limit = self.policy.max_offline_seconds
        if limit is not None and now - self.offline_since >= limit:
            return GiveUp(f"the network has been gone for over {limit:.0f} s ({reason})")
        return Retry(self.policy.offline_delay(rng), offline=True)

    def after_drop(
        self, reason: str, served: float, now: float, rng: random.Random
    ) -> Retry | GiveUp:
        """An abrupt drop of a connection that served ``served`` s: at once, or back off.

        The server did nothing wrong: the first attempt goes at once and the drop does not
        escalate the next one. A quick drop (a server that accepts and fails, or a link
        that flaps) goes at once only within ``immediate_budget`` per ``immediate_window``;
        beyond it, see :meth:`_after_quick_drop`.
        """
        policy = self.policy
        while self._quick_drops and self._quick_drops[0] <= now - policy.immediate_window:
            self._quick_drops.popleft()
        if not policy.drop_is_immediate(served, len(self._quick_drops)):
            return self._after_quick_drop(reason, rng)
        if served < policy.healthy_after:
            self._quick_drops.append(now)
        self.outage_failures = 0  # a lost connection, not a failing server
        self.last_failure_offline = False
        return Retry(0.0, offline=True)

    def _after_quick_drop(self, reason: str, rng: random.Random) -> Retry | GiveUp:
        """A quick drop beyond the budget: full jitter under ``drop_max_delay``.

        The connection completed setup, so the next attempt may well succeed: a ceiling
        escalated to 30 s would keep a session away for up to 30 s after a flapping link
        settles. The session cap still bounds a server that accepts and drops forever.
        """
        ceiling = self.policy.drop_max_delay
        if ceiling is None:
            return self.after_server_failure(reason, rng)
        self.last_failure_offline = False
        self.session_failures += 1
        session_cap = self.policy.max_attempts_per_session
        if session_cap is not None and self.session_failures > session_cap:
            return GiveUp(f"gave up after {session_cap} failed attempts this session ({reason})")
        failures = self.outage_failures
        self.outage_failures = failures + 1
        policy = self.policy
        escalated = policy.base_delay * policy.multiplier ** min(failures, 60)
        return Retry(rng.uniform(0.0, min(ceiling, escalated)), offline=False)

    def after_shed(self, retry_after: float, rng: random.Random) -> Retry:
        """A 429/503 with ``Retry-After``: a wait that does not count against the caps."""
        self.last_failure_offline = False
        return Retry(self.policy.shed_delay(retry_after, rng), offline=False)

    def after_refusal(self, refusals: int, rng: random.Random) -> Retry:
        """A resume refused (the old socket may still be open): wait, keep the handle."""
        self.last_failure_offline = False
        delay = min(REFUSAL_RETRY_CEILING, self.policy.server_delay(refusals - 1, rng))
        return Retry(delay, offline=False)

    def handed_over(self, served: float) -> None:
        """A planned handover of a connection that served ``served`` seconds."""
        young = served < self.policy.stable_after
        self.quick_handovers = self.quick_handovers + 1 if young else 0

    @property
    def handovers_left(self) -> bool:
        """Another handover may go at the next turn boundary (else: the server closes)."""
        return self.quick_handovers < self.policy.handover_budget

    def after_handover(self, rng: random.Random) -> Retry:
        """The reconnect after a handover: at once within the budget, then backed off, so
        a server that sends goAway on every connection drives no hot loop."""
        over = self.quick_handovers - self.policy.handover_budget
        delay = self.policy.server_delay(over - 1, rng) if over > 0 else 0.0
        return Retry(delay, offline=False, planned=True)

    def attempt_started(self) -> None:
        """An attempt starts (a credential is fetched or reused)."""
        self.outage_attempts += 1

    def socket_opened(self) -> None:
        """A handshake completed (only the seed's policy resets the count here)."""
        if self.policy.reset_on_open:
            self.outage_failures = 0

    def connected(self) -> None:
        """``setupComplete``: the outage is over (failures reset once stable)."""
        self.offline_since = None
        self.last_failure_offline = False
        self.outage_attempts = 0
        if self.policy.stable_after <= 0:
            self.outage_failures = 0

    def stable(self) -> None:
        """The connection stayed up ``stable_after`` seconds: failures start over."""
        self.outage_failures = 0
        self.quick_handovers = 0

    def app_resumed(self) -> None:
        """The app asked to try again after ``Failed``: a new budget."""
        self.outage_failures = 0
        self.session_failures = 0
        self.offline_since = None
