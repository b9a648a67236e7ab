"""`tunnelproof demo`: a conversation surviving a train journey (what `make demo` runs).

Starts the emulator, the token service (a real `tunnelproof serve` subprocess) and a
client session whose Live link runs through a tunnel proxy, then plays a one-minute journey
with tunnels, a station handover, a server crash and a drop mid-answer. Exit code 0 only if
the context survived and nothing was lost; 1 if the promise broke; 2 if the demo could not
run (one sentence says why); 130 on Ctrl-C (every child process is stopped first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from tunnelproof.cli import _interrupt
from tunnelproof.protocol.models import migrate_model

T = TypeVar("T")


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"tunnelproof demo: {message}", err=True)
    return typer.Exit(code=code)


def retired_model_problem(model: str | None) -> str | None:
    """The sentence refusing a retired model (naming the replacement), or ``None``."""
    from tunnelproof.protocol.models import RETIRED_MODELS, bare_model_id, default_model

    chosen = bare_model_id(model or default_model())
    if chosen not in RETIRED_MODELS:
        return None
    migration = migrate_model(chosen)
    return (
        f"{migration.explanation} "
        f"Pass --model {migration.model} (or set TUNNELPROOF_MODEL={migration.model})."
    )


def check_model(model: str | None, command: str) -> None:
    """Refuse a retired model up front, naming the replacement (one sentence, exit 2)."""
    problem = retired_model_problem(model)
    if problem is not None:
        typer.echo(f"tunnelproof {command}: {problem}", err=True)
        raise typer.Exit(code=2)


def error_document(message: str, exit_code: int) -> dict[str, Any]:
    """What ``demo --json`` prints when there is no verdict: the reason, machine-readable."""
    return {"ok": False, "exitCode": exit_code, "error": message, "verdict": None}


async def run_until_signalled(work: Coroutine[Any, Any, T]) -> T:
    """Await ``work``; SIGTERM cancels it like Ctrl-C does, so its cleanup runs.

    (asyncio.run already turns SIGINT into a cancellation; SIGTERM would otherwise kill the
    process on the spot and leave the token service subprocess to the kernel's death signal.)
    """
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await work
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)


def route_logs(log_file: Path | None) -> None:
    """Keep library log lines off the terminal; write them to ``log_file`` if given.

    The demo and the chat show every session event themselves; the library's log lines
    would repeat them on stderr and tear the live view apart.
    """
    logger = logging.getLogger("tunnelproof")
    logger.propagate = False
    if log_file is None:
        logger.addHandler(logging.NullHandler())
        return
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


def register(app: typer.Typer) -> None:
    """Add the `demo` command to ``app``."""

    @app.command("demo")
    def demo_command(
        speed: Annotated[
            float, typer.Option(help="Time scaling: 2 plays the journey twice as fast.")
        ] = 1.0,
        seed: Annotated[
            int | None,
            typer.Option(
                help="Random seed for the tunnel's and the retries' jitter (reproducible)."
            ),
        ] = None,
        audio: Annotated[
            bool,
            typer.Option(
                "--audio",
                help="The user speaks instead of typing (answers are always spoken, "
                "shown as their transcript).",
            ),
        ] = False,
        json_output: Annotated[
            bool, typer.Option("--json", help="No live view; print the result as JSON.")
        ] = False,
        real: Annotated[
            bool,
            typer.Option("--real", help="Play the journey against Google (needs GEMINI_API_KEY)."),
        ] = False,
        model: Annotated[str | None, typer.Option(help="Live model to use.")] = None,
        log_file: Annotated[
            Path | None, typer.Option(help="Write the library's debug log to this file.")
        ] = None,
        browser: Annotated[
            bool,
            typer.Option("--browser", help="Serve the journey as a web page (the JS client)."),
        ] = False,
    ) -> None:
        """Show a Live conversation surviving tunnels, a handover, a crash and a cut answer."""
        route_logs(log_file)
        from tunnelproof.demo.app import SPEED_PROBLEM, speed_ok

        if not speed_ok(speed):
            # Before anything starts: nan/inf/negative used to reach the journey's
            # scaling (a traceback, then a hung process) or the browser demo's pacing.
            if json_output:
                from tunnelproof.demo.app import print_json

                print_json(error_document(SPEED_PROBLEM, 2))
            raise _fail(SPEED_PROBLEM)
        if browser:
            from tunnelproof.demo.browser import run_browser_demo_command

            raise typer.Exit(code=run_browser_demo_command(speed))
        from tunnelproof.demo import DemoError, DemoOptions, run_demo
        from tunnelproof.demo.app import print_json

        def fail(message: str, code: int = 2) -> typer.Exit:
            # One sentence on stderr; with --json also a document on stdout, so that a
            # script reading stdout learns why there is no verdict.
            if json_output:
                print_json(error_document(message, code))
            return _fail(message, code)

        problem = retired_model_problem(model)
        if problem is not None:
            raise fail(problem)
        api_key: str | None = None
        if real:
            api_key = (os.environ.get("GEMINI_API_KEY") or "").strip() or None
            if api_key is None:
                raise fail(
                    "--real needs a Gemini API key: export GEMINI_API_KEY=... "
                    "(or run `tunnelproof demo` without --real to use the local emulator)."
                )
        options = DemoOptions(
            speed=speed,
            seed=seed,
            audio=audio,
            json=json_output,
            real=real,
            api_key=api_key,
            model=model,
        )
        try:
            outcome = asyncio.run(run_until_signalled(run_demo(options)))
        except DemoError as exc:
            raise fail(str(exc)) from None
        except asyncio.CancelledError:
            raise fail("terminated; everything was stopped.", 143) from None
        except KeyboardInterrupt:
            # asyncio.run cancelled the demo, whose finally blocks stopped every child.
            if json_output:
                print_json(error_document("interrupted; everything was stopped.", 130))
            _interrupt.report("tunnelproof demo: interrupted; everything was stopped.")
            raise typer.Exit(code=_interrupt.EXIT_INTERRUPTED) from None
        except Exception as exc:
            # A bug: the traceback follows, but a --json reader still gets a document.
            if json_output:
                print_json(error_document(f"internal error: {type(exc).__name__}: {exc}", 1))
            raise
        if json_output:
            print_json(outcome.result)
        sys.stdout.flush()
        raise typer.Exit(code=outcome.exit_code)
