"""`tunnelproof emulator`."""

from __future__ import annotations

import typer

from tunnelproof.cli._unbuilt import not_built


def register(app: typer.Typer) -> None:
    """Add the `emulator` command to ``app``."""

    @app.command("emulator")
    def emulator_command() -> None:
        """Not built yet."""
        not_built("emulator", "the emulator issue #3")
