"""The ``tunnelproof`` command line: one module per command, assembled here."""

from __future__ import annotations

import typer

from tunnelproof.cli import bench, chat, demo, emulator, relay, serve, tunnel

app = typer.Typer(
    name="tunnelproof",
    help="Keep Gemini Live sessions alive through network drops.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in (demo, chat, serve, emulator, tunnel, relay, bench):
    module.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
