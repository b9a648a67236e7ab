"""The ``tunnelproof`` command line: one module per command, assembled here.

Only the command being run is imported. ``tunnelproof --help`` lists every command from the
one-line summaries below without importing any of them (the emulator, the token service
and the demo pull in aiohttp, FastAPI and google-genai: seconds of imports for a help text).
A test checks that each summary is the first line of its command's own help.
"""

from __future__ import annotations

import sys

# Nothing else at import time, not even `typing`: a Ctrl-C during an import here would be
# a traceback, because main()'s handler is not running yet. (mypy treats this name as true.)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    import typer

# name -> (module with a ``register(app)`` function, one-line summary for the command list)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "tunnelproof.cli.demo",
        "Show a Live conversation surviving tunnels, a handover, a crash and a cut answer.",
    ),
    "chat": (
        "tunnelproof.cli.chat",
        "Chat through a resilient Live session; /tunnel N drops the link for N seconds.",
    ),
    "serve": (
        "tunnelproof.cli.serve",
        "Run the token service (one uvicorn worker) and print one JSON line when ready.",
    ),
    "emulator": ("tunnelproof.cli.emulator", "Run the local Gemini Live API emulator."),
    "tunnel": (
        "tunnelproof.cli.tunnel",
        "A TCP proxy with a controllable tunnel: blackhole, reset, offline, latency, bandwidth.",
    ),
    "relay": ("tunnelproof.cli.relay", "Run the relay until SIGINT/SIGTERM."),
    "bench": (
        "tunnelproof.cli.bench",
        "Measure tunnelproof against the seed project's client, google-genai and the floor.",
    ),
}

_full_app: typer.Typer | None = None


def build_app(only: str | None = None) -> typer.Typer:
    """The command line; with ``only``, just that command is imported, the rest are listed."""
    import importlib

    import typer

    app = typer.Typer(
        name="tunnelproof",
        help="Keep Gemini Live sessions alive through network drops.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        # Plain click help: flags show as flags (rich mode printed `--json <bool>`), and
        # rich is not imported just to print a help text.
        rich_markup_mode=None,
    )
    for name, (module, summary) in COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(module).register(app)
        else:
            app.command(name, help=summary)(_listed_only)
    return app


def _listed_only() -> None:
    """Never run: ``main`` registers the real command for the one named on the line."""
    raise RuntimeError("a listed-only command was invoked")  # pragma: no cover


def _command_named(argv: list[str]) -> str:
    """The command ``argv`` runs ('' when none is named: help is printed)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else ""
    return ""


def main() -> None:
    """Console-script entry point.

    Ctrl-C at any moment ends with one line on stderr and exit code 130, never a traceback:
    during the imports of the first second too (typer itself is imported in here, inside
    the handler), and when typer turns an interrupt into a silent exit 130.
    """
    chosen = ""
    try:
        from tunnelproof.cli import _interrupt

        chosen = _command_named(sys.argv[1:])
        build_app(chosen or "-")()
    except KeyboardInterrupt:
        pass
    except SystemExit as done:
        if done.code != 130:
            raise
    from tunnelproof.cli import _interrupt

    name = f"tunnelproof {chosen}" if chosen else "tunnelproof"
    _interrupt.report(f"{name}: interrupted; nothing was left running.")
    _interrupt.exit_interrupted()


def __getattr__(name: str) -> Any:
    # ``tunnelproof.cli.app``: every command, for typer's test runner and tools.
    global _full_app
    if name == "app":
        if _full_app is None:
            _full_app = build_app()
        return _full_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
