"""``RelayLink``: what the client does differently when a tunnelproof relay is the server.

Both rules come from :mod:`tunnelproof.protocol.relay_setup`; with Google nothing changes.

* **A drop's ``Rewound`` waits for the resume.** Google never continues a generation cut by
  a dropped connection, so the machine reports a cut answer (``Rewound``) when the
  connection goes. The relay keeps the model's turn going through the device's drop and
  says so in its ``setupComplete`` (``keepsTurns``); its resume says whether the device
  lost any of what it missed (``resumedIntact``). From such a connection the ``Rewound``
  is held: dropped by an intact resume (the answer goes on, nothing was rewound),
  reported by any other ``setupComplete`` (before ``Resumed`` / ``ContextReset``) or when
  the session ends. A drop that cancels tool calls is reported at once, as from Google.
* **Messages are named.** On a connection whose ``setupComplete`` carried the note, each
  message goes out named ``<instance>:<seq>`` (a replay keeps its name), so the relay drops
  exactly the replays of what it has, and never a message the user sends again on purpose.
  The instance is drawn from the machine's random source on the first relay connection.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tunnelproof.protocol.relay_setup import named, read_relay_note
from tunnelproof.session import app_events as ev


@dataclass(slots=True)
class RelayLink:
    """This connection's relay facts, and the ``Rewound`` held meanwhile."""

    emit: Callable[[ev.AppEvent], None]
    rng: random.Random
    keeps_turns: bool = False  # this connection's server is a tunnelproof relay
    held: ev.Rewound | None = None
    instance: str = ""  # names this client's messages (drawn on the first relay)

    def frame(self, wire: str, seq: int) -> str:
        """The frame to send for message ``seq`` to a relay: named (a replay keeps it)."""
        return named(wire, f"{self.instance}:{seq}")

    def connection_lost(self, rewound: ev.Rewound | None) -> None:
        """The connection is gone: report ``rewound`` now, or hold it for the resume."""
        keeps, self.keeps_turns = self.keeps_turns, False
        if rewound is not None and keeps and not rewound.cancelled_tool_call_ids:
            self.held = rewound
        elif rewound is not None:
            self.emit(rewound)

    def setup_complete(self, body: Mapping[str, Any], *, resuming: bool) -> None:
        """A ``setupComplete``: report the held ``Rewound`` unless an intact resume
        continues the turn."""
        keeps, intact = read_relay_note(body)
        held, self.held, self.keeps_turns = self.held, None, keeps
        if keeps and not self.instance:
            self.instance = f"{self.rng.getrandbits(32):08x}"
        if held is not None and not (resuming and intact):
            self.emit(held)

    def release(self) -> None:
        """The session ends: report the held ``Rewound``, if any."""
        held, self.held = self.held, None
        if held is not None:
            self.emit(held)
