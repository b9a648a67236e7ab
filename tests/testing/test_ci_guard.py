"""CI guards the main job (issue 14.12): `.ci/run` plays the journey after the tests and
fails when the promise did not hold (non-zero exit, no JSON, a JSON error document or a
failed check)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / ".ci" / "check_journey.py"

HELD = {
    "ok": True,
    "verdict": {
        "context survived": {"ok": True, "detail": "answered"},
        "every drop recovered": {"ok": True, "detail": "5 disruptions, 5 reconnects"},
        "nothing lost": {"ok": True, "detail": "9 utterances delivered exactly once"},
    },
    "figures": {"reconnects": 5},
}


def judge(text: str, status: int, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    result = tmp_path / "journey.json"
    result.write_text(text)
    return subprocess.run(
        [sys.executable, str(CHECK), str(result), str(status)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_held_promise_passes(tmp_path: Path) -> None:
    run = judge(json.dumps(HELD), 0, tmp_path)
    assert run.returncode == 0, run.stderr
    assert "held" in run.stdout


def _failed_check() -> str:
    doc = json.loads(json.dumps(HELD))
    doc["verdict"]["nothing lost"] = {"ok": False, "detail": "1 utterance lost"}
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("text", "status", "why"),
    [
        (json.dumps(HELD), 1, "the demo exited with code 1"),
        (_failed_check(), 0, "nothing lost: 1 utterance lost"),
        (json.dumps({**HELD, "ok": False}), 0, "ok is False"),
        (json.dumps({"ok": False, "error": "the emulator did not start"}), 1, "did not start"),
        (json.dumps({"ok": True, "verdict": {}}), 0, "no verdict checks"),
        ("", 124, "printed no JSON verdict (exit 124)"),
        ("Traceback (most recent call last):", 1, "printed no JSON verdict"),
        ("[1, 2]", 0, "not an object"),
    ],
)
def test_a_broken_promise_fails_with_the_reason(
    tmp_path: Path, text: str, status: int, why: str
) -> None:
    run = judge(text, status, tmp_path)
    assert run.returncode == 1
    assert why in run.stderr, run.stderr


def test_ci_plays_the_journey_after_the_tests_and_judges_it() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    tests = script.index("make test")
    demo = re.search(r"timeout \d+ \.venv/bin/tunnelproof demo --json --speed 4 >", script)
    assert demo is not None, script
    checker = script.index('.venv/bin/python .ci/check_journey.py "$journey_json" "$demo_status"')
    assert tests < demo.start() < checker
    # A failing test run stops CI before the journey (its status is kept).
    assert 'exit "$status"' in script[tests : demo.start()]
    subprocess.run(["bash", "-n", str(ROOT / ".ci" / "run")], check=True, timeout=10)
