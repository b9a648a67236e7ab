"""`tunnelproof demo`."""

from __future__ import annotations

import typer

from tunnelproof.cli._unbuilt import not_built


def register(app: typer.Typer) -> None:
    """Add the `demo` command to ``app``."""

    @app.command("demo")
    def demo_command() -> None:
        """Not built yet."""
        not_built("demo", "the demo issue #8")
