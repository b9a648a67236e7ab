"""`tunnelproof emulator`: run the local Live API emulator (see docs/emulator.md).

The command itself lives in :mod:`tunnelproof.emulator.cli`, so that
``python -m tunnelproof.emulator`` can start it without importing every other command.
"""

from __future__ import annotations

import typer

from tunnelproof.emulator.cli import command


def register(app: typer.Typer) -> None:
    """Add the `emulator` command to ``app``."""
    app.command("emulator")(command)
