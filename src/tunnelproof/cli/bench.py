"""`tunnelproof bench`: run the benchmarks and print the side-by-side summary.

Each benchmark writes ``<out>/<name>.json`` and ``<out>/<name>.png``; the run writes
``<out>/summary.json`` and prints a table whose ratios say how many times better (or, against
a physical floor, how much slower) tunnelproof is than the alternative measured in the same
run. ``--quick`` uses tiny sizes: a smoke test, not numbers to quote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the `bench` command to ``app``."""

    @app.command("bench")
    def bench_command(
        names: Annotated[
            list[str] | None,
            typer.Argument(
                help="Benchmarks to run (default: all): recovery, tunnel, half_open, "
                "goaway, streaming, token_service, storm."
            ),
        ] = None,
        quick: Annotated[
            bool, typer.Option("--quick", help="Tiny sizes: a smoke test, not real numbers.")
        ] = False,
        out: Annotated[
            Path, typer.Option("--out", help="Directory for the JSON results and PNG charts.")
        ] = Path("bench/results"),
        seed: Annotated[
            int, typer.Option(help="Random seed of every random source (reproducible runs).")
        ] = 7,
        markdown: Annotated[
            bool, typer.Option("--markdown", help="Also print the summary as Markdown.")
        ] = False,
    ) -> None:
        """Measure tunnelproof against the seed project's client, google-genai and the floor.

        The seed project is the code tunnelproof started from: a TypeScript LiveSession
        whose retry policy (six tries, 1 s doubling) is reproduced as SEED_POLICY. The floor
        is a bare token fetch, connect and setup: no client can be faster.
        """
        from rich.console import Console
        from rich.table import Table

        from tunnelproof.benchmarks.runner import markdown_table, resolve, run_benchmarks
        from tunnelproof.benchmarks.runner import summary_rows as rows_of

        # Wide enough for the table when piped to a file (rich assumes 80 columns there).
        console = Console(width=None if Console().is_terminal else 200)
        try:
            selected = resolve(names or [])
        except ValueError as exc:
            typer.echo(f"tunnelproof bench: {exc}", err=True)
            raise typer.Exit(code=2) from None

        def log(line: str) -> None:
            console.print(line, markup=False, highlight=False)

        results = run_benchmarks(selected, quick=quick, out=out, log=log, seed=seed)
        table = Table(title="tunnelproof bench" + (" (quick: smoke sizes)" if quick else ""))
        for column in ("benchmark", "metric", "tunnelproof", "compared with", "theirs", "ratio"):
            table.add_column(column, overflow="fold")
        for row in rows_of(results):
            table.add_row(*row)
        console.print(table)
        console.print(
            "ratio: how many times better tunnelproof is (theirs/ours for times, ours/theirs "
            "for throughput); against a floor: ours/floor, the overhead (1.0 = perfect).",
            highlight=False,
        )
        console.print(f"results: {out}/<name>.json, charts: {out}/<name>.png", highlight=False)
        if markdown:
            console.print(markdown_table(results), markup=False, highlight=False)
        if any(r.error for r in results):
            raise typer.Exit(code=1)
