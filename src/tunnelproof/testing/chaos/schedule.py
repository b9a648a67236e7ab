"""Seeded fault schedules for the chaos soak. Pure: no I/O, no clock.

Every session gets a list of :class:`Step` values: a conversation turn (a text, a tool
call, a spoken utterance or a long answer) and, for most steps, one fault to inject around
that turn. Kinds are dealt so that every kind appears early and often across sessions (a
session's first steps walk a rotated list of every kind, the sessions' walks tiling it),
then drawn at random; the same seed always gives the same plan.

The soak is impolite (issue 13): besides link and server faults, users talk over answers
(:attr:`Fault.OVERLAPPING_TURNS`), models think longer than the reply watchdog
(:attr:`Fault.SLOW_MODEL`), token services refuse connections for a while, servers send
``goAway`` on every connection (:attr:`Fault.GOAWAY_LOOP`), speech goes into a kernel
blackhole, and every session's link has its own 100-500 ms latency
(:func:`link_latency_ms`).
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
    OVERLAPPING_TURNS = "overlapping_turns"
    """1-3 follow-up texts sent back to back while a long answer is arriving, then (half
    the time) the link is reset: each follow-up interrupts the answer before it."""
    SLOW_MODEL = "slow_model"
    """The model thinks longer than the reply watchdog (up to 30 s) before answering."""
    TOKEN_REFUSED = "token_refused"
    """The token service refuses connections (ECONNREFUSED) for 1-6 s (then the link drops)."""
    GOAWAY_LOOP = "goaway_loop"
    """For 2-6 s every new connection of the session gets ``goAway`` at once."""
    KERNEL_BLACKHOLE = "kernel_blackhole"
    """Speech streamed into an nftables blackhole on the session's veth (needs root)."""
    EMULATOR_RESTART = "emulator_restart"
    """The emulator process is restarted (global: every session lives through it)."""


PER_SESSION_FAULTS: tuple[Fault, ...] = tuple(f for f in Fault if f is not Fault.EMULATOR_RESTART)
"""Faults injected into one session at a time (the restart hits everyone)."""

IMPOLITE_FAULTS: tuple[Fault, ...] = (
    Fault.OVERLAPPING_TURNS,
    Fault.SLOW_MODEL,
    Fault.TOKEN_SLOW,
    Fault.TOKEN_429,
    Fault.TOKEN_REFUSED,
    Fault.GOAWAY_LOOP,
    Fault.KERNEL_BLACKHOLE,
    Fault.DROP_MID_TOOL_CALL,
)
"""The steps of issue 13's impolite user (the tiny soak in ``make test`` runs these)."""

POLITE_FAULTS: tuple[Fault, ...] = tuple(
    f
    for f in PER_SESSION_FAULTS
    if f
    not in (
        Fault.OVERLAPPING_TURNS,
        Fault.SLOW_MODEL,
        Fault.TOKEN_REFUSED,
        Fault.GOAWAY_LOOP,
        Fault.KERNEL_BLACKHOLE,
    )
)
"""The link and server faults of the first soak (the reduced soak in ``make test``)."""

KERNEL_ONLY: frozenset[Fault] = frozenset({Fault.KERNEL_BLACKHOLE})
"""Faults only a session whose link crosses a network namespace can take."""

TurnKind = Literal["text", "tool", "audio", "long"]

# The turn a fault needs: a mid-generation fault needs a long answer to cut into, a
# mid-tool-call fault a tool call.
_TURN_FOR: dict[Fault, TurnKind] = {
    Fault.DROP_MID_GENERATION: "long",
    Fault.GOAWAY_MID_TURN: "long",
    Fault.DROP_MID_TOOL_CALL: "tool",
    Fault.OVERLAPPING_TURNS: "long",
    Fault.KERNEL_BLACKHOLE: "audio",
}


@dataclass(frozen=True, slots=True)
class Step:
    """One turn of a session's conversation and the fault injected around it.

    ``param`` depends on the fault: seconds of blackhole, ``goAway`` time left, seconds
    the token service stalls or refuses, how many token requests fail, seconds the model
    thinks, seconds of a goAway loop, or how many follow-ups overlap an answer; ``delay``
    is seconds between sending the turn and a reset/1011 (so some land mid-answer, some
    after it), or for overlapping turns between the follow-ups and a reset (-1: none).
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
    kinds: tuple[Fault, ...] = PER_SESSION_FAULTS,
    kernel: bool = False,
    reply_timeout: float = 6.0,
) -> list[Step]:
    """The seeded plan of session ``index``: ``steps`` turns, most with a fault (for a
    ``kernel`` session, a kernel blackhole first).

    ``time_scale`` shrinks the long waits (a 60 s blackhole at 0.1 lasts 6 s); a thinking
    model is not scaled below the client's ``reply_timeout``, or it would not be slow.
    ``kinds`` are the faults to deal; ``kernel`` says whether this session's link crosses
    a network namespace (only then can it take a kernel blackhole).
    """
    rng = random.Random(f"{seed}:{index}")
    rotation = [f for f in kinds if f not in KERNEL_ONLY]
    kernel_kinds = [f for f in kinds if f in KERNEL_ONLY] if kernel else []
    pool = rotation + kernel_kinds
    if not pool:
        raise ValueError("no fault kind left to deal")
    # Session i starts its walk where session i-1's ended: across sessions the walks tile
    # the list, so every kind comes first somewhere even with few sessions and steps.
    if rotation:
        start = (index * max(1, steps - 1)) % len(rotation)
        rotation = rotation[start:] + rotation[:start]
    plan: list[Step] = []
    for n in range(steps):
        fault: Fault | None
        walk = n - len(kernel_kinds)
        if n < len(kernel_kinds):
            # A session whose link crosses a namespace is there for its kernel blackhole.
            fault = kernel_kinds[n]
        elif walk < len(rotation) and n < steps - 1:
            fault = rotation[walk]
        elif rng.random() < fault_rate:
            fault = rng.choice(pool)
        else:
            fault = None
        turn: TurnKind = (
            _TURN_FOR[fault]
            if fault in _TURN_FOR
            else rng.choice(("text", "text", "text", "tool", "audio"))
        )
        plan.append(_step(rng, turn, fault, time_scale, reply_timeout))
    return plan


def link_latency_ms(index: int, *, seed: int) -> tuple[float, float]:
    """Session ``index``'s one-way link latency and jitter in ms: 100-500 ms, 10% jitter."""
    rng = random.Random(f"latency:{seed}:{index}")
    latency = rng.uniform(100.0, 500.0)
    return latency, latency / 10


def _step(
    rng: random.Random, turn: TurnKind, fault: Fault | None, scale: float, reply_timeout: float
) -> Step:
    param = 0.0
    delay = 0.0
    # Token stalls and outages, goAway loops: seconds at the default time scale (0.1),
    # shorter below it (the tiny soak in ``make test``).
    seconds = min(1.0, scale * 10)
    if fault is Fault.BLACKHOLE:
        param = rng.uniform(1.0, 60.0) * scale
    elif fault is Fault.KERNEL_BLACKHOLE:
        param = rng.uniform(1.0, 120.0) * scale
    elif fault in (Fault.GOAWAY_AT_BOUNDARY, Fault.GOAWAY_MID_TURN):
        param = rng.uniform(1.0, 5.0)
    elif fault is Fault.TOKEN_5XX:
        param = float(rng.randint(1, 3))
    elif fault is Fault.TOKEN_SLOW:
        param = rng.uniform(0.5, 8.0) * seconds
    elif fault is Fault.TOKEN_REFUSED:
        param = rng.uniform(1.0, 6.0) * seconds
    elif fault is Fault.SLOW_MODEL:
        # Always longer than the reply watchdog, up to 30 s: a silent model, healthy link.
        param = min(30.0, rng.uniform(1.2, 5.0) * reply_timeout)
    elif fault is Fault.GOAWAY_LOOP:
        param = rng.uniform(2.0, 6.0) * seconds
    elif fault is Fault.OVERLAPPING_TURNS:
        param = float(rng.randint(1, 3))
        delay = rng.uniform(0.0, 0.6) if rng.random() < 0.5 else -1.0
    elif fault in (Fault.RESET, Fault.CLOSE_1011):
        delay = rng.uniform(0.0, 0.4)
    return Step(turn, fault, param, delay, pause=rng.uniform(0.1, 0.8))


def restart_times(duration: float, restarts: int) -> list[float]:
    """When to restart the emulator: evenly inside ``duration`` seconds, never at the ends."""
    if restarts <= 0:
        return []
    return [duration * (k + 1) / (restarts + 1) for k in range(restarts)]
