"""Reading client frames the way Google does: the frame, and the setup's modality. No I/O.

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
* A ``setup`` asks for exactly one response modality, TEXT or AUDIO (AUDIO when it names
  none); anything else there is 1007 too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from tunnelproof.protocol.casing import to_camel
from tunnelproof.protocol.client_messages import CLIENT_MESSAGE_KINDS
from tunnelproof.protocol.config import Modality
from tunnelproof.protocol.errors import invalid
from tunnelproof.protocol.types import JsonDict


def decode_client_frame(data: bytes | str) -> tuple[str, JsonDict]:
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


def requested_modality(setup: Mapping[str, Any]) -> Modality:
    """The one response modality a camelCase ``setup`` asks for, or a 1007 refusal.

    ``generationConfig.responseModalities`` must be a list of exactly one of TEXT and AUDIO
    (any case); a setup that names none asks for AUDIO, the Live API's default.
    """
    generation = setup.get("generationConfig") or {}
    if not isinstance(generation, Mapping):
        raise invalid()
    modalities = generation.get("responseModalities") or ["AUDIO"]
    if not isinstance(modalities, list) or len(modalities) != 1:
        raise invalid()
    modality = str(modalities[0]).upper()
    if modality == "TEXT":
        return "TEXT"
    if modality == "AUDIO":
        return "AUDIO"
    raise invalid()
