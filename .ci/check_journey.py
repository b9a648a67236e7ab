"""Judge one `tunnelproof demo --json` run for CI: did the journey's promise hold?

Usage: ``python .ci/check_journey.py RESULT.json DEMO_EXIT_CODE``. Exits 0 only when the
demo exited 0 AND printed a JSON object whose ``ok`` is true and whose ``verdict`` has at
least one check, every one ``ok``. Anything else (non-zero exit, no JSON, a JSON error
document, a failed check) exits 1 with one line saying why.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def judge(text: str, status: int) -> str | None:
    """``None`` when the promise held, else the reason it did not."""
    try:
        result: Any = json.loads(text)
    except ValueError:
        return f"the journey printed no JSON verdict (exit {status}): {text[-300:]!r}"
    if not isinstance(result, dict):
        return f"the journey's JSON is not an object (exit {status})"
    verdict = result.get("verdict")
    if isinstance(verdict, dict):
        checks = list(verdict.items())
    elif isinstance(verdict, list):
        checks = list(enumerate(verdict))
    else:
        checks = []
    failed = [
        f"{name}: {check.get('detail', '') if isinstance(check, dict) else check}"
        for name, check in checks
        if not (isinstance(check, dict) and check.get("ok") is True)
    ]
    reasons = list(failed)
    if status != 0:
        reasons.append(f"the demo exited with code {status}")
    if result.get("ok") is not True:
        reasons.append(
            f"ok is {result.get('ok')!r}" + (f": {result['error']}" if result.get("error") else "")
        )
    if not checks:
        reasons.append("no verdict checks")
    if reasons:
        return "the journey's promise did not hold: " + "; ".join(reasons)
    return None


def main(argv: list[str]) -> int:
    """CLI entry point (see the module docstring)."""
    path, status = argv[1], int(argv[2])
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    reason = judge(text, status)
    if reason is not None:
        print(f"CI: {reason}", file=sys.stderr)
        return 1
    print("CI: the journey's promise held")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
