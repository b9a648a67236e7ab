"""Run benchmarks by name, write ``<out>/<name>.json`` and ``<out>/summary.json``.

Each benchmark runs in its own event loop (``asyncio.run``), so one that leaves a task
behind cannot disturb the next. A benchmark that raises is recorded with its error and the
run goes on: a partial table is more useful than none.
"""

from __future__ import annotations

import asyncio
import importlib
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, cast

from tunnelproof.benchmarks import BENCHMARKS
from tunnelproof.benchmarks.harness import (
    SCHEMA_VERSION,
    BenchContext,
    BenchResult,
    machine_info,
    method_text,
    write_json,
)

RunFn = Callable[[BenchContext], Coroutine[Any, Any, BenchResult]]


def resolve(names: Sequence[str]) -> list[str]:
    """Validate ``names`` (empty: all), keeping the canonical run order."""
    if not names:
        return list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise ValueError(
            f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    return [n for n in BENCHMARKS if n in names]


def run_one(name: str, ctx: BenchContext) -> BenchResult:
    """Import and run benchmark ``name``; errors become a result with ``error`` set."""
    started = time.monotonic()
    module: Any = None
    try:
        module = importlib.import_module(BENCHMARKS[name])
        run = cast(RunFn, module.run)
        result: BenchResult = asyncio.run(run(ctx))
    except ModuleNotFoundError as exc:
        if exc.name != BENCHMARKS[name]:
            raise
        result = BenchResult(name=name, title=name, method="", quick=ctx.quick)
        result.skipped = "not built yet"
    except Exception as exc:
        title = getattr(module, "TITLE", name) if module is not None else name
        method = method_text(getattr(module, "__doc__", "")) if module is not None else ""
        result = BenchResult(name=name, title=title, method=method, quick=ctx.quick)
        result.error = f"{type(exc).__name__}: {exc}"
        result.data["traceback"] = traceback.format_exc(limit=8)
    result.duration_s = time.monotonic() - started
    write_json(ctx.out / f"{name}.json", result.to_json())
    return result


def run_benchmarks(
    names: Sequence[str],
    *,
    quick: bool,
    out: Path,
    log: Callable[[str], None] = print,
    seed: int = 7,
) -> list[BenchResult]:
    """Run the named benchmarks in order; write every JSON file and the summary."""
    out.mkdir(parents=True, exist_ok=True)
    ctx = BenchContext(out=out, quick=quick, seed=seed, log=log)
    results: list[BenchResult] = []
    for name in resolve(names):
        log(f"[bench] {name} ...")
        result = run_one(name, ctx)
        ctx.previous[name] = result
        status = result.error or result.skipped or "ok"
        log(f"[bench] {name}: {status} ({result.duration_s:.1f} s)")
        results.append(result)
    write_summary(out, results, quick=quick)
    return results


def write_summary(out: Path, results: Sequence[BenchResult], *, quick: bool) -> None:
    """``summary.json``: every comparison of every benchmark, plus run metadata.

    Results of benchmarks not run this time are kept from an existing summary, so running
    one benchmark does not erase the others' rows.
    """
    path = out / "summary.json"
    previous: dict[str, Any] = {}
    if path.exists():
        import json

        try:
            old = json.loads(path.read_text())
            previous = {b["name"]: b for b in old.get("benchmarks", [])}
        except (ValueError, KeyError, TypeError):
            previous = {}
    for result in results:
        previous[result.name] = {
            "name": result.name,
            "title": result.title,
            "quick": result.quick,
            "skipped": result.skipped,
            "error": result.error,
            "duration_s": result.duration_s,
            "comparisons": [c.to_json() for c in result.comparisons],
            "charts": result.charts,
            "notes": result.notes,
        }
    ordered = [previous[n] for n in BENCHMARKS if n in previous]
    write_json(
        path,
        {
            "schema": SCHEMA_VERSION,
            "quick": quick,
            "written_at": time.time(),
            "machine": machine_info(),
            "benchmarks": ordered,
        },
    )


def summary_rows(results: Sequence[BenchResult]) -> list[tuple[str, str, str, str, str, str]]:
    """``(benchmark, metric, tunnelproof, against, theirs, ratio)`` rows for tables."""
    rows: list[tuple[str, str, str, str, str, str]] = []
    for result in results:
        if result.error or result.skipped:
            why = f"error: {result.error}" if result.error else f"skipped: {result.skipped}"
            rows.append((result.name, why, "", "", "", ""))
            continue
        for comp in result.comparisons:
            rows.append(
                (
                    result.name,
                    comp.metric,
                    comp.display_ours(),
                    comp.against,
                    comp.display_theirs(),
                    comp.display_ratio(),
                )
            )
    return rows


def markdown_table(results: Sequence[BenchResult]) -> str:
    """The summary as a Markdown table (for docs/performance.md)."""
    lines = [
        "| benchmark | metric | tunnelproof | compared with | theirs | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary_rows(results):
        cells = [c.replace("|", "\\|") for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_from_summary(summary: dict[str, Any]) -> str:
    """The Markdown table from a ``summary.json`` document (for docs/performance.md)."""
    lines = [
        "| benchmark | metric | tunnelproof | compared with | theirs | ratio | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for bench in summary.get("benchmarks", []):
        if bench.get("error") or bench.get("skipped"):
            why = bench.get("error") or f"skipped: {bench.get('skipped')}"
            lines.append(f"| {bench['name']} | {why} | | | | | |")
            continue
        for comp in bench.get("comparisons", []):
            cells = [
                bench["name"],
                comp["metric"],
                comp["ours_display"],
                comp["against"],
                comp["theirs_display"],
                comp["ratio_display"],
                comp.get("note") or "",
            ]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def update_doc(doc_path: Path, summary_path: Path) -> None:
    """Replace the table between the ``bench:summary`` markers of ``doc_path``."""
    import json

    start, end = "<!-- bench:summary:start -->", "<!-- bench:summary:end -->"
    text = doc_path.read_text(encoding="utf-8")
    if start not in text or end not in text:
        raise ValueError(f"{doc_path} has no {start} ... {end} markers")
    table = markdown_from_summary(json.loads(summary_path.read_text(encoding="utf-8")))
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    doc_path.write_text(f"{head}{start}\n{table}\n{end}{tail}", encoding="utf-8")
