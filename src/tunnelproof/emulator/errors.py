"""How the emulator refuses an HTTP request: Google-style error JSON.

A refusal after the upgrade is a WebSocket close: the protocol's
:class:`~tunnelproof.protocol.errors.CloseRefusal`, shared with the relay.
"""

from __future__ import annotations

from typing import Any

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
