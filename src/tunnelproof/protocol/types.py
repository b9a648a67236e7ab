"""Aliases and protocol constants shared by every part of tunnelproof (one home each).

* :data:`JsonDict`: a decoded JSON object, as the wire carries it.
* :data:`HANDLE_VALIDITY_SECONDS`: how long the server accepts a resumption handle after the
  session's last disconnect (2 h, reference §4). The client's handle stores and watchdogs
  and the emulator's default policy all read it from here, so they cannot disagree.
"""

from __future__ import annotations

from typing import Any

JsonDict = dict[str, Any]
"""A decoded JSON object (camelCase or snake_case keys, as the wire allows)."""

HANDLE_VALIDITY_SECONDS: float = 2 * 60 * 60
"""A resumption handle stays usable this long after the session's last disconnect."""

__all__ = ["HANDLE_VALIDITY_SECONDS", "JsonDict"]
