"""The relay's own resumption handles, given to devices in ``sessionResumptionUpdate``.

A handle names a *position* in a conversation, not just the conversation: ``seq`` is the
sequence number of the last server message the relay had sent the device when it issued
the handle, ``received`` how many client messages the relay had received from the device.
The relay sends a fresh handle right after every server message, so the newest handle a
device holds says exactly what it has received (a WebSocket delivers in order): a resume
replays ``seq + 1`` onwards, nothing twice.

Handles are signed (HMAC-SHA256, the relay's secret, shared by every relay process) and
carry the owning user, so a handle is useless to anyone else and cannot be forged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass

HANDLE_PREFIX = "rh1."
_B64 = re.compile(r"^[A-Za-z0-9_-]+$")


class HandleInvalid(Exception):
    """A handle that is malformed or not signed by this relay's secret."""


@dataclass(frozen=True, slots=True)
class RelayHandle:
    """A signed position in a conversation."""

    conversation: str
    user_id: str
    seq: int
    received: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class HandleCodec:
    """Encodes and verifies :class:`RelayHandle` strings."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the relay secret must be at least 16 bytes")
        self._key = secret

    def encode(self, handle: RelayHandle) -> str:
        """The opaque string for ``handle``."""
        payload = json.dumps(
            [handle.conversation, handle.user_id, handle.seq, handle.received],
            separators=(",", ":"),
        ).encode()
        body = _b64(payload)
        return f"{HANDLE_PREFIX}{body}.{self._sign(body)}"

    def decode(self, text: str) -> RelayHandle:
        """The handle in ``text``; :class:`HandleInvalid` if it is not one of ours."""
        if not text.startswith(HANDLE_PREFIX) or len(text) > 4096:
            raise HandleInvalid("not a relay handle")
        body, _, signature = text[len(HANDLE_PREFIX) :].partition(".")
        if not body or not _B64.match(body) or not hmac.compare_digest(signature, self._sign(body)):
            raise HandleInvalid("bad handle signature")
        try:
            conv, user, seq, received = json.loads(
                base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            )
            handle = RelayHandle(str(conv), str(user), int(seq), int(received))
        except (ValueError, TypeError) as exc:
            raise HandleInvalid("unreadable handle") from exc
        if handle.seq < 0 or handle.received < 0:
            raise HandleInvalid("negative position")
        return handle

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, b"relay-handle." + body.encode(), hashlib.sha256).digest())
