"""One benchmark end to end with tiny sizes, through the CLI (a smoke test, no speed claims)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunnelproof.benchmarks.harness import validate_result
from tunnelproof.cli import app


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_bench_tunnel_quick_writes_json_png_and_summary(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "tunnel", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "tunnel.json").read_text())
    assert validate_result(doc) == []
    assert doc["error"] is None and doc["quick"] is True
    assert doc["comparisons"], "headline comparisons are written"
    assert (tmp_path / "tunnel.png").stat().st_size > 1000
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [b["name"] for b in summary["benchmarks"]] == ["tunnel"]
    assert "tunnel" in result.output and "seed policy" in result.output


def test_unknown_benchmark_name_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 2
