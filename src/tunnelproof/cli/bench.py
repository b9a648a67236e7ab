"""`tunnelproof bench`."""

from __future__ import annotations

import typer

from tunnelproof.cli._unbuilt import not_built


def register(app: typer.Typer) -> None:
    """Add the `bench` command to ``app``."""

    @app.command("bench")
    def bench_command() -> None:
        """Not built yet."""
        not_built("bench", "the benchmarks issue #7")
