"""Honest placeholder for a command whose issue has not landed yet."""

from __future__ import annotations

import typer


def not_built(command: str, issue: str) -> None:
    """Say plainly that ``command`` is not built yet and exit non-zero (never fake it)."""
    typer.echo(f"tunnelproof {command}: not built yet ({issue}).", err=True)
    raise typer.Exit(code=2)
