"""Errors raised by the protocol layer."""

from __future__ import annotations

from tunnelproof.protocol.close_codes import REASON_INVALID_ARGUMENT, truncate_reason


class ProtocolError(ValueError):
    """A frame or value that does not follow the Live API wire protocol.

    ``size`` is the number of bytes of the offending frame when there is one, so a
    log line can say how large the bad input was without printing it.
    """

    def __init__(self, message: str, *, size: int | None = None) -> None:
        self.size = size
        super().__init__(message if size is None else f"{message} ({size} bytes)")


class CloseRefusal(Exception):
    """Close the WebSocket with ``code`` and ``reason`` (cut to the 123-byte limit).

    What a server (Google, the emulator, the relay) answers a client it refuses after the
    upgrade: the reason is cut here, once, so no caller can send an over-long one.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = truncate_reason(reason)


def invalid(reason: str = REASON_INVALID_ARGUMENT) -> CloseRefusal:
    """A 1007 close (invalid payload): Google's answer to a malformed client message."""
    return CloseRefusal(1007, reason)
