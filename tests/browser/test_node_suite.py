"""Run the browser client's ``node --test`` suite (and its type check) inside pytest.

``make test`` runs pytest only, so this is how the JavaScript half is tested there: the
shared contract scenarios against the browser machine (``contract.test.js``) and its
browser-only rules (``machine_browser.test.js``). A failing node test fails this test with
node's own report.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE_TESTS = sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "browser").glob("*.test.js")
)


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (make system-deps installs nodejs as root)")
    return node


def test_node_suite_passes() -> None:
    assert len(NODE_TESTS) >= 2
    proc = subprocess.run(
        [_node(), "--test", *NODE_TESTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, report
    assert "# fail 0" in proc.stdout, report
    passed = [line for line in proc.stdout.splitlines() if line.startswith("# pass ")]
    assert passed and int(passed[-1].split()[-1]) >= 30, report


def test_module_type_checks() -> None:
    tsc = ROOT / "node_modules" / ".bin" / "tsc"
    if not tsc.exists():
        pytest.skip("TypeScript is not installed here (make lint runs npm ci, then tsc)")
    proc = subprocess.run(
        [str(tsc), "-p", "tsconfig.json", "--checkJs", "--strict", "--noEmit"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
