"""One line on stderr when the user presses Ctrl-C, printed once, and exit code 130."""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C

_reported = False


def report(line: str) -> None:
    """Print ``line`` on stderr unless an interrupt was already reported (by a command)."""
    global _reported
    if _reported:
        return
    _reported = True
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # stderr closed (a pipe whose reader is gone): nothing to tell
