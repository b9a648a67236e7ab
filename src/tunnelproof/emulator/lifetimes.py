"""Which limit a connection reaches next, and what ``goAway`` announces. No I/O.

Four limits can end a connection (reference section 5):

* ``go_away``: due ``go_away_lead`` seconds before the connection lifetime ends;
* ``lifetime``: the connection lifetime (about 10 minutes), or the ``timeLeft`` of a
  ``goAway`` sent on demand, whichever is sooner; closes 1011 "Deadline expired ...";
* ``session_limit``: 15 min (2 min with video) from the *session's* start, without
  context-window compression;
* ``token_expired``: the ephemeral token's ``expireTime``.

Inputs are plain numbers ("seconds since the connection opened", "seconds left"), so the
driver can feed loop time or an injected clock and a test can feed anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tunnelproof.emulator.policy import EmulatorPolicy

Limit = Literal["go_away", "lifetime", "session_limit", "token_expired"]

# A goAway timer firing up to this late is just a late timer: it still announces the
# configured lead ("50s", not "49.93s"), and the close moves with it. Later than that, the
# deadline must have been moved by a live policy change and the real time left is sent.
LATE_TIMER_SLACK = 1.0


@dataclass(frozen=True, slots=True)
class NextLimit:
    """The next limit and how many seconds until it is due (0 or less: due now)."""

    what: Limit
    delay: float


def next_limit(
    policy: EmulatorPolicy,
    *,
    age: float,
    go_away_sent: bool,
    forced_close_in: float | None = None,
    session_left: float | None = None,
    token_left: float | None = None,
) -> NextLimit:
    """The soonest limit for a connection that has been open ``age`` seconds.

    ``forced_close_in`` is the time left announced by the ``goAway`` already sent (the
    connection closes then, whatever the lifetime says, so the announcement is true);
    ``session_left`` and ``token_left`` are ``None`` when that limit does not apply. Ties
    go to the earlier entry (``go_away`` before ``lifetime``), so a zero lead still
    announces.
    """
    lifetime_in = policy.connection_lifetime - age
    if forced_close_in is not None:
        lifetime_in = forced_close_in
    candidates: list[NextLimit] = []
    if not go_away_sent:
        candidates.append(NextLimit("go_away", policy.go_away_at() - age))
    candidates.append(NextLimit("lifetime", lifetime_in))
    if session_left is not None:
        candidates.append(NextLimit("session_limit", session_left))
    if token_left is not None:
        candidates.append(NextLimit("token_expired", token_left))
    return min(candidates, key=lambda c: c.delay)


def go_away_time_left(policy: EmulatorPolicy, *, age: float) -> float:
    """The ``timeLeft`` a scheduled ``goAway`` announces (the connection closes after it).

    The configured lead, unless the goAway is overdue by more than a late timer would be
    (a live policy change moved the deadline): then the real time left.
    """
    lateness = age - policy.go_away_at()
    if lateness <= LATE_TIMER_SLACK:
        return policy.go_away_lead
    return max(0.0, policy.connection_lifetime - age)
