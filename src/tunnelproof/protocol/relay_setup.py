"""The relay's note in ``setupComplete``: whether a dropped device's turn goes on.

Google never continues a generation cut by a dropped connection, so a client that loses
its socket mid-answer reports the answer cut (``Rewound``) at once. The tunnelproof relay
keeps the upstream session open through the device's drop and replays what the device
missed, so through it the answer goes on. It says so in its ``setupComplete``::

    {"setupComplete": {"tunnelproofRelay": {"keepsTurns": true}}}            (new)
    {"setupComplete": {"tunnelproofRelay": {"keepsTurns": true,
                                            "resumedIntact": true}}}         (a resume)

And a tunnelproof client tells the relay which of its messages are replays, so a message
the user sends again on purpose (the same bytes: "yes" twice) is never taken for one. A
setup that resumes from a relay handle (``rh1.``) declares it::

    {"setup": {..., "sessionResumption": {"handle": "rh1...."},
               "tunnelproofRelay": {"marksReplays": true}}}

and on that connection every message the client sends again (its outbox's replay after a
resume) starts ``{"tunnelproofReplay":true,`` (the relay strips it). Only marked messages
can be dropped as duplicates; an unmarked one is new. A client that declares nothing
(google-genai, the seed's) gets the relay's rule by content (``docs/relay.md``). Only a
relay handle carries the declaration: Google never sees either field.

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
RELAY_HANDLE_PREFIX = "rh1."  # the relay's device handles (tunnelproof.relay.handles)
REPLAY_MARK = '{"tunnelproofReplay":true,'
_MARK_BYTES = REPLAY_MARK.encode()


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


def declare_replay_marks(setup_message: dict[str, Any]) -> bool:
    """Add the declaration to a client's ``{"setup": ...}`` when it resumes from a relay
    handle (a new body: the caller's may be shared); ``True`` when added: mark this
    connection's replays."""
    body = setup_message.get("setup")
    resumption = get_field(body, "sessionResumption") if isinstance(body, dict) else None
    handle = get_field(resumption, "handle") if isinstance(resumption, Mapping) else None
    if not (isinstance(handle, str) and handle.startswith(RELAY_HANDLE_PREFIX)):
        return False
    assert isinstance(body, dict)
    setup_message["setup"] = {**body, FIELD: {"marksReplays": True}}
    return True


def declares_replay_marks(setup: Mapping[str, Any]) -> bool:
    """Whether a device's ``setup`` body declares that it marks its replays."""
    note = get_field(setup, FIELD)
    return isinstance(note, Mapping) and get_field(note, "marksReplays") is True


def mark_replay(frame: str) -> str:
    """A client frame (compact JSON of one message) marked as a replay."""
    return REPLAY_MARK + frame[1:]


def split_replay_mark(data: bytes | str) -> tuple[bool, bytes | str]:
    """``(marked, frame without the mark)`` of a device frame."""
    if isinstance(data, bytes):
        if data.startswith(_MARK_BYTES):
            return True, b"{" + data[len(_MARK_BYTES) :]
        return False, data
    if data.startswith(REPLAY_MARK):
        return True, "{" + data[len(REPLAY_MARK) :]
    return False, data
