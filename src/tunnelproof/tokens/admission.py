"""When a shed caller should come back: ``Retry-After`` sized by the backlog.

A token service that sheds a herd with a fixed ``Retry-After: 1`` (or answers 502 while
Google is down, which clients retry after a short backoff) gets the whole herd back a
second later, and again, and again: the offered load stays at the herd's size, not at what
the service can mint. :class:`Admission` instead hands every shed caller its own slot in
one virtual queue that drains at the service's ``rate``: the *n*-th caller shed is told to
come back ``n / rate`` seconds later. A herd of N callers is spread over N / rate seconds
and comes back at about ``rate`` per second, whatever the outage's length: a caller that
returns into a still-down upstream is shed again (cheaply, no upstream work) and gets a new
slot at the end of the queue. Slots do not wait for the upstream's next probe: nobody knows
when it is back, and the callers whose slots fall inside the outage cost at most ``rate``
cheap answers per second, while a restart that is over in a second or two is not made to
wait for whole extra seconds.

Two more things live here because they decide the same answer:

* **Upstream health** (a circuit breaker): after a transient upstream failure (connect
  error, timeout, 5xx, 429) the upstream counts as down; while down, only one request per
  ``probe_interval`` is let through to find out whether it is back, every other one is shed
  at once (503, no upstream work). The first success closes the breaker.
* **The header**: ``Retry-After`` has one-second resolution (RFC 9110 delta-seconds). The
  wait is rounded *down* (at least 1), so a caller comes back at most a second before its
  slot: the service lets a request wait in line for a short while (``mint_queue_timeout``)
  and tunnelproof's clients add ``uniform(0, 0.5 s)``, which together absorb that.

State is O(1) (a queue tail, not a list) and per process: behind a load balancer each
instance queues its own shed callers at its own ``rate``, and returning callers spread over
all instances. The queue is bounded by ``max_wait``: a caller is never told to wait longer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class Admission:
    """One virtual queue of shed callers and the upstream's health (see the module)."""

    __slots__ = (
        "_clock",
        "_down_since",
        "_next_probe",
        "_tail",
        "max_wait",
        "probe_interval",
        "rate",
    )

    def __init__(
        self,
        rate: float,
        *,
        probe_interval: float = 0.5,
        max_wait: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``rate``: tokens/s the service mints at most (one process); ``probe_interval``:
        seconds between upstream probes while it is down; ``max_wait``: the longest wait
        ever handed out (seconds)."""
        if rate <= 0 or probe_interval <= 0 or max_wait < 1:
            raise ValueError("rate and probe_interval must be positive, max_wait >= 1 s")
        self.rate = rate
        self.probe_interval = probe_interval
        self.max_wait = max_wait
        self._clock = clock
        self._tail = -math.inf  # the last slot handed out (clock time)
        self._down_since: float | None = None
        self._next_probe = -math.inf

    # -- upstream health ----------------------------------------------------------------

    @property
    def upstream_down(self) -> bool:
        """A transient upstream failure was seen and no success since."""
        return self._down_since is not None

    def upstream_failed(self) -> None:
        """A transient upstream failure: the upstream is down until a probe succeeds."""
        now = self._clock()
        if self._down_since is None:
            self._down_since = now
        self._next_probe = now + self.probe_interval

    def upstream_ok(self) -> None:
        """A mint succeeded: the upstream is up."""
        self._down_since = None

    def may_call_upstream(self) -> bool:
        """True if this request may go upstream: always while it is up, and one request
        per ``probe_interval`` while it is down (the probe; it takes the turn)."""
        if self._down_since is None:
            return True
        now = self._clock()
        if now < self._next_probe:
            return False
        self._next_probe = now + self.probe_interval
        return True

    # -- the queue --------------------------------------------------------------------------

    def shed(self) -> float:
        """Take the next slot for one shed caller; the seconds until it (> 0).

        Never more than ``max_wait`` away.
        """
        now = self._clock()
        slot = min(max(self._tail, now) + 1.0 / self.rate, now + self.max_wait)
        self._tail = max(self._tail, slot)
        return slot - now

    @property
    def backlog(self) -> int:
        """Shed callers still waiting for their slot (about)."""
        ahead = self._tail - self._clock()
        return max(0, math.ceil(ahead * self.rate)) if ahead > 0 else 0


def retry_after_header(wait: float) -> str:
    """``Retry-After`` for a wait of ``wait`` seconds: whole seconds, rounded down, >= 1.

    Rounded down because the client spreads its return over the second after it (see the
    module docstring): the caller then arrives within ``[floor(wait), floor(wait) + 1)``,
    which holds its slot.
    """
    return str(max(1, math.floor(wait)))
