"""The two ways the emulator refuses something: an HTTP error or a WebSocket close."""

from __future__ import annotations

from typing import Any

from tunnelproof.protocol.close_codes import truncate_reason

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


class HttpRefusal(Exception):
    """Refuse an HTTP request (or a WebSocket upgrade) with Google-style error JSON."""

    def __init__(self, code: int, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or _STATUS_NAMES.get(code, "UNKNOWN")

    def body(self) -> dict[str, Any]:
        """``{"error": {"code": 400, "message": ..., "status": "INVALID_ARGUMENT"}}``."""
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


class CloseRefusal(Exception):
    """Close the WebSocket with ``code`` and ``reason`` (cut to the 123-byte limit)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = truncate_reason(reason)
