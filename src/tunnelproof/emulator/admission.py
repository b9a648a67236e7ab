"""What a client frame may do where the connection is, and whether a resume gets in. No I/O.

The connection shell asks these rules before it acts, and performs what they decide:

* :class:`ConnState`: ``awaiting_setup`` → ``open`` → ``closed`` (or ``aborted`` when the TCP
  connection was dropped without a close frame).
* :func:`check_frame_allowed`: ``setup`` first and once; anything else first, or a second
  ``setup``, is 1007 "Request contains an invalid argument.".
* :func:`check_token_alive`: an ephemeral token's ``expireTime`` ends the session.
* :func:`take_rejection`: the "reject the next client message" fault.
* :func:`decide_resume`: a handle is resolved, refused (unknown/expired → 1007; the
  session's old socket still open → 1011; the "refuse the next N resumes" fault), or the
  old socket is taken over because it has been silent for ``resume_takeover_idle``.

Time comes in as plain numbers (``idle_of`` answers "seconds since that connection was last
heard"), so a test can feed anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from tunnelproof.emulator.policy import EmulatorPolicy
from tunnelproof.emulator.sessions import (
    HandleProblem,
    HandleRecord,
    HandleRefused,
    Session,
    SessionStore,
)
from tunnelproof.protocol.errors import CloseRefusal, invalid


class ConnState(StrEnum):
    """Where one WebSocket connection is."""

    AWAITING_SETUP = "awaiting_setup"
    OPEN = "open"
    CLOSED = "closed"
    ABORTED = "aborted"

    @property
    def is_open(self) -> bool:
        """True until the socket is closed or aborted."""
        return self in (ConnState.AWAITING_SETUP, ConnState.OPEN)


class ClosedBy(StrEnum):
    """Who ended a connection (one value per kind of ending)."""

    CLIENT = "client"  # the client's close frame
    RULE = "rule"  # a protocol rule refused something (1007, 1008, 1011 ...)
    SERVER = "server"  # a lifetime, session limit or token expiry
    CONTROL = "control"  # the fault controls
    SHUTDOWN = "shutdown"  # the emulator is stopping (1001)
    ABORT = "abort"  # TCP dropped without a close frame


@dataclass(slots=True)
class ResumeRefusals:
    """The "refuse the next N resumes" fault."""

    remaining: int = 0
    code: int | None = None
    reason: str | None = None


@dataclass(slots=True)
class ClientFaults:
    """One-shot faults armed from the controls and consumed by the rules."""

    refusals: ResumeRefusals
    forget_resumes: int = 0
    """Accept the next N resumes but restore nothing (the "model greets afresh" reports)."""
    reject_next: CloseRefusal | None = None
    """Close the connection that sends the next clientContent/realtimeInput/toolResponse."""
    thinking: dict[str, float] = field(default_factory=dict)
    """Session id -> seconds the model thinks before its next answer in that session (one
    turn; overrides ``think_delay``): one slow model among many sessions."""


def check_frame_allowed(kind: str, state: ConnState) -> None:
    """Refuse (1007) a frame that is out of order for a connection in ``state``."""
    if state is ConnState.AWAITING_SETUP and kind != "setup":
        raise invalid()  # setup must come first
    if state is ConnState.OPEN and kind == "setup":
        raise invalid()  # a second setup: 1007 "Request contains an invalid argument."


def check_token_alive(now: float, expire_time: float | None, policy: EmulatorPolicy) -> None:
    """Refuse a message once the connection's token has expired (1008 by default)."""
    if expire_time is not None and now >= expire_time:
        raise CloseRefusal(policy.token_expired_close_code, policy.token_expired_close_reason)


def take_rejection(faults: ClientFaults, kind: str) -> CloseRefusal | None:
    """The armed "reject the next client message" fault, consumed, if ``kind`` triggers it."""
    if kind == "setup" or faults.reject_next is None:
        return None
    refusal, faults.reject_next = faults.reject_next, None
    return refusal


@dataclass(frozen=True, slots=True)
class ResumeGranted:
    """A resume that gets in: restore ``record`` into ``session``.

    ``takeover`` names the old connection the shell must abort first (it was silent too
    long to count as alive); ``forget`` means the resume restores nothing (a fault).
    """

    session: Session
    record: HandleRecord
    takeover: str | None = None
    idle: float | None = None
    forget: bool = False


class ResumeDenied(Exception):
    """A resume is refused: close with ``refusal``; ``problem`` names why (for the events)."""

    def __init__(self, problem: str, refusal: CloseRefusal) -> None:
        super().__init__(f"{problem}: {refusal}")
        self.problem = problem
        self.refusal = refusal


def decide_resume(
    store: SessionStore,
    handle: str,
    model: str,
    policy: EmulatorPolicy,
    faults: ClientFaults,
    idle_of: Callable[[str], float],
) -> ResumeGranted:
    """Decide a resume with ``handle`` for a setup naming ``model`` (bare id).

    ``idle_of(connection_id)`` is how long that connection has been silent (``inf`` when it
    is unknown). Consumes one armed refusal or amnesia fault when it applies.
    """
    takeover: str | None = None
    idle: float | None = None
    try:
        session, record = store.resolve(handle)
    except HandleRefused as exc:
        if exc.problem is not HandleProblem.STILL_OPEN:
            raise ResumeDenied(
                exc.problem.value,
                CloseRefusal(policy.invalid_handle_close_code, policy.invalid_handle_close_reason),
            ) from None
        session, record = store.resolve(handle, allow_open=True)
        old = session.connection_id or ""
        idle = idle_of(old)
        limit = policy.resume_takeover_idle
        if limit is None or not idle >= limit:
            raise ResumeDenied(
                exc.problem.value,
                CloseRefusal(
                    policy.resume_while_open_close_code, policy.resume_while_open_close_reason
                ),
            ) from None
        takeover = old
    refusals = faults.refusals
    if refusals.remaining > 0:
        refusals.remaining -= 1
        raise ResumeDenied(
            "fault",
            CloseRefusal(
                refusals.code or policy.refused_resume_close_code,
                refusals.reason or policy.refused_resume_close_reason,
            ),
        )
    if session.model != model:
        # The docs allow config changes on resume "except the model".
        raise ResumeDenied("model_changed", invalid())
    forget = policy.resume_restores_nothing
    if faults.forget_resumes > 0:
        faults.forget_resumes -= 1
        forget = True
    return ResumeGranted(
        session,
        record,
        takeover=takeover,
        idle=None if idle is None or math.isinf(idle) else idle,
        forget=forget,
    )
