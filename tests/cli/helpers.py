"""Helpers for CLI tests: run `python -m tunnelproof` as a user would."""

from __future__ import annotations

import os
import subprocess
import sys

TUNNELPROOF = [sys.executable, "-m", "tunnelproof"]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI run: no real key, no model override, a wide terminal."""
    drop = ("GEMINI_API_KEY", "TUNNELPROOF_API_KEY", "TUNNELPROOF_MODEL", "TUNNELPROOF_BEARER")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update({"COLUMNS": "120", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def run_cli(*args: str, timeout: float = 60.0, stdin: str | None = None, **env: str):
    """Run the CLI to completion; returns the CompletedProcess (text mode)."""
    return subprocess.run(
        [*TUNNELPROOF, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(**env),
        input=stdin if stdin is not None else "",
        check=False,
    )


def one_clear_sentence(stderr: str, prefix: str) -> str:
    """The error output is one line starting with ``prefix`` and has no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(prefix), stderr
    return lines[0]


def run_in_process(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in this process (typer's runner): for fast checks of early errors.

    Returns a ``CompletedProcess`` like :func:`run_cli`, so tests read the same fields.
    """
    from typer.testing import CliRunner

    from tunnelproof.cli import app

    result = CliRunner().invoke(app, list(args), env={**_unset(), **env})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def _unset() -> dict[str, str | None]:
    # CliRunner overlays os.environ: None removes a variable for the run.
    names = ("GEMINI_API_KEY", "TUNNELPROOF_API_KEY", "TUNNELPROOF_MODEL", "TUNNELPROOF_BEARER")
    return dict.fromkeys(names)
