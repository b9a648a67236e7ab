"""The client's own record of the conversation, for re-seeding a fresh session.

When the server refuses a resume (1007 on resume, an expired handle, or no handle yet),
the conversation would start from nothing. The client keeps its own text record of the
turns (user text it sent, model text and audio transcriptions it received) and sends it
to the fresh session as history (``clientContent`` with ``turnComplete: false``). It is
never sent on a *resumed* connection: re-sending history into a session that has it causes
1007 storms on newer models.

The record is bounded by turns and by UTF-8 bytes (the newest are kept): it is saved with
every handle and sent whole as the re-seed, so a chatty model must not grow either without
limit. A single turn longer than the byte bound keeps its end.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from tunnelproof.protocol.client_messages import Role, Turn, client_content
from tunnelproof.protocol.types import JsonDict

DEFAULT_MAX_TURNS = 200
DEFAULT_MAX_BYTES = 128 * 1024
"""About 32k tokens of history: enough to re-seed a conversation, small to store."""


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _tail(text: str, max_bytes: int) -> str:
    """The end of ``text`` within ``max_bytes`` UTF-8 bytes (never a broken character)."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[len(data) - max_bytes :].decode("utf-8", errors="ignore")


@dataclass(slots=True)
class Transcript:
    """Turns in order, bounded to the most recent ``max_turns`` and ``max_bytes``."""

    max_turns: int = DEFAULT_MAX_TURNS
    max_bytes: int = DEFAULT_MAX_BYTES
    turns: deque[Turn] = field(default_factory=deque)
    _model_parts: list[str] = field(default_factory=list)
    _user_parts: list[str] = field(default_factory=list)
    _bytes: int = 0  # UTF-8 bytes of the committed turns
    _model_bytes: int = 0  # ... of the model turn in progress
    _user_bytes: int = 0  # ... of the user's transcribed turn in progress

    @property
    def size(self) -> int:
        """UTF-8 bytes of the committed turns' text."""
        return self._bytes

    def load(self, turns: Iterable[Turn]) -> None:
        """Replace the record with ``turns`` (restored from a handle store)."""
        self.turns = deque(turns, maxlen=None)
        self._bytes = sum(_size(t.text) for t in self.turns)
        self._trim()

    def add(self, role: Role, text: str) -> None:
        """Append a complete turn (e.g. a user text the app sent)."""
        self.commit_user()
        if role == "user":
            self.commit_model()
        if text:
            self._append(Turn(role, text))

    def user_transcription(self, text: str) -> None:
        """A piece of the user's speech, transcribed by the server."""
        self._user_parts.append(text)
        self._user_bytes += _size(text)
        if self._user_bytes > self.max_bytes:
            self._user_parts[:] = [_tail("".join(self._user_parts), self.max_bytes)]
            self._user_bytes = _size(self._user_parts[0])

    def model_output(self, text: str) -> None:
        """A piece of model text or of its audio transcription."""
        self.commit_user()
        self._model_parts.append(text)
        self._model_bytes += _size(text)
        if self._model_bytes > self.max_bytes:
            self._model_parts[:] = [_tail("".join(self._model_parts), self.max_bytes)]
            self._model_bytes = _size(self._model_parts[0])

    @property
    def partial_model_text(self) -> str:
        """Model text of the turn in progress."""
        return "".join(self._model_parts)

    def commit_user(self) -> None:
        """Close the user's transcribed turn, if any."""
        text = "".join(self._user_parts).strip()
        self._user_parts.clear()
        self._user_bytes = 0
        if text:
            self._append(Turn("user", text))

    def forget(self, role: Role, text: str) -> bool:
        """Remove the newest committed turn of ``role`` with exactly ``text``.

        For a sent message later reported dropped: the record must not re-seed it.
        """
        for index in range(len(self.turns) - 1, -1, -1):
            turn = self.turns[index]
            if turn.role == role and turn.text == text:
                del self.turns[index]
                self._bytes -= _size(text)
                return True
        return False

    def commit_model(self) -> None:
        """Close the model turn in progress (complete, interrupted or cut off)."""
        text = "".join(self._model_parts).strip()
        self._model_parts.clear()
        self._model_bytes = 0
        if text:
            self._append(Turn("model", text))

    def snapshot(self) -> tuple[Turn, ...]:
        """The committed turns."""
        return tuple(self.turns)

    def seed_message(self) -> JsonDict | None:
        """History for a fresh session, or ``None`` when there is nothing to seed."""
        self.commit_user()
        self.commit_model()
        if not self.turns:
            return None
        return client_content(list(self.turns), turn_complete=False)

    def _append(self, turn: Turn) -> None:
        if _size(turn.text) > self.max_bytes:
            turn = Turn(turn.role, _tail(turn.text, self.max_bytes))
        self.turns.append(turn)
        self._bytes += _size(turn.text)
        self._trim()

    def _trim(self) -> None:
        while self.turns and (len(self.turns) > self.max_turns or self._bytes > self.max_bytes):
            self._bytes -= _size(self.turns.popleft().text)
