"""The ready line: how a tunnelproof child process says it is up, read by its parent.

Every server and worker tunnelproof starts as a subprocess (``tunnelproof serve``, the
emulator, the relay, the benchmark workers) prints one JSON object on a line of its stdout
once it serves (where it listens, its pid, ...). :func:`next_json_line` is the one reader
of it, for :class:`~tunnelproof.emulator.process.EmulatorProcess`, the demo's children and
the benchmarks' processes alike (a benchmark worker's result is such a line too).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any


async def next_json_line(stdout: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next line of ``stdout`` that is a JSON object; ``None`` when the stream ends
    first (the child exited before it was ready: the caller says so in its own words).

    Other lines (a banner, a warning a library printed to stdout) are passed over, and so
    is a line that starts with ``{`` but is not a JSON object. Bound the wait with
    ``asyncio.timeout``: a child that hangs prints nothing.
    """
    while line := await stdout.readline():
        text = line.decode("utf-8", "replace").strip()
        if not text.startswith("{"):
            continue
        with contextlib.suppress(ValueError):
            data = json.loads(text)
            if isinstance(data, dict):
                return data
    return None


__all__ = ["next_json_line"]
