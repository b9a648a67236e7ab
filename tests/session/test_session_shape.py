"""The shape issue 11 asked for, kept: phase changes in one module, small modules."""

from __future__ import annotations

import re
from pathlib import Path

import tunnelproof.session

SESSION = Path(tunnelproof.session.__file__).parent
PHASE_CHANGE = re.compile(r"self\.phase = (?!Phase\.IDLE  # changed only by SessionMachine)")


def test_every_phase_change_is_in_machine_py() -> None:
    offenders = [
        f"{path.relative_to(SESSION)}:{number}"
        for path in sorted(SESSION.rglob("*.py"))
        if path.name != "machine.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PHASE_CHANGE.search(line)
    ]
    assert offenders == []
    assert len(PHASE_CHANGE.findall((SESSION / "machine.py").read_text())) >= 10


def test_session_modules_stay_small() -> None:
    sizes = {
        str(path.relative_to(SESSION)): len(path.read_text().splitlines())
        for path in SESSION.rglob("*.py")
    }
    assert sizes["machine.py"] <= 600, sizes["machine.py"]
    assert {name: n for name, n in sizes.items() if n > 500} == {
        name: n for name, n in sizes.items() if name == "machine.py" and n > 500
    }
