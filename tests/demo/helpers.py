"""Helpers for the demo tests: run the CLI as a real process, find its children."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TUNNELPROOF = [sys.executable, "-m", "tunnelproof"]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: no real key, no proxy, wide terminal."""
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "TUNNELPROOF_MODEL")}
    env.update({"COLUMNS": "120", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc, no psutil needed)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False
