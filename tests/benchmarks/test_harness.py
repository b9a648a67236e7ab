"""The benchmark harness: percentiles, summaries, ratios and the result schema."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tunnelproof.benchmarks.harness import (
    BenchResult,
    Comparison,
    percentile,
    ratio_of,
    summarize,
    validate_result,
    write_json,
)
from tunnelproof.benchmarks.runner import markdown_table, resolve, summary_rows


def test_percentile_matches_linear_interpolation() -> None:
    data = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert percentile(data, 0) == 15.0
    assert percentile(data, 100) == 50.0
    assert percentile(data, 50) == 35.0
    assert percentile(data, 40) == pytest.approx(29.0)  # numpy.percentile(..., 40)
    assert percentile(data, 95) == pytest.approx(48.0)
    assert percentile([3.0], 99) == 3.0
    assert percentile(list(reversed(data)), 50) == 35.0  # order does not matter


def test_percentile_rejects_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_and_empty_summary() -> None:
    s = summarize(range(1, 101))
    assert s["n"] == 100
    assert s["min"] == 1 and s["max"] == 100
    assert s["p50"] == pytest.approx(50.5)
    assert s["p99"] == pytest.approx(99.01)
    assert s["mean"] == pytest.approx(50.5)
    empty = summarize([])
    assert empty["n"] == 0 and empty["p50"] is None


def test_ratio_directions() -> None:
    assert ratio_of(1.0, 3.0, "lower") == 3.0  # we take a third of the time
    assert ratio_of(300.0, 100.0, "higher") == 3.0  # we serve three times as much
    assert ratio_of(1.2, 1.0, "floor") == pytest.approx(1.2)  # 20 % over the floor
    assert ratio_of(None, 1.0, "lower") is None
    assert ratio_of(0.0, 1.0, "lower") is None


def test_comparison_display() -> None:
    c = Comparison("drop → resumed p50", "s", 0.25, "seed", 1.5)
    assert c.display_ours() == "250 ms"
    assert c.display_theirs() == "1.5 s"
    assert c.display_ratio() == "6.00×"
    gave_up = Comparison("x", "s", 1.0, "seed", None, theirs_text="gave up", ratio_text="∞")
    assert gave_up.display_theirs() == "gave up"
    assert gave_up.display_ratio() == "∞"


def test_result_schema_roundtrip(tmp_path: Path) -> None:
    result = BenchResult(name="demo", title="Demo", method="how", quick=True)
    result.comparisons.append(Comparison("m", "s", 1.0, "them", 2.0, note="n"))
    result.data["samples"] = [1.0, math.nan, math.inf]
    path = tmp_path / "demo.json"
    write_json(path, result.to_json())
    doc = json.loads(path.read_text())
    assert validate_result(doc) == []
    assert doc["comparisons"][0]["ratio"] == 2.0
    assert doc["data"]["samples"] == [1.0, None, None]  # strict JSON: no NaN/inf


def test_validate_result_reports_problems() -> None:
    problems = validate_result({"schema": 99, "comparisons": [{"better": "sideways"}]})
    assert any("missing keys" in p for p in problems)
    assert any("schema" in p for p in problems)
    assert any("better" in p for p in problems)


def test_summary_rows_and_markdown() -> None:
    ok = BenchResult(name="a", title="A", method="", quick=True)
    ok.comparisons.append(Comparison("m|x", "s", 1.0, "them", 2.0))
    skipped = BenchResult(name="b", title="B", method="", quick=True, skipped="no netns")
    rows = summary_rows([ok, skipped])
    assert rows[0][0] == "a" and rows[0][-1] == "2.00×"
    assert "skipped: no netns" in rows[1][1]
    table = markdown_table([ok, skipped])
    assert "m\\|x" in table  # pipes escaped


def test_resolve_names() -> None:
    assert resolve([])[0] == "recovery"
    assert resolve(["storm", "tunnel"]) == ["tunnel", "storm"]  # canonical order
    with pytest.raises(ValueError, match="unknown"):
        resolve(["nope"])


def test_update_doc_replaces_only_the_marked_table(tmp_path: Path) -> None:
    from tunnelproof.benchmarks.runner import update_doc, write_summary

    result = BenchResult(name="tunnel", title="T", method="", quick=False)
    result.comparisons.append(Comparison("exit → restored", "s", 0.9, "seed policy", 6.6))
    write_summary(tmp_path, [result], quick=False)
    doc = tmp_path / "performance.md"
    doc.write_text(
        "# Perf\n\n<!-- bench:summary:start -->\nold\n<!-- bench:summary:end -->\n\nafter\n"
    )
    update_doc(doc, tmp_path / "summary.json")
    text = doc.read_text()
    assert "old" not in text and text.endswith("after\n")
    assert "| tunnel | exit → restored | 900 ms | seed policy | 6.6 s | 7.33× |" in text
    (tmp_path / "bare.md").write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        update_doc(tmp_path / "bare.md", tmp_path / "summary.json")
