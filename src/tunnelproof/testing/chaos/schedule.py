"""Seeded fault schedules for the chaos soak. Pure: no I/O, no clock.

Every session gets a list of :class:`Step` values: a conversation turn (a text, a tool
call, a spoken utterance or a long answer) and, for most steps, one fault to inject around
that turn. Kinds are dealt so that every kind appears early and often across sessions (a
session's first steps walk a rotated list of every kind), then drawn at random; the same
seed always gives the same plan.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class Fault(StrEnum):
    """Every fault the soak knows how to inject."""

    BLACKHOLE = "blackhole"
    """The proxy goes half-open for 1-60 s (time-scaled) while a reply is due."""
    RESET = "reset"
    """The proxy aborts the connection (RST both ways) shortly after a question."""
    CLOSE_1011 = "close_1011"
    """The emulator closes the connection with 1011 "Internal error occurred."."""
    GOAWAY_AT_BOUNDARY = "goaway_at_boundary"
    """``goAway`` while the conversation is idle (a handover right away)."""
    GOAWAY_MID_TURN = "goaway_mid_turn"
    """``goAway`` while the model is generating (the handover waits for the turn's end)."""
    DROP_MID_GENERATION = "drop_mid_generation"
    """The proxy resets the connection at the first words of a long answer."""
    DROP_MID_TOOL_CALL = "drop_mid_tool_call"
    """The proxy resets the connection when a tool call arrives, before it is answered."""
    REFUSED_RESUME = "refused_resume"
    """The next resume is refused with 1011 (the connection is then reset to force one)."""
    EXPIRED_HANDLE = "expired_handle"
    """The next resume is refused with 1007 invalid argument, as for an expired handle."""
    TOKEN_5XX = "token_5xx"
    """The token service answers 503 to the next 1-3 requests (then the link drops)."""
    TOKEN_429 = "token_429"
    """The token service answers 429 with ``Retry-After`` (then the link drops)."""
    TOKEN_SLOW = "token_slow"
    """The token service takes 0.5-8 s to answer (then the link drops)."""
    EMULATOR_RESTART = "emulator_restart"
    """The emulator process is restarted (global: every session lives through it)."""


PER_SESSION_FAULTS: tuple[Fault, ...] = tuple(f for f in Fault if f is not Fault.EMULATOR_RESTART)
"""Faults injected into one session at a time (the restart hits everyone)."""

TurnKind = Literal["text", "tool", "audio", "long"]

# The turn a fault needs: a mid-generation fault needs a long answer to cut into, a
# mid-tool-call fault a tool call.
_TURN_FOR: dict[Fault, TurnKind] = {
    Fault.DROP_MID_GENERATION: "long",
    Fault.GOAWAY_MID_TURN: "long",
    Fault.DROP_MID_TOOL_CALL: "tool",
}


@dataclass(frozen=True, slots=True)
class Step:
    """One turn of a session's conversation and the fault injected around it.

    ``param`` depends on the fault: seconds of blackhole, ``goAway`` time left, seconds
    the token service stalls, or how many token requests fail; ``delay`` is seconds
    between sending the turn and a reset/1011 (so some land mid-answer, some after it).
    """

    turn: TurnKind
    fault: Fault | None = None
    param: float = 0.0
    delay: float = 0.0
    pause: float = 0.5


def plan_session(
    index: int,
    *,
    seed: int,
    steps: int,
    time_scale: float,
    fault_rate: float = 0.8,
) -> list[Step]:
    """The seeded plan of session ``index``: ``steps`` turns, most with a fault.

    ``time_scale`` shrinks the long waits (a 60 s blackhole at 0.1 lasts 6 s).
    """
    rng = random.Random(f"{seed}:{index}")
    rotation = list(PER_SESSION_FAULTS)
    # Session i starts its walk at kind i: across sessions every kind comes first somewhere.
    start = index % len(rotation)
    rotation = rotation[start:] + rotation[:start]
    plan: list[Step] = []
    for n in range(steps):
        fault: Fault | None
        if n < len(rotation) and n < steps - 1:
            fault = rotation[n]
        elif rng.random() < fault_rate:
            fault = rng.choice(PER_SESSION_FAULTS)
        else:
            fault = None
        turn: TurnKind = (
            _TURN_FOR[fault]
            if fault in _TURN_FOR
            else rng.choice(("text", "text", "text", "tool", "audio"))
        )
        plan.append(_step(rng, turn, fault, time_scale))
    return plan


def _step(rng: random.Random, turn: TurnKind, fault: Fault | None, scale: float) -> Step:
    param = 0.0
    delay = 0.0
    if fault is Fault.BLACKHOLE:
        param = rng.uniform(1.0, 60.0) * scale
    elif fault in (Fault.GOAWAY_AT_BOUNDARY, Fault.GOAWAY_MID_TURN):
        param = rng.uniform(1.0, 5.0)
    elif fault is Fault.TOKEN_5XX:
        param = float(rng.randint(1, 3))
    elif fault is Fault.TOKEN_SLOW:
        param = rng.uniform(0.5, 8.0)
    elif fault in (Fault.RESET, Fault.CLOSE_1011):
        delay = rng.uniform(0.0, 0.4)
    return Step(turn, fault, param, delay, pause=rng.uniform(0.1, 0.8))


def restart_times(duration: float, restarts: int) -> list[float]:
    """When to restart the emulator: evenly inside ``duration`` seconds, never at the ends."""
    if restarts <= 0:
        return []
    return [duration * (k + 1) / (restarts + 1) for k in range(restarts)]
