"""A terminal stream whose every write is shown at once: no half-drawn frames (no flicker).

rich's ``Live`` redraws a frame in one write (cursor up, erase, the new lines). Wrapped in
DEC private mode 2026 ("synchronized output"), a terminal that knows the mode shows the
frame only when it is complete; one that does not ignores the sequences, as it must any
unknown private mode.
"""

from __future__ import annotations

from typing import TextIO

BEGIN_SYNC = "\x1b[?2026h"
END_SYNC = "\x1b[?2026l"


class SynchronizedOutput:
    """Wraps a terminal's text stream; each non-empty ``write`` is one synchronized update."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        """Write ``text`` as one update; returns its length, as ``TextIO.write`` does."""
        if text:
            self._stream.write(BEGIN_SYNC + text + END_SYNC)
        return len(text)

    def flush(self) -> None:
        """Flush the terminal stream."""
        self._stream.flush()

    def isatty(self) -> bool:
        """Whether the stream is a terminal (rich decides on colours and ``Live`` by it)."""
        return self._stream.isatty()

    def fileno(self) -> int:
        """The terminal's descriptor (rich reads the terminal's size from it)."""
        return self._stream.fileno()

    @property
    def encoding(self) -> str:
        """The stream's encoding."""
        return getattr(self._stream, "encoding", None) or "utf-8"
