"""The demo's live view in a real terminal (tmux), at 80x24: nothing piles up in the scrollback.

Before, the view was taller than 24 rows; each redraw pushed its top into the scrollback,
and 15 s of journey left the header there 83 times (1,187 lines).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest

from .helpers import cli_env

# Two real 15 s demo runs in tmux: run by `make chaos` (-m slow) to keep `make test` short;
# the view's fit is also checked in `make test` by tests/demo/test_view_fits.py.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)"),
]

STATE_LINE = re.compile(r"^(STARTING|CONNECTING|CONNECTED|RECONNECTING|CLOSING|CLOSED)\s+t =")


def run_in_tmux(columns: int, rows: int, *args: str, timeout: float = 90.0) -> list[str]:
    """Run the demo in a detached tmux terminal; return its whole scrollback when it ends."""
    server = f"tunnelproof-test-{os.getpid()}-{columns}x{rows}"
    env = cli_env()
    env.pop("COLUMNS", None)  # the terminal's own size, as a user's
    env.pop("LINES", None)
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "tunnelproof", "demo", *args])
    tmux = ["tmux", "-L", server, "-f", "/dev/null"]
    subprocess.run(
        [
            *tmux,
            "new-session",
            "-d",
            "-x",
            str(columns),
            "-y",
            str(rows),
            "-s",
            "demo",
            f"{command}; echo DEMO-EXIT=$?; sleep 120",
        ],
        check=True,
        env=env,
    )
    try:
        subprocess.run([*tmux, "set-option", "-t", "demo", "history-limit", "20000"], check=True)
        deadline = time.monotonic() + timeout
        while True:
            screen = subprocess.run(
                [*tmux, "capture-pane", "-p", "-t", "demo"], capture_output=True, text=True
            ).stdout
            if "DEMO-EXIT=" in screen:
                break
            assert time.monotonic() < deadline, screen
            time.sleep(0.25)
        everything = subprocess.run(
            [*tmux, "capture-pane", "-p", "-S", "-", "-t", "demo"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    return everything.rstrip("\n").split("\n")


@pytest.mark.parametrize(("columns", "rows"), [(80, 24), (160, 50)])
def test_live_view_fits_the_terminal(columns: int, rows: int) -> None:
    lines = run_in_tmux(columns, rows, "--speed", "16", "--seed", "3")
    text = "\n".join(lines)
    assert "DEMO-EXIT=0" in text, text[-3000:]
    # The state line (and the journey line) are in the whole scrollback once: the last frame.
    state_lines = [line for line in lines if STATE_LINE.match(line)]
    assert len(state_lines) == 1, text[-3000:]
    assert sum(line.startswith("journey ") for line in lines) == 1, text[-3000:]
    assert "The conversation survived the journey." in text
    # The last frame, the summary (its table wraps at 80 columns) and the exit line.
    assert len(lines) < rows + 45, text[-3000:]
