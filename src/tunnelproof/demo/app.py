"""``run_demo``: start the stack, play the journey with a live view, judge, stop everything.

Exit codes: 0 the promise held; 1 it did not (the verdict says which check failed); 2 the
demo could not run (one sentence says why and what to do).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from rich.console import Console, RenderableType
from rich.live import Live

from tunnelproof.demo.journey import train_journey
from tunnelproof.demo.model import DemoState
from tunnelproof.demo.preflight import FirstThen, PreflightError, first_credential
from tunnelproof.demo.processes import ChildStartError
from tunnelproof.demo.runner import CONNECT_TIMEOUT, JourneyRunner
from tunnelproof.demo.stack import DemoStack, StackOptions
from tunnelproof.demo.terminal import SynchronizedOutput
from tunnelproof.demo.verdict import judge, result_json
from tunnelproof.demo.view import live_view, summary
from tunnelproof.session import LiveSession

REFRESH_PER_SECOND = 8


class DemoError(Exception):
    """The demo cannot run; ``str()`` is one sentence saying what to do."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """Command-line options of ``tunnelproof demo``."""

    speed: float = 1.0
    seed: int | None = None
    audio: bool = False
    json: bool = False
    real: bool = False
    api_key: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class DemoOutcome:
    """What the demo ends with."""

    exit_code: int
    result: dict[str, Any]


def _session_kwargs(stack: DemoStack, seed: int | None) -> dict[str, Any]:
    import random

    # The library's default RetryPolicy, untouched: the demo shows what an app gets.
    kwargs: dict[str, Any] = {"rng": random.Random(seed)}
    connect: dict[str, Any] = {"proxy": None}  # the demo's tunnel is local; no HTTP proxy
    dial = stack.dial
    if dial is not None:
        # Open TCP to the tunnel, but keep the real host name in the URL: TLS verifies the
        # certificate against it and the Host header names it.
        connect["host"], connect["port"] = dial
    kwargs["connect_kwargs"] = connect
    context = stack.ssl_context()
    if context is not None:
        kwargs["ssl"] = context
    return kwargs


SPEED_PROBLEM = "--speed must be a positive number, e.g. --speed 1 or --speed 5."


def speed_ok(speed: float) -> bool:
    """A usable ``--speed``: positive and finite (``nan`` and ``inf`` scale nothing)."""
    return math.isfinite(speed) and speed > 0


async def run_demo(
    options: DemoOptions,
    *,
    stack_options: StackOptions | None = None,
    console: Console | None = None,
) -> DemoOutcome:
    """Run the whole demo; raises :class:`DemoError` when it cannot start."""
    if not speed_ok(options.speed):
        raise DemoError(SPEED_PROBLEM)
    journey = train_journey(real=options.real).scaled(options.speed)
    state = DemoState(
        mode="google" if options.real else "emulator",
        speed=options.speed,
        audio=options.audio,
        length=journey.length,
        step_labels=[(s.at, s.kind, s.label) for s in journey.steps],
    )
    so = stack_options or StackOptions(
        speed=options.speed,
        audio=options.audio,
        real=options.real,
        api_key=options.api_key,
        model=options.model,
        seed=options.seed,
    )
    if console is None:
        if options.json or not sys.stdout.isatty():
            console = Console(stderr=options.json)
        else:
            console = Console(file=SynchronizedOutput(sys.stdout))  # type: ignore[arg-type]
    try:
        async with DemoStack(so) as stack:
            source = stack.token_source()
            try:
                first = await first_credential(
                    source, where="the demo's token service", kind="service"
                )
            except PreflightError as exc:
                raise DemoError(str(exc)) from None
            async with LiveSession(
                stack.config, FirstThen(source, first), **_session_kwargs(stack, options.seed)
            ) as session:
                runner = JourneyRunner(journey, stack, session, state)
                consumer = asyncio.create_task(runner.consume(), name="demo-events")
                try:
                    if options.json:
                        await _play(runner, state)
                    else:
                        await _play_live(runner, state, console)
                finally:
                    consumer.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await consumer
            state.session_state = "closed"
            turns = stack.server_user_turns()
            info = stack.describe()
    except ChildStartError as exc:
        raise DemoError(f"{exc}; run `tunnelproof serve` alone to see its full output.") from None
    if state.connections == 0:
        why = state.failed
        if why is None:
            last = f" (last problem: {state.last_problem})" if state.last_problem else ""
            hint = (
                "check the network and GEMINI_API_KEY"
                if options.real
                else "run with --log-file FILE to see why"
            )
            why = f"no connection within {CONNECT_TIMEOUT:g} s{last}; {hint}."
        raise DemoError(f"the session could not connect: {why}")
    verdict = judge(state, journey, turns, paraphrase_ok=options.real)
    result = result_json(state, verdict, info)
    if not options.json:
        console.print(summary(state, verdict))
    return DemoOutcome(0 if verdict.ok else 1, result)


async def _play(runner: JourneyRunner, state: DemoState) -> None:
    if not await runner.wait_connected():
        state.note("could not connect", "red")
        return
    runner.restart_clock()
    await runner.play()
    state.finished = True


async def _play_live(runner: JourneyRunner, state: DemoState, console: Console) -> None:
    def frame() -> RenderableType:
        # One row short of the terminal: a view exactly as tall as the screen would scroll
        # it by a row at every redraw. Read the size each time: the terminal may be resized.
        width, height = console.size
        return live_view(state, width, max(1, height - 1))

    with Live(
        frame(),
        console=console,
        auto_refresh=False,  # redrawn from the loop below, never from rich's thread
        transient=False,
        # The view is already bounded by the terminal's height; crop is the safety net
        # (overflowing rows would be pushed into the scrollback at every redraw).
        vertical_overflow="crop",
    ) as live:
        play = asyncio.create_task(_play(runner, state))
        try:
            while not play.done():
                runner.now()
                live.update(frame(), refresh=True)
                await asyncio.wait({play}, timeout=1 / REFRESH_PER_SECOND)
        finally:
            if not play.done():
                play.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await play
        play.result()
        live.update(frame(), refresh=True)


def print_json(result: dict[str, Any], out: TextIO | None = None) -> None:
    """Write the ``--json`` document on one line."""
    stream = out or sys.stdout
    stream.write(json.dumps(result) + "\n")
    stream.flush()
