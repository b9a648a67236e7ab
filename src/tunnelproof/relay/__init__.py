"""The relay: device ↔ relay ↔ Gemini, and a device drop loses nothing.

Devices speak the Live API wire protocol to the relay (same paths, same messages, so any
client only changes its URL). For each conversation the relay keeps one upstream
:class:`~tunnelproof.session.LiveSession`, numbers every server message, and gives the
device its own resumption handles that name a position. A device that drops and resumes
with its newest handle gets exactly what it missed, once, in order, then the live stream.

Modules, one job each:

* :mod:`~tunnelproof.relay.wire` — the device-facing protocol as data (no I/O);
* :mod:`~tunnelproof.relay.handles` — signed device handles (conversation + position);
* :mod:`~tunnelproof.relay.buffer` — the bounded, numbered output buffer;
* :mod:`~tunnelproof.relay.conversation` — one conversation: upstream owner, attach/detach,
  grace period;
* :mod:`~tunnelproof.relay.dedup` — the duplicate check (replays known by name or content);
* :mod:`~tunnelproof.relay.unheld` — device input no upstream handle holds yet;
* :mod:`~tunnelproof.relay.device` — one device socket's bounded sender;
* :mod:`~tunnelproof.relay.auth` — tickets and token-service authenticators at the upgrade;
* :mod:`~tunnelproof.relay.server` — the aiohttp server (standalone or mounted).

See ``docs/relay.md``.
"""

from tunnelproof.relay.auth import DeviceAuthenticator, DeviceIdentity
from tunnelproof.relay.buffer import BufferLimits, OutputBuffer
from tunnelproof.relay.conversation import Conversation, ConversationStats
from tunnelproof.relay.handles import HandleCodec, RelayHandle
from tunnelproof.relay.server import RelayServer
from tunnelproof.relay.settings import RelaySettings

__all__ = [
    "BufferLimits",
    "Conversation",
    "ConversationStats",
    "DeviceAuthenticator",
    "DeviceIdentity",
    "HandleCodec",
    "OutputBuffer",
    "RelayHandle",
    "RelayServer",
    "RelaySettings",
]
