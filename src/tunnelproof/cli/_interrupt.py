"""One line on stderr when the user presses Ctrl-C, printed once, and exit code 130."""

from __future__ import annotations

import contextlib
import os
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


def exit_interrupted() -> None:
    """End the process now with exit code 130 (output flushed first).

    Not ``sys.exit``: after a ``KeyboardInterrupt`` CPython may end the process by SIGINT
    instead (exit status -2), depending on where the interrupt landed; the documented exit
    code must not depend on that. Every command has stopped what it started by now.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(EXIT_INTERRUPTED)
