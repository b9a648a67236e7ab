"""The relay's note in ``setupComplete`` (a dropped device's turn goes on), and the names
tunnelproof clients give the messages they send to a relay.

Google never continues a generation cut by a dropped connection, so a client that loses
its socket mid-answer reports the answer cut (``Rewound``) at once. The tunnelproof relay
keeps the upstream session open through the device's drop and replays what the device
missed, so through it the answer goes on. It says so in its ``setupComplete``::

    {"setupComplete": {"tunnelproofRelay": {"keepsTurns": true}}}            (new)
    {"setupComplete": {"tunnelproofRelay": {"keepsTurns": true,
                                            "resumedIntact": true}}}         (a resume)

``keepsTurns``: a drop of this connection does not cut the model's turn; the resume will
say whether the device lost anything. ``resumedIntact``: everything the device missed since
its handle follows, in order (the relay's buffer bounds evicted none of it). A client
holds the ``Rewound`` of a drop from a ``keepsTurns`` connection until the next
``setupComplete``, and reports it only if that one is not an intact resume. Google sends
neither field, so a client talking to Google is unchanged. Other clients (google-genai)
drop the unknown field.

A tunnelproof client also names each message it sends on a connection whose
``setupComplete`` carried the note, so the relay recognises a replay exactly (the same
name) and never takes a message the user sends again on purpose (the same bytes: "yes"
twice, a new name) for one. The name is ``<client instance>:<seq>`` (the instance is random
per client session, so a restarted client names afresh), put first in the frame::

    {"tunnelproofName":"3f9a02c1:17","realtimeInput":{...}}

The relay strips it before anything else reads the frame; Google never sees it (a client
names messages only after a relay's note). A client that names nothing (google-genai, the
seed's) gets the relay's rule by content (``tunnelproof.relay.dedup``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunnelproof.protocol.casing import get_field

FIELD = "tunnelproofRelay"
NAME_PREFIX = '{"tunnelproofName":"'
_NAME_BYTES = NAME_PREFIX.encode()
MAX_NAME = 64


def relay_note(*, resumed_intact: bool | None) -> dict[str, Any]:
    """The ``setupComplete`` body the relay sends (``resumed_intact``: ``None`` when the
    device started a new conversation)."""
    note: dict[str, Any] = {"keepsTurns": True}
    if resumed_intact is not None:
        note["resumedIntact"] = resumed_intact
    return {FIELD: note}


def read_relay_note(setup_complete: Mapping[str, Any]) -> tuple[bool, bool]:
    """``(keeps_turns, resumed_intact)`` from a ``setupComplete`` body (both ``False``
    from Google, or from anything malformed)."""
    note = get_field(setup_complete, FIELD)
    if not isinstance(note, Mapping):
        return False, False
    return get_field(note, "keepsTurns") is True, get_field(note, "resumedIntact") is True


def named(frame: str, name: str) -> str:
    """A client frame (compact JSON of one message) carrying the client's ``name``."""
    return f'{NAME_PREFIX}{name}",{frame[1:]}'


def split_name(data: bytes | str) -> tuple[str | None, bytes | str]:
    """``(name, frame without it)`` of a device frame; ``(None, data)`` when unnamed (or
    when the name is malformed: the frame is then refused as Google refuses bad JSON)."""
    if isinstance(data, bytes):
        if not data.startswith(_NAME_BYTES):
            return None, data
        end = data.find(b'",', len(_NAME_BYTES), len(_NAME_BYTES) + MAX_NAME + 1)
        if end < 0:
            return None, data
        return data[len(_NAME_BYTES) : end].decode("ascii", "replace"), b"{" + data[end + 2 :]
    if not data.startswith(NAME_PREFIX):
        return None, data
    end = data.find('",', len(NAME_PREFIX), len(NAME_PREFIX) + MAX_NAME + 1)
    if end < 0:
        return None, data
    return data[len(NAME_PREFIX) : end], "{" + data[end + 2 :]
