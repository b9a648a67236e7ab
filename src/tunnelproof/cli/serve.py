"""`tunnelproof serve`."""

from __future__ import annotations

import typer

from tunnelproof.cli._unbuilt import not_built


def register(app: typer.Typer) -> None:
    """Add the `serve` command to ``app``."""

    @app.command("serve")
    def serve_command() -> None:
        """Not built yet."""
        not_built("serve", "the token service issue #4")
