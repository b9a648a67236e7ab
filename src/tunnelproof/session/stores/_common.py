"""What every handle store shares: id validation, expiry, transcript bounds, the record codec.

Expiry rule. The server keeps a handle for ``validity`` (2 h) after the session's last
disconnect. A record with ``disconnected_at`` set expires at ``disconnected_at + validity``
(exactly :meth:`StoredSession.valid_at`). A record still marked connected
(``disconnected_at is None``) expires at ``saved_at + validity``: if the process died
without recording the disconnect, the link died no earlier than the last save, so the
server may forget it from then on. A live client saves every new handle (the server sends
them every few minutes at most), so a healthy record never reaches this bound, and a crashed
process's records do not pile up for ever.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import orjson

from tunnelproof.protocol.client_messages import Turn
from tunnelproof.protocol.types import HANDLE_VALIDITY_SECONDS
from tunnelproof.session.handle_store import StoredSession

logger = logging.getLogger("tunnelproof.session.stores")

DEFAULT_MAX_TRANSCRIPT_TURNS = 200
"""Turns kept per conversation (the newest); older turns are dropped on save."""

MAX_CONVERSATION_ID_LENGTH = 256
"""Longest accepted conversation id, in characters."""

RECORD_VERSION = 1
"""Version of the JSON record layout (Redis value; SQLite transcript column)."""

__all__ = [
    "DEFAULT_MAX_TRANSCRIPT_TURNS",
    "HANDLE_VALIDITY_SECONDS",
    "MAX_CONVERSATION_ID_LENGTH",
    "CorruptRecord",
    "InvalidConversationId",
    "bound_transcript",
    "decode_record",
    "decode_transcript",
    "encode_record",
    "encode_transcript",
    "expires_at",
    "validate_conversation_id",
]


class InvalidConversationId(ValueError):
    """The conversation id is empty, too long, not a string or contains control characters."""


class CorruptRecord(ValueError):
    """A stored record cannot be decoded; stores log it and treat the conversation as absent."""


def validate_conversation_id(conversation_id: object) -> str:
    """Return ``conversation_id`` if acceptable, else raise :class:`InvalidConversationId`.

    Accepted: a non-empty ``str`` of at most :data:`MAX_CONVERSATION_ID_LENGTH` characters
    with no control characters (they would corrupt logs and Redis key listings).
    """
    if not isinstance(conversation_id, str):
        raise InvalidConversationId(
            f"conversation id must be a str, not {type(conversation_id).__name__}"
        )
    if not conversation_id:
        raise InvalidConversationId("conversation id must not be empty")
    if len(conversation_id) > MAX_CONVERSATION_ID_LENGTH:
        raise InvalidConversationId(
            f"conversation id is {len(conversation_id)} characters; "
            f"the limit is {MAX_CONVERSATION_ID_LENGTH}"
        )
    if any(ch < " " or ch == "\x7f" for ch in conversation_id):
        raise InvalidConversationId("conversation id must not contain control characters")
    return conversation_id


def expires_at(session: StoredSession, validity: float) -> float:
    """Wall-clock second after which ``session``'s handle is no longer usable (see module doc)."""
    reference = session.disconnected_at if session.disconnected_at is not None else session.saved_at
    return reference + validity


def bound_transcript(session: StoredSession, max_turns: int) -> StoredSession:
    """``session`` with only its newest ``max_turns`` turns (itself when already short)."""
    if len(session.transcript) <= max_turns:
        return session
    kept = session.transcript[len(session.transcript) - max_turns :] if max_turns > 0 else ()
    return StoredSession(
        handle=session.handle,
        saved_at=session.saved_at,
        disconnected_at=session.disconnected_at,
        transcript=kept,
    )


def check_session(session: object) -> StoredSession:
    """Reject what a store could not round-trip, before anything is written."""
    if not isinstance(session, StoredSession):
        raise TypeError(f"expected StoredSession, got {type(session).__name__}")
    if not isinstance(session.handle, str) or not session.handle:
        raise ValueError("StoredSession.handle must be a non-empty str")
    for name in ("saved_at", "disconnected_at"):
        value = getattr(session, name)
        if value is None and name == "disconnected_at":
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"StoredSession.{name} must be a finite number of UNIX seconds")
    for turn in session.transcript:
        if not isinstance(turn, Turn) or turn.role not in ("user", "model"):
            raise ValueError(f"transcript entries must be Turn('user'|'model', text): {turn!r}")
        if not isinstance(turn.text, str):
            raise ValueError("Turn.text must be a str")
    return session


def encode_transcript(transcript: tuple[Turn, ...]) -> bytes:
    """JSON list of ``{"role", "text"}`` objects."""
    return orjson.dumps([{"role": t.role, "text": t.text} for t in transcript])


def _turns_from(raw: object) -> tuple[Turn, ...]:
    if not isinstance(raw, list):
        raise CorruptRecord("transcript is not a list")
    turns: list[Turn] = []
    for item in raw:
        if not isinstance(item, dict):
            raise CorruptRecord("transcript entry is not an object")
        role, text = item.get("role"), item.get("text")
        if role not in ("user", "model") or not isinstance(text, str):
            raise CorruptRecord(f"bad transcript entry role={role!r}")
        turns.append(Turn(role, text))
    return tuple(turns)


def decode_transcript(raw: bytes | str) -> tuple[Turn, ...]:
    """Inverse of :func:`encode_transcript`; raises :class:`CorruptRecord`."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CorruptRecord(f"transcript is not JSON: {exc}") from exc
    return _turns_from(data)


def encode_record(session: StoredSession) -> bytes:
    """The whole session as one versioned JSON object (the Redis value)."""
    record: dict[str, Any] = {
        "v": RECORD_VERSION,
        "handle": session.handle,
        "saved_at": session.saved_at,
        "disconnected_at": session.disconnected_at,
        "transcript": [{"role": t.role, "text": t.text} for t in session.transcript],
    }
    return orjson.dumps(record)


def _number(value: object, name: str, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CorruptRecord(f"{name} is not a finite number")
    return float(value)


def decode_record(raw: bytes | str) -> StoredSession:
    """Inverse of :func:`encode_record`; raises :class:`CorruptRecord` on anything odd."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CorruptRecord(f"record is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CorruptRecord("record is not a JSON object")
    if data.get("v") != RECORD_VERSION:
        raise CorruptRecord(f"unknown record version {data.get('v')!r}")
    handle = data.get("handle")
    if not isinstance(handle, str) or not handle:
        raise CorruptRecord("handle is missing or not a string")
    saved_at = _number(data.get("saved_at"), "saved_at")
    assert saved_at is not None
    return StoredSession(
        handle=handle,
        saved_at=saved_at,
        disconnected_at=_number(data.get("disconnected_at"), "disconnected_at", optional=True),
        transcript=_turns_from(data.get("transcript")),
    )


def check_limits(validity: float, max_transcript_turns: int) -> None:
    """Constructor argument checks shared by every store."""
    if not (validity > 0 and math.isfinite(validity)):
        raise ValueError("validity must be a positive number of seconds")
    if max_transcript_turns < 0:
        raise ValueError("max_transcript_turns must be >= 0")
