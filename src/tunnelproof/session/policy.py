"""Retry and watchdog policies: numbers with reasons, no I/O.

Two kinds of failure get two policies (client contract point 5):

* **the network is gone** (DNS fails, host unreachable, connection refused, connect
  timeout, token source offline): an attempt costs the server nothing, so probe at a short
  steady interval with a little jitter. The conversation is then back within about one
  interval of the tunnel's end however long the tunnel was. By default this never gives up.
* **the server answers with an error** (close 1011, HTTP 5xx/429, setup stalls): back off
  exponentially with *full* jitter (``uniform(0, base * multiplier**n)``, AWS's "full
  jitter", which spreads a herd of clients best), honour ``Retry-After``, and cap attempts
  per outage and per session.

The failure counter is reset only after a connection stayed up ``stable_after`` seconds,
never on socket open (the seed reset it on open, so a server that accepts and then
refuses looped forever at its shortest delay).

Three kinds of "try again" are *not* server failures (issue 15):

* **an abrupt drop** (1006, a reset, a dead link found by a watchdog) of a connection that
  reached ``setupComplete``: the server did nothing wrong, so the first attempt goes at
  once and the drop does not escalate the next one. A connection dropped sooner than
  ``healthy_after`` after its setup looks like a server that accepts and then fails:
  such quick drops go at once only within a budget (``immediate_budget`` per
  ``immediate_window``) and back off with full jitter beyond it, so a crash-looping
  server never meets a hot loop. That backoff's ceiling stops at ``drop_max_delay``
  (2 s), not ``max_delay``: each dropped connection completed its setup, so the server
  answers and a link that flaps (reset each time it comes back) is as likely; once it
  settles the session must be back within a second or two, not after a 30 s ceiling
  escalated during the flapping. Such drops count against the per-session cap only.
* **a shed answer with ``Retry-After``** (429/503): the server said when to come back; the
  wait is honoured (plus a little jitter) and does not count against the caps, so a herd
  is served in turn instead of giving up. A sub-second wait (``retry-after-ms``) is the
  server's own slot for this client: the jitter is a tenth of it, not half a second, and
  no wait is shorter than ``SHED_MIN_DELAY`` (so a server that keeps answering "1 ms"
  cannot drive a hot loop: at most ten attempts a second, each one a served HTTP answer).
* **a planned handover** (goAway): immediate, within ``handover_budget`` handovers of
  connections younger than ``stable_after``; beyond that, the session stays on the
  connection until the server closes it (a backstop at ``timeLeft + close_timeout``), so
  an answer can still arrive, and waits a backoff before the next one, so a server that
  sends goAway on every connection can drive neither a hot loop nor a livelock.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from tunnelproof.protocol.types import HANDLE_VALIDITY_SECONDS

JitterMode = Literal["full", "additive"]

SHED_MIN_DELAY = 0.1
"""The shortest wait after a shed answer (seconds), whatever the server asked for."""
SHED_JITTER_FRACTION = 0.1
"""Jitter on a precise (sub-second) wait: ``uniform(0, fraction × wait)``, at least
``SHED_MIN_JITTER`` and at most ``base_delay``."""
SHED_MIN_JITTER = 0.02


_WATCHDOG_POSITIVE = (
    "token_timeout",
    "connect_timeout",
    "probe_connect_timeout",
    "setup_timeout",
    "reply_timeout",
    "link_check_timeout",
    "unacked_dead_after",
    "close_timeout",
    "handle_validity",
    "tcp_user_timeout",
)
_WATCHDOG_MAY_BE_ZERO = ("stale_socket_wait", "go_away_margin", "handover_handle_grace")


def _finite(obj: object, *names: str) -> None:
    """``ValueError`` naming the first of ``names`` that is a nan or infinite number."""
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, (int, float)) and not math.isfinite(value):
            raise ValueError(f"{type(obj).__name__}.{name} must be a finite number, got {value!r}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try again after a failure, and when to stop.

    Attributes:
        offline_interval: seconds between probes while the network is gone. 0.75 s keeps
            recovery within about a second of the network's return; probes are cheap (a
            failed DNS lookup or a SYN) and cost the server nothing.
        offline_jitter: probes are spread by ``± offline_jitter`` seconds so a train full
            of phones leaving a tunnel does not dial in lockstep.
        max_offline_seconds: give up after the network has been gone this long. ``None``
            (default) never gives up: a tunnel is not a reason to lose the conversation.
        base_delay: the first server-error backoff ceiling (seconds).
        multiplier: growth of the ceiling per consecutive server failure.
        max_delay: the largest ceiling.
        jitter: ``"full"``: ``uniform(0, ceiling)``; ``"additive"``: ``ceiling +
            uniform(0, additive_jitter)`` (only for reproducing the seed).
        additive_jitter: see ``jitter``.
        max_attempts_per_outage: server-error failures in a row (without a stable
            connection in between) before giving up with ``Failed``. ``None``: no cap.
        max_attempts_per_session: server-error failures over the whole session. ``None``:
            no cap. This only bites a server that hangs up as fast as we dial.
        stable_after: seconds a connection must stay up before the failure counter resets.
        reset_on_open: reset the counter as soon as a socket opens (the seed's bug; only
            ``SEED_POLICY`` sets it).
        probe_offline: treat network-gone failures with the probe interval. ``False`` sends
            them through the server-error backoff and its caps (the seed's behaviour).
        healthy_after: seconds a connection must have served (after ``setupComplete``)
            for an abrupt drop of it to be retried at once whatever came before; a drop
            sooner is a *quick* drop (a server that accepts and then fails?).
        immediate_budget: quick drops retried at once per ``immediate_window`` seconds;
            beyond it they back off like server errors. ``0`` retries no quick drop at
            once (the seed's policy backs off every drop).
        immediate_window: see ``immediate_budget``.
        drop_max_delay: the largest backoff ceiling for quick drops beyond the budget
            (full jitter, so one attempt per ``drop_max_delay / 2`` s on average, counted
            against ``max_attempts_per_session`` only). ``None`` backs them off like
            server errors (``max_delay`` and both caps; the seed's policy).
        handover_budget: planned handovers (goAway) in a row from connections younger
            than ``stable_after`` that go at once; later ones stay until the server closes
            (a backstop timer at ``timeLeft + close_timeout``) and then wait a backoff.
        shed_is_wait: a 429/503 with ``Retry-After`` is a wait, not a failure (``False``
            counts it against the caps, as the seed did).
    """

    offline_interval: float = 0.75
    offline_jitter: float = 0.15
    max_offline_seconds: float | None = None
    base_delay: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 30.0
    jitter: JitterMode = "full"
    additive_jitter: float = 0.0
    max_attempts_per_outage: int | None = 12
    max_attempts_per_session: int | None = 100
    stable_after: float = 10.0
    reset_on_open: bool = False
    probe_offline: bool = True
    healthy_after: float = 0.25
    immediate_budget: int = 5
    immediate_window: float = 60.0
    drop_max_delay: float | None = 2.0
    handover_budget: int = 3
    shed_is_wait: bool = True

    def __post_init__(self) -> None:
        # nan passes every comparison below; a nan or infinite delay is a timer that fires
        # at once or never, so refuse it by name first.
        _finite(self, "offline_interval", "offline_jitter", "base_delay", "multiplier")
        _finite(self, "max_delay", "additive_jitter", "stable_after", "healthy_after")
        _finite(self, "immediate_window", "max_offline_seconds", "drop_max_delay")
        if self.offline_interval <= 0 or self.base_delay <= 0 or self.max_delay <= 0:
            raise ValueError("retry delays must be positive")
        if self.jitter not in ("full", "additive"):
            raise ValueError(f"jitter must be 'full' or 'additive', got {self.jitter!r}")
        if self.additive_jitter < 0 or self.stable_after < 0:
            raise ValueError("additive_jitter and stable_after must be >= 0")
        if self.max_offline_seconds is not None and self.max_offline_seconds <= 0:
            raise ValueError("max_offline_seconds must be positive (or None)")
        for name in ("max_attempts_per_outage", "max_attempts_per_session"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 (or None: no limit), got {value!r}")
        if self.offline_jitter < 0 or self.offline_jitter >= self.offline_interval:
            raise ValueError("offline_jitter must be in [0, offline_interval)")
        if self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")
        if self.healthy_after < 0 or self.immediate_window <= 0:
            raise ValueError("healthy_after must be >= 0 and immediate_window > 0")
        if self.immediate_budget < 0 or self.handover_budget < 0:
            raise ValueError("budgets must be >= 0")
        if self.drop_max_delay is not None and self.drop_max_delay <= 0:
            raise ValueError("drop_max_delay must be positive (or None)")

    def offline_delay(self, rng: random.Random) -> float:
        """Delay before the next probe while the network is gone."""
        return self.offline_interval + rng.uniform(-self.offline_jitter, self.offline_jitter)

    def server_delay(
        self, failures: int, rng: random.Random, retry_after: float | None = None
    ) -> float:
        """Delay after the ``failures``-th (0-based) consecutive server failure.

        ``Retry-After`` is a floor: the server said when it can take us again; a little
        jitter on top keeps the herd from returning on the same tick.
        """
        ceiling = min(self.max_delay, self.base_delay * self.multiplier ** min(failures, 60))
        if self.jitter == "full":
            delay = rng.uniform(0.0, ceiling)
        else:
            delay = ceiling + rng.uniform(0.0, self.additive_jitter)
        if retry_after is not None and retry_after > 0:
            delay = max(delay, retry_after + rng.uniform(0.0, self.base_delay))
        return delay

    def shed_delay(self, retry_after: float, rng: random.Random) -> float:
        """Delay after a shed answer (429/503 with ``Retry-After``): a wait, not a failure.

        The server said when it can take us; the jitter on top keeps a herd from returning
        on one tick. A whole number of seconds (``Retry-After``) is coarse: the client's
        real slot may be anywhere in the second after it, so the jitter is up to
        ``base_delay``. A fractional one (``retry-after-ms``) is the client's own slot
        (tunnelproof's service spreads the herd itself, one slot per client): the jitter
        is ``SHED_JITTER_FRACTION`` of it (between ``SHED_MIN_JITTER`` and ``base_delay``),
        enough to part clients given the same slot by two instances behind one balancer.
        Never less than ``SHED_MIN_DELAY``.
        """
        wait = max(SHED_MIN_DELAY, retry_after)
        if float(retry_after).is_integer():
            spread = self.base_delay
        else:
            spread = min(self.base_delay, max(SHED_MIN_JITTER, SHED_JITTER_FRACTION * wait))
        return wait + rng.uniform(0.0, spread)

    def drop_is_immediate(self, served: float, recent_quick: int) -> bool:
        """Whether the first attempt after an abrupt drop goes at once.

        ``served`` is how long the dropped connection served after ``setupComplete``;
        ``recent_quick`` how many quick drops were retried at once in the last
        ``immediate_window`` seconds.
        """
        if self.reset_on_open:
            return False  # the seed's policy keeps the seed's timing
        return served >= self.healthy_after or recent_quick < self.immediate_budget


DEFAULT_POLICY = RetryPolicy()
"""The policy :class:`~tunnelproof.session.live_session.LiveSession` uses by default."""

SEED_POLICY = RetryPolicy(
    offline_interval=1.0,
    offline_jitter=0.0,
    base_delay=1.0,
    multiplier=2.0,
    max_delay=1e9,
    jitter="additive",
    additive_jitter=0.5,
    max_attempts_per_outage=6,
    max_attempts_per_session=None,
    stable_after=0.0,
    reset_on_open=True,
    probe_offline=False,
    immediate_budget=0,
    drop_max_delay=None,
    shed_is_wait=False,
)
"""The seed's policy: ``1 s · 2ⁿ + uniform(0, 0.5 s)``, six tries, then give up for good.

Network-gone and server failures share the backoff, and the counter resets when a socket
opens. Benchmarks run it through the same client to compare with :data:`DEFAULT_POLICY`.
(The seed's *code* also stops retrying after a failed token fetch; that is a bug of its
driver, not of its policy, and is not reproduced.)
"""


@dataclass(frozen=True, slots=True)
class Watchdogs:
    """Timeouts that find dead links and stuck steps (client contract point 6).

    The kernel finds most half-open links (the driver sets ``TCP_USER_TIMEOUT`` and TCP
    keepalive); these application-level timers cover what the kernel cannot see: a server
    that accepts TCP but never answers setup, or a link that goes quiet while a reply is
    due. None of them uses WebSocket pings: Gemini's pongs can take 8-30 s, so ping
    timeouts raise false alarms.

    Attributes:
        token_timeout: a token fetch taking longer counts as the network being gone.
            While the network is gone, fetches start with ``probe_connect_timeout`` (a
            request sent into a tunnel only completes at a retransmit) but a backend
            known to be slow gets twice its last observed answer time, and each fetch
            that timed out doubles the next one's allowance up to ``token_timeout``: a
            slow backend is always let answer (see :meth:`offline_token_timeout`).
        connect_timeout: TCP + TLS + WebSocket upgrade of a normal attempt.
        probe_connect_timeout: the same while probing a gone network: short, because a
            connect started inside the tunnel only completes at the next SYN retransmit
            (1, 3, 7 s ...), and a fresh probe is faster than waiting for it.
        setup_timeout: ``setupComplete`` must arrive this long after the socket opened.
        reply_timeout: when a reply is due (the user finished a turn, or answered a tool
            call) or model output is flowing (until ``generationComplete``) and no server
            message arrived for this long, the link is *checked*, not torn down: silence
            alone is no evidence (a model may think for 30 s and more). The driver asks
            the kernel (``TCP_INFO``: data unacknowledged for long is a dead link) and
            sends a WebSocket ping; any inbound byte proves the link alive. Counted from
            the last server message or the oldest reply owed: a new question never
            postpones it.
        link_check_timeout: how long that check may take before the link counts as dead:
            no inbound byte (pong or message) in this long after the check started.
            Gemini's pongs are known to take 8-30 s, hence the generous default.
        unacked_dead_after: the kernel holding sent data unacknowledged this long (and
            retransmitting) is a dead link, whatever the model does.
        stale_socket_wait: a resume the server refuses (closed before ``setupComplete``,
            not with 1007) is retried with the handle kept for this long: the server most
            likely still holds the session's old half-open socket and refuses until it
            notices it is dead. Only then is the handle given up for a fresh session.
        close_timeout: a graceful close taking longer is turned into an abort.
        go_away_margin: a goAway handover happens at the latest ``timeLeft - margin``.
        handover_handle_grace: when that deadline comes right after a turn completed, the
            handover waits this much longer for the turn's resumable handle (it arrives
            some 20-70 ms after ``turnComplete``) instead of resuming from an older one.
        handle_validity: seconds a stored handle stays usable after the last disconnect.
        tcp_user_timeout: ``TCP_USER_TIMEOUT`` for the driver's socket (seconds).
        keepalive_idle / keepalive_interval / keepalive_count: TCP keepalive for the driver.
    """

    token_timeout: float = 10.0
    connect_timeout: float = 10.0
    probe_connect_timeout: float = 3.0
    setup_timeout: float = 10.0
    reply_timeout: float = 20.0
    link_check_timeout: float = 30.0
    unacked_dead_after: float = 4.0
    stale_socket_wait: float = 30.0
    close_timeout: float = 2.0
    go_away_margin: float = 5.0
    handover_handle_grace: float = 0.25
    handle_validity: float = HANDLE_VALIDITY_SECONDS
    tcp_user_timeout: float = 5.0
    keepalive_idle: int = 2
    keepalive_interval: int = 1
    keepalive_count: int = 3

    def __post_init__(self) -> None:
        # A zero, negative or nan timeout made the session never connect (a token fetch
        # "timed out" at once, or setupComplete was never waited for), silently.
        _finite(self, *_WATCHDOG_POSITIVE, *_WATCHDOG_MAY_BE_ZERO)
        for name in _WATCHDOG_POSITIVE:
            if getattr(self, name) <= 0:
                raise ValueError(f"Watchdogs.{name} must be positive, got {getattr(self, name)!r}")
        for name in _WATCHDOG_MAY_BE_ZERO:
            if getattr(self, name) < 0:
                raise ValueError(f"Watchdogs.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("keepalive_idle", "keepalive_interval", "keepalive_count"):
            if getattr(self, name) < 1:
                raise ValueError(f"Watchdogs.{name} must be >= 1, got {getattr(self, name)!r}")

    def offline_token_timeout(self, last_fetch: float | None, timeouts_in_row: int) -> float:
        """The token fetch allowance while the network is gone.

        ``last_fetch`` is how long the last successful fetch took (``None`` before any),
        ``timeouts_in_row`` how many offline fetches in a row timed out.
        """
        allowance = self.probe_connect_timeout
        if last_fetch is not None:
            allowance = max(allowance, 2.0 * last_fetch + 0.5)
        allowance *= 2.0 ** min(timeouts_in_row, 16)
        return min(self.token_timeout, allowance)


DEFAULT_WATCHDOGS = Watchdogs()
