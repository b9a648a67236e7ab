"""Decoding one client frame the way Google does. No I/O.

The server side of :mod:`tunnelproof.protocol.client_messages`: the emulator reads its
clients' frames with it and the relay its devices' frames, so both refuse the same frames
with the same close.

* A frame must be a JSON object with exactly one of ``setup``, ``clientContent``,
  ``realtimeInput``, ``toolResponse`` (camelCase or snake_case); its body an object or
  ``null`` (read as ``{}``).
* Anything else is a 1007 :class:`~tunnelproof.protocol.errors.CloseRefusal`: "Request
  contains an invalid argument.", or for an unknown top-level name proto-JSON's
  ``Unknown name "x": Cannot find field.``, cut to the 123-byte close-reason limit (the
  name is the client's, so it can be any length).
"""

from __future__ import annotations

from typing import Any

import orjson

from tunnelproof.protocol.casing import to_camel
from tunnelproof.protocol.client_messages import CLIENT_MESSAGE_KINDS
from tunnelproof.protocol.errors import invalid


def decode_client_frame(data: bytes | str) -> tuple[str, Any]:
    """``(kind, body)`` of one client frame (``kind`` in camelCase), or a 1007 refusal."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise invalid() from None
    if not isinstance(value, dict) or len(value) != 1:
        raise invalid()
    ((key, body),) = value.items()
    kind = to_camel(key)
    if kind not in CLIENT_MESSAGE_KINDS:
        raise invalid(f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.')
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise invalid()
    return kind, body
