"""When a shed caller should come back: ``Retry-After`` sized by the backlog.

A token service that sheds a herd with a fixed ``Retry-After: 1`` (or answers 502 while
Google is down, which clients retry after a short backoff) gets the whole herd back a
second later, and again, and again: the offered load stays at the herd's size, not at what
the service can mint. :class:`Admission` instead hands every shed caller its own slot in
one virtual queue that drains at the service's ``rate``: the *n*-th caller shed is told to
come back ``n / rate`` seconds later. A herd of N callers is spread over N / rate seconds
and comes back at about ``rate`` per second, whatever the outage's length: a caller that
returns into a still-down upstream is shed again (cheaply, no upstream work) and gets a new
slot at the end of the queue.

While the upstream is down, slots are sized by what the service knows of it:

* no slot before its next probe (see below): a caller that came back earlier could only
  be shed again. The queue starts just after the probe and still drains at ``rate``, so a
  down upstream is offered at most ``rate`` cheap requests per second, and once a probe
  finds it back the callers behind it are served in turn;
* no slot sooner than ``first_wait`` (1 s) after the upstream went down. A restart drops
  every client at once and their first attempts all arrive within about a second; their
  second wave then falls outside that second (the most a herd offers in one second stays
  the herd, once), and a restart is seldom over much sooner (the emulator's takes 1.1 s).

Nobody knows when the upstream will be back, so slots are not held back any longer than
that: a restart that is over in a second is not made to wait for whole extra seconds.

Two more things live here because they decide the same answer:

* **Upstream health** (a circuit breaker): after a transient upstream failure (connect
  error, timeout, 5xx, 429) the upstream counts as down; while down, only one request per
  ``probe_interval`` is let through to find out whether it is back, every other one is shed
  at once (503, no upstream work). The first success closes the breaker.
* **The headers**: ``Retry-After`` has one-second resolution (RFC 9110 delta-seconds), too
  coarse for slots 2.5 ms apart and for a restart that is over in a second. The answer
  carries the slot twice: ``retry-after-ms`` (milliseconds, rounded up: the convention the
  OpenAI and Azure SDKs read before ``Retry-After``), which tunnelproof's clients prefer,
  and ``Retry-After`` in whole seconds rounded *up* (at least 1), so a client that reads
  only the standard header never comes back before its slot.

State is O(1) (a queue tail, not a list) and per process: behind a load balancer each
instance queues its own shed callers at its own ``rate``, and returning callers spread over
all instances. The queue is bounded by ``max_wait``: a caller is never told to wait longer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

DEFAULT_PROBE_INTERVAL = 0.25
"""Seconds between upstream probes while it is down: a restart that is over is found within
a quarter of a second, at the cost of four upstream attempts a second while it is not."""


class Admission:
    """One virtual queue of shed callers and the upstream's health (see the module)."""

    __slots__ = (
        "_clock",
        "_down_since",
        "_next_probe",
        "_tail",
        "first_wait",
        "max_wait",
        "probe_interval",
        "rate",
    )

    def __init__(
        self,
        rate: float,
        *,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
        first_wait: float = 1.0,
        max_wait: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``rate``: tokens/s the service mints at most (one process); ``probe_interval``:
        seconds between upstream probes while it is down; ``first_wait``: no slot sooner
        than this after the upstream went down; ``max_wait``: the longest wait ever handed
        out (seconds)."""
        if rate <= 0 or probe_interval <= 0 or max_wait < 1:
            raise ValueError("rate and probe_interval must be positive, max_wait >= 1 s")
        if not 0 <= first_wait <= max_wait:
            raise ValueError("first_wait must be within [0, max_wait]")
        self.rate = rate
        self.probe_interval = probe_interval
        self.first_wait = first_wait
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

    def shed(self, not_before: float = 0.0) -> float:
        """Take the next slot for one shed caller; the seconds until it (> 0).

        The slot is at least ``not_before`` seconds away (a backlog the queue does not
        know of: see :func:`overload_wait`). While the upstream is down it is after its
        next probe and at least ``first_wait`` after it went down. Never more than
        ``max_wait`` away.
        """
        now = self._clock()
        start = max(self._tail, now + not_before)
        if self._down_since is not None:
            start = max(start, self._next_probe, self._down_since + self.first_wait)
        slot = min(start + 1.0 / self.rate, now + self.max_wait)
        self._tail = max(self._tail, slot)
        return slot - now

    @property
    def backlog(self) -> int:
        """Shed callers still waiting for their slot (about)."""
        ahead = self._tail - self._clock()
        return max(0, math.ceil(ahead * self.rate)) if ahead > 0 else 0


_EPSILON = 1e-6  # float noise (a slot 1.0000000002 s away is 1 s away, not 2)

OVERLOAD_MIN_WAIT = 1.0
"""The shortest wait handed to a caller shed because every mint slot stayed busy (s)."""


def overload_wait(waiting: int, rate: float) -> float:
    """How far away the slot of a caller shed because every mint slot stayed busy must be
    at least: the line still waiting for a slot, at ``rate``, and never under
    ``OVERLOAD_MIN_WAIT``.

    The virtual queue only knows the callers it shed; this one was shed because the service
    is behind by work it cannot size (its line, its real rate, which a busy CPU puts below
    ``admit_rate``). Sent back sooner, such callers return into the same line and are shed
    again: measured with 500 sessions on a starved CPU, callers told "3 ms" (an empty
    queue) came back ten times a second and kept the service overloaded for half a minute.
    """
    return max(OVERLOAD_MIN_WAIT, waiting / rate)


RETRY_AFTER_MS = "retry-after-ms"
"""The sub-second companion of ``Retry-After`` (milliseconds; not in an RFC: the convention
of Azure's services, read first by the OpenAI and Azure SDKs and by tunnelproof's clients)."""


def retry_after_header(wait: float) -> str:
    """``Retry-After`` for a wait of ``wait`` seconds: whole seconds, rounded up, >= 1.

    Rounded up so that a client that reads only this header never comes back before its
    slot (RFC 9110: the time to wait *at least*); tunnelproof's clients read
    ``retry-after-ms``.
    """
    return str(max(1, math.ceil(wait - _EPSILON)))


def retry_after_ms_header(wait: float) -> str:
    """``retry-after-ms`` for a wait of ``wait`` seconds: whole milliseconds, rounded up, >= 1."""
    return str(max(1, math.ceil(wait * 1000.0 - _EPSILON)))


def retry_after_headers(wait: float) -> dict[str, str]:
    """Both headers for a wait of ``wait`` seconds (see the module docstring)."""
    return {"Retry-After": retry_after_header(wait), RETRY_AFTER_MS: retry_after_ms_header(wait)}
