"""Errors raised by the protocol layer."""

from __future__ import annotations


class ProtocolError(ValueError):
    """A frame or value that does not follow the Live API wire protocol.

    ``size`` is the number of bytes of the offending frame when there is one, so a
    log line can say how large the bad input was without printing it.
    """

    def __init__(self, message: str, *, size: int | None = None) -> None:
        self.size = size
        super().__init__(message if size is None else f"{message} ({size} bytes)")
