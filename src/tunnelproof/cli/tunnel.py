"""`tunnelproof tunnel`."""

from __future__ import annotations

import typer

from tunnelproof.cli._unbuilt import not_built


def register(app: typer.Typer) -> None:
    """Add the `tunnel` command to ``app``."""

    @app.command("tunnel")
    def tunnel_command() -> None:
        """Not built yet."""
        not_built("tunnel", "the tunnel issue #6")
