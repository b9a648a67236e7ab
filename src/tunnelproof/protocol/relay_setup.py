"""The relay's note in ``setupComplete``: whether a dropped device's turn goes on.

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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunnelproof.protocol.casing import get_field

FIELD = "tunnelproofRelay"


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
