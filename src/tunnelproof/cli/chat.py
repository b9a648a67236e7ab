"""`tunnelproof chat`."""

from __future__ import annotations

import typer

from tunnelproof.cli._unbuilt import not_built


def register(app: typer.Typer) -> None:
    """Add the `chat` command to ``app``."""

    @app.command("chat")
    def chat_command() -> None:
        """Not built yet."""
        not_built("chat", "the demo issue #8")
