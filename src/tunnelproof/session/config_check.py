"""Say loudly when the token service locks a different session config than the client's.

Google applies a token's locked fields over the client's ``setup`` without a word: a
``TEXT`` client behind a service locking ``AUDIO`` just receives audio and no text. The
token route reports what it locked (:class:`~tunnelproof.protocol.locked.LockedConfig` on
the :class:`~tunnelproof.session.credentials.Credential`); :class:`LockChecker` compares it
with the session's :class:`~tunnelproof.protocol.config.LiveConfig` on every credential and
reports each difference once, as a :class:`~tunnelproof.session.app_events.ConfigMismatch`
event and a WARNING log line naming both values.
"""

from __future__ import annotations

import logging

from tunnelproof.protocol.config import LiveConfig
from tunnelproof.session.app_events import ConfigMismatch
from tunnelproof.session.credentials import Credential

log = logging.getLogger("tunnelproof.session")


class LockChecker:
    """Compares credentials' locks with ``config``; each (field, locked value) reported once."""

    def __init__(self, config: LiveConfig, conversation_id: str) -> None:
        """``conversation_id`` only labels the log line."""
        self._config = config
        self._conversation = conversation_id
        self._reported: set[tuple[str, str]] = set()

    def check(self, credential: Credential) -> list[ConfigMismatch]:
        """The new mismatches this credential shows (empty when it says nothing)."""
        if credential.locked is None:
            return []
        found: list[ConfigMismatch] = []
        for diff in credential.locked.differences(self._config):
            key = (diff.field, diff.locked_value)
            if key in self._reported:
                continue
            self._reported.add(key)
            event = ConfigMismatch(diff.field, diff.client_value, diff.locked_value)
            log.warning("[%s] config mismatch: %s", self._conversation, event.advice)
            found.append(event)
        return found
